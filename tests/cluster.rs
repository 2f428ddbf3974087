//! The `run` controller end to end: a Kubernetes API (a real kube-apiserver +
//! etcd from `KUBEBUILDER_ASSETS`, tests/common/kube.rs, and the emulator in
//! tests/support as the fast path), moto behind the fault proxy, and the
//! release binary. Without `KUBEBUILDER_ASSETS` the real-server tests skip,
//! except under `CI=true`, where they fail.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::kube::RealCluster;
use common::{KubeEmulator, Proc, free_port, repo};
use instance_profile_controller::crd::{
    InstanceProfileBinding, InstanceProfileBindingStatus, InstanceProfilePolicy,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// A Kubernetes API to test against: the emulator (started without CRDs) or
/// a real kube-apiserver + etcd (tests/common/kube.rs).
enum Cluster {
    Emulator(KubeEmulator),
    Real(RealCluster),
}

impl Cluster {
    fn kubeconfig(&self) -> &Path {
        match self {
            Self::Emulator(e) => &e.kubeconfig,
            Self::Real(r) => &r.kubeconfig,
        }
    }

    async fn client(&self) -> Client {
        match self {
            Self::Emulator(e) => e.client().await,
            Self::Real(r) => r.client().await,
        }
    }
}

/// One `run` process.
fn controller(
    cluster: &Cluster,
    aws: &common::Aws,
    identity: &str,
    metrics_port: u16,
    extra: &[&str],
) -> Proc {
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mut args = vec!["--metrics-addr", &metrics, "--resync-interval", "3s"];
    args.extend(["--lease-namespace", "default", "--lease-duration", "3s"]);
    args.extend(extra);
    common::run_controller(
        cluster.kubeconfig(),
        aws,
        &args,
        &[("POD_NAME", identity), ("IPB_LOG_LEVEL", "debug")],
    )
}

fn binding(name: &str, role: &str, ids: &[String]) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"role": role, "instances": {"ids": ids}},
    })
}

async fn wait_status(
    api: &Api<InstanceProfileBinding>,
    name: &str,
    what: &str,
    pred: impl Fn(&InstanceProfileBinding, &InstanceProfileBindingStatus) -> bool,
) -> InstanceProfileBinding {
    let start = Instant::now();
    loop {
        if let Ok(b) = api.get(name).await
            && let Some(s) = &b.status
            && pred(&b, s)
        {
            return b;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name}: timed out waiting for {what}: {:?}",
            api.get(name).await.ok().and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_gone(api: &Api<InstanceProfileBinding>, name: &str) {
    let start = Instant::now();
    while api.get_opt(name).await.ok().flatten().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{name} was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready_for_generation(b: &InstanceProfileBinding, s: &InstanceProfileBindingStatus) -> bool {
    s.is_ready() && s.observed_generation == b.metadata.generation
}

async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    leases
        .get_opt("instance-profile-controller")
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec?.holder_identity)
}

/// The CRDs and namespace team-a.
async fn install(client: &Client) -> (Api<InstanceProfilePolicy>, Api<InstanceProfileBinding>) {
    let crd_api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    for file in ["instanceprofilebinding.yaml", "instanceprofilepolicy.yaml"] {
        let text = std::fs::read_to_string(repo().join("crds").join(file)).expect("crd yaml");
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_norway::from_str(&text).expect("crd");
        let name = crd.metadata.name.clone().expect("crd name");
        crd_api
            .patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("install CRD");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "team-a"}})).expect("ns");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    (
        Api::all(client.clone()),
        Api::namespaced(client.clone(), "team-a"),
    )
}

/// Policy `team-a`: namespace team-a may bind the roles `web-*`.
async fn allow_web_roles(policies: &Api<InstanceProfilePolicy>) {
    let policy: InstanceProfilePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfilePolicy",
        "metadata": {"name": "team-a"},
        "spec": {"namespaces": {"names": ["team-a"]}, "roles": ["web-*"]},
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
}

