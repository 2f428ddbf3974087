//! Reliability: the binary against a real moto server behind the fault proxy,
//! with the invariants (tests/invariants) checked by reading moto directly.
//!
//! - chaos: many bindings, a share of every AWS call faulted, IAM→EC2
//!   propagation delay; `apply` converges, then `apply --prune` with no
//!   bindings left deletes everything;
//! - crash: `apply` and `apply --prune` killed with SIGKILL at seeded moments,
//!   re-run each time; at the end nothing is stuck and the invariants hold;
//! - prune with zero bindings (an empty file, a file of Namespaces).
//!
//! Every run prints its seed; set it again to replay the same fault draws,
//! kill points and world (concurrent calls can still interleave differently:
//! `IPB_CONCURRENCY=1` narrows that). Knobs, all optional:
//!
//! | variable | default | |
//! |---|---|---|
//! | `IPB_CHAOS_SEED` | random | fault draws, role choice |
//! | `IPB_CHAOS_BINDINGS` | 50 | bindings |
//! | `IPB_CHAOS_INSTANCES` | 2 | instances per binding |
//! | `IPB_CHAOS_ERROR_RATE` | 0.3 | share of AWS calls faulted |
//! | `IPB_CHAOS_PROPAGATION` | 5 | seconds EC2 refuses a new profile |
//! | `IPB_CRASH_SEED` | random | kill points, fault draws |
//! | `IPB_CRASH_KILLS` | 20 | SIGKILLs, at least |
//! | `IPB_CRASH_BINDINGS` | 6 | bindings (2 instances each) |
//!
//! Each test ends with one `RELIABILITY …` line of figures (docs/reliability.md).

use crate::common;
use crate::invariants;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Aws, Run, binding, ids, path_str};
use instance_profile_controller::naming::BindingKey;
use invariants::{AwsState, ExpectedBinding, Foreign, check_converged, check_deleted};

const CLUSTER: &str = "test";
const OUR_PATH: &str = "/ipb/test/";

// ------------------------------------------------------------------ knobs, seeds

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The seed from `var`, or a fresh one; printed either way.
fn seed(var: &str) -> u64 {
    let seed = knob(
        var,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000_007)
            .unwrap_or(1),
    );
    println!("{var}={seed} (set it to replay this run)");
    seed
}

/// SplitMix64: the test's own choices, replayable from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.range(1, 100) <= percent
    }
}

// ------------------------------------------------------------------ the binary

