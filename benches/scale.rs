//! Scale benchmark (issue #9, SPEC §3 "Observation at scale"): the release
//! binary, driven as a user drives it, against moto behind the fault proxy on
//! loopback and against the Kubernetes API emulator. Prints Markdown tables of
//! AWS calls by action (from the proxy's call log), wall times and peak RSS.
//! It asserts nothing; `tests/scale.rs` holds the call budgets.
//!
//! ```sh
//! cargo bench --bench scale -- --sizes 1,10,100,1000 --propagation 5 \
//!     --roles 5 --run-size 100 --hold 10000 --hold-resync 120
//! ```
//!
//! Needs moto (`$MOTO_SERVER` or `.venv/bin/moto_server`; `bash
//! scripts/python-env.sh` installs it). RSS is read from `/proc` (Linux).
//! `$IPB_BENCH_BINARY` drives another build of the controller (a baseline).
//! The hold section runs `run` against a real API server too when
//! `$KUBEBUILDER_ASSETS` has one.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use instance_profile_controller::crd::{InstanceProfileBinding, InstanceProfilePolicy};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

const CLUSTER: &str = "bench";
const NS: &str = "bench";
const PATH: &str = "/ipb/bench/";
/// AWS's own page maxima (ListInstanceProfiles `MaxItems`, EC2 `MaxResults`):
/// the proxy pages like AWS instead of like moto (which pages associations at 100).
const AWS_PAGES: &str = r#"{"page_size": 1000}"#;
/// The same for the hold section, whose account holds more instance profiles
/// than moto's quota of 1,000 (AWS raises it on request).
const HOLD_FAULTS: &str = r#"{"page_size": 1000, "instance_profile_quota": 20000}"#;
/// Rate limits high enough that only AWS (here: moto) sets the pace; used where
/// the point is the end state, not the time to reach it.
const UNLIMITED: [&str; 8] = [
    "--rate-limit-iam-read",
    "1000:1000",
    "--rate-limit-iam-write",
    "1000:1000",
    "--rate-limit-ec2-read",
    "1000:1000",
    "--rate-limit-ec2-write",
    "1000:1000",
];
const RECONCILED: &str = r#"instance_profile_controller_bindings{reason="Reconciled"}"#;
const RECONCILES: &str = "instance_profile_controller_reconciles_total";

