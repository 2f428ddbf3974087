//! Bad input never panics and every rejection says where it is: the binding
//! parser (`files::parse_documents`) on arbitrary bytes, arbitrary YAML trees
//! and single-field mutations of a good binding; the command line on arbitrary
//! argument vectors, in process and through the binary.
//!
//! Sizes: `PROPTEST_CASES` (proptest's own variable, default 256) sets the cases
//! of every in-process property; `IPB_FUZZ_BINARY_CASES` (default 24) the
//! binary runs. A failure prints the minimal input and proptest stores its
//! seed in `tests/parse_fuzz.proptest-regressions`, so the next run replays it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use instance_profile_controller::aws::ratelimit::Limit;
use instance_profile_controller::cli::{Cli, Command as Sub, parse_duration};
use instance_profile_controller::files::{FileBinding, parse_documents};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};

const FILE: &str = "fuzz.yaml";

fn parse(text: &str) -> (Vec<FileBinding>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    parse_documents(FILE, text, &mut out, &mut errors);
    (out, errors)
}

/// Every message names the file and the document it is about.
fn assert_located(errors: &[String]) -> Result<(), TestCaseError> {
    for e in errors {
        prop_assert!(
            e.starts_with("fuzz.yaml: document "),
            "a rejection that does not name file and document: {e:?}"
        );
    }
    Ok(())
}

/// What the parser promises about what it accepts.
fn assert_accepted_is_valid(out: &[FileBinding]) -> Result<(), TestCaseError> {
    for b in out {
        let name = b.binding.metadata.name.as_deref().unwrap_or_default();
        let ns = b.binding.metadata.namespace.as_deref().unwrap_or_default();
        prop_assert!(!name.is_empty() && name.len() <= 253, "{name:?}");
        prop_assert!(!ns.is_empty() && ns.len() <= 63, "{ns:?}");
        let sel = &b.binding.spec.instances;
        prop_assert!(!sel.ids.is_empty() || !sel.tags.is_empty(), "{sel:?}");
        prop_assert!(b.source.starts_with("fuzz.yaml#"), "{}", b.source);
    }
    Ok(())
}

fn good() -> Value {
    json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {
            "role": "web-app",
            "instanceProfile": {"path": "/ipb/", "tags": {"cost-center": "42"}},
            "instances": {"ids": ["i-0123456789abcdef0"], "tags": {"app": "web"}},
            "replaceForeignAssociations": false,
            "deletionPolicy": "Delete"
        }
    })
}

fn yaml(v: &Value) -> String {
    // The writer that pairs with the reader file mode uses: it quotes what the
    // reader (like kubectl's YAML 1.1) would take for a boolean, e.g. "yes".
    serde_saphyr::to_string(v).expect("a JSON value is YAML")
}

// ---------------------------------------------------------------- generators

/// Strings that stress validators: empty, long, unicode, control characters,
/// YAML syntax, regex syntax, near misses of valid values.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-zA-Z0-9_+=,.@/:*-]{0,80}",
        "\\PC{0,20}",
        Just(String::new()),
        Just("x".repeat(300)),
        Just("i-0123456789abcdef".into()),
        Just("arn:aws:iam::12345678901:role/x".into()),
        Just("arn:aws:iam::123456789012:role/".into()),
        Just("é".repeat(70)),
        Just("\u{0}\u{7f}\u{202e}".into()),
        Just("${{}}[](*)+?\\".into()),
        Just("- &a [*a, *a]".into()),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "apiVersion", "kind", "metadata", "spec", "status", "name", "namespace",
            "labels", "role", "instanceProfile", "path", "tags", "instances", "ids",
            "replaceForeignAssociations", "deletionPolicy", "uid",
        ])
        .prop_map(str::to_string),
        1 => nasty_string(),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        nasty_string().prop_map(Value::String),
        Just(json!("iam.instanceprofile.dev/v1alpha1")),
        Just(json!("InstanceProfileBinding")),
        Just(json!("Retain")),
    ];
    leaf.prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A good binding with arbitrary values grafted in at random places.
fn arb_near_binding() -> impl Strategy<Value = Value> {
    let paths = prop::sample::select(vec![
        "/apiVersion",
        "/kind",
        "/metadata",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/labels",
        "/spec",
        "/spec/role",
        "/spec/instanceProfile",
        "/spec/instanceProfile/path",
        "/spec/instanceProfile/tags",
        "/spec/instances",
        "/spec/instances/ids",
        "/spec/instances/tags",
        "/spec/replaceForeignAssociations",
        "/spec/deletionPolicy",
    ]);
    prop::collection::vec((paths, arb_value()), 1..4).prop_map(|grafts| {
        let mut v = good();
        for (path, value) in grafts {
            set(&mut v, path, value);
        }
        v
    })
}