/// Every Event recorded in namespace team-a.
async fn team_a_events(client: &Client) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "team-a");
    events
        .list(&Default::default())
        .await
        .expect("events")
        .items
}

const OTHER_ROLE: &str = "arn:aws:iam::444455556666:role/ipb-controller";

/// A policy that gains `spec.account` moves its bindings there (removing
/// them where they were), and deleting cleans up in that account.
async fn cross_account_scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    let other = aws.in_account(OTHER_ROLE).await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    other.create_role("web-app", common::TRUST_EC2).await;
    let home_inst = aws.run_instances(1, &[("team", "a")]).await;
    let other_inst = other.run_instances(1, &[("team", "a")]).await;
    aws.fault_config(&format!(
        r#"{{"assume_role_external_ids": {{"{OTHER_ROLE}": "ext-123"}}}}"#
    ));
    let client = cluster.client().await;
    let (policies, api) = install(&client).await;
    let _run = controller(
        cluster,
        &aws,
        "solo",
        free_port(),
        &["--no-leader-election"],
    );
    allow_web_roles(&policies).await;
    let web = serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"role": "web-app", "instances": {"tags": {"team": "a"}}},
    });
    let web: InstanceProfileBinding = serde_json::from_value(web).expect("binding");
    api.create(&PostParams::default(), &web)
        .await
        .expect("create binding");
    let b = wait_status(&api, "web", "Ready at home", ready_for_generation).await;
    assert_eq!(b.status.and_then(|s| s.assume_role_arn), None);
    let name = common::profile_name("team-a", "web");
    assert!(aws.profiles().await.contains_key(&name));
    assert!(aws.associations().await.contains_key(&home_inst[0]));

    // The policy now names another account: the binding moves there.
    policies
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"account": {
                "assumeRoleArn": OTHER_ROLE, "externalId": "ext-123"}}})),
        )
        .await
        .expect("add account");
    let moved = wait_status(&api, "web", "Ready in the other account", |_, s| {
        s.is_ready() && s.assume_role_arn.as_deref() == Some(OTHER_ROLE)
    })
    .await;
    let arn = moved
        .status
        .and_then(|s| s.instance_profile)
        .and_then(|p| p.arn)
        .unwrap_or_default();
    assert!(arn.starts_with("arn:aws:iam::444455556666:"), "{arn}");
    assert!(other.profiles().await.contains_key(&name));
    assert!(other.associations().await.contains_key(&other_inst[0]));
    assert!(!aws.profiles().await.contains_key(&name), "left at home");
    assert!(aws.associations().await.is_empty(), "left at home");
    for p in aws.assume_role_calls() {
        let seconds: u32 = p["DurationSeconds"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("DurationSeconds");
        assert!(seconds <= 3600, "{p}");
    }

    // Deleted: cleaned up in the account it lives in.
    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "web").await;
    assert!(
        !other.profiles().await.contains_key(&name),
        "profile left behind"
    );
    assert!(
        other.associations().await.is_empty(),
        "association left behind"
    );
}