fn command(aws: &Aws, args: &[&str]) -> Command {
    let mut cmd = Command::new(common::bin());
    cmd.args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", common::REGION)
        .env("AWS_ENDPOINT_URL", aws.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("IPB_CLUSTER_ID", CLUSTER)
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    cmd
}

fn run(aws: &Aws, args: &[&str]) -> Run {
    let out = command(aws, args).output().expect("run binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn apply_args<'a>(file: &'a Path, prune: bool, timeout: &'a str) -> Vec<&'a str> {
    let mut args = vec!["apply", "-f", path_str(file), "--timeout", timeout];
    if prune {
        // Every prune here runs from an input without bindings: explicit.
        args.push("--prune-all");
    }
    args
}

/// Runs `apply` until it exits 0, at most `max` times; returns the runs it took.
fn apply_until_done(aws: &Aws, file: &Path, prune: bool, max: u32, seed: u64) -> u32 {
    for n in 1..=max {
        let r = run(aws, &apply_args(file, prune, "150s"));
        if r.code == 0 {
            return n;
        }
        println!(
            "apply{} run {n} exited {}:\n{r:?}",
            if prune { " --prune" } else { "" },
            r.code
        );
        assert!(
            n < max,
            "seed {seed}: apply{} did not finish in {max} runs; last: {r:?}",
            if prune { " --prune" } else { "" }
        );
    }
    max
}

// ------------------------------------------------------------------ the world

/// Foreign resources the tests seed: they must come out untouched.
const FOREIGN_PROFILES: &[&str] = &[
    "legacy-web",
    "ipb-lookalike",
    "ipb-other-cluster",
    "ipb-misnamed",
];
const FOREIGN_ROLES: &[&str] = &["legacy-role", "unused-role"];
const ROLES: &[&str] = &["role-0", "role-1", "role-2", "role-3", "role-4"];

struct World {
    bindings: Vec<ExpectedBinding>,
    yaml: String,
    foreign: Foreign,
}

async fn create_tagged_profile(aws: &Aws, name: &str, path: &str, tags: &[(&str, &str)]) {
    let mut req = aws
        .iam
        .create_instance_profile()
        .instance_profile_name(name)
        .path(path);
    for (k, v) in tags {
        req = req.tags(
            aws_sdk_iam::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .expect("tag"),
        );
    }
    req.send().await.expect("create foreign profile");
}

/// Roles, foreign profiles (one outside our path, three inside it that prune
/// must leave alone: untagged, another cluster's, tags naming a binding whose
/// profile name differs), foreign associations on instances no binding
/// selects, and `n` bindings of `per` instances each (even ones select by tag,
/// odd ones by id).
async fn seed_world(aws: &Aws, n: usize, per: i32, rng: &mut Rng) -> World {
    for r in ROLES {
        aws.create_role(r, common::TRUST_EC2).await;
    }
    aws.create_role("legacy-role", common::TRUST_EC2).await;
    aws.create_role("unused-role", common::TRUST_LAMBDA).await;
    create_tagged_profile(aws, "legacy-web", "/", &[("owner", "them")]).await;
    aws.iam
        .add_role_to_instance_profile()
        .instance_profile_name("legacy-web")
        .role_name("legacy-role")
        .send()
        .await
        .expect("add legacy role");
    create_tagged_profile(aws, "ipb-lookalike", OUR_PATH, &[]).await;
    create_tagged_profile(
        aws,
        "ipb-other-cluster",
        OUR_PATH,
        &[
            ("instanceprofile.dev/cluster-id", "other"),
            ("instanceprofile.dev/namespace", "chaos-0"),
            ("instanceprofile.dev/name", "b0"),
        ],
    )
    .await;
    create_tagged_profile(
        aws,
        "ipb-misnamed",
        OUR_PATH,
        &[
            ("instanceprofile.dev/cluster-id", CLUSTER),
            ("instanceprofile.dev/namespace", "chaos-0"),
            ("instanceprofile.dev/name", "ghost"),
        ],
    )
    .await;
    let strangers = aws
        .run_instances(4, &[("fleet", "chaos"), ("owner", "them")])
        .await;
    for (i, p) in strangers.iter().zip(FOREIGN_PROFILES) {
        aws.associate(i, p).await;
    }

    let mut bindings = Vec::new();
    let mut yaml = String::new();
    for b in 0..n {
        let ns = format!("chaos-{}", b % 3);
        let name = format!("b{b}");
        let tag = format!("b{b}");
        let inst = aws
            .run_instances(per, &[("fleet", "chaos"), ("ipb-binding", &tag)])
            .await;
        let role = ROLES[usize::try_from(rng.range(0, ROLES.len() as u64 - 1)).unwrap_or(0)];
        let selector = if b % 2 == 0 {
            format!("{{tags: {{ipb-binding: {tag}}}}}")
        } else {
            ids(&inst)
        };
        let extra = if rng.chance(30) {
            "  instanceProfile: {tags: {cost-center: \"42\"}}\n"
        } else {
            ""
        };
        yaml.push_str(&binding(&ns, &name, role, &selector, extra));
        bindings.push(ExpectedBinding {
            key: BindingKey {
                namespace: ns,
                name,
            },
            role: role.to_string(),
            selected: inst.into_iter().collect(),
        });
    }
    let state = AwsState::read(aws).await;
    let roles: Vec<&str> = ROLES.iter().chain(FOREIGN_ROLES).copied().collect();
    let foreign = Foreign::capture(&state, FOREIGN_PROFILES, &strangers, &roles);
    World {
        bindings,
        yaml,
        foreign,
    }
}

fn keys(world: &World) -> Vec<BindingKey> {
    world.bindings.iter().map(|b| b.key.clone()).collect()
}

/// No binding left: a file with only a Namespace in it.
const NO_BINDINGS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: chaos-0}\n";

// ------------------------------------------------------------------ fault figures

#[derive(Default, Debug)]
struct Faults {
    calls: usize,
    injected: BTreeMap<String, usize>,
    propagation: usize,
}

impl Faults {
    fn add(&mut self, aws: &Aws) {
        for (_, _, fault) in aws.calls() {
            self.calls += 1;
            match fault.as_deref() {
                None => {}
                Some("propagation") => self.propagation += 1,
                Some(kind) => *self.injected.entry(kind.to_string()).or_default() += 1,
            }
        }
    }

    fn total(&self) -> usize {
        self.injected.values().sum()
    }
}

fn violations_report(what: &str, v: &[String]) -> String {
    format!("{} {what} violation(s):\n  {}", v.len(), v.join("\n  "))
}

// ------------------------------------------------------------------ chaos

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_converges_then_prunes_to_nothing_under_faults() {
    require_moto!();
    let seed = seed("IPB_CHAOS_SEED");
    let n: usize = knob("IPB_CHAOS_BINDINGS", 50);
    let per: i32 = knob("IPB_CHAOS_INSTANCES", 2);
    let rate: f64 = knob("IPB_CHAOS_ERROR_RATE", 0.3);
    let propagation: u64 = knob("IPB_CHAOS_PROPAGATION", 5);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let aws = Aws::start().await;
    let world = seed_world(&aws, n, per, &mut rng).await;
    let (_dir, file) = common::write_bindings(&world.yaml);
    let (_dir2, none) = common::write_bindings(NO_BINDINGS);
    let faults_on = serde_json::json!({
        "seed": seed,
        "error_rate": rate,
        "propagation_seconds": propagation,
        "latency_ms": 100,
        "page_size": 25,
    })
    .to_string();
    let faults_off = r#"{"error_rate": 0, "propagation_seconds": 0}"#;

    aws.reset_calls();
    aws.fault_config(&faults_on);
    let apply_runs = apply_until_done(&aws, &file, false, 3, seed);
    aws.fault_config(faults_off);
    let state = AwsState::read(&aws).await;
    let mut violations = check_converged(&state, CLUSTER, &world.bindings, &world.foreign);
    // A fixed point: nothing left to change.
    let p = run(&aws, &["plan", "-f", path_str(&file)]);
    if p.code != 0 {
        violations.push(format!("plan after convergence exited {}: {p:?}", p.code));
    }
    assert!(
        violations.is_empty(),
        "seed {seed}: {}",
        violations_report("after apply", &violations)
    );

    aws.fault_config(&faults_on);
    let prune_runs = apply_until_done(&aws, &none, true, 5, seed);
    aws.fault_config(faults_off);
    let state = AwsState::read(&aws).await;
    let mut violations = check_deleted(&state, CLUSTER, &keys(&world), &world.foreign);
    let p = run(&aws, &["plan", "--prune-all", "-f", path_str(&none)]);
    if p.code != 0 {
        violations.push(format!(
            "plan --prune after deletion exited {}: {p:?}",
            p.code
        ));
    }
    let mut faults = Faults::default();
    faults.add(&aws);
    println!(
        "RELIABILITY chaos seed={seed} bindings={n} instances={} error_rate={rate} propagation={propagation}s \
         calls={} faults_injected={} {:?} propagation_rejections={} apply_runs={apply_runs} prune_runs={prune_runs} \
         violations={} elapsed={}s",
        n * usize::try_from(per).unwrap_or(0),
        faults.calls,
        faults.total(),
        faults.injected,
        faults.propagation,
        violations.len(),
        started.elapsed().as_secs()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {}",
        violations_report("after prune", &violations)
    );
    assert!(
        faults.total() > 0 || rate == 0.0,
        "seed {seed}: no fault was injected: {faults:?}"
    );
    if propagation > 0 {
        assert!(
            faults.propagation > 0,
            "seed {seed}: propagation never delayed an association"
        );
    }
}

// ------------------------------------------------------------------ crash

/// When to pull the plug on a run.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// After this long, wherever the run is (start-up, the snapshot, waiting).
    After(Duration),
    /// Once this many more writes reached AWS.
    Writes(usize),
}

