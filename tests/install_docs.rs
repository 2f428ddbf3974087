//! docs/install.md, executed: every shell block between `<!-- e2e:begin NAME -->`
//! and `<!-- e2e:end -->` runs, in order and unchanged, with bash against a
//! real kube-apiserver (tests/common/kube.rs), helm, kubectl and the
//! controller binary on `PATH`, and AWS pointed at moto.
//!
//! No kubelet runs, so the chart's Deployment never starts a pod. The test
//! runs the controller binary itself with the arguments the installed
//! Deployment carries, authenticated as the chart's ServiceAccount (a token
//! from `kubectl create token`), never as an admin: a permission missing
//! from the chart's RBAC fails here. Between the documented steps the test
//! plays the parts the docs leave to the world: it seeds AWS, starts and
//! stops the controller, ships "the next release" of the CRDs, and checks
//! the outcome of each step.

use crate::common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::kube::{Ran, RealCluster};
use common::{Aws, Proc, free_port, repo};
use instance_profile_controller::crd::InstanceProfileBinding;
use instance_profile_controller::naming::{BindingKey, profile_name};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::PostParams;

const DOC: &str = "docs/install.md";
/// The documented steps, in the order the docs must give them.
const STEPS: &[&str] = &[
    "install",
    "first-binding",
    "upgrade",
    "controller-gone",
    "remove-finalizer",
    "leftovers",
    "uninstall",
];
/// What the documented steps name.
const RELEASE_NS: &str = "instance-profile-controller";
const DEPLOYMENT: &str = "instance-profile-controller";
const CLUSTER_ID: &str = "dev";
const FINALIZER: &str = "iam.instanceprofile.dev/cleanup";
const CRDS: [&str; 2] = [
    "instanceprofilebindings.iam.instanceprofile.dev",
    "instanceprofilepolicies.iam.instanceprofile.dev",
];
/// The upper bound of one documented step.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// Marks the CRDs of the "previous release" the chart is first installed with.
const PREVIOUS: &str = "(previous release) ";

#[derive(Debug)]
struct Step {
    name: String,
    script: String,
}

/// The shell blocks between the e2e markers of `markdown`, one step per
/// marker pair (its blocks joined).
fn steps(markdown: &str) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut current: Option<Step> = None;
    let mut in_block = false;
    for (n, line) in markdown.lines().enumerate() {
        let n = n + 1;
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("<!-- e2e:begin") {
            assert!(current.is_none(), "{DOC}:{n}: e2e:begin inside a step");
            let name = rest.trim_end_matches("-->").trim();
            assert!(!name.is_empty(), "{DOC}:{n}: e2e:begin needs a step name");
            current = Some(Step {
                name: name.to_string(),
                script: String::new(),
            });
        } else if trimmed.starts_with("<!-- e2e:end") {
            let step = current
                .take()
                .unwrap_or_else(|| panic!("{DOC}:{n}: e2e:end without e2e:begin"));
            assert!(!in_block, "{DOC}:{n}: e2e:end inside a code block");
            assert!(
                !step.script.trim().is_empty(),
                "{DOC}:{n}: step {} has no shell block",
                step.name
            );
            out.push(step);
        } else if let Some(step) = current.as_mut() {
            if in_block {
                if trimmed == "```" {
                    in_block = false;
                } else {
                    step.script.push_str(line);
                    step.script.push('\n');
                }
            } else if trimmed == "```sh" || trimmed == "```bash" {
                in_block = true;
            } else {
                assert!(
                    !trimmed.starts_with("```"),
                    "{DOC}:{n}: only sh/bash blocks may stand between e2e markers"
                );
            }
        }
    }
    assert!(current.is_none(), "{DOC}: an e2e:begin is never ended");
    out
}

/// The manifest the chart's NOTES tell the user to apply (the heredoc
/// after `cat <<'YAML' | kubectl apply -f -`), unindented.
fn notes_manifest(notes: &str) -> String {
    let mut lines = notes
        .lines()
        .skip_while(|l| !l.contains("cat <<'YAML' | kubectl apply -f -"));
    assert!(lines.next().is_some(), "no manifest in the NOTES:\n{notes}");
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "YAML").collect();
    let indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(indent..).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn crd_dirs(work: &Path) -> [PathBuf; 2] {
    [
        work.join("crds"),
        work.join("charts/instance-profile-controller/crds"),
    ]
}

