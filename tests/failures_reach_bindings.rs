//! AWS failing the bulk reads reaches every binding it affects, on a real API
//! server: `Ready=False` with the reason, kstatus's `Stalled`/`Reconciling`,
//! a Warning event, and Ready again without a restart once AWS answers.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use instance_profile_controller::crd::{InstanceProfileBinding, InstanceProfileBindingStatus};
use kube::api::{Api, PostParams};

async fn wait_for(
    api: &Api<InstanceProfileBinding>,
    what: &str,
    pred: impl Fn(&InstanceProfileBindingStatus) -> bool,
) -> InstanceProfileBindingStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = api.get("web").await.ok().and_then(|b| b.status)
            && pred(&s)
        {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out waiting for {what}: {:?}",
            api.get("web").await.ok().and_then(|b| b.status)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition(s: &InstanceProfileBindingStatus, t: &str) -> Option<(String, String)> {
    s.condition(t).map(|c| (c.status.clone(), c.reason.clone()))
}

#[test]
fn run_refuses_to_start_without_a_region() {
    let out = Command::new(common::bin())
        .args([
            "run",
            "--no-leader-election",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        // No instance metadata service here: the SDK must not go looking for one.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("KUBECONFIG", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no AWS region configured") && stderr.contains("AWS_REGION"),
        "{stderr}"
    );
}

#[tokio::test]
async fn denied_and_unreachable_aws_reach_the_binding_and_recover() {
    require_moto!();
    let cluster = require_real_kube!();
    cluster.install_crds();
    let out = cluster.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\napiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfilePolicy\nmetadata: {name: team-a}\nspec: {namespaces: {names: [team-a]}, roles: [web-app]}\n",
    );
    assert!(out.ok, "{out:?}");
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    // Every listing of profiles is denied, as an SCP or a missing permission would.
    aws.fault_config(
        r#"{"scripted_faults": [{"kind": "access_denied", "action": "ListInstanceProfiles", "count": 100000}]}"#,
    );
    let args = [
        "--no-leader-election",
        "--metrics-addr",
        "127.0.0.1:0",
        "--resync-interval",
        "2s",
    ];
    let run = common::run_controller(&cluster.kubeconfig, &aws, &args, &[]);
    let client = cluster.client().await;
    let api: Api<InstanceProfileBinding> = Api::namespaced(client.clone(), "team-a");
    let web: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"role": "web-app", "instances": {"ids": inst}},
    }))
    .expect("binding");
    api.create(&PostParams::default(), &web)
        .await
        .expect("create");

    // Denied: the new binding gets a status that says so, and kstatus reads Failed.
    let s = wait_for(&api, "AccessDenied", |s| {
        condition(s, "Ready") == Some(("False".into(), "AccessDenied".into()))
    })
    .await;
    let message = s
        .condition("Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("ListInstanceProfiles"), "{message}");
    assert_eq!(
        condition(&s, "Stalled"),
        Some(("True".into(), "AccessDenied".into()))
    );
    assert_eq!(s.observed_generation, Some(1));
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "team-a");
    let start = Instant::now();
    loop {
        let warned = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .iter()
            .any(|e| {
                e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("AccessDenied")
            });
        if warned {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no AccessDenied Warning event"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The permission is granted: Ready without a restart.
    aws.fault_config(r#"{"scripted_faults": []}"#);
    let s = wait_for(&api, "Ready after access is granted", |s| s.is_ready()).await;
    assert!(
        s.condition("Stalled").is_none() && s.condition("Reconciling").is_none(),
        "{s:?}"
    );

    // AWS unreachable (every connection dropped): Ready=False/AwsUnavailable,
    // Reconciling (the controller retries by itself), what it knew is kept.
    aws.fault_config(
        r#"{"scripted_faults": [{"kind": "reset_before", "action": "ListInstanceProfiles", "count": 100000}]}"#,
    );
    let s = wait_for(&api, "AwsUnavailable", |s| {
        condition(s, "Ready") == Some(("False".into(), "AwsUnavailable".into()))
    })
    .await;
    assert_eq!(
        condition(&s, "Reconciling"),
        Some(("True".into(), "AwsUnavailable".into()))
    );
    assert_eq!(
        s.instances.len(),
        1,
        "the last known instances are kept: {s:?}"
    );
    aws.fault_config(r#"{"scripted_faults": []}"#);
    wait_for(&api, "Ready after AWS answers again", |s| s.is_ready()).await;

    // A restart over the converged binding: its status (Ready for this
    // generation and profile id) stands for the tag check, so the new process
    // reads no profile's tags and writes nothing, through several resyncs.
    drop(run);
    aws.reset_calls();
    let _run = common::run_controller(&cluster.kubeconfig, &aws, &args, &[]);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let calls: Vec<String> = aws.calls().into_iter().map(|c| c.0).collect();
    assert!(
        calls.iter().any(|c| c == "ListInstanceProfiles"),
        "the new process never looked: {calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c == "GetInstanceProfile" || !common::is_read(c)),
        "{calls:?}"
    );
    let b = api.get("web").await.expect("get");
    assert!(b.status.as_ref().is_some_and(|s| s.is_ready()), "{b:?}");
}