/// Writes that reached moto: answered, or answered into a dropped connection.
fn writes_landed(aws: &Aws) -> usize {
    aws.calls()
        .into_iter()
        .filter(|(action, status, fault)| {
            let write = !(action.starts_with("List")
                || action.starts_with("Get")
                || action.starts_with("Describe"));
            write && (*status == 200 || fault.as_deref() == Some("reset_after"))
        })
        .count()
}

enum Ended {
    /// SIGKILLed after this many writes of the run.
    Killed(usize),
    /// Finished on its own first.
    Exited,
}

fn run_and_kill(child: &mut Child, aws: &Aws, trigger: Trigger) -> Ended {
    let start = Instant::now();
    let base = writes_landed(aws);
    loop {
        if child.try_wait().expect("wait").is_some() {
            return Ended::Exited;
        }
        let landed = writes_landed(aws) - base;
        let due = match trigger {
            Trigger::After(d) => start.elapsed() >= d,
            Trigger::Writes(k) => landed >= k,
        };
        if due {
            let _ = child.kill();
            let status = child.wait().expect("wait");
            return if status.signal() == Some(9) {
                Ended::Killed(landed)
            } else {
                Ended::Exited
            };
        }
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a run under {trigger:?} did not end in 120 s");
        }
        std::thread::sleep(Duration::from_millis(4));
    }
}