/// Rewrites the CRDs under `work` into "the previous release": the same
/// schema with another top-level description, so that applying the real
/// ones is an upgrade that changes fields Helm manages.
fn make_previous_release(work: &Path) {
    for dir in crd_dirs(work) {
        for entry in std::fs::read_dir(&dir).expect("crd dir") {
            let path = entry.expect("dir entry").path();
            let text = std::fs::read_to_string(&path).expect("crd");
            let mut crd: serde_json::Value = serde_norway::from_str(&text).expect("crd yaml");
            let schema = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
            let old = schema["description"].as_str().unwrap_or_default();
            schema["description"] = format!("{PREVIOUS}{old}").into();
            std::fs::write(&path, serde_norway::to_string(&crd).expect("yaml")).expect("write");
        }
    }
}

/// "The next release" arrives: the CRDs as they are in the repository.
fn ship_current_release(work: &Path) {
    for dir in crd_dirs(work) {
        std::fs::remove_dir_all(&dir).expect("rm crds");
    }
    copy_dir(&repo().join("crds"), &work.join("crds"));
    copy_dir(
        &repo().join("charts/instance-profile-controller/crds"),
        &work.join("charts/instance-profile-controller/crds"),
    );
}

/// Where the docs run: a copy of what they use from the repository, the
/// environment of a user (helm, kubectl and the binary on PATH, the admin
/// kubeconfig, AWS credentials and region) and the test's AWS.
struct Docs<'a> {
    cluster: &'a RealCluster,
    work: PathBuf,
    path: std::ffi::OsString,
    aws_endpoint: String,
}