fn set(doc: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    let parent = if parent.is_empty() {
        Some(doc)
    } else {
        doc.pointer_mut(parent)
    };
    if let Some(Value::Object(map)) = parent {
        map.insert(key.to_string(), value);
    }
}

fn remove(doc: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
        map.remove(key);
    }
}

/// One field made invalid, and the field path the rejection must name.
#[derive(Clone, Debug)]
struct Mutation {
    pointer: &'static str,
    value: Option<Value>,
    field: &'static str,
}

fn bad_dns(max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[A-Z][a-z]{0,10}",
        "[a-z]{1,5}_[a-z]{1,5}",
        "-[a-z]{1,8}",
        "[a-z]{1,8}-",
        "[a-z]{1,5} [a-z]{1,5}",
        Just("a".repeat(max + 1)),
    ]
}

fn valid_role(s: &str) -> bool {
    let name_ok = |n: &str| {
        (1..=64).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
    };
    if name_ok(s) {
        return true;
    }
    // arn:aws[a-z-]*:iam::[0-9]{12}:role/([!-~]*/)?NAME
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition, rest)) = rest.split_once(":iam::") else {
        return false;
    };
    let Some((account, rest)) = rest.split_once(":role/") else {
        return false;
    };
    let name = rest.rsplit('/').next().unwrap_or_default();
    partition
        .chars()
        .all(|c| c.is_ascii_lowercase() || c == '-')
        && account.len() == 12
        && account.chars().all(|c| c.is_ascii_digit())
        && rest.chars().all(|c| ('!'..='~').contains(&c))
        && name_ok(name)
}

fn valid_path(s: &str) -> bool {
    s == "/"
        || (s.starts_with('/')
            && s.ends_with('/')
            && (1..=512).contains(&s.len())
            && s.chars().all(|c| ('!'..='~').contains(&c)))
}

