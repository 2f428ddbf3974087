//! Command-line conventions: each subcommand's `--help` lists only the flags
//! it uses; the kubectl flags (`--kubeconfig`, `--context`, `-n`) choose the
//! API server, checked against a real one; `doctor`'s usage errors exit 2.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use instance_profile_controller::cli::{Cli, Command as Sub};

/// No AWS answers here: nothing in these tests may get as far as AWS.
const NO_AWS: &str = "http://127.0.0.1:9";

fn help(subcommand: &str) -> String {
    let run = common::cli(NO_AWS, &[subcommand, "--help"]);
    assert_eq!(run.code, 0, "{subcommand} --help: {run:?}");
    run.stdout
}

/// The long flags a help text lists.
fn flags(help: &str) -> Vec<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_string()
        })
        .collect()
}

const NAMING: &[&str] = &["--cluster-id", "--profile-path-prefix"];
const AWS: &[&str] = &["--region", "--aws-endpoint-url"];
const RATE_LIMITS: &[&str] = &[
    "--rate-limit-iam-read",
    "--rate-limit-iam-write",
    "--rate-limit-ec2-read",
    "--rate-limit-ec2-write",
];
const ENGINE: &[&str] = &[
    "--concurrency",
    "--role-cache-ttl",
    "--assume-role-duration-seconds",
    "--profile-quota-reserve",
];
const LOG: &[&str] = &["--log-format", "--log-level"];
const KUBE: &[&str] = &["--kubeconfig", "--context", "--namespace"];

#[test]
fn each_help_lists_only_the_flags_its_subcommand_uses() {
    let crd = help("crd");
    let listed = flags(&crd);
    assert_eq!(listed, ["--help", "--version"], "crd --help:\n{crd}");
    for flag in ["--rate-limit", "--region", "--cluster-id", "--kubeconfig"] {
        assert!(!crd.contains(flag), "crd --help lists {flag}:\n{crd}");
    }

    for sub in ["plan", "apply"] {
        let text = help(sub);
        let listed = flags(&text);
        for flag in [NAMING, AWS, RATE_LIMITS, ENGINE, LOG].concat() {
            assert!(
                listed.iter().any(|f| f == flag),
                "{sub} --help lacks {flag}:\n{text}"
            );
        }
        // File mode never talks to Kubernetes.
        for flag in KUBE {
            assert!(
                !listed.iter().any(|f| f == flag),
                "{sub} --help lists {flag}:\n{text}"
            );
        }
    }

    let run = help("run");
    let listed = flags(&run);
    for flag in [NAMING, AWS, RATE_LIMITS, ENGINE, LOG, KUBE].concat() {
        assert!(
            listed.iter().any(|f| f == flag),
            "run --help lacks {flag}:\n{run}"
        );
    }
    assert!(run.contains("-n, --namespace <NAMESPACE>"), "{run}");
    assert!(run.contains("\nKubernetes:\n"), "{run}");
    assert!(run.contains("\nAWS rate limits:\n"), "{run}");

    // doctor reads one binding through the kubeconfig and calls AWS, but
    // reconciles nothing: no engine tuning, except the session length it
    // judges (check 7).
    let doctor = help("doctor");
    let listed = flags(&doctor);
    for flag in [
        NAMING,
        AWS,
        RATE_LIMITS,
        LOG,
        &[
            "--kubeconfig",
            "--context",
            "--instance-profile",
            "--assume-role-duration-seconds",
        ],
    ]
    .concat()
    {
        assert!(
            listed.iter().any(|f| f == flag),
            "doctor --help lacks {flag}:\n{doctor}"
        );
    }
    let engine_only: Vec<&str> = ENGINE
        .iter()
        .copied()
        .filter(|f| *f != "--assume-role-duration-seconds")
        .collect();
    for flag in [&engine_only[..], &["--profile", "--namespace"]].concat() {
        assert!(
            !listed.iter().any(|f| f == flag),
            "doctor --help lists {flag}:\n{doctor}"
        );
    }
}

#[test]
fn apply_prune_help_says_it_deletes_and_plan_prune_that_it_only_shows() {
    let apply = help("apply");
    let line = apply
        .lines()
        .find(|l| l.trim_start().starts_with("--prune "))
        .unwrap_or_else(|| panic!("no --prune in apply --help:\n{apply}"));
    assert!(line.contains("DELETE"), "{line}");
    let plan = help("plan");
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("--prune "))
        .unwrap_or_else(|| panic!("no --prune in plan --help:\n{plan}"));
    assert!(line.contains("show") && !line.contains("DELETE"), "{line}");
}