impl Docs<'_> {
    /// Runs one documented step; while it runs, `ctl`'s log must show no
    /// refusal by the API server.
    fn run(&self, step: &Step, ctl: Option<&Controller>) -> Ran {
        let script = self.work.join(format!(".step-{}.sh", step.name));
        std::fs::write(&script, &step.script).expect("write step");
        let stdout = self.work.join(format!(".step-{}.out", step.name));
        let stderr = self.work.join(format!(".step-{}.err", step.name));
        let helm_home = self.cluster.dir().join("helm");
        let mut child = Command::new("bash")
            .args(["-euo", "pipefail"])
            .arg(&script)
            .current_dir(&self.work)
            .env("PATH", &self.path)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env("KUBECACHEDIR", self.cluster.dir().join("kube-cache"))
            .env("HELM_CACHE_HOME", helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", helm_home.join("config"))
            .env("HELM_DATA_HOME", helm_home.join("data"))
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", common::REGION)
            .env("AWS_ENDPOINT_URL", &self.aws_endpoint)
            .env_remove("AWS_PROFILE")
            .env_remove("IPB_CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .process_group(0)
            .spawn()
            .expect("run bash");
        let status = wait_bounded(&mut child, STEP_TIMEOUT, || {
            ctl.and_then(Controller::forbidden)
        });
        let ran = Ran {
            ok: status.is_some_and(|s| s.success()),
            stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
        };
        println!("--- step {} ({status:?})\n{ran:?}", step.name);
        assert!(
            status.is_some(),
            "step {} ran over {STEP_TIMEOUT:?} and was killed:\n{}\n{ran:?}",
            step.name,
            step.script
        );
        assert!(
            ran.ok,
            "step {} of {DOC} failed:\n{}\n{ran:?}",
            step.name, step.script
        );
        ran
    }
}

/// Waits for `child` up to `limit`; past it, or as soon as `abort` says
/// why, kills its whole process group (bash and what it started): `None`
/// after a timeout, a panic with the reason after an abort.
fn wait_bounded(
    child: &mut Child,
    limit: Duration,
    abort: impl Fn() -> Option<String>,
) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        let why = abort();
        if start.elapsed() > limit || why.is_some() {
            // bash's own kill: /bin/kill (procps) may not be installed.
            let _ = Command::new("bash")
                .args(["-c", &format!("kill -KILL -- -{}", child.id())])
                .status();
            let _ = child.wait();
            if let Some(why) = why {
                panic!("{why}");
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The controller binary, run as the installed Deployment would run it.
struct Controller {
    _proc: Proc,
    log: PathBuf,
}

impl Controller {
    /// Starts `run` with the args of the installed Deployment (metrics on a
    /// loopback port instead of 0.0.0.0:8080), as its ServiceAccount.
    async fn start(cluster: &RealCluster, aws: &Aws, kubeconfig: &Path, log: PathBuf) -> Self {
        let deployments: Api<Deployment> = Api::namespaced(cluster.client().await, RELEASE_NS);
        let deployment = deployments.get(DEPLOYMENT).await.expect("the Deployment");
        let pod = deployment
            .spec
            .and_then(|s| s.template.spec)
            .expect("pod spec");
        let args: Vec<String> = pod.containers[0]
            .args
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                if a.starts_with("--metrics-addr=") {
                    format!("--metrics-addr=127.0.0.1:{}", free_port())
                } else {
                    a
                }
            })
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
        let child = Command::new(common::bin())
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", "instance-profile-controller-e2e")
            .env("POD_NAMESPACE", RELEASE_NS)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", common::REGION)
            .env("AWS_ENDPOINT_URL", aws.endpoint())
            .env_remove("AWS_PROFILE")
            .env_remove("IPB_CLUSTER_ID")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("controller log"))
            .spawn()
            .expect("start the controller");
        Self {
            _proc: Proc(child),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the API server refused the controller (the chart's RBAC lacks
    /// a permission), if anything.
    fn forbidden(&self) -> Option<String> {
        let log = self.log();
        let forbidden: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden"))
            .collect();
        (!forbidden.is_empty()).then(|| {
            format!(
                "the controller, as the chart's ServiceAccount, was refused (RBAC):\n{}",
                forbidden.join("\n")
            )
        })
    }

    fn assert_never_forbidden(&self) {
        if let Some(why) = self.forbidden() {
            panic!("{why}");
        }
    }
}

/// Polls `probe` for up to a minute; while `ctl` runs, fails early when
/// the API server refuses it anything.
async fn wait_for<T>(
    what: &str,
    ctl: Option<&Controller>,
    mut probe: impl AsyncFnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if let Some(ctl) = ctl {
            ctl.assert_never_forbidden();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}{}",
            ctl.map(|c| format!("\ncontroller log:\n{}", c.log()))
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The binding, once Ready=True for its generation.
async fn ready(
    api: &Api<InstanceProfileBinding>,
    name: &str,
    ctl: &Controller,
) -> InstanceProfileBinding {
    let start = Instant::now();
    loop {
        let b = api.get_opt(name).await.ok().flatten();
        if let Some(b) = &b
            && let Some(s) = &b.status
            && s.is_ready()
            && s.observed_generation == b.metadata.generation
        {
            return b.clone();
        }
        ctl.assert_never_forbidden();
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} never became Ready for its generation: {:?}\ncontroller log:\n{}",
            b.and_then(|b| b.status),
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn has_finalizer(b: &InstanceProfileBinding) -> bool {
    b.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

#[test]
fn the_docs_mark_every_step() {
    let doc = std::fs::read_to_string(repo().join(DOC)).expect(DOC);
    let names: Vec<String> = steps(&doc).into_iter().map(|s| s.name).collect();
    assert_eq!(names, STEPS, "{DOC}: the e2e steps, in order");
}

#[tokio::test]
async fn install_upgrade_and_uninstall_as_documented() {
    require_moto!();
    let cluster = require_real_kube!();
    let Some(helm) = common::kube::helm() else {
        common::kube::skip_or_fail("helm not installed (scripts/install-helm.sh installs it)");
        return;
    };
    let kubectl = common::kube::kubectl().expect("kubectl");
    let doc = std::fs::read_to_string(repo().join(DOC)).expect(DOC);
    let steps = steps(&doc);
    let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, STEPS, "{DOC}: the e2e steps, in order");
    let step = |name: &str| -> &Step {
        steps
            .iter()
            .find(|s| s.name == name)
            .expect("a documented step")
    };

    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let web = aws.run_instances(2, &[("app", "web")]).await;
    let other = aws.run_instances(1, &[("app", "db")]).await;

    // The user's checkout, with the CRDs of the previous release.
    let work = cluster.dir().join("checkout");
    copy_dir(&repo().join("crds"), &work.join("crds"));
    copy_dir(
        &repo().join("charts/instance-profile-controller"),
        &work.join("charts/instance-profile-controller"),
    );
    make_previous_release(&work);
    let dir_of = |p: &Path| p.parent().expect("parent").to_path_buf();
    let mut path = vec![
        dir_of(&helm),
        dir_of(&kubectl),
        dir_of(Path::new(common::bin())),
    ];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let docs = Docs {
        cluster: &cluster,
        work: work.clone(),
        path: std::env::join_paths(path).expect("PATH"),
        aws_endpoint: aws.endpoint(),
    };
    let client = cluster.client().await;
    let bindings: Api<InstanceProfileBinding> = Api::namespaced(client.clone(), "team-a");
    let profile = profile_name(
        CLUSTER_ID,
        &BindingKey {
            namespace: "team-a".into(),
            name: "web".into(),
        },
    );

    // 1. install: Helm installs the CRDs and the chart's objects; its notes
    // allow before they bind.
    let out = docs.run(step("install"), None);
    let notes = notes_manifest(&out.stdout);
    let notes_policy = notes.find("kind: InstanceProfilePolicy");
    let notes_binding = notes.find("kind: InstanceProfileBinding");
    assert!(
        notes_policy.is_some() && notes_policy < notes_binding,
        "the chart's NOTES must create a policy before the first binding:\n{notes}"
    );

    // No pod runs here: the controller runs as the chart's ServiceAccount.
    let deployment: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NS);
    let sa = deployment
        .get(DEPLOYMENT)
        .await
        .expect("the Deployment")
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.service_account_name)
        .expect("serviceAccountName");
    let sa_kubeconfig = cluster.kubeconfig_for_service_account(RELEASE_NS, &sa);
    let first = Controller::start(
        &cluster,
        &aws,
        &sa_kubeconfig,
        cluster.dir().join("controller-1.log"),
    )
    .await;

    // 2. a policy, then the first binding: Ready for its generation.
    docs.run(step("first-binding"), Some(&first));
    let b = ready(&bindings, "web", &first).await;
    assert!(has_finalizer(&b), "no finalizer: {:?}", b.metadata);
    let status = b.status.expect("status");
    assert_eq!(
        status.instance_profile.as_ref().map(|p| p.name.as_str()),
        Some(profile.as_str())
    );
    let profiles = aws.profiles().await;
    assert_eq!(
        profiles.get(&profile).map(|p| (p.0.as_str(), p.2.clone())),
        Some((
            format!("/ipb/{CLUSTER_ID}/").as_str(),
            vec!["web-app".to_string()]
        )),
        "{profiles:?}"
    );
    let associations = aws.associations().await;
    for i in &web {
        assert!(
            associations.contains_key(i),
            "{i} not associated: {associations:?}"
        );
    }
    assert!(!associations.contains_key(&other[0]), "{associations:?}");
    // It led through the chart's Lease and recorded Events, both as the
    // ServiceAccount.
    let leases: Api<Lease> = Api::namespaced(client.clone(), RELEASE_NS);
    let holder = leases
        .get("instance-profile-controller")
        .await
        .expect("the Lease")
        .spec
        .and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("instance-profile-controller-e2e"));
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "team-a");
    wait_for("the binding's Events", Some(&first), async || {
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        reasons.iter().any(|r| r == "Associated").then_some(())
    })
    .await;
    first.assert_never_forbidden();

    // The NOTES' own first binding is valid and allowed too.
    let notes_file = cluster.dir().join("notes.yaml");
    std::fs::write(&notes_file, &notes).expect("write the NOTES manifest");
    let notes_file = common::path_str(&notes_file);
    let out = cluster.kubectl(&["apply", "--dry-run=server", "-f", notes_file]);
    assert!(
        out.ok && !out.stderr.contains("Warning"),
        "the chart's NOTES manifest:\n{notes}\n{out:?}"
    );
    // (As this installation's cluster id, the binding is the docs' own web.)
    let plan = common::cli_env(
        &aws.endpoint(),
        &["plan", "-f", notes_file],
        &[("IPB_CLUSTER_ID", CLUSTER_ID)],
        &[],
    );
    assert!(
        matches!(plan.code, 0 | 2) && !plan.stdout.contains("PolicyDenied"),
        "the NOTES' policy must allow its binding:\n{notes}\n{plan:?}"
    );

    // 3. upgrade: the next release's CRDs differ from what Helm installed,
    // so applying them without --force-conflicts fails on Helm's fields.
    ship_current_release(&work);
    let conflict: Ran = cluster
        .kubectl_cmd()
        .args(["apply", "--server-side", "-f", "crds/"])
        .current_dir(&work)
        .output()
        .expect("kubectl")
        .into();
    assert!(
        !conflict.ok && conflict.stderr.contains("conflict with \"helm\""),
        "kubectl apply --server-side over Helm's CRDs should conflict with the helm field manager: {conflict:?}"
    );
    docs.run(step("upgrade"), Some(&first));
    for crd in CRDS {
        let live = cluster.kubectl(&[
            "get",
            "crd",
            crd,
            "-o",
            "jsonpath={.spec.versions[0].schema.openAPIV3Schema.description}",
        ]);
        assert!(
            live.ok && !live.stdout.starts_with(PREVIOUS),
            "{crd} was not upgraded: {live:?}"
        );
    }
    ready(&bindings, "web", &first).await;
    first.assert_never_forbidden();

    // 4. the controller is gone: a deletion is blocked by the finalizer.
    drop(first);
    docs.run(step("controller-gone"), None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stuck = bindings
        .get_opt("web")
        .await
        .expect("get")
        .expect("the binding must still exist: the finalizer blocks its deletion");
    assert!(stuck.metadata.deletion_timestamp.is_some() && has_finalizer(&stuck));
    assert!(aws.profiles().await.contains_key(&profile));

    // ... and the documented recovery lets it go, leaving AWS as it was.
    docs.run(step("remove-finalizer"), None);
    wait_for("the binding to be deleted", None, async || {
        bindings
            .get_opt("web")
            .await
            .ok()
            .and_then(|b| b.is_none().then_some(()))
    })
    .await;
    assert!(aws.profiles().await.contains_key(&profile), "left in AWS");

    // 5. what is left in AWS: plan lists the profile, apply deletes it.
    let out = docs.run(step("leftovers"), None);
    assert!(
        out.stdout.contains(&profile),
        "plan --prune-all does not name the profile left behind ({profile}):\n{out:?}"
    );
    assert!(
        aws.profiles().await.is_empty(),
        "{:?}",
        aws.profiles().await
    );
    assert!(
        aws.associations().await.is_empty(),
        "{:?}",
        aws.associations().await
    );

    // 6. uninstall, with the controller back and a binding to clean up.
    let second = Controller::start(
        &cluster,
        &aws,
        &sa_kubeconfig,
        cluster.dir().join("controller-2.log"),
    )
    .await;
    let again: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"role": "web-app", "instances": {"tags": {"app": "web"}}},
    }))
    .expect("binding");
    bindings
        .create(&PostParams::default(), &again)
        .await
        .expect("create the binding again");
    ready(&bindings, "web", &second).await;
    second.assert_never_forbidden();
    docs.run(step("uninstall"), None);
    drop(second);
    assert!(
        aws.profiles().await.is_empty(),
        "deleting the bindings before the uninstall cleans AWS: {:?}",
        aws.profiles().await
    );
    assert!(aws.associations().await.is_empty());
    let crds = cluster.kubectl(&["get", "crd", "-o", "name"]);
    for crd in CRDS {
        assert!(!crds.stdout.contains(crd), "{crd} left: {crds:?}");
    }
    let left = cluster.kubectl(&[
        "get",
        "deployment,serviceaccount,role,rolebinding",
        "-n",
        RELEASE_NS,
        "-l",
        "app.kubernetes.io/instance=instance-profile-controller",
        "-o",
        "name",
    ]);
    assert!(left.ok && left.stdout.trim().is_empty(), "{left:?}");
    let cluster_scoped = cluster.kubectl(&[
        "get",
        "clusterrole,clusterrolebinding",
        "-l",
        "app.kubernetes.io/instance=instance-profile-controller",
        "-o",
        "name",
    ]);
    assert!(
        cluster_scoped.ok && cluster_scoped.stdout.trim().is_empty(),
        "{cluster_scoped:?}"
    );
}