fn valid_id(s: &str) -> bool {
    s.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn at(pointer: &'static str, field: &'static str, value: Value) -> Mutation {
    Mutation {
        pointer,
        value: Some(value),
        field,
    }
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        bad_dns(253).prop_map(move |s| at("/metadata/name", "metadata.name", json!(s))),
        bad_dns(63).prop_map(move |s| at("/metadata/namespace", "metadata.namespace", json!(s))),
        nasty_string()
            .prop_filter("an invalid role", |s| !valid_role(s))
            .prop_map(move |s| at("/spec/role", "spec.role", json!(s))),
        nasty_string()
            .prop_filter("an invalid path", |s| !valid_path(s))
            .prop_map(move |s| at(
                "/spec/instanceProfile/path",
                "spec.instanceProfile.path",
                json!(s)
            )),
        nasty_string()
            .prop_filter("an invalid id", |s| !valid_id(s))
            .prop_map(move |s| at(
                "/spec/instances/ids",
                "spec.instances.ids",
                json!(["i-0123456789abcdef0", s])
            )),
        prop_oneof![
            Just(json!({"": "v"})),
            Just(json!({"k".repeat(129): "v"})),
            Just(json!({"k": "v".repeat(257)})),
            Just(Value::Object(
                (0..51).map(|i| (format!("k{i}"), json!("v"))).collect()
            )),
        ]
        .prop_map(|v| at("/spec/instances/tags", "spec.instances.tags", v)),
        prop_oneof![
            "instanceprofile\\.dev/[a-z]{1,10}".prop_map(|k| json!({ k: "v" })),
            "aws:[a-z]{1,10}".prop_map(|k| json!({ k: "v" })),
            Just(Value::Object(
                (0..41).map(|i| (format!("k{i}"), json!("v"))).collect()
            )),
            Just(json!({"k": 42})),
        ]
        .prop_map(|v| at("/spec/instanceProfile/tags", "spec.instanceProfile.tags", v)),
        "[A-Za-z]{0,12}"
            .prop_filter("not a policy", |s| s != "Delete" && s != "Retain")
            .prop_map(move |s| at("/spec/deletionPolicy", "spec.deletionPolicy", json!(s))),
        prop_oneof![Just(json!("yes")), Just(json!(1)), Just(json!([]))].prop_map(|v| at(
            "/spec/replaceForeignAssociations",
            "spec.replaceForeignAssociations",
            v
        )),
        prop_oneof![Just(json!(42)), Just(json!(["a"])), Just(json!({"a": 1}))].prop_map(|v| at(
            "/spec/role",
            "spec.role",
            v
        )),
        "[a-z]{1,8}"
            .prop_filter("unknown", |s| !["ids", "tags"].contains(&s.as_str()))
            .prop_map(|k| Mutation {
                pointer: "/spec/instances/UNKNOWN",
                value: Some(json!(k)),
                field: "spec.instances",
            }),
        Just(json!({})).prop_map(|v| at("/spec/instances", "spec.instances", v)),
        Just(Mutation {
            pointer: "/spec/role",
            value: None,
            field: "role"
        }),
        Just(Mutation {
            pointer: "/spec/instances",
            value: None,
            field: "instances"
        }),
        Just(Mutation {
            pointer: "/spec",
            value: None,
            field: "spec"
        }),
        "[A-Za-z]{1,12}"
            .prop_filter("not ours", |s| s != "InstanceProfileBinding"
                && s != "Namespace")
            .prop_map(move |s| at("/kind", "field kind", json!(s))),
        "[a-z./0-9]{0,20}"
            .prop_filter("not ours", |s| s != "iam.instanceprofile.dev/v1alpha1")
            .prop_map(move |s| at("/apiVersion", "field apiVersion", json!(s))),
        prop_oneof![Just(json!(5)), Just(json!({"a": {"b": 1}}))].prop_map(|v| at(
            "/metadata/labels",
            "metadata.labels",
            v
        )),
    ]
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic_and_every_rejection_is_located(
        bytes in prop::collection::vec(any::<u8>(), 0..600)
    ) {
        let text = String::from_utf8_lossy(&bytes);
        let (out, errors) = parse(&text);
        assert_located(&errors)?;
        assert_accepted_is_valid(&out)?;
    }

    #[test]
    fn arbitrary_yaml_trees_never_panic_and_every_rejection_is_located(
        docs in prop::collection::vec(prop_oneof![arb_value(), arb_near_binding()], 1..4),
        as_json in any::<bool>(),
    ) {
        let text = if as_json {
            docs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n")
        } else {
            docs.iter().map(yaml).collect::<Vec<_>>().join("---\n")
        };
        let (out, errors) = parse(&text);
        assert_located(&errors)?;
        assert_accepted_is_valid(&out)?;
        prop_assert!(out.len() + errors.len() <= docs.len(), "{out:?} {errors:?}");
    }

    #[test]
    fn a_bad_field_is_rejected_naming_that_field(mutation in arb_mutation()) {
        let mut doc = good();
        match &mutation.value {
            Some(v) if mutation.pointer.ends_with("/UNKNOWN") => {
                let key = v.as_str().unwrap_or("x").to_string();
                set(&mut doc, &mutation.pointer.replace("UNKNOWN", &key), json!(1));
            }
            Some(v) => set(&mut doc, mutation.pointer, v.clone()),
            None => remove(&mut doc, mutation.pointer),
        }
        // The bad document sits between two good ones: it is the one named,
        // and the parser goes on to the next.
        let mut second = good();
        set(&mut second, "/metadata/name", json!("other"));
        let text = format!("{}---\n{}---\n{}", yaml(&good()), yaml(&doc), yaml(&second));
        let (out, errors) = parse(&text);
        prop_assert_eq!(errors.len(), 1, "{:?} -> {:?}", mutation, errors);
        prop_assert_eq!(out.len(), 2, "{:?}", mutation);
        prop_assert!(
            errors[0].starts_with("fuzz.yaml: document 2: "),
            "{}", errors[0]
        );
        prop_assert!(
            errors[0].contains(mutation.field),
            "the rejection does not name {:?}: {}", mutation.field, errors[0]
        );
    }

    #[test]
    fn command_lines_never_panic(args in prop::collection::vec(arb_arg(), 0..8)) {
        let mut argv: Vec<OsString> = vec!["instance-profile-controller".into()];
        argv.extend(args);
        if let Ok(cli) = Cli::try_parse_from(argv.clone()) {
            // Flags that passed clap are checked again when the engine starts:
            // a clear error naming the flag, never a panic.
            let config = match &cli.command {
                Sub::Run(a) => Some(a.engine.engine_config()),
                Sub::Plan(a) => Some(a.engine.engine_config()),
                Sub::Apply(a) => Some(a.engine.engine_config()),
                Sub::Doctor(a) => Some(a.engine_config()),
                Sub::Crd => None,
            };
            match config {
                Some(Ok(config)) => {
                    prop_assert!(config.path_prefix.starts_with('/') && config.path_prefix.ends_with('/'));
                }
                Some(Err(e)) => {
                    let msg = e.to_string();
                    prop_assert!(
                        msg.starts_with("--cluster-id:") || msg.starts_with("--profile-path-prefix:"),
                        "{msg}"
                    );
                }
                None => {}
            }
            if let Sub::Apply(a) = &cli.command {
                prop_assert!(!a.file.files.is_empty());
            }
        }
    }

    #[test]
    fn durations_and_rate_limits_never_panic(s in nasty_string(), n in 0u64..100_000) {
        let _ = parse_duration(&s);
        let _ = s.parse::<Limit>();
        // Well-formed values mean what they say.
        prop_assert_eq!(parse_duration(&format!("{n}s")), Ok(Duration::from_secs(n)));
        prop_assert_eq!(parse_duration(&format!("{n}ms")), Ok(Duration::from_millis(n)));
        prop_assert_eq!(parse_duration(&n.to_string()), Ok(Duration::from_secs(n)));
    }
}