/// Every flag keeps its name on the subcommands that use it.
#[test]
fn flags_keep_their_names_where_they_are_used() {
    let common_flags = [
        "--cluster-id=c1",
        "--profile-path-prefix=/p/",
        "--region=eu-west-1",
        "--aws-endpoint-url=http://x",
        "--rate-limit-iam-read=1:2",
        "--rate-limit-iam-write=1:2",
        "--rate-limit-ec2-read=1:2",
        "--rate-limit-ec2-write=1:2",
        "--log-format=json",
        "--log-level=debug",
    ];
    let engine_flags = [
        "--concurrency=3",
        "--role-cache-ttl=5s",
        "--assume-role-duration-seconds=900",
        "--profile-quota-reserve=5",
    ];
    let parse = |head: &[&str]| {
        let mut argv = vec!["instance-profile-controller"];
        argv.extend_from_slice(head);
        argv.extend_from_slice(&common_flags);
        if head[0] != "doctor" {
            argv.extend_from_slice(&engine_flags);
        }
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    };
    for head in [
        &["run", "-n", "team-a", "--kubeconfig", "k", "--context", "c"][..],
        &["plan", "-f", "-"],
        &["apply", "-f", "-", "--prune"],
    ] {
        let engine = match parse(head).command {
            Sub::Run(a) => {
                assert_eq!(a.namespace.as_deref(), Some("team-a"));
                assert_eq!(a.kube.kubeconfig.as_deref(), Some(Path::new("k")));
                assert_eq!(a.kube.context.as_deref(), Some("c"));
                a.engine
            }
            Sub::Plan(a) => a.engine,
            Sub::Apply(a) => {
                assert!(a.file.prune);
                a.engine
            }
            other => panic!("{other:?}"),
        };
        let config = engine.engine_config().expect("engine config");
        assert_eq!(config.cluster_id, "c1");
        assert_eq!(config.path_prefix, "/p/");
        assert_eq!(config.role_cache_ttl, Duration::from_secs(5));
        assert_eq!(config.assume_role_seconds, 900);
        assert_eq!(engine.concurrency, 3);
        assert_eq!(engine.aws.region.as_deref(), Some("eu-west-1"));
    }
    let Sub::Doctor(d) = parse(&["doctor", "--instance-profile", "web", "--context", "c"]).command
    else {
        panic!("not doctor")
    };
    assert_eq!(d.instance_profile.as_deref(), Some("web"));
    assert_eq!(d.kube.context.as_deref(), Some("c"));
    assert_eq!(d.engine_config().expect("config").cluster_id, "c1");
    // The old name, hidden, for one release.
    let Sub::Doctor(d) = parse(&["doctor", "--profile", "web"]).command else {
        panic!("not doctor")
    };
    assert_eq!(d.instance_profile.as_deref(), Some("web"));

    // Flags a subcommand does not use are refused, not ignored.
    for argv in [
        &["x", "crd", "--region", "r"][..],
        &["x", "plan", "-f", "-", "--kubeconfig", "k"],
        &[
            "x",
            "doctor",
            "--instance",
            "i-01234567",
            "--concurrency",
            "3",
        ],
    ] {
        assert!(Cli::try_parse_from(argv).is_err(), "{argv:?} parsed");
    }
}

#[test]
fn doctor_usage_errors_exit_2_and_its_help_says_so() {
    let text = help("doctor");
    for line in [
        "Exit codes:",
        "0  every check passed",
        "1  a check found a problem",
        "2  doctor could not run: a usage error",
    ] {
        assert!(text.contains(line), "doctor --help lacks {line:?}:\n{text}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "# no binding\n").expect("write");
    let missing = dir.path().join("missing.yaml");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // clap's own errors
        (vec!["doctor"], "required arguments were not provided"),
        (
            vec![
                "doctor",
                "--instance",
                "i-01234567",
                "--instance-profile",
                "p",
            ],
            "cannot be used with",
        ),
        (
            vec!["doctor", "--instance", "i-01234567", "--binding", "a/b"],
            "cannot be used with",
        ),
        (
            vec!["doctor", "--instance", "i-nothex"],
            "not an instance id",
        ),
        (vec!["doctor", "--binding", "no-slash"], "NAMESPACE/NAME"),
        (vec!["doctor", "--no-such-flag"], "unexpected argument"),
        (
            vec!["doctor", "--instance", "i-01234567", "--log-format", "xml"],
            "invalid value",
        ),
        // doctor's own checks of its arguments
        (
            vec!["doctor", "--instance", "i-01234567", "--cluster-id", "a/b"],
            "doctor could not run (input): --cluster-id",
        ),
        (
            vec!["doctor", "--instance", "i-01234567", "--log-level", "=,="],
            "--log-level",
        ),
        (
            vec!["doctor", "-f", common::path_str(&missing)],
            "doctor could not run (input)",
        ),
        (
            vec!["doctor", "-f", common::path_str(&empty)],
            "holds 0 bindings",
        ),
    ];
    for (args, says) in cases {
        let run = common::cli(NO_AWS, &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(says),
            "{args:?} does not say {says:?}: {run:?}"
        );
    }

    // The other subcommands keep exit 1 for usage errors: 2 is plan's "changes".
    for args in [
        &["plan"][..],
        &["plan", "-f", "-", "--no-such-flag"],
        &["apply", "-f", "-", "--cluster-id", "a/b"],
        &["run", "--log-format", "xml"],
        &["no-such-command"],
    ] {
        let run = common::cli(NO_AWS, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
    }
}

/// A kubeconfig with two contexts: `good` (the real API server) and `bad`
/// (a port nobody listens on), `bad` current, so only `--context good`
/// reaches the server.
fn two_context_kubeconfig(cluster: &common::kube::RealCluster) -> (std::path::PathBuf, String) {
    let admin = std::fs::read_to_string(&cluster.kubeconfig).expect("admin kubeconfig");
    let token = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("token in the admin kubeconfig")
        .trim_matches('"')
        .to_string();
    let bad = format!("https://127.0.0.1:{}", common::free_port());
    let path = cluster.dir().join("two-contexts");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: good\n  cluster: {{server: {good}, insecure-skip-tls-verify: true}}\n- name: bad\n  cluster: {{server: {bad}, insecure-skip-tls-verify: true}}\nusers:\n- name: admin\n  user: {{token: {token:?}}}\ncontexts:\n- name: good\n  context: {{cluster: good, user: admin}}\n- name: bad\n  context: {{cluster: bad, user: admin}}\ncurrent-context: bad\n",
            good = cluster.server,
        ),
    )
    .expect("kubeconfig");
    (path, bad)
}

