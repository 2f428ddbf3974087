//! The call budgets of docs/design.md §6 at N = 100 bindings ×
//! 2 instances (issue #9), through the binary against moto behind the fault
//! proxy. Not timed (rate limits are raised so moto sets the pace); a
//! regression to per-binding reads or writes fails here. The figures at other
//! sizes come from `cargo bench --bench scale` (README, "Performance").

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Aws, calls_by_action, cli, is_read, path_str, write_bindings};

const N: usize = 100;
const ROLES: usize = 5;
/// Instances per binding.
const K: usize = 2;
/// The bulk listings of one snapshot; everything else a binding reads is its own.
const BULK: [&str; 3] = [
    "ListInstanceProfiles",
    "DescribeIamInstanceProfileAssociations",
    "DescribeInstances",
];
/// The IAM writes of a cold apply (they share one rate-limit bucket).
const IAM_WRITES: [&str; 3] = [
    "CreateInstanceProfile",
    "AddRoleToInstanceProfile",
    "TagInstanceProfile",
];
const FAST: [&str; 8] = [
    "--rate-limit-iam-read",
    "1000:1000",
    "--rate-limit-iam-write",
    "1000:1000",
    "--rate-limit-ec2-read",
    "1000:1000",
    "--rate-limit-ec2-write",
    "1000:1000",
];

fn name(i: usize) -> String {
    format!("b{i:03}")
}

fn role(i: usize) -> String {
    format!("role-{}", i % ROLES)
}

/// `n` bindings of team-a, each selecting K new instances by its own tag,
/// binding `i` to `role_of(i)`: their documents and every instance id.
async fn seed(aws: &Aws, n: usize, role_of: impl Fn(usize) -> String) -> (String, Vec<String>) {
    let mut docs = String::new();
    let mut all = Vec::new();
    for i in 0..n {
        let (key, value) = common::select_tag(&name(i));
        let ids = aws
            .run_instances(i32::try_from(K).expect("k"), &[(key, value.as_str())])
            .await;
        all.extend(ids);
        docs.push_str(&common::binding(
            "team-a",
            &name(i),
            &role_of(i),
            &format!("{{tags: {{bench-binding: {}}}}}", name(i)),
            "",
        ));
    }
    (docs, all)
}