async fn scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_role("db-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    let client = cluster.client().await;

    // Without the CRD, `run` refuses to start and says what to do.
    let out = Command::new(common::bin())
        .args([
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--no-leader-election",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", common::REGION)
        .output()
        .expect("run without CRD");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CRD is not installed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (policies, api) = install(&client).await;

    let (port_a, port_b) = (free_port(), free_port());
    let mut first = Some(controller(cluster, &aws, "replica-a", port_a, &[]));
    // Only the second replica starts once the first holds the lease.
    let start = Instant::now();
    while lease_holder(&client).await.as_deref() != Some("replica-a") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "replica-a never became leader"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _second = controller(cluster, &aws, "replica-b", port_b, &[]);

    // No policy covers team-a yet: denied, and nothing happens in AWS.
    let web: InstanceProfileBinding =
        serde_json::from_value(binding("web", "web-app", &inst)).expect("binding");
    api.create(&PostParams::default(), &web)
        .await
        .expect("create binding");
    let denied = wait_status(&api, "web", "PolicyDenied", |_, s| {
        s.condition("Ready")
            .is_some_and(|c| c.reason == "PolicyDenied")
    })
    .await;
    let message = denied
        .status
        .and_then(|s| s.condition("Ready").map(|c| c.message.clone()))
        .unwrap_or_default();
    assert!(
        message.contains("no InstanceProfilePolicy covers namespace team-a"),
        "{message}"
    );
    assert!(
        aws.mutating_calls().is_empty(),
        "a denied binding changed AWS: {:?}",
        aws.mutating_calls()
    );

    // A policy arrives: the binding converges without a restart; Ready with
    // status filled, finalizer on.
    let policy: InstanceProfilePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfilePolicy",
        "metadata": {"name": "team-a"},
        "spec": {"namespaces": {"names": ["team-a"]}, "roles": ["web-app", "db-*"]},
    }))
    .expect("policy");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let b = wait_status(&api, "web", "Ready", ready_for_generation).await;
    let s = b.status.clone().expect("status");
    assert!(
        b.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "iam.instanceprofile.dev/cleanup"))
    );
    let profile = s.instance_profile.clone().expect("profile in status");
    assert_eq!(profile.name, common::profile_name("team-a", "web"));
    assert_eq!(s.role.as_ref().map(|r| r.name.as_str()), Some("web-app"));
    assert_eq!(s.instances.len(), 2);
    assert!(
        s.instances
            .iter()
            .all(|i| i.state == "associated" && i.association_id.is_some())
    );
    assert_eq!(s.instance_summary.as_deref(), Some("2/2"));
    for t in ["Ready", "ProfileReady", "RoleAttached", "Associated"] {
        assert_eq!(
            s.condition(t).map(|c| c.status.as_str()),
            Some("True"),
            "{t}: {s:?}"
        );
    }
    let assoc = aws.associations().await;
    assert!(
        inst.iter()
            .all(|i| assoc.get(i).map(|a| &a.2) == profile.id.as_ref()),
        "{assoc:?}"
    );

    // the printer columns, through kubectl
    if let Some(kubectl) = common::kube::kubectl() {
        let out = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["get", "ipb", "-n", "team-a"])
            .output()
            .expect("run kubectl");
        let table = String::from_utf8_lossy(&out.stdout);
        for col in ["ROLE", "PROFILE", "INSTANCES", "READY", "REASON", "AGE"] {
            assert!(table.contains(col), "kubectl get ipb lacks {col}:\n{table}");
        }
        assert!(
            table.contains("web-app") && table.contains("2/2") && table.contains("Reconciled"),
            "{table}"
        );
    } else {
        println!("skipped the kubectl check: kubectl not installed");
    }

    // metrics and health from the leader
    let (code, body) = common::http(port_a, "GET", "/metrics", "");
    assert_eq!(code, 200);
    assert!(
        body.contains("instance_profile_controller_aws_calls_total")
            && body.contains("instance_profile_controller_leader 1"),
        "{body}"
    );
    assert_eq!(common::http(port_a, "GET", "/healthz", "").0, 200);
    assert_eq!(common::http(port_a, "GET", "/readyz", "").0, 200);

    // change the role → converges on the new generation
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"role": "db-app"}})),
    )
    .await
    .expect("patch role");
    wait_status(&api, "web", "Ready after role change", |b, s| {
        ready_for_generation(b, s) && s.role.as_ref().is_some_and(|r| r.name == "db-app")
    })
    .await;
    assert_eq!(
        aws.profiles().await[&profile.name].2,
        vec!["db-app".to_string()]
    );

    // Profile tags follow the spec: added, then changed and dropped; a tag a
    // person put on the profile stays.
    aws.tag_profile(&profile.name, "finance", "by-hand").await;
    for (tags, want) in [
        (
            serde_json::json!({"cost-center": "42", "team": "a"}),
            vec![("cost-center", "42"), ("finance", "by-hand"), ("team", "a")],
        ),
        (
            serde_json::json!({"cost-center": "43", "team": null}),
            vec![("cost-center", "43"), ("finance", "by-hand")],
        ),
    ] {
        api.patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"instanceProfile": {"tags": tags}}})),
        )
        .await
        .expect("patch tags");
        wait_status(
            &api,
            "web",
            "Ready after a tag change",
            ready_for_generation,
        )
        .await;
        let start = Instant::now();
        loop {
            let got: Vec<(String, String)> = aws
                .profile_tags(&profile.name)
                .await
                .into_iter()
                .filter(|(k, _)| !k.starts_with("instanceprofile.dev/"))
                .collect();
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect();
            if got == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "profile tags {got:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Narrowing the policy denies the binding but tears nothing down.
    policies
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"roles": ["web-app"]}})),
        )
        .await
        .expect("narrow policy");
    wait_status(&api, "web", "PolicyDenied after narrowing", |_, s| {
        s.condition("Ready")
            .is_some_and(|c| c.reason == "PolicyDenied")
    })
    .await;
    assert_eq!(
        aws.profiles().await[&profile.name].2,
        vec!["db-app".to_string()],
        "AWS state must be kept"
    );
    assert_eq!(
        aws.associations().await.len(),
        2,
        "associations must be kept"
    );
    policies
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"roles": ["web-app", "db-*"]}})),
        )
        .await
        .expect("widen policy");

    // the leader stops; the standby takes over and reconciles
    drop(first.take());
    let db: InstanceProfileBinding =
        serde_json::from_value(binding("db", "db-app", &[])).expect("binding");
    let mut db = db;
    db.spec.instances.tags.insert("none".into(), "match".into());
    api.create(&PostParams::default(), &db)
        .await
        .expect("create db");
    wait_status(&api, "db", "Ready from the standby", ready_for_generation).await;
    assert_eq!(lease_holder(&client).await.as_deref(), Some("replica-b"));

    // delete → AWS cleaned up, object gone
    api.delete("web", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "web").await;
    assert!(
        !aws.profiles().await.contains_key(&profile.name),
        "profile left behind"
    );
    assert!(
        aws.associations().await.is_empty(),
        "associations left behind"
    );

    // events were recorded for the binding
    let reasons: Vec<String> = team_a_events(&client)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    for r in ["CreatedProfile", "AttachedRole", "Associated"] {
        assert!(
            reasons.iter().any(|x| x == r),
            "no {r} event in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn controller_against_the_api_emulator() {
    require_moto!();
    scenario(&Cluster::Emulator(KubeEmulator::bare())).await;
}

#[tokio::test]
async fn controller_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    scenario(&Cluster::Real(cluster)).await;
}

