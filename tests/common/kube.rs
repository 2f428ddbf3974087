//! A real Kubernetes API server for tests: etcd + kube-apiserver from
//! `$KUBEBUILDER_ASSETS` (the envtest convention; `bash
//! ../shared/kube/install.sh DIR` lays them out and prints DIR), on loopback,
//! with all state in a temp dir. Only these two run: no controller-manager
//! (no garbage collection, namespaces stay Terminating), no scheduler, no
//! kubelet.
//!
//! `require_real_kube!()` starts one, or, without the assets: fails under
//! `CI=true` (real-server tests must never skip there) and otherwise prints
//! `skipped: …` and returns from the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Proc, free_port, repo};

/// How long the API server may take to answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The static admin token (`system:masters`); loopback only.
const ADMIN_TOKEN: &str = "e2e-admin-token";

/// Starts a [`RealCluster`], or skips the test (fails under `CI=true`) when
/// the API server's binaries or kubectl are missing.
#[macro_export]
macro_rules! require_real_kube {
    () => {
        match common::kube::prerequisites() {
            Ok(assets) => common::kube::RealCluster::start(&assets),
            Err(why) => {
                common::kube::skip_or_fail(&why);
                return;
            }
        }
    };
}

/// Whether this run is CI (`CI=true`), where nothing may skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Prints the skip line, or panics with it under CI.
pub fn skip_or_fail(why: &str) {
    assert!(
        !under_ci(),
        "CI=true, and this test cannot run: {why}. Under CI nothing may skip (.ci/run installs the tools and sets KUBEBUILDER_ASSETS from ../shared/kube/install.sh)"
    );
    println!("skipped: {why}");
}

/// `$KUBEBUILDER_ASSETS` with etcd and kube-apiserver in it, and kubectl and
/// openssl available; otherwise why not.
///
/// # Errors
/// A one-line reason, for the skip line.
pub fn prerequisites() -> Result<PathBuf, String> {
    let Some(assets) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|a| !a.is_empty()) else {
        return Err(
            "KUBEBUILDER_ASSETS not set (bash ../shared/kube/install.sh DIR prints it)".into(),
        );
    };
    let assets = PathBuf::from(assets);
    for bin in ["etcd", "kube-apiserver"] {
        if !assets.join(bin).is_file() {
            return Err(format!(
                "KUBEBUILDER_ASSETS={} has no {bin} (bash ../shared/kube/install.sh DIR installs it)",
                assets.display()
            ));
        }
    }
    if kubectl().is_none() {
        return Err("kubectl not installed (scripts/install-helm.sh puts it in .tools/bin)".into());
    }
    if on_path("openssl").is_none() {
        return Err("openssl not installed (needed for the service-account key)".into());
    }
    Ok(assets)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A tool: `$ENV`, else `.tools/bin/NAME` (what scripts/install-helm.sh
/// installs), else NAME on `PATH`.
fn tool(env: &str, name: &str) -> Option<PathBuf> {
    std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(repo().join(".tools/bin").join(name)).filter(|p| p.is_file()))
        .or_else(|| on_path(name))
}

/// kubectl: `$KUBECTL`, `.tools/bin/kubectl`, or `PATH`.
pub fn kubectl() -> Option<PathBuf> {
    tool("KUBECTL", "kubectl")
}

/// helm: `$HELM`, `.tools/bin/helm`, or `PATH`.
pub fn helm() -> Option<PathBuf> {
    tool("HELM", "helm")
}