struct Options {
    sizes: Vec<usize>,
    propagation: f64,
    roles: usize,
    instances: i32,
    run_size: usize,
    hold: usize,
    hold_resync: u64,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![1, 10, 100, 1000],
        propagation: 5.0,
        roles: 5,
        instances: 2,
        run_size: 100,
        hold: 10_000,
        hold_resync: 120,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--bench" {
            continue; // added by `cargo bench`
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--sizes" => {
                o.sizes = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?;
            }
            "--propagation" => o.propagation = value.parse().map_err(|e| bad(&e))?,
            "--roles" => o.roles = value.parse().map_err(|e| bad(&e))?,
            "--instances" => o.instances = value.parse().map_err(|e| bad(&e))?,
            "--run-size" => o.run_size = value.parse().map_err(|e| bad(&e))?,
            "--hold" => o.hold = value.parse().map_err(|e| bad(&e))?,
            "--hold-resync" => o.hold_resync = value.parse().map_err(|e| bad(&e))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --sizes N,N,… --propagation SECONDS --roles R \
                     --instances K --run-size N (0 skips) --hold N (0 skips) --hold-resync SECONDS"
                ));
            }
        }
    }
    o.roles = o.roles.max(1);
    Ok(o)
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if common::moto_server_bin().is_none() {
        println!("skipped: moto_server not installed (bash scripts/python-env.sh installs it)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench(&opts));
}

async fn bench(opts: &Options) {
    let mut report = Report::default();
    for &n in &opts.sizes {
        let run_here = n == opts.run_size;
        file_mode(opts, n, run_here, &mut report).await;
    }
    if opts.run_size > 0 && !opts.sizes.contains(&opts.run_size) {
        file_mode(opts, opts.run_size, true, &mut report).await;
    }
    if opts.hold > 0 {
        hold(opts, &mut report).await;
    }
    println!("{}", report.render(opts));
}

// ---------------------------------------------------------------------------
// measuring a process

struct Measured {
    code: i32,
    wall: Duration,
    /// Peak resident set (VmHWM), KiB; 0 where /proc is not there.
    peak_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`).
fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix(field)?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse()
            .ok()
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// Runs a command to its end, polling its peak RSS every 20 ms (the kernel's
/// high-water mark, so only the last 20 ms before exit can escape).
fn measure(mut cmd: Command) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("start the controller binary");
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(hwm) = proc_kib(pid, "VmHWM:") {
            peak = peak.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Measured {
        code: status.code().unwrap_or(-1),
        wall: start.elapsed(),
        peak_rss_kib: peak,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The controller binary: `$IPB_BENCH_BINARY` (another build, to compare
/// with), else the one cargo built with this benchmark.
fn binary(endpoint: &str, args: &[&str]) -> Command {
    let bin = std::env::var_os("IPB_BENCH_BINARY").unwrap_or_else(|| common::bin().into());
    let mut c = Command::new(bin);
    c.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", common::REGION)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("IPB_CLUSTER_ID", CLUSTER)
        .env_remove("AWS_PROFILE")
        .env_remove("IPB_LOG_LEVEL");
    c
}

/// The `run` controller in the background; killed on drop.
struct Running {
    child: Child,
    metrics_port: u16,
    log: std::path::PathBuf,
}

impl Running {
    fn start(
        endpoint: &str,
        kubeconfig: &Path,
        resync_seconds: u64,
        log_dir: &Path,
        extra: &[&str],
    ) -> Self {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let log = log_dir.join(format!("run-{metrics_port}.log"));
        let file = std::fs::File::create(&log).expect("run log");
        let child = binary(
            endpoint,
            &[
                "run",
                "--no-leader-election",
                "--resync-interval",
                &format!("{resync_seconds}s"),
                "--metrics-addr",
                &format!("127.0.0.1:{metrics_port}"),
            ],
        )
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start run");
        Self {
            child,
            metrics_port,
            log,
        }
    }

    fn rss_kib(&self) -> u64 {
        proc_kib(self.child.id(), "VmRSS:").unwrap_or(0)
    }

    fn peak_kib(&self) -> u64 {
        proc_kib(self.child.id(), "VmHWM:").unwrap_or(0)
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn reconciled(&self) -> usize {
        common::metric(self.metrics_port, RECONCILED).map_or(0, |v| v as usize)
    }

    fn reconciles(&self) -> usize {
        common::metric_sum(self.metrics_port, RECONCILES) as usize
    }

    /// Waits until `n` bindings are Ready (`Reconciled`); the time it took, or
    /// `None` when `limit` passed or the process died.
    async fn converge(&mut self, n: usize, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let mut last_report = Instant::now();
        loop {
            let done = self.reconciled();
            if done >= n {
                return Some(start.elapsed());
            }
            if !self.alive() || start.elapsed() > limit {
                eprintln!(
                    "run: {done} of {n} Reconciled after {:.0?}; log {}",
                    start.elapsed(),
                    self.log.display()
                );
                return None;
            }
            if last_report.elapsed() > Duration::from_secs(30) {
                last_report = Instant::now();
                eprintln!(
                    "  run: {done}/{n} Reconciled after {:.0?}, RSS {} MiB",
                    start.elapsed(),
                    mib(self.rss_kib())
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(clippy::cast_precision_loss)]
fn mib(kib: u64) -> String {
    if kib == 0 {
        "n/a".into()
    } else {
        format!("{:.1}", kib as f64 / 1024.0)
    }
}

// ---------------------------------------------------------------------------
// what is measured

/// AWS calls of one phase, from the proxy's call log.
#[derive(Default, Clone)]
struct Calls {
    /// action → (successful, failed)
    by_action: BTreeMap<String, (usize, usize)>,
    /// failed calls rejected by the injected propagation delay
    propagation_rejected: usize,
}

impl Calls {
    fn read(aws: &common::Aws) -> Self {
        let log = aws.calls();
        Self {
            by_action: common::calls_by_action(&log),
            propagation_rejected: log
                .iter()
                .filter(|c| c.2.as_deref() == Some("propagation"))
                .count(),
        }
    }

    fn total(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.by_action
            .iter()
            .filter(|(a, _)| pred(a))
            .map(|(_, (ok, failed))| ok + failed)
            .sum()
    }

    fn reads(&self) -> usize {
        self.total(common::is_read)
    }

    fn writes(&self) -> usize {
        self.total(|a| !common::is_read(a))
    }

    fn accepted_writes(&self) -> usize {
        self.by_action
            .iter()
            .filter(|(a, _)| !common::is_read(a))
            .map(|(_, (ok, _))| ok)
            .sum()
    }

    fn count(&self, action: &str) -> usize {
        self.by_action.get(action).map_or(0, |(ok, f)| ok + f)
    }

    fn iam_writes(&self) -> usize {
        self.total(|a| !common::is_read(a) && !is_ec2(a))
    }

    fn ec2_writes(&self) -> usize {
        self.total(|a| !common::is_read(a) && is_ec2(a))
    }

    fn short(&self, pred: impl Fn(&str) -> bool) -> String {
        let parts: Vec<String> = self
            .by_action
            .iter()
            .filter(|(a, _)| pred(a))
            .map(|(a, (ok, failed))| {
                if *failed > 0 {
                    format!("{} {ok}+{failed}✗", abbreviation(a))
                } else {
                    format!("{} {ok}", abbreviation(a))
                }
            })
            .collect();
        if parts.is_empty() {
            "0".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The EC2 actions the controller calls (the rest are IAM).
fn is_ec2(action: &str) -> bool {
    action.contains("Iam") || action == "DescribeInstances"
}

fn abbreviation(action: &str) -> String {
    action.chars().filter(char::is_ascii_uppercase).collect()
}

struct SizeResult {
    n: usize,
    instances: usize,
    seed: Duration,
    cold: Measured,
    cold_calls: Calls,
    steady: Measured,
    steady_calls: Calls,
    profiles: usize,
    run: Option<RunResult>,
}

struct RunResult {
    create: Duration,
    converge: Option<Duration>,
    converge_calls: Calls,
    resync_calls: Option<Calls>,
    resync_reconciles: usize,
    rss_kib: u64,
    peak_kib: u64,
}

struct HoldResult {
    n: usize,
    apply: Measured,
    apply_calls: Calls,
    plan: Measured,
    plan_calls: Calls,
    /// One per API server: the emulator, and the real one when it is there.
    runs: Vec<HoldRun>,
}

struct HoldRun {
    server: &'static str,
    create: Duration,
    status: Duration,
    /// Taking over bindings whose status is not yet Ready (writes each status).
    takeover: HoldPass,
    /// Restarting over the statuses the takeover wrote (writes nothing).
    restart: HoldPass,
}

struct HoldPass {
    converge: Option<Duration>,
    /// Reconciles until all were Reconciled.
    reconciles: usize,
    /// Bindings whose resourceVersion changed (status or finalizer writes).
    writes: usize,
    calls: Calls,
    /// RSS median of 20 samples over the 10 s after.
    rss_kib: u64,
    peak_kib: u64,
}

#[derive(Default)]
struct Report {
    sizes: Vec<SizeResult>,
    hold: Option<HoldResult>,
}

fn role(i: usize, roles: usize) -> String {
    format!("bench-role-{}", i % roles)
}

fn name(i: usize) -> String {
    format!("b{i:05}")
}

fn yaml_of(n: usize, roles: usize, instances: impl Fn(usize) -> String) -> String {
    (0..n)
        .map(|i| common::binding(NS, &name(i), &role(i, roles), &instances(i), ""))
        .collect()
}

// ---------------------------------------------------------------------------
// file mode at N bindings × k instances, and `run` over the same state

async fn file_mode(opts: &Options, n: usize, with_run: bool, report: &mut Report) {
    eprintln!("== N = {n}: seeding moto");
    let aws = common::Aws::start().await;
    let seed_start = Instant::now();
    let roles = opts.roles.min(n);
    for r in 0..roles {
        aws.create_role(&role(r, roles), common::TRUST_EC2).await;
    }
    let k = opts.instances;
    let aws_ref = &aws;
    let launched: usize = futures::stream::iter(0..n)
        .map(|i| async move {
            let (key, value) = common::select_tag(&name(i));
            aws_ref
                .run_instances(k, &[(key, value.as_str())])
                .await
                .len()
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .sum();
    let seed = seed_start.elapsed();
    let yaml = yaml_of(n, roles, |i| {
        format!("{{tags: {{bench-binding: {}}}}}", name(i))
    });
    let (dir, file) = common::write_bindings(&yaml);
    let file = common::path_str(&file).to_string();

    eprintln!(
        "== N = {n}: cold apply ({launched} instances, propagation {} s)",
        opts.propagation
    );
    aws.reset_calls();
    aws.fault_config(&format!(
        r#"{{"page_size": 1000, "propagation_seconds": {}}}"#,
        opts.propagation
    ));
    let cold = measure(binary(
        &aws.endpoint(),
        &["apply", "-f", &file, "--timeout", "60m"],
    ));
    let cold_calls = Calls::read(&aws);
    if cold.code != 0 {
        eprintln!(
            "cold apply exit {}:\n{}\n{}",
            cold.code,
            tail(&cold.stdout),
            tail(&cold.stderr)
        );
    }

    eprintln!("== N = {n}: steady apply");
    aws.reset_calls();
    aws.fault_config(AWS_PAGES);
    let steady = measure(binary(
        &aws.endpoint(),
        &["apply", "-f", &file, "--timeout", "60m"],
    ));
    let steady_calls = Calls::read(&aws);
    let profiles = aws
        .profiles()
        .await
        .values()
        .filter(|(path, _, _)| path == PATH)
        .count();

    let run = if with_run {
        Some(run_over_converged(&aws, n, roles, dir.path()).await)
    } else {
        None
    };
    report.sizes.push(SizeResult {
        n,
        instances: launched,
        seed,
        cold,
        cold_calls,
        steady,
        steady_calls,
        profiles,
        run,
    });
}

/// `run` taking over the N converged bindings of file mode: create them in the
/// API emulator, wait until all are Ready, then count the AWS calls of one
/// periodic resync.
async fn run_over_converged(
    aws: &common::Aws,
    n: usize,
    roles: usize,
    log_dir: &Path,
) -> RunResult {
    const RESYNC: u64 = 10;
    eprintln!("== N = {n}: run against the API emulator (resync {RESYNC} s)");
    let kube = common::KubeEmulator::start();
    let client = kube.client().await;
    create_namespace(&client).await;
    let create_start = Instant::now();
    create_bindings(
        &client,
        n,
        roles,
        false,
        |i| serde_json::json!({"tags": {"bench-binding": name(i)}}),
    )
    .await;
    let create = create_start.elapsed();
    aws.reset_calls();
    aws.fault_config(AWS_PAGES);
    let mut run = Running::start(&aws.endpoint(), &kube.kubeconfig, RESYNC, log_dir, &[]);
    let converge = run.converge(n, Duration::from_secs(30 * 60)).await;
    let converge_calls = Calls::read(aws);
    let mut resync_calls = None;
    let mut resync_reconciles = 0;
    if converge.is_some() {
        // Quiet first (the convergence reconciles settle), then one full pass.
        tokio::time::sleep(Duration::from_secs(2)).await;
        aws.reset_calls();
        aws.fault_config(AWS_PAGES);
        let before = run.reconciles();
        let start = Instant::now();
        while run.reconciles() < before + n && start.elapsed() < Duration::from_secs(3 * RESYNC) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        resync_reconciles = run.reconciles() - before;
        // The pass's last reconciles finish their calls; the next tick is seconds away.
        tokio::time::sleep(Duration::from_secs(1)).await;
        resync_calls = Some(Calls::read(aws));
    }
    RunResult {
        create,
        converge,
        converge_calls,
        resync_calls,
        resync_reconciles,
        rss_kib: run.rss_kib(),
        peak_kib: run.peak_kib(),
    }
}

/// The namespace, and the policy that lets it bind the bench's roles (the
/// policy gate is on, as by default).
async fn create_namespace(client: &kube::Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let policies: Api<InstanceProfilePolicy> = Api::all(client.clone());
    let policy: InstanceProfilePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfilePolicy",
        "metadata": {"name": "bench"},
        "spec": {"namespaces": {"names": [NS]}, "roles": ["bench-role-*"]},
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
}

/// Creates bindings `b00000…` in the emulator, 16 requests at a time.
/// `converged`: with the finalizer on already (as a controller left them).
async fn create_bindings(
    client: &kube::Client,
    n: usize,
    roles: usize,
    converged: bool,
    instances: impl Fn(usize) -> serde_json::Value,
) {
    let api: Api<InstanceProfileBinding> = Api::namespaced(client.clone(), NS);
    let bodies: Vec<InstanceProfileBinding> = (0..n)
        .map(|i| {
            let mut metadata = serde_json::json!({"name": name(i), "namespace": NS});
            if converged {
                metadata["finalizers"] = serde_json::json!(["iam.instanceprofile.dev/cleanup"]);
            }
            serde_json::from_value(serde_json::json!({
                "apiVersion": "iam.instanceprofile.dev/v1alpha1",
                "kind": "InstanceProfileBinding",
                "metadata": metadata,
                "spec": {"role": role(i, roles), "instances": instances(i)},
            }))
            .expect("binding")
        })
        .collect();
    let api = &api;
    futures::stream::iter(bodies)
        .map(|b| async move {
            api.create(&PostParams::default(), &b)
                .await
                .expect("create binding");
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

// ---------------------------------------------------------------------------
// holding many bindings: file mode and `run`

async fn hold(opts: &Options, report: &mut Report) {
    let n = opts.hold;
    let roles = opts.roles.min(n);
    eprintln!("== hold {n}: apply (creates the profiles; rate limits raised)");
    let aws = common::Aws::start().await;
    for r in 0..roles {
        aws.create_role(&role(r, roles), common::TRUST_EC2).await;
    }
    let yaml = yaml_of(n, roles, |_| "{tags: {bench: none}}".to_string());
    let (dir, file) = common::write_bindings(&yaml);
    let file = common::path_str(&file).to_string();
    // The proxy pages like AWS (1000 profiles a page); moto would answer all
    // of them in one response, which no AWS account does.
    aws.reset_calls();
    aws.fault_config(HOLD_FAULTS);
    let mut args = vec!["apply", "-f", &file, "--timeout", "120m"];
    args.extend_from_slice(&UNLIMITED);
    let apply = measure(binary(&aws.endpoint(), &args));
    let apply_calls = Calls::read(&aws);
    if apply.code != 0 {
        eprintln!("apply exit {}:\n{}", apply.code, tail(&apply.stderr));
    }

    eprintln!("== hold {n}: plan");
    aws.reset_calls();
    aws.fault_config(HOLD_FAULTS);
    // Rate limits raised: with no association showing a profile in use, plan
    // proves each one ours by its tags (10,000 GetInstanceProfile: 1,000 s
    // at the default 10/s, which would say nothing about plan itself).
    let mut args = vec!["plan", "-f", &file];
    args.extend_from_slice(&UNLIMITED);
    let plan = measure(binary(&aws.endpoint(), &args));
    let plan_calls = Calls::read(&aws);
    if plan.code != 0 {
        eprintln!(
            "plan exit {}:\n{}\n{}",
            plan.code,
            tail(&plan.stdout),
            tail(&plan.stderr)
        );
    }

    let emulator = common::KubeEmulator::start();
    let mut runs = vec![
        hold_run(
            "API emulator",
            &emulator.kubeconfig,
            &emulator.client().await,
            opts,
            &aws,
            dir.path(),
        )
        .await,
    ];
    drop(emulator);
    // The same against a real API server (etcd + kube-apiserver of
    // $KUBEBUILDER_ASSETS), when it is there.
    match common::kube::prerequisites() {
        Ok(assets) => {
            let cluster = common::kube::RealCluster::start(&assets);
            cluster.install_crds();
            runs.push(
                hold_run(
                    "kube-apiserver",
                    &cluster.kubeconfig,
                    &cluster.client().await,
                    opts,
                    &aws,
                    dir.path(),
                )
                .await,
            );
        }
        Err(why) => eprintln!("== hold {n}: real API server skipped: {why}"),
    }
    report.hold = Some(HoldResult {
        n,
        apply,
        apply_calls,
        plan,
        plan_calls,
        runs,
    });
}

/// `run` over the held bindings in one API server: first taking over
/// bindings whose status only records their generation (each gets its
/// status written), then restarting over the statuses that first run wrote.
async fn hold_run(
    server: &'static str,
    kubeconfig: &Path,
    client: &kube::Client,
    opts: &Options,
    aws: &common::Aws,
    log_dir: &Path,
) -> HoldRun {
    let n = opts.hold;
    let roles = opts.roles.min(n);
    eprintln!("== hold {n}: {server}");
    create_namespace(client).await;
    let start = Instant::now();
    create_bindings(
        client,
        n,
        roles,
        true,
        |_| serde_json::json!({"tags": {"bench": "none"}}),
    )
    .await;
    let create = start.elapsed();
    // Every binding already carries the status of its generation, not yet Ready.
    let start = Instant::now();
    let api: Api<InstanceProfileBinding> = Api::namespaced(client.clone(), NS);
    let api = &api;
    futures::stream::iter(0..n)
        .map(|i| async move {
            let status = serde_json::json!({"status": {"observedGeneration": 1}});
            api.patch_status(&name(i), &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("status");
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let status = start.elapsed();

    eprintln!(
        "== hold {n}: {server}: run (resync {} s) taking over, until all Reconciled",
        opts.hold_resync
    );
    // Rate limits raised for the takeover: it proves each profile ours by its
    // tags before the first Ready (one GetInstanceProfile per binding).
    let takeover = hold_pass(kubeconfig, api, opts, aws, log_dir, &UNLIMITED).await;
    eprintln!("== hold {n}: {server}: run restarting over them, until all Reconciled");
    // The restart reads no profile: default rate limits.
    let restart = hold_pass(kubeconfig, api, opts, aws, log_dir, &[]).await;
    HoldRun {
        server,
        create,
        status,
        takeover,
        restart,
    }
}

/// One `run` process over the held bindings, until all are Reconciled, then
/// 10 s of RSS samples; stopped before it returns.
async fn hold_pass(
    kubeconfig: &Path,
    api: &Api<InstanceProfileBinding>,
    opts: &Options,
    aws: &common::Aws,
    log_dir: &Path,
    extra: &[&str],
) -> HoldPass {
    let before = resource_versions(api).await;
    aws.reset_calls();
    aws.fault_config(HOLD_FAULTS);
    let mut run = Running::start(
        &aws.endpoint(),
        kubeconfig,
        opts.hold_resync,
        log_dir,
        extra,
    );
    let converge = run.converge(opts.hold, Duration::from_secs(60 * 60)).await;
    let reconciles = run.reconciles();
    let calls = Calls::read(aws);
    let after = resource_versions(api).await;
    let writes = after
        .iter()
        .filter(|(name, rv)| before.get(*name) != Some(*rv))
        .count();
    let mut rss = Vec::new();
    for _ in 0..20 {
        rss.push(run.rss_kib());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rss.sort_unstable();
    HoldPass {
        converge,
        reconciles,
        writes,
        calls,
        rss_kib: rss.get(rss.len() / 2).copied().unwrap_or(0),
        peak_kib: run.peak_kib(),
    }
}

/// Each binding's resourceVersion: one that changed was written.
async fn resource_versions(api: &Api<InstanceProfileBinding>) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let mut params = kube::api::ListParams::default().limit(1000);
    loop {
        let page = api.list_metadata(&params).await.expect("list bindings");
        for b in &page.items {
            if let (Some(name), Some(rv)) = (&b.metadata.name, &b.metadata.resource_version) {
                versions.insert(name.clone(), rv.clone());
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return versions,
        }
    }
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

// ---------------------------------------------------------------------------
// the report

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// The budget of a steady resync: N/100 + 5 reads plus one GetRole per role.
fn steady_budget(n: usize, roles: usize) -> usize {
    n / 100 + 5 + roles
}

impl Report {
    #[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
    fn render(&self, opts: &Options) -> String {
        let mut s = String::new();
        let k = opts.instances;
        let _ = writeln!(
            s,
            "\n## Scale benchmark\n\nmoto 5.2 behind tests/support/faultproxy.py on loopback (proxy pages at AWS's \
             maxima of 1000), the release binary, default rate limits (IAM read 10/s burst 20, \
             IAM write 5:10, EC2 read 10:50, EC2 write 5:20), concurrency 8, {} distinct roles, \
             {k} instances per binding, IAM→EC2 propagation delay {} s on the cold apply.\n",
            opts.roles, opts.propagation
        );
        let _ = writeln!(
            s,
            "| N | instances | cold apply: wall to all Ready (s) | rate-limit floor (s) | peak RSS (MiB) | \
             writes / binding (accepted; incl. propagation-rejected) | budget 3+k | steady apply: reads | \
             budget N/100+5+roles | writes | wall (s) | peak RSS (MiB) | profiles |"
        );
        let _ = writeln!(s, "|{}", "---|".repeat(13));
        for r in &self.sizes {
            let roles = opts.roles.min(r.n);
            let n = r.n.max(1) as f64;
            // Tokens the write buckets must refill beyond their burst.
            let floor = ((r.cold_calls.iam_writes() as f64 - 10.0) / 5.0)
                .max((r.cold_calls.ec2_writes() as f64 - 20.0) / 5.0)
                .max(0.0);
            let _ = writeln!(
                s,
                "| {} | {} | {}{} | {floor:.1} | {} | {:.2}; {:.2} | {} | {} | {} | {} | {} | {} | {}{} |",
                r.n,
                r.instances,
                secs(r.cold.wall),
                if r.cold.code == 0 {
                    String::new()
                } else {
                    format!(" (exit {})", r.cold.code)
                },
                mib(r.cold.peak_rss_kib),
                r.cold_calls.accepted_writes() as f64 / n,
                r.cold_calls.writes() as f64 / n,
                3 + k,
                r.steady_calls.reads(),
                steady_budget(r.n, roles),
                r.steady_calls.writes(),
                secs(r.steady.wall),
                mib(r.steady.peak_rss_kib),
                r.profiles,
                if r.profiles == r.n { "" } else { " (≠ N!)" },
            );
        }
        let _ = writeln!(
            s,
            "\nAWS calls by action (successful + failed✗; abbreviations are the action's capitals, \
             e.g. LIP = ListInstanceProfiles, DIIPA = DescribeIamInstanceProfileAssociations, \
             AIIP = AssociateIamInstanceProfile):\n"
        );
        let _ = writeln!(
            s,
            "| N | seed (s) | cold: reads | cold: writes | rejected by propagation | steady: reads | steady: writes |"
        );
        let _ = writeln!(s, "|{}", "---|".repeat(7));
        for r in &self.sizes {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.n,
                secs(r.seed),
                r.cold_calls.short(common::is_read),
                r.cold_calls.short(|a| !common::is_read(a)),
                r.cold_calls.propagation_rejected,
                r.steady_calls.short(common::is_read),
                r.steady_calls.short(|a| !common::is_read(a)),
            );
        }
        let runs: Vec<&SizeResult> = self.sizes.iter().filter(|r| r.run.is_some()).collect();
        if !runs.is_empty() {
            let _ = writeln!(
                s,
                "\n`run` (no leader election, resync 10 s) taking over the converged bindings, \
                 created fresh in the API emulator:\n"
            );
            let _ = writeln!(
                s,
                "| N | create in emulator (s) | to all Reconciled (s) | snapshots (LIP calls) while converging | \
                 AWS calls while converging | one resync: reconciles | reads | budget | writes | RSS (MiB) | peak RSS (MiB) |"
            );
            let _ = writeln!(s, "|{}", "---|".repeat(11));
            for r in runs {
                let Some(run) = &r.run else { continue };
                let roles = opts.roles.min(r.n);
                let (reads, writes) = run.resync_calls.as_ref().map_or_else(
                    || ("n/a".to_string(), "n/a".to_string()),
                    |c| {
                        (
                            format!("{} ({})", c.reads(), c.short(common::is_read)),
                            c.writes().to_string(),
                        )
                    },
                );
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {reads} | {} | {writes} | {} | {} |",
                    r.n,
                    secs(run.create),
                    run.converge.map_or("did not".into(), secs),
                    run.converge_calls.count("ListInstanceProfiles"),
                    run.converge_calls.short(|_| true),
                    run.resync_reconciles,
                    steady_budget(r.n, roles),
                    mib(run.rss_kib),
                    mib(run.peak_kib),
                );
            }
        }
        if let Some(h) = &self.hold {
            let _ = writeln!(
                s,
                "\nHolding {} bindings (no instances selected; their profiles exist; the proxy pages \
                 ListInstanceProfiles at 1000 like AWS):\n",
                h.n
            );
            let _ = writeln!(
                s,
                "| what | wall (s) | peak RSS (MiB) | AWS calls | result |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|");
            let _ = writeln!(
                s,
                "| `apply` creating {} profiles (rate limits raised to 1000/s) | {} | {} | {} | exit {} |",
                h.n,
                secs(h.apply.wall),
                mib(h.apply.peak_rss_kib),
                h.apply_calls.short(|_| true),
                h.apply.code
            );
            let _ = writeln!(
                s,
                "| `plan` over them (converged; rate limits raised) | {} | {} | {} | exit {} |",
                secs(h.plan.wall),
                mib(h.plan.peak_rss_kib),
                h.plan_calls.short(|_| true),
                h.plan.code
            );
            for r in &h.runs {
                let _ = writeln!(
                    s,
                    "| {}: create {} bindings, then their status (16 in flight) | {} + {} | | | |",
                    r.server,
                    h.n,
                    secs(r.create),
                    secs(r.status)
                );
                for (what, p) in [
                    (
                        "taking over them (no Ready status yet; rate limits raised)",
                        &r.takeover,
                    ),
                    ("restarting over them (Ready statuses)", &r.restart),
                ] {
                    let _ = writeln!(
                        s,
                        "| {}: `run` {what} (resync {} s) until all Reconciled; RSS median of 20 samples over 10 s after | {} | {} (RSS {}) | {} | {} reconciles, {} bindings written |",
                        r.server,
                        opts.hold_resync,
                        p.converge.map_or("did not".into(), secs),
                        mib(p.peak_kib),
                        mib(p.rss_kib),
                        p.calls.short(|_| true),
                        p.reconciles,
                        p.writes,
                    );
                }
            }
        }
        s
    }
}