#[tokio::test]
async fn cross_account_against_the_api_emulator() {
    require_moto!();
    cross_account_scenario(&Cluster::Emulator(KubeEmulator::bare())).await;
}

#[tokio::test]
async fn cross_account_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    cross_account_scenario(&Cluster::Real(cluster)).await;
}

/// A role change with `rotation: {onRoleChange: Reassociate}` moves every
/// associated instance to a fresh association, and the status shows it
/// through to the end.
async fn rotation_scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    aws.create_role("web-a", common::TRUST_EC2).await;
    aws.create_role("web-b", common::TRUST_EC2).await;
    let inst = aws.run_instances(4, &[]).await;
    let client = cluster.client().await;
    let (policies, api) = install(&client).await;
    allow_web_roles(&policies).await;
    let _run = controller(cluster, &aws, "replica-a", free_port(), &[]);
    let mut web = binding("web", "web-a", &inst);
    web["spec"]["rotation"] =
        serde_json::json!({"onRoleChange": "Reassociate", "maxUnavailable": "50%"});
    let web: InstanceProfileBinding = serde_json::from_value(web).expect("binding");
    api.create(&PostParams::default(), &web)
        .await
        .expect("create binding");
    wait_status(&api, "web", "Ready with web-a", ready_for_generation).await;
    assert_eq!(aws.associations().await.len(), 4);

    aws.reset_calls();
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"role": "web-b"}})),
    )
    .await
    .expect("change role");
    let done = wait_status(&api, "web", "Ready with web-b", |b, s| {
        ready_for_generation(b, s) && s.role.as_ref().is_some_and(|r| r.name == "web-b")
    })
    .await;
    let status = done.status.expect("status");
    assert!(status.rotation.is_none(), "rotation finished: {status:?}");
    let replaced = aws
        .calls()
        .iter()
        .filter(|(a, code, _)| a == "ReplaceIamInstanceProfileAssociation" && *code < 300)
        .count();
    assert_eq!(replaced, 4, "every instance moved once: {:?}", aws.calls());
    let notes: Vec<String> = team_a_events(&client)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Reassociated"))
        .filter_map(|e| e.note)
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("rotation batch 1 of 2")),
        "Reassociated events: {notes:?}"
    );
}