struct KillLog {
    kills: Vec<(String, Trigger, usize)>,
}

/// Kills runs of `args` at seeded moments until one finishes on its own or
/// `budget` kills are spent.
fn kill_phase(
    aws: &Aws,
    phase: &str,
    args: &[&str],
    budget: usize,
    rng: &mut Rng,
    log: &mut KillLog,
) {
    for _ in 0..budget {
        let trigger = if rng.chance(25) {
            Trigger::After(Duration::from_millis(rng.range(0, 600)))
        } else {
            Trigger::Writes(usize::try_from(rng.range(1, 6)).unwrap_or(1))
        };
        let mut child = command(aws, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn apply");
        match run_and_kill(&mut child, aws, trigger) {
            Ended::Killed(landed) => log.kills.push((phase.to_string(), trigger, landed)),
            Ended::Exited => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_safety_sigkill_during_apply_and_prune() {
    require_moto!();
    let seed = seed("IPB_CRASH_SEED");
    let target: usize = knob("IPB_CRASH_KILLS", 20);
    let n: usize = knob("IPB_CRASH_BINDINGS", 6);
    let started = Instant::now();
    let mut rng = Rng(seed);
    let aws = Aws::start().await;
    let world = seed_world(&aws, n, 2, &mut rng).await;
    let (_dir, file) = common::write_bindings(&world.yaml);
    let (_dir2, none) = common::write_bindings(NO_BINDINGS);
    let apply = apply_args(&file, false, "60s");
    let prune = apply_args(&none, true, "60s");
    let mut log = KillLog { kills: Vec::new() };
    let mut faults = Faults::default();
    let mut violations = Vec::new();
    let mut cycles = 0;
    // A little of everything, so kills also land while a write is in flight
    // (latency) or its answer is lost (reset_after).
    let faults_for = |phase: u64| {
        serde_json::json!({
            "seed": seed.wrapping_add(phase),
            "error_rate": 0.1,
            "fault_kinds": ["latency", "reset_after", "throttle"],
            "latency_ms": 150,
            "propagation_seconds": 1,
        })
        .to_string()
    };
    // Every cycle lands a kill or more unless runs finish before any trigger:
    // the cap turns that into a failed assertion instead of a hang.
    while (log.kills.len() < target || cycles == 0) && cycles < 2 * target.max(1) {
        cycles += 1;
        let per_phase = usize::try_from(rng.range(2, 4)).unwrap_or(2);
        for (phase, args) in [("create", &apply), ("prune", &prune)] {
            aws.reset_calls();
            aws.fault_config(&faults_for(log.kills.len() as u64));
            kill_phase(&aws, phase, args, per_phase, &mut rng, &mut log);
            // Nothing stuck: one uninterrupted run finishes the job.
            let r = run(&aws, args);
            faults.add(&aws);
            aws.reset_calls();
            if r.code != 0 {
                violations.push(format!(
                    "cycle {cycles} {phase}: the run after the kills failed: {r:?}"
                ));
                continue;
            }
            let state = AwsState::read(&aws).await;
            let (found, plan) = if phase == "create" {
                (
                    check_converged(&state, CLUSTER, &world.bindings, &world.foreign),
                    run(&aws, &["plan", "-f", path_str(&file)]),
                )
            } else {
                (
                    check_deleted(&state, CLUSTER, &keys(&world), &world.foreign),
                    run(&aws, &["plan", "--prune-all", "-f", path_str(&none)]),
                )
            };
            violations.extend(
                found
                    .into_iter()
                    .map(|v| format!("cycle {cycles} {phase}: {v}")),
            );
            if plan.code != 0 {
                violations.push(format!(
                    "cycle {cycles} {phase}: plan still sees changes: {plan:?}"
                ));
            }
        }
    }
    let by_phase = |p: &str| log.kills.iter().filter(|k| k.0 == p).count();
    let points: BTreeSet<usize> = log.kills.iter().map(|k| k.2).collect();
    println!("kills: {:?}", log.kills);
    println!(
        "RELIABILITY crash seed={seed} bindings={n} instances={} kills={} (create {}, prune {}) \
         writes_before_kill={points:?} cycles={cycles} faults_injected={} {:?} violations={} elapsed={}s",
        n * 2,
        log.kills.len(),
        by_phase("create"),
        by_phase("prune"),
        faults.total(),
        faults.injected,
        violations.len(),
        started.elapsed().as_secs()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {}",
        violations_report("crash", &violations)
    );
    assert!(
        log.kills.len() >= target && by_phase("create") > 0 && by_phase("prune") > 0,
        "seed {seed}: only {} kills landed: {:?}",
        log.kills.len(),
        log.kills
    );
}

// ------------------------------------------------------------------ prune, no bindings left

#[tokio::test]
async fn prune_runs_with_zero_bindings() {
    require_moto!();
    let aws = Aws::start().await;
    let mut rng = Rng(7);
    let world = seed_world(&aws, 2, 1, &mut rng).await;
    for (what, text) in [
        ("a file with only a Namespace", NO_BINDINGS),
        ("an empty file", ""),
        ("a file with an empty document", "---\n"),
    ] {
        let (_d, file) = common::write_bindings(&world.yaml);
        let r = run(&aws, &apply_args(&file, false, "60s"));
        assert_eq!(r.code, 0, "{r:?}");
        let (_d2, none) = common::write_bindings(text);
        let p = run(&aws, &["plan", "--prune", "-f", path_str(&none)]);
        assert_eq!(
            p.code, 1,
            "{what}: plan --prune from an input without bindings must refuse: {p:?}"
        );
        let p = run(&aws, &["plan", "--prune-all", "-f", path_str(&none)]);
        assert_eq!(
            p.code, 2,
            "{what}: plan --prune-all must show the deletions: {p:?}"
        );
        let r = run(&aws, &apply_args(&none, true, "60s"));
        assert_eq!(r.code, 0, "{what}: {r:?}");
        let state = AwsState::read(&aws).await;
        let v = check_deleted(&state, CLUSTER, &keys(&world), &world.foreign);
        assert!(v.is_empty(), "{what}: {}", violations_report("prune", &v));
    }
}

/// `apply` retries a failed snapshot until its timeout, but a read that fails
/// while `--prune` lists what to delete ends the whole run with exit 1 (the
/// SDK's 4 attempts spent on one GetInstanceProfile).
#[tokio::test]

async fn known_bug_3_prune_rides_out_a_read_error_while_listing_targets() {
    require_moto!();
    let aws = Aws::start().await;
    let mut rng = Rng(11);
    let world = seed_world(&aws, 1, 1, &mut rng).await;
    let (_d, file) = common::write_bindings(&world.yaml);
    assert_eq!(run(&aws, &apply_args(&file, false, "60s")).code, 0);
    aws.fault_config(
        r#"{"scripted_faults": [{"kind": "503", "action": "GetInstanceProfile", "count": 4}]}"#,
    );
    let (_d2, none) = common::write_bindings(NO_BINDINGS);
    let r = run(&aws, &apply_args(&none, true, "60s"));
    assert_eq!(r.code, 0, "one unlucky read must not end the run: {r:?}");
    let v = check_deleted(
        &AwsState::read(&aws).await,
        CLUSTER,
        &keys(&world),
        &world.foreign,
    );
    assert!(v.is_empty(), "{}", violations_report("prune", &v));
}
