//! Test support: a real moto server on loopback, the fault proxy in front of
//! it, real AWS SDK clients for seeding and checking, and the release binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[macro_use]
pub mod kube;

use aws_sdk_ec2::types::{
    Filter, IamInstanceProfileSpecification, InstanceType, ResourceType, Tag, TagSpecification,
};

pub const REGION: &str = "us-east-1";
pub const TRUST_EC2: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
pub const TRUST_LAMBDA: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `moto_server`: `$MOTO_SERVER`, the repo's `.venv`, or PATH.
pub fn moto_server_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = repo().join(".venv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("moto_server"))
            .find(|p| p.exists())
    })
}

pub fn python() -> PathBuf {
    let venv = repo().join(".venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Skips (passes with a notice) when moto is not installed; under `CI=true`
/// (where scripts/test.sh always installs it) fails instead.
#[macro_export]
macro_rules! require_moto {
    () => {
        if common::moto_server_bin().is_none() {
            common::kube::skip_or_fail(
                "moto_server not installed (scripts/local-aws.sh installs it into .venv)",
            );
            return;
        }
    };
}

/// A child process, killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_for_port(port: u16) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listening on {port}");
}

/// One minimal HTTP/1.1 request to loopback; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// moto behind the fault proxy. Dropping it stops both.
pub struct Aws {
    _moto: std::sync::Arc<Proc>,
    _proxy: std::sync::Arc<Proc>,
    pub moto_port: u16,
    pub proxy_port: u16,
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
}

impl Aws {
    pub async fn start() -> Self {
        let moto_bin = moto_server_bin().expect("moto_server");
        let moto_port = free_port();
        let moto = Command::new(moto_bin)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Proc(moto);
        wait_for_port(moto_port);
        let mut proxy = Command::new(python())
            .arg(repo().join("tests/support/faultproxy.py"))
            .args([
                "--upstream",
                &format!("http://127.0.0.1:{moto_port}"),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fault proxy");
        let mut line = String::new();
        BufReader::new(proxy.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("READY line");
        let proxy_port: u16 = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .expect("READY <port>");
        // Seed and check moto directly, so the proxy's call log holds only the controller's calls.
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(format!("http://127.0.0.1:{moto_port}"))
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await;
        Self {
            _moto: std::sync::Arc::new(moto),
            _proxy: std::sync::Arc::new(Proc(proxy)),
            moto_port,
            proxy_port,
            iam: aws_sdk_iam::Client::new(&conf),
            ec2: aws_sdk_ec2::Client::new(&conf),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// Seeding and checking clients of another account: credentials from
    /// AssumeRole of `role_arn`, straight to moto (which files them under the
    /// role's account).
    pub async fn in_account(&self, role_arn: &str) -> Self {
        let endpoint = format!("http://127.0.0.1:{}", self.moto_port);
        let base = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_credential_types::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .load()
            .await;
        let out = aws_sdk_sts::Client::new(&base)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name("test-seed")
            .send()
            .await
            .expect("assume role in moto");
        let c = out.credentials().expect("credentials");
        let creds = aws_credential_types::Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            None,
            "test",
        );
        let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&endpoint)
            .credentials_provider(creds)
            .load()
            .await;
        Self {
            _moto: self._moto.clone(),
            _proxy: self._proxy.clone(),
            moto_port: self.moto_port,
            proxy_port: self.proxy_port,
            iam: aws_sdk_iam::Client::new(&conf),
            ec2: aws_sdk_ec2::Client::new(&conf),
        }
    }

    /// The parameters of every AssumeRole the controller sent through the proxy.
    pub fn assume_role_calls(&self) -> Vec<serde_json::Value> {
        let (_, body) = http(self.proxy_port, "GET", "/_fault/calls", "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("calls json");
        v["calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["action"] == "AssumeRole")
                    .map(|c| c["params"].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn fault_config(&self, json: &str) {
        let (status, body) = http(self.proxy_port, "POST", "/_fault/config", json);
        assert_eq!(status, 200, "{body}");
    }

    /// Clears the proxy's call log (and config).
    pub fn reset_calls(&self) {
        let (status, body) = http(self.proxy_port, "POST", "/_fault/reset", "{}");
        assert_eq!(status, 200, "{body}");
    }

    /// Every call the controller made through the proxy: (action, status, fault).
    pub fn calls(&self) -> Vec<(String, u16, Option<String>)> {
        let (_, body) = http(self.proxy_port, "GET", "/_fault/calls", "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("calls json");
        v["calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        (
                            c["action"].as_str().unwrap_or_default().to_string(),
                            u16::try_from(c["status"].as_u64().unwrap_or(0)).unwrap_or(0),
                            c["fault"].as_str().map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn mutating_calls(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .map(|c| c.0)
            .filter(|a| !is_read(a))
            .collect()
    }

    pub async fn create_role(&self, name: &str, trust: &str) -> String {
        let out = self
            .iam
            .create_role()
            .role_name(name)
            .assume_role_policy_document(trust)
            .send()
            .await
            .expect("create role");
        out.role().map(|r| r.arn().to_string()).expect("role arn")
    }

    pub async fn run_instances(&self, n: i32, tags: &[(&str, &str)]) -> Vec<String> {
        let mut req = self
            .ec2
            .run_instances()
            .image_id("ami-12c6146b")
            .instance_type(InstanceType::T3Micro)
            .min_count(n)
            .max_count(n);
        if !tags.is_empty() {
            let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
            for (k, v) in tags {
                spec = spec.tags(Tag::builder().key(*k).value(*v).build());
            }
            req = req.tag_specifications(spec.build());
        }
        let out = req.send().await.expect("run instances");
        out.instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    }

    pub async fn stop_instance(&self, id: &str) {
        self.ec2
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .expect("stop");
    }

    /// instance id → (association id, profile arn, profile id) of the live association.
    pub async fn associations(&self) -> BTreeMap<String, (String, String, String)> {
        let out = self
            .ec2
            .describe_iam_instance_profile_associations()
            .send()
            .await
            .expect("describe associations");
        out.iam_instance_profile_associations()
            .iter()
            .filter(|a| a.state().map(|s| s.as_str()) != Some("disassociated"))
            .filter_map(|a| {
                let p = a.iam_instance_profile()?;
                Some((
                    a.instance_id()?.to_string(),
                    (
                        a.association_id()?.to_string(),
                        p.arn()?.to_string(),
                        p.id()?.to_string(),
                    ),
                ))
            })
            .collect()
    }

    /// name → (path, id, role names) of every instance profile.
    pub async fn profiles(&self) -> BTreeMap<String, (String, String, Vec<String>)> {
        let out = self
            .iam
            .list_instance_profiles()
            .send()
            .await
            .expect("list profiles");
        out.instance_profiles()
            .iter()
            .map(|p| {
                (
                    p.instance_profile_name().to_string(),
                    (
                        p.path().to_string(),
                        p.instance_profile_id().to_string(),
                        p.roles()
                            .iter()
                            .map(|r| r.role_name().to_string())
                            .collect(),
                    ),
                )
            })
            .collect()
    }

    /// The tags of instance profile `name` (GetInstanceProfile: moto has no
    /// ListInstanceProfileTags).
    pub async fn profile_tags(&self, name: &str) -> BTreeMap<String, String> {
        let out = self
            .iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .expect("get profile");
        out.instance_profile()
            .map(|p| p.tags())
            .unwrap_or_default()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    }

    /// Puts a tag on instance profile `name`, as a person would.
    pub async fn tag_profile(&self, name: &str, key: &str, value: &str) {
        self.iam
            .tag_instance_profile()
            .instance_profile_name(name)
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .expect("tag"),
            )
            .send()
            .await
            .expect("tag profile");
    }

    pub async fn add_role(&self, profile: &str, role: &str) {
        self.iam
            .add_role_to_instance_profile()
            .instance_profile_name(profile)
            .role_name(role)
            .send()
            .await
            .expect("add role");
    }

    pub async fn create_profile(&self, name: &str, path: &str) -> (String, String) {
        let out = self
            .iam
            .create_instance_profile()
            .instance_profile_name(name)
            .path(path)
            .send()
            .await
            .expect("create profile");
        let p = out.instance_profile().expect("profile");
        (p.arn().to_string(), p.instance_profile_id().to_string())
    }

    pub async fn associate(&self, instance: &str, profile_name: &str) -> String {
        let out = self
            .ec2
            .associate_iam_instance_profile()
            .instance_id(instance)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(profile_name)
                    .build(),
            )
            .send()
            .await
            .expect("associate");
        out.iam_instance_profile_association()
            .and_then(|a| a.association_id())
            .expect("assoc id")
            .to_string()
    }

    pub async fn disassociate(&self, association_id: &str) {
        self.ec2
            .disassociate_iam_instance_profile()
            .association_id(association_id)
            .send()
            .await
            .expect("disassociate");
    }

    pub async fn instance_state(&self, id: &str) -> String {
        let out = self
            .ec2
            .describe_instances()
            .filters(Filter::builder().name("instance-id").values(id).build())
            .send()
            .await
            .expect("describe instances");
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find_map(|i| {
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
            })
            .unwrap_or_default()
    }
}

/// The result of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_instance-profile-controller")
}

/// Runs the binary against `endpoint` with test credentials.
pub fn cli(endpoint: &str, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("IPB_CLUSTER_ID", "test")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("run binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `run` against `kubeconfig` and this AWS, with the test credentials,
/// region and cluster id; `args` follow `run`. Killed when dropped.
pub fn run_controller(kubeconfig: &Path, aws: &Aws, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let child = Command::new(bin())
        .arg("run")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", aws.endpoint())
        .env("IPB_CLUSTER_ID", "test")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the controller");
    Proc(child)
}

/// Writes bindings to a temp dir; returns the dir (keep it alive) and the file path.
pub fn write_bindings(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bindings.yaml");
    std::fs::write(&path, yaml).expect("write bindings");
    (dir, path)
}

pub fn binding(ns: &str, name: &str, role: &str, instances: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  role: {role}\n  instances: {instances}\n{extra}"
    )
}

pub fn ids(list: &[String]) -> String {
    format!("{{ids: [{}]}}", list.join(", "))
}

/// The profile name the controller gives a binding of cluster `test`.
pub fn profile_name(ns: &str, name: &str) -> String {
    instance_profile_controller::naming::profile_name(
        "test",
        &instance_profile_controller::naming::BindingKey {
            namespace: ns.into(),
            name: name.into(),
        },
    )
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Tags that make binding `name` select its own instances.
pub fn select_tag(name: &str) -> (&'static str, String) {
    ("bench-binding", name.to_string())
}

/// Every call the proxy logged, counted per action: (successful, failed).
pub fn calls_by_action(
    calls: &[(String, u16, Option<String>)],
) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (action, status, _) in calls {
        let e = out.entry(action.clone()).or_default();
        if (200..300).contains(status) {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    out
}

/// Whether an AWS action only reads.
/// A read, as the controller counts it (`Simulate*`, which only doctor
/// calls, is a read too).
pub fn is_read(action: &str) -> bool {
    !instance_profile_controller::aws::is_mutating(action)
}

/// Every CRD file under `crds/`.
pub fn crd_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("crds"))
        .expect("crds/")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

/// The Kubernetes API emulator of tests/support with the CRDs of `crds/`
/// registered. Dropping it stops it.
pub struct KubeEmulator {
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl KubeEmulator {
    pub fn start() -> Self {
        Self::with_crds(&crd_files())
    }

    /// The emulator with no CRD registered.
    pub fn bare() -> Self {
        Self::with_crds(&[])
    }

    pub fn with_crds(crds: &[PathBuf]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(python())
            .arg(repo().join("tests/support/kube_emulator.py"))
            .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(
                crds.iter()
                    .flat_map(|f| [std::ffi::OsStr::new("--crd"), f.as_os_str()]),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the API emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("READY line");
        assert!(line.starts_with("READY "), "emulator said {line:?}");
        Self {
            _proc: Proc(child),
            _dir: dir,
            kubeconfig,
        }
    }

    pub async fn client(&self) -> ::kube::Client {
        kube::client_for(&self.kubeconfig).await
    }
}

/// The controller's `/metrics` text, or `None` while nothing answers on `port`.
pub fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// One value of the controller's `/metrics` on `port`: the sample whose name
/// and labels are exactly `series` (e.g. `…_bindings{reason="Reconciled"}`).
pub fn metric(port: u16, series: &str) -> Option<f64> {
    scrape(port)?.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// The sum of every sample of a metric family, whatever its labels (0 while
/// nothing answers).
pub fn metric_sum(port: u16, name: &str) -> f64 {
    scrape(port)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

impl Aws {
    /// Like [`Aws::associations`], every page (moto pages associations at 100).
    pub async fn all_associations(&self) -> BTreeMap<String, (String, String, String)> {
        let mut out = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .ec2
                .describe_iam_instance_profile_associations()
                .set_next_token(token.clone())
                .send()
                .await
                .expect("describe associations");
            for a in page.iam_instance_profile_associations() {
                if a.state().map(|s| s.as_str()) == Some("disassociated") {
                    continue;
                }
                if let (Some(i), Some(id), Some(p)) = (
                    a.instance_id(),
                    a.association_id(),
                    a.iam_instance_profile(),
                ) {
                    out.insert(
                        i.to_string(),
                        (
                            id.to_string(),
                            p.arn().unwrap_or_default().to_string(),
                            p.id().unwrap_or_default().to_string(),
                        ),
                    );
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out
    }
}

/// Like [`cli`], with more environment variables set and some removed.
pub fn cli_env(endpoint: &str, args: &[&str], set: &[(&str, &str)], remove: &[&str]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("IPB_CLUSTER_ID", "test")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().expect("run binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