/// The output of one command, for assertions and messages.
pub struct Ran {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Ran {
    fn from(out: Output) -> Self {
        Self {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// etcd + kube-apiserver on loopback. Dropping it stops both.
pub struct RealCluster {
    // Dropped in order: the API server before etcd, both before the dir.
    _apiserver: Proc,
    _etcd: Proc,
    dir: tempfile::TempDir,
    /// An admin kubeconfig (`system:masters`, token auth).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
}

impl RealCluster {
    /// Starts etcd and kube-apiserver from `assets` and waits until `/readyz`
    /// answers `ok`. A start that loses a port race is retried with new ports.
    pub fn start(assets: &Path) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut last = String::new();
        for attempt in 0..3 {
            match Self::try_start(assets, dir.path(), attempt) {
                Ok((apiserver, etcd, server)) => {
                    return Self {
                        _apiserver: apiserver,
                        _etcd: etcd,
                        kubeconfig: dir.path().join("kubeconfig"),
                        server,
                        dir,
                    };
                }
                Err(e) => last = e,
            }
        }
        panic!("the real API server did not start: {last}");
    }

    fn try_start(assets: &Path, d: &Path, attempt: u32) -> Result<(Proc, Proc, String), String> {
        let run = d.join(format!("run{attempt}"));
        std::fs::create_dir_all(&run).expect("state dir");
        let log = |name: &str| std::fs::File::create(run.join(name)).expect("log file");
        let etcd_port = free_port();
        let peer_port = free_port();
        let api_port = free_port();
        let mut etcd = Proc(
            Command::new(assets.join("etcd"))
                .args(["--data-dir", &run.join("etcd").to_string_lossy()])
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{etcd_port}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{etcd_port}"),
                ])
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer_port}"),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer_port}"),
                ])
                .args([
                    "--initial-cluster",
                    &format!("default=http://127.0.0.1:{peer_port}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log("etcd.log"))
                .spawn()
                .expect("start etcd"),
        );
        // The service-account key pair: the TokenRequest API
        // (`kubectl create token`) signs with it.
        let key = d.join("sa.key");
        if !key.exists() {
            let out = Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&key)
                .arg("2048")
                .output()
                .expect("openssl genrsa (needed for the service-account key)");
            assert!(out.status.success(), "openssl genrsa: {:?}", Ran::from(out));
        }
        let tokens = d.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{ADMIN_TOKEN},admin,admin,system:masters\n"),
        )
        .expect("tokens");
        let mut apiserver = Proc(
            Command::new(assets.join("kube-apiserver"))
                .args(["--etcd-servers", &format!("http://127.0.0.1:{etcd_port}")])
                .args(["--secure-port", &api_port.to_string()])
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--advertise-address",
                    "127.0.0.1",
                ])
                .args(["--cert-dir", &run.join("certs").to_string_lossy()])
                .args(["--token-auth-file", &tokens.to_string_lossy()])
                .args(["--authorization-mode", "RBAC", "--allow-privileged=true"])
                .args(["--service-account-issuer", "https://127.0.0.1"])
                .args(["--service-cluster-ip-range", "10.0.0.0/24"])
                .args(["--service-account-key-file", &key.to_string_lossy()])
                .args(["--service-account-signing-key-file", &key.to_string_lossy()])
                // No controller-manager creates the `default` ServiceAccount,
                // so the ServiceAccount admission plugin would refuse Pods.
                .args(["--disable-admission-plugins", "ServiceAccount"])
                .args(["--endpoint-reconciler-type", "none", "--profiling=false"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log("kube-apiserver.log"))
                .spawn()
                .expect("start kube-apiserver"),
        );
        let server = format!("https://127.0.0.1:{api_port}");
        std::fs::write(
            d.join("kubeconfig"),
            kubeconfig_yaml(&server, "admin", ADMIN_TOKEN),
        )
        .expect("kubeconfig");
        let kubectl = kubectl().expect("kubectl");
        let start = Instant::now();
        loop {
            for (name, p) in [("etcd", &mut etcd), ("kube-apiserver", &mut apiserver)] {
                if let Ok(Some(status)) = p.0.try_wait() {
                    return Err(format!(
                        "{name} exited ({status}):\n{}",
                        tail(&run.join(format!("{name}.log")))
                    ));
                }
            }
            let out = Command::new(&kubectl)
                .arg("--kubeconfig")
                .arg(d.join("kubeconfig"))
                .args(["get", "--raw", "/readyz", "--request-timeout", "5s"])
                .env("KUBECACHEDIR", d.join("kube-cache"))
                .stdin(Stdio::null())
                .output()
                .expect("run kubectl");
            if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
                return Ok((apiserver, etcd, server));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "/readyz not ok within {READY_TIMEOUT:?}: {:?}\n{}",
                    Ran::from(out),
                    tail(&run.join("kube-apiserver.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The temp dir holding the cluster's state; tests may put files there.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kubectl with the admin kubeconfig.
    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new(kubectl().expect("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("KUBECACHEDIR", self.dir().join("kube-cache"))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl (admin) with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Ran {
        self.kubectl_cmd()
            .args(args)
            .output()
            .expect("run kubectl")
            .into()
    }

    /// Runs kubectl (admin) with `args` and `stdin` as standard input.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Ran {
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            input.write_all(stdin.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output").into()
    }

    /// A kubeconfig that authenticates as ServiceAccount `ns`/`name`, with a
    /// token from the TokenRequest API (`kubectl create token`). The
    /// ServiceAccount must exist; the token stops working when it is deleted.
    pub fn kubeconfig_for_service_account(&self, ns: &str, name: &str) -> PathBuf {
        let out = self.kubectl(&["create", "token", name, "-n", ns, "--duration", "2h"]);
        assert!(out.ok, "kubectl create token {name} -n {ns}: {out:?}");
        let path = self.dir().join(format!("kubeconfig-{ns}-{name}"));
        std::fs::write(
            &path,
            kubeconfig_yaml(
                &self.server,
                &format!("system:serviceaccount:{ns}:{name}"),
                out.stdout.trim(),
            ),
        )
        .expect("kubeconfig");
        path
    }

    /// Applies the CRDs as shipped (`crds/`, server-side) and waits until
    /// they are Established, so the next object of theirs is accepted.
    pub fn install_crds(&self) {
        for crd in super::crd_files() {
            let out = self.kubectl(&["apply", "--server-side", "-f", super::path_str(&crd)]);
            assert!(out.ok, "applying {}: {out:?}", crd.display());
        }
        let out = self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ]);
        assert!(out.ok, "CRDs never Established: {out:?}");
    }

    /// A kube client with the admin kubeconfig.
    pub async fn client(&self) -> kube::Client {
        client_for(&self.kubeconfig).await
    }
}

/// A kube client for `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

fn kubeconfig_yaml(server: &str, user: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: {user:?}\n  user:\n    token: {token:?}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: {user:?}, namespace: default}}\ncurrent-context: e2e\n"
    )
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