fn apply(aws: &Aws, file: &std::path::Path) -> common::Run {
    // AWS's page maxima (moto pages associations at 100 and nothing else).
    aws.fault_config(r#"{"page_size": 1000}"#);
    let mut args = vec!["apply", "-f", path_str(file), "--timeout", "120s"];
    args.extend_from_slice(&FAST);
    cli(&aws.endpoint(), &args)
}

/// Successful calls of `action`: a write the SDK retried after a transient
/// failure (moto answers 5xx under load) is one write, not two.
fn count(calls: &BTreeMap<String, (usize, usize)>, action: &str) -> usize {
    calls.get(action).map_or(0, |(ok, _)| *ok)
}

fn total(calls: &BTreeMap<String, (usize, usize)>, pred: impl Fn(&str) -> bool) -> usize {
    calls
        .iter()
        .filter(|(a, _)| pred(a))
        .map(|(_, (ok, failed))| ok + failed)
        .sum()
}

#[tokio::test]
async fn one_hundred_bindings_stay_within_the_call_budgets() {
    require_moto!();
    let aws = Aws::start().await;
    for r in 0..ROLES {
        aws.create_role(&role(r), common::TRUST_EC2).await;
    }
    let mut instances: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..N {
        let (key, value) = common::select_tag(&name(i));
        let ids = aws
            .run_instances(i32::try_from(K).expect("k"), &[(key, value.as_str())])
            .await;
        assert_eq!(ids.len(), K);
        instances.insert(name(i), ids);
    }
    let docs: String = (0..N)
        .map(|i| {
            common::binding(
                "team-a",
                &name(i),
                &role(i),
                &format!("{{tags: {{bench-binding: {}}}}}", name(i)),
                "",
            )
        })
        .collect();
    let (_dir, file) = write_bindings(&docs);

    // Cold: N new bindings.
    aws.reset_calls();
    let cold = apply(&aws, &file);
    assert_eq!(cold.code, 0, "{cold:?}");
    assert!(
        cold.stdout
            .contains(&format!("Apply: {N} of {N} bindings done.")),
        "{cold:?}"
    );
    let calls = calls_by_action(&aws.calls());
    // Writes: CreateInstanceProfile (tags on the create, so no TagInstanceProfile),
    // AddRoleToInstanceProfile and k AssociateIamInstanceProfile per binding, nothing else.
    assert_eq!(count(&calls, "CreateInstanceProfile"), N, "{calls:?}");
    assert_eq!(count(&calls, "AddRoleToInstanceProfile"), N, "{calls:?}");
    assert_eq!(
        count(&calls, "AssociateIamInstanceProfile"),
        N * K,
        "{calls:?}"
    );
    let writes: BTreeSet<&str> = calls
        .keys()
        .map(String::as_str)
        .filter(|a| !is_read(a))
        .collect();
    let budgeted: BTreeSet<&str> = [
        "CreateInstanceProfile",
        "TagInstanceProfile",
        "AddRoleToInstanceProfile",
        "AssociateIamInstanceProfile",
    ]
    .into();
    assert!(writes.is_subset(&budgeted), "unexpected writes: {calls:?}");
    let writes = total(&calls, |a| !is_read(a));
    assert!(
        writes <= N * (3 + K),
        "{writes} writes for {N} new bindings of {K} instances: {calls:?}"
    );
    // Reads: one bulk snapshot and one GetRole per distinct role; no read of a binding's own.
    let reads: BTreeSet<&str> = calls
        .keys()
        .map(String::as_str)
        .filter(|a| is_read(a))
        .collect();
    // And one account summary before the first create (the quota check).
    let allowed: BTreeSet<&str> = BULK
        .iter()
        .copied()
        .chain(["GetRole", "GetAccountSummary"])
        .collect();
    assert!(
        reads.is_subset(&allowed),
        "per-binding reads in a cold apply: {calls:?}"
    );
    assert_eq!(count(&calls, "GetRole"), ROLES, "{calls:?}");
    assert_eq!(count(&calls, "GetAccountSummary"), 1, "{calls:?}");
    let bulk = total(&calls, |a| BULK.contains(&a));
    assert!(
        bulk <= N / 100 + 5,
        "{bulk} bulk listings for one cold apply: {calls:?}"
    );

    // No duplicate profiles: exactly one per binding, each on its own instances.
    let profiles = aws.profiles().await;
    let ours: BTreeMap<&String, &String> = profiles
        .iter()
        .filter(|(_, (path, _, _))| path == "/ipb/test/")
        .map(|(name, (_, id, _))| (name, id))
        .collect();
    assert_eq!(ours.len(), N, "{ours:?}");
    let associations = aws.all_associations().await;
    for (binding, ids) in &instances {
        let profile = common::profile_name("team-a", binding);
        let id = ours
            .get(&profile)
            .unwrap_or_else(|| panic!("no profile for {binding}"));
        for i in ids {
            assert_eq!(
                associations.get(i).map(|a| &a.2),
                Some(*id),
                "{i} of {binding} is not on its binding's profile"
            );
        }
    }

    // Steady: nothing changed, so no writes and N/100 + 5 reads plus one GetRole per role.
    aws.reset_calls();
    let steady = apply(&aws, &file);
    assert_eq!(steady.code, 0, "{steady:?}");
    let calls = calls_by_action(&aws.calls());
    assert_eq!(
        total(&calls, |a| !is_read(a)),
        0,
        "a steady resync wrote: {calls:?}"
    );
    assert!(
        count(&calls, "GetRole") <= ROLES,
        "more than one GetRole per role: {calls:?}"
    );
    let reads = total(&calls, is_read);
    assert!(
        reads <= N / 100 + 5 + ROLES,
        "{reads} reads for a steady resync of {N} bindings: {calls:?}"
    );
    assert_eq!(
        count(&calls, "GetInstanceProfile"),
        0,
        "per-binding profile reads in a steady resync: {calls:?}"
    );
}

/// IAM→EC2 propagation (3 s here) costs at most one refused association per
/// binding: one binding probes until EC2 accepts a new profile, the others
/// wait the delay it measured instead of each probing (the performance
/// issue's regression guard). Every binding still ends Ready and associated.
#[tokio::test]
async fn propagation_costs_at_most_one_refused_write_per_binding() {
    require_moto!();
    const B: usize = 20;
    let aws = Aws::start().await;
    aws.create_role(&role(0), common::TRUST_EC2).await;
    let (docs, all) = seed(&aws, B, |_| role(0)).await;
    let (_dir, file) = write_bindings(&docs);
    aws.reset_calls();
    aws.fault_config(r#"{"page_size": 1000, "propagation_seconds": 3}"#);
    let mut args = vec!["apply", "-f", path_str(&file), "--timeout", "120s"];
    args.extend_from_slice(&FAST);
    let run = cli(&aws.endpoint(), &args);
    assert_eq!(run.code, 0, "{run:?}");
    let refused = aws
        .calls()
        .iter()
        .filter(|c| c.0 == "AssociateIamInstanceProfile" && c.2.as_deref() == Some("propagation"))
        .count();
    println!("refused associations: {refused} for {B} bindings");
    assert!(
        refused <= B,
        "{refused} associations refused for {B} bindings: {:?}",
        calls_by_action(&aws.calls())
    );
    let assoc = aws.associations().await;
    assert!(all.iter().all(|i| assoc.contains_key(i)), "{assoc:?}");
}

/// The performance issue's regression guard for cold convergence: at N = 100
/// × 2 instances with the default rate limits and a 2 s IAM→EC2 propagation,
/// a cold `apply` ends within 1.15 × the rate-limit floor of the writes it
/// actually sent (IAM writes and EC2 writes draw on separate buckets, so
/// pipelined bindings keep both busy), and propagation costs at most one
/// refused association per binding. A ratio within one run: absolute times
/// are noisy on a shared machine.
#[tokio::test]
async fn a_cold_apply_runs_at_the_rate_limit_floor() {
    require_moto!();
    let aws = Aws::start().await;
    for r in 0..ROLES {
        aws.create_role(&role(r), common::TRUST_EC2).await;
    }
    let (docs, all) = seed(&aws, N, role).await;
    let (_dir, file) = write_bindings(&docs);
    aws.reset_calls();
    aws.fault_config(r#"{"page_size": 1000, "propagation_seconds": 2}"#);
    let started = std::time::Instant::now();
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let run = cli(
        &aws.endpoint(),
        &["apply", "-f", path_str(&file), "--timeout", "300s"],
    );
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{run:?}");
    let log = aws.calls();
    let sent = |pred: &dyn Fn(&str) -> bool| log.iter().filter(|c| pred(&c.0)).count();
    let iam_writes = sent(&|a| IAM_WRITES.contains(&a));
    let ec2_writes = sent(&|a| a == "AssociateIamInstanceProfile");
    // The default buckets: IAM write 5/s burst 10, EC2 write 5/s burst 20.
    #[allow(clippy::cast_precision_loss)]
    let floor = ((iam_writes as f64 - 10.0) / 5.0).max((ec2_writes as f64 - 20.0) / 5.0);
    let refused = log
        .iter()
        .filter(|c| c.0 == "AssociateIamInstanceProfile" && c.2.as_deref() == Some("propagation"))
        .count();
    // Where the time went, from the proxy's log: its first and last write
    // of each bucket, and the last call.
    let (_, body) = common::http(aws.proxy_port, "GET", "/_fault/calls", "");
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
        && let Some(calls) = v["calls"].as_array()
    {
        let t0 = calls.first().and_then(|c| c["t"].as_f64()).unwrap_or(0.0);
        let span = |f: &dyn Fn(&str) -> bool| {
            let ts: Vec<f64> = calls
                .iter()
                .filter(|c| f(c["action"].as_str().unwrap_or_default()))
                .filter_map(|c| c["t"].as_f64())
                .collect();
            let (lo, hi) = ts
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
            (lo - t0, hi - t0)
        };
        println!(
            "timeline (s from the first call): IAM writes {:?}, EC2 writes {:?}, all calls {:?}",
            span(&|a| IAM_WRITES.contains(&a)),
            span(&|a| a == "AssociateIamInstanceProfile"),
            span(&|_| true)
        );
        println!("first call {:.2} s after the start", t0 - epoch);
    }
    println!(
        "cold apply of {N} bindings: {wall:.1} s, floor {floor:.1} s ({iam_writes} IAM writes, {ec2_writes} EC2 writes), ratio {:.2}, {refused} refused associations",
        wall / floor
    );
    assert!(
        refused <= N,
        "{refused} associations refused for {N} bindings: {:?}",
        calls_by_action(&log)
    );
    assert!(
        wall <= 1.15 * floor,
        "cold apply took {wall:.1} s, over 1.15 × the rate-limit floor of {floor:.1} s: {:?}",
        calls_by_action(&log)
    );
    let assoc = aws.all_associations().await;
    let missing: Vec<&String> = all.iter().filter(|i| !assoc.contains_key(*i)).collect();
    assert!(missing.is_empty(), "not associated: {missing:?}");
}