fn arb_arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "plan", "apply", "crd", "run", "doctor", "-f", "--filename", "--prune", "-o", "--output",
            "json", "text", "yaml", "-v", "--timeout", "5m", "-1s", "--cluster-id",
            "--profile-path-prefix", "--concurrency", "0", "257", "65536", "--region",
            "--rate-limit-iam-read", "0:0", "-1:5", "nan:inf", "1e999", "--role-cache-ttl",
            "--log-format", "--log-level", "--namespace", "--metrics-addr", "::1:99999",
            "--resync-interval", "--lease-duration", "--no-leader-election", "--help",
            "--version", "-", "--", "=", "--cluster-id=a/b", "--profile-path-prefix=//",
            "--timeout=99999999999999h", "--concurrency=-3", "-fo", "-n", "--kubeconfig",
            "--context", "--instance-profile", "--profile",
        ])
        .prop_map(OsString::from),
        2 => nasty_string().prop_map(OsString::from),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(OsString::from_vec),
    ]
}

// ---------------------------------------------------------------- the binary

fn binary_cases() -> u32 {
    std::env::var("IPB_FUZZ_BINARY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

/// Runs the binary with no reachable AWS; returns (exit code, stderr).
fn run_binary(args: &[OsString], file_body: &[u8]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("in.yaml");
    std::fs::write(&file, file_body).expect("write input");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let args: Vec<OsString> = args
        .iter()
        .map(|a| {
            if a == "FILE" {
                file.clone().into_os_string()
            } else {
                // An argument cannot carry a NUL byte (execve's strings end there).
                OsString::from_vec(
                    a.clone()
                        .into_vec()
                        .into_iter()
                        .filter(|b| *b != 0)
                        .collect(),
                )
            }
        })
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_instance-profile-controller"))
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{closed}"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
            }
            return (status.code(), stderr);
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, format!("hung for 60 s: {args:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn arb_invocation() -> impl Strategy<Value = (Vec<OsString>, Vec<u8>)> {
    let sub = prop::sample::select(vec!["plan", "apply", "crd", "doctor", "bogus"]);
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        arb_near_binding().prop_map(|v| yaml(&v).into_bytes()),
        arb_value().prop_map(|v| v.to_string().into_bytes()),
    ];
    (
        sub,
        prop::collection::vec(arb_arg(), 0..5),
        any::<bool>(),
        body,
    )
        .prop_map(|(sub, extra, well_formed, body)| {
            let mut args: Vec<OsString> = vec![sub.into()];
            if well_formed {
                // Flags clap accepts, so the file itself is what is judged.
                if sub != "crd" {
                    args.extend(["-f".into(), "FILE".into(), "-o".into(), "json".into()]);
                }
            } else {
                args.extend(extra.into_iter().filter(|a| a != "run"));
            }
            if sub == "apply" {
                // `apply` waits for AWS until its timeout; keep it short.
                args.extend(["--timeout".into(), "2s".into()]);
            }
            (args, body)
        })
}

#[test]
fn the_binary_never_panics_on_bad_flags_or_files() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: binary_cases(),
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    });
    let codes: std::cell::RefCell<BTreeMap<i32, u32>> = std::cell::RefCell::default();
    let result = runner.run(&arb_invocation(), |(args, body)| {
        let (code, stderr) = run_binary(&args, &body);
        prop_assert!(!stderr.contains("panicked"), "{args:?} panicked:\n{stderr}");
        prop_assert!(
            matches!(code, Some(0..=2)),
            "{args:?}: exit {code:?} (101 is a panic, None a signal):\n{stderr}"
        );
        if std::env::var_os("IPB_FUZZ_DEBUG").is_some() {
            println!("{args:?} -> {code:?}\n{stderr}");
        }
        if let Some(c) = code {
            *codes.borrow_mut().entry(c).or_default() += 1;
        }
        Ok(())
    });
    println!("binary exit codes: {:?}", codes.borrow());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn deep_nesting_and_alias_bombs_are_refused_not_fatal() {
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let (out, errors) = parse(&deep);
    assert!(out.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("fuzz.yaml: document 1: "),
        "{errors:?}"
    );

    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..12 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("b{}", i - 1)
        };
        bomb.push_str(&format!(
            "b{i}: &b{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
        ));
    }
    // 10^13 nodes if expanded: refused (or the test never ends).
    let (out, errors) = parse(&bomb);
    assert!(out.is_empty());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("fuzz.yaml: document 1: "),
        "{errors:?}"
    );
}