#[tokio::test]
async fn rotation_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    rotation_scenario(&Cluster::Real(cluster)).await;
}

/// Quota headroom in `run`: the create that fills the account draws a
/// QuotaNearlyFull warning, the next binding is QuotaExceeded with no IAM
/// write, and /metrics shows usage and quota.
async fn quota_scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_profile("someone-elses-1", "/").await;
    aws.create_profile("someone-elses-2", "/").await;
    let inst = aws.run_instances(2, &[]).await;
    aws.reset_calls();
    aws.fault_config(r#"{"instance_profile_quota": 3}"#);
    let client = cluster.client().await;
    let (policies, api) = install(&client).await;
    allow_web_roles(&policies).await;
    let port = free_port();
    let _run = controller(cluster, &aws, "replica-a", port, &[]);
    let a: InstanceProfileBinding =
        serde_json::from_value(binding("a", "web-app", &inst[..1])).expect("binding");
    api.create(&PostParams::default(), &a)
        .await
        .expect("create a");
    wait_status(&api, "a", "Ready", ready_for_generation).await;
    let b: InstanceProfileBinding =
        serde_json::from_value(binding("b", "web-app", &inst[1..])).expect("binding");
    api.create(&PostParams::default(), &b)
        .await
        .expect("create b");
    let refused = wait_status(&api, "b", "QuotaExceeded", |_, s| {
        s.condition("Ready")
            .is_some_and(|c| c.reason == "QuotaExceeded" && c.message.contains("3 of 3"))
    })
    .await;
    assert!(!refused.status.expect("status").is_ready());
    let creates = aws
        .calls()
        .iter()
        .filter(|(a, _, _)| a == "CreateInstanceProfile")
        .count();
    assert_eq!(creates, 1, "b never reached IAM: {:?}", aws.calls());

    let warned = team_a_events(&client)
        .await
        .into_iter()
        .any(|e| e.reason.as_deref() == Some("QuotaNearlyFull"));
    assert!(warned, "no QuotaNearlyFull event");
    let (status, text) = common::http(port, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"instance_profile_controller_instance_profiles{account="home"} 3"#)
            && text.contains(
                r#"instance_profile_controller_instance_profiles_quota{account="home"} 3"#
            ),
        "{text}"
    );
}

#[tokio::test]
async fn quota_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    quota_scenario(&Cluster::Real(cluster)).await;
}