/// `KUBECONFIG` points nowhere: what the flags name is what is used.
fn with_flags(args: &[&str]) -> common::Run {
    common::cli_env(
        NO_AWS,
        args,
        &[("KUBECONFIG", "/nonexistent/kubeconfig")],
        &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"],
    )
}

#[test]
fn kubeconfig_and_context_choose_the_api_server() {
    let cluster = require_real_kube!();
    let (kubeconfig, bad) = two_context_kubeconfig(&cluster);
    let file = common::path_str(&kubeconfig);
    // --context bad, and the current context (bad) without --context: the
    // error names the context, its server and the file.
    for extra in [
        &["--kubeconfig", file, "--context", "bad"][..],
        &["--kubeconfig", file],
    ] {
        let mut argv = vec![
            "run",
            "--no-leader-election",
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        argv.extend_from_slice(extra);
        let started = Instant::now();
        let r = with_flags(&argv);
        assert_eq!(r.code, 1, "{argv:?}: {r:?}");
        assert!(
            r.stderr.contains("cannot reach the Kubernetes API server")
                && r.stderr.contains("context \"bad\"")
                && r.stderr.contains(&bad)
                && r.stderr.contains(file),
            "{argv:?}: {r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{argv:?} took {:?}",
            started.elapsed()
        );
    }

    // A context the file does not have: named, with the ones it has.
    let r = with_flags(&["run", "--kubeconfig", file, "--context", "nope"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("--context \"nope\"") && r.stderr.contains("it has: good, bad"),
        "{r:?}"
    );
    // A kubeconfig that is not there.
    let r = with_flags(&["run", "--kubeconfig", "/nonexistent/other"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("--kubeconfig /nonexistent/other"),
        "{r:?}"
    );

    // --context good reaches the real server: without the CRDs installed,
    // `run` stops at its first list, with the answer only that server gives.
    let r = with_flags(&[
        "run",
        "--kubeconfig",
        file,
        "--context",
        "good",
        "--no-leader-election",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("the InstanceProfileBinding CRD is not installed"),
        "{r:?}"
    );

    // doctor --binding goes through the same flags (and exits 2).
    let r = with_flags(&[
        "doctor",
        "--binding",
        "team-a/web",
        "--kubeconfig",
        file,
        "--context",
        "bad",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("doctor could not run (kubernetes)")
            && r.stderr.contains("context \"bad\"")
            && r.stderr.contains(&bad),
        "{r:?}"
    );
    cluster.install_crds();
    let r = with_flags(&[
        "doctor",
        "--binding",
        "team-a/web",
        "--kubeconfig",
        file,
        "--context",
        "good",
    ]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("binding team-a/web not found in the cluster"),
        "{r:?}"
    );
}

/// `run --kubeconfig F --context good` becomes ready against the real API
/// server, with `KUBECONFIG` pointing nowhere, and reconciles in the one
/// namespace `-n` names.
#[tokio::test]
async fn run_with_kubeconfig_and_context_becomes_ready() {
    require_moto!();
    let cluster = require_real_kube!();
    cluster.install_crds();
    let (kubeconfig, _bad) = two_context_kubeconfig(&cluster);
    let aws = common::Aws::start().await;
    let port = common::free_port();
    let log = cluster.dir().join("run.log");
    let mut child = common::Proc(
        Command::new(common::bin())
            .args(["run", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--context", "good", "-n", "team-a", "--no-leader-election"])
            .args(["--require-policy=false", "--metrics-addr"])
            .arg(format!("127.0.0.1:{port}"))
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", common::REGION)
            .env("AWS_ENDPOINT_URL", aws.endpoint())
            .env("IPB_CLUSTER_ID", "test")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start the controller"),
    );
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "run exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::http(port, "GET", "/readyz", "").0 == 200
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready within 60 s:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // "controller started" follows readiness; it says what run watches.
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("controller started")) {
            assert!(
                line.contains("team-a"),
                "-n team-a is not what run watches: {line}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no \"controller started\" within 60 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