/// The orphan sweep: a binding deleted with its finalizer stripped while
/// the controller was down leaves its profile behind; `run` reports it and,
/// with `--orphan-sweep=delete` after the grace, deletes it safely. A
/// profile of another cluster id and a live binding's are never touched.
async fn orphan_scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    // Another cluster's profile, tagged as its own.
    let foreign = instance_profile_controller::naming::profile_name(
        "other",
        &instance_profile_controller::naming::BindingKey {
            namespace: "team-a".into(),
            name: "gone".into(),
        },
    );
    aws.create_profile(&foreign, "/ipb/other/").await;
    for (k, v) in [
        ("instanceprofile.dev/cluster-id", "other"),
        ("instanceprofile.dev/namespace", "team-a"),
        ("instanceprofile.dev/name", "gone"),
    ] {
        aws.tag_profile(&foreign, k, v).await;
    }
    let client = cluster.client().await;
    let (policies, api) = install(&client).await;
    allow_web_roles(&policies).await;
    let first = controller(cluster, &aws, "replica-a", free_port(), &[]);
    for (name, i) in [("keep", 0), ("gone", 1)] {
        let b: InstanceProfileBinding =
            serde_json::from_value(binding(name, "web-app", &inst[i..=i])).expect("binding");
        api.create(&PostParams::default(), &b)
            .await
            .expect("create binding");
        wait_status(&api, name, "Ready", ready_for_generation).await;
    }
    // The controller is down; someone strips the finalizer and deletes.
    drop(first);
    api.patch(
        "gone",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("strip finalizer");
    api.delete("gone", &DeleteParams::default())
        .await
        .expect("delete");
    wait_gone(&api, "gone").await;
    let gone = common::profile_name("team-a", "gone");
    let keep = common::profile_name("team-a", "keep");

    // Report only: counted, left in place.
    let port = free_port();
    let report = controller(
        cluster,
        &aws,
        "replica-b",
        port,
        &["--orphan-sweep-interval", "1s"],
    );
    let start = Instant::now();
    loop {
        // (The metrics server is up once the controller has started.)
        let text = if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            common::http(port, "GET", "/metrics", "").1
        } else {
            String::new()
        };
        if text.contains("instance_profile_controller_orphaned_instance_profiles 1") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the orphan was never reported: {text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(aws.profiles().await.contains_key(&gone));
    drop(report);

    // doctor names it an orphan, and not a live binding's profile.
    let kubeconfig = common::path_str(cluster.kubeconfig()).to_string();
    let orphan_findings = |profile: &str| {
        let run = common::cli(
            &aws.endpoint(),
            &[
                "doctor",
                "--instance-profile",
                profile,
                "--kubeconfig",
                &kubeconfig,
                "-o",
                "json",
            ],
        );
        let report: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {run:?}"));
        report["findings"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter(|f| f["check"] == "orphan")
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let found = orphan_findings(&gone);
    assert!(
        found.len() == 1
            && found[0]["severity"] == "warning"
            && found[0]["evidence"]["binding"] == "team-a/gone",
        "{found:#?}"
    );
    assert!(orphan_findings(&keep).is_empty());

    // Delete after the grace: only the orphan goes, safely.
    let _delete = controller(
        cluster,
        &aws,
        "replica-c",
        free_port(),
        &[
            "--orphan-sweep-interval",
            "1s",
            "--orphan-sweep",
            "delete",
            "--orphan-grace",
            "2s",
        ],
    );
    let start = Instant::now();
    while aws.profiles().await.contains_key(&gone) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the orphan was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let profiles = aws.profiles().await;
    assert!(
        profiles.contains_key(&keep),
        "a live binding's profile went"
    );
    assert!(
        profiles.contains_key(&foreign),
        "another cluster's profile went"
    );
    let held = aws.associations().await;
    assert!(
        !held.contains_key(&inst[1]),
        "the orphan's association stayed: {held:?}"
    );
    assert!(held.contains_key(&inst[0]), "{held:?}");
}

#[tokio::test]
async fn orphan_sweep_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    orphan_scenario(&Cluster::Real(cluster)).await;
}

/// spec.instances.nodeSelector with --watch-nodes: Node objects made by
/// hand (no kubelet) point at moto instances. An EC2 node is associated, a
/// Fargate node skipped, a managed node group's node left out until a
/// policy allows managed nodes; a node registered later is picked up.
async fn node_selector_scenario(cluster: &Cluster) {
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(3, &[]).await;
    let client = cluster.client().await;
    let (policies, api) = install(&client).await;
    allow_web_roles(&policies).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let node = |name: &str, labels: serde_json::Value, provider: &str| {
        serde_json::from_value::<k8s_openapi::api::core::v1::Node>(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": provider},
        }))
        .expect("node")
    };
    for n in [
        node(
            "n1",
            serde_json::json!({"role": "web"}),
            &format!("aws:///us-east-1a/{}", inst[0]),
        ),
        node(
            "nf",
            serde_json::json!({"role": "web"}),
            "aws:///us-east-1a/fargate-ip-10-0-0-1.ec2.internal",
        ),
        node(
            "nm",
            serde_json::json!({"role": "web", "eks.amazonaws.com/nodegroup": "ng-1"}),
            &format!("aws:///us-east-1a/{}", inst[2]),
        ),
    ] {
        nodes
            .create(&PostParams::default(), &n)
            .await
            .expect("create node");
    }
    let _run = controller(cluster, &aws, "replica-a", free_port(), &["--watch-nodes"]);
    let web: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"role": "web-app", "instances": {"nodeSelector": {"matchLabels": {"role": "web"}}}},
    }))
    .expect("binding");
    api.create(&PostParams::default(), &web)
        .await
        .expect("create binding");
    let done = wait_status(&api, "web", "Ready with one node", |b, s| {
        ready_for_generation(b, s) && s.instances.len() == 1
    })
    .await;
    let status = done.status.expect("status");
    let nodes_status = status.nodes.expect("status.nodes");
    assert_eq!(
        (nodes_status.selected, nodes_status.skipped),
        (1, 1),
        "{nodes_status:?}"
    );
    assert!(
        nodes_status.excluded.len() == 1
            && nodes_status.excluded[0].starts_with("nm:")
            && nodes_status.excluded[0].contains("managed node group"),
        "{nodes_status:?}"
    );
    let profile = common::profile_name("team-a", "web");
    let held = aws.associations().await;
    assert!(
        held.get(&inst[0]).is_some_and(|a| a.1.ends_with(&profile)),
        "{held:?}"
    );
    assert!(
        !held.contains_key(&inst[2]),
        "a managed node's instance was touched: {held:?}"
    );

    // doctor --binding reports what the controller selected and left out.
    let kubeconfig = common::path_str(cluster.kubeconfig()).to_string();
    let doctor = common::cli(
        &aws.endpoint(),
        &[
            "doctor",
            "--binding",
            "team-a/web",
            "--kubeconfig",
            &kubeconfig,
            "-o",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_str(&doctor.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON ({e}): {doctor:?}"));
    let nodes_finding = report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["check"] == "node-selection"))
        .cloned()
        .unwrap_or_else(|| panic!("no node-selection finding: {report:#}"));
    assert_eq!(nodes_finding["severity"], "warning", "{nodes_finding:#}");
    assert_eq!(
        nodes_finding["evidence"]["excluded"], "1",
        "{nodes_finding:#}"
    );

    // A node registers later: picked up.
    nodes
        .create(
            &PostParams::default(),
            &node(
                "n2",
                serde_json::json!({"role": "web"}),
                &format!("aws:///us-east-1a/{}", inst[1]),
            ),
        )
        .await
        .expect("create node");
    wait_status(&api, "web", "the new node's instance", |_, s| {
        s.instances
            .iter()
            .any(|i| i.id == inst[1] && i.state == "associated")
    })
    .await;
    // The policy allows managed nodes: the node group's instance joins.
    policies
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"allowManagedNodes": true}})),
        )
        .await
        .expect("allow managed nodes");
    wait_status(&api, "web", "the managed node's instance", |_, s| {
        s.instances
            .iter()
            .any(|i| i.id == inst[2] && i.state == "associated")
    })
    .await;
}

#[tokio::test]
async fn node_selector_against_a_real_api_server() {
    require_moto!();
    let cluster = require_real_kube!();
    node_selector_scenario(&Cluster::Real(cluster)).await;
}
