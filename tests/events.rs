//! `run --event-queue` end to end: moto behind the fault proxy (SQS
//! included), the real API server, the binary. EC2 emits no events into
//! moto, so the tests put them on the queue themselves, shaped like AWS's
//! documented examples (EventBridge delivers the event itself as the body).
//! The resync is 10 minutes wherever the point is that the event, not the
//! resync, did the work.

use crate::common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::kube::RealCluster;
use common::{Proc, free_port};
use instance_profile_controller::crd::InstanceProfileBinding;
use kube::Api;
use kube::api::PostParams;

const ACCOUNT: &str = "123456789012";
/// Someone other than the controller (a person fixing things by hand).
const ADMIN: &str = "arn:aws:sts::123456789012:assumed-role/Admin/alice";

/// moto behind the proxy, the API server with the CRDs and namespace
/// team-a, the queue, and the controller consuming it.
struct Env {
    aws: common::Aws,
    /// Straight to moto: the test's own SQS calls stay out of the proxy's log.
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    api: Api<InstanceProfileBinding>,
    metrics_port: u16,
    _run: Proc,
    _cluster: RealCluster,
}

/// Starts everything; `queue` is what `--event-queue` gets (`None`: the
/// URL of the queue `ipb-events`, created first), `create_queue` whether
/// to create `ipb-events` before the controller starts.
async fn start(cluster: RealCluster, queue: Option<&str>, create_queue: bool, resync: &str) -> Env {
    let aws = common::Aws::start().await;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(common::REGION))
        .endpoint_url(format!("http://127.0.0.1:{}", aws.moto_port))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue_url = if create_queue {
        create(&sqs, "ipb-events").await
    } else {
        String::new()
    };
    cluster.install_crds();
    let out = cluster.kubectl(&["create", "namespace", "team-a"]);
    assert!(out.ok, "{out:?}");
    let client = cluster.client().await;
    let metrics_port = free_port();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let queue_arg = queue.map_or_else(|| queue_url.clone(), str::to_string);
    let run = common::run_controller(
        &cluster.kubeconfig,
        &aws,
        &[
            "--metrics-addr",
            &metrics,
            "--resync-interval",
            resync,
            "--require-policy",
            "false",
            "--lease-namespace",
            "default",
            "--lease-duration",
            "3s",
            "--event-queue",
            &queue_arg,
        ],
        &[("POD_NAME", "events-test"), ("IPB_LOG_LEVEL", "debug")],
    );
    Env {
        aws,
        sqs,
        queue_url,
        api: Api::namespaced(client, "team-a"),
        metrics_port,
        _run: run,
        _cluster: cluster,
    }
}

async fn create(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string()
}

impl Env {
    async fn send(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send message");
    }

    /// Messages on the queue, visible or in flight.
    async fn queued(&self) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let attr = |name: &str| -> u64 {
            out.attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::from(name))
                        .cloned()
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        attr("ApproximateNumberOfMessages") + attr("ApproximateNumberOfMessagesNotVisible")
    }

    fn metric(&self, series: &str) -> f64 {
        common::metric(self.metrics_port, series).unwrap_or(0.0)
    }

    fn sum(&self, name: &str) -> f64 {
        common::metric_sum(self.metrics_port, name)
    }

    fn ignored(&self, reason: &str) -> f64 {
        common::scrape(self.metrics_port)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.starts_with("instance_profile_controller_events_ignored_total{")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    }

    fn readyz(&self) -> String {
        common::http(self.metrics_port, "GET", "/readyz", "").1
    }

    /// Waits until `n` events in all have been deleted.
    async fn wait_deleted(&self, n: f64) {
        eventually(
            &format!("{n} events deleted"),
            Duration::from_secs(60),
            || async { self.sum("instance_profile_controller_events_deleted_total") >= n },
        )
        .await;
    }

    /// The profile id of `instance`'s live association, if any.
    async fn associated_profile(&self, instance: &str) -> Option<String> {
        self.aws
            .associations()
            .await
            .get(instance)
            .map(|a| a.2.clone())
    }

    /// Waits up to `limit` for `instance` to be associated with `profile_id`,
    /// and prints how long `what` took.
    async fn until_associated(
        &self,
        what: &str,
        instance: &str,
        profile_id: &str,
        limit: Duration,
    ) {
        let took = eventually(what, limit, || async {
            self.associated_profile(instance).await.as_deref() == Some(profile_id)
        })
        .await;
        println!("{what} {took:?} after its events");
    }

    /// The controller's calls through the proxy that change AWS (SQS's own left out).
    fn aws_writes(&self) -> Vec<String> {
        self.aws
            .mutating_calls()
            .into_iter()
            .filter(|a| !matches!(a.as_str(), "ReceiveMessage" | "DeleteMessageBatch"))
            .collect()
    }

    /// Creates binding `web` (tags app=web, foreign associations replaced)
    /// and waits until it is Ready.
    async fn web_binding(&self) {
        let b: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.instanceprofile.dev/v1alpha1",
            "kind": "InstanceProfileBinding",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {"role": "web-app", "instances": {"tags": {"app": "web"}},
                     "replaceForeignAssociations": true},
        }))
        .expect("binding");
        self.api
            .create(&PostParams::default(), &b)
            .await
            .expect("create binding");
        eventually("binding web Ready", Duration::from_secs(60), || async {
            self.api
                .get("web")
                .await
                .ok()
                .and_then(|b| b.status)
                .is_some_and(|s| s.is_ready())
        })
        .await;
    }

    /// The reconcile count, once it has not moved for two seconds.
    async fn settled_reconciles(&self) -> f64 {
        let mut last = self.sum("instance_profile_controller_reconciles_total");
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = self.sum("instance_profile_controller_reconciles_total");
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

/// Polls `check` until it holds, at most `limit`; how long it took.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn event_id() -> String {
    format!("{:032x}", rand_u128())
}

/// A unique-enough id without a random crate: the clock and a counter.
fn rand_u128() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    t ^ (u128::from(N.fetch_add(1, Ordering::Relaxed)) << 64)
}

/// AWS's documented "EC2 Instance State-change Notification".
fn state_change(instance: &str, state: &str, time: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": event_id(),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": ACCOUNT,
        "time": time,
        "region": common::REGION,
        "resources": [format!("arn:aws:ec2:{}:{ACCOUNT}:instance/{instance}", common::REGION)],
        "detail": {"instance-id": instance, "state": state},
    })
    .to_string()
}

/// An "AWS API Call via CloudTrail" event of `caller` (an ARN).
fn cloudtrail(
    service: &str,
    name: &str,
    caller: &str,
    request: &serde_json::Value,
    response: &serde_json::Value,
) -> String {
    let (source, region) = if service == "iam" {
        ("aws.iam", "us-east-1")
    } else {
        ("aws.ec2", common::REGION)
    };
    let issuer = caller
        .strip_prefix(&format!("arn:aws:sts::{ACCOUNT}:assumed-role/"))
        .and_then(|rest| rest.split('/').next())
        .map(|role| format!("arn:aws:iam::{ACCOUNT}:role/{role}"));
    let mut identity = serde_json::json!({
        "type": if issuer.is_some() { "AssumedRole" } else { "IAMUser" },
        "principalId": "AIDAEXAMPLE",
        "arn": caller,
        "accountId": ACCOUNT,
    });
    if let Some(issuer) = issuer {
        identity["sessionContext"] = serde_json::json!({"sessionIssuer": {
            "type": "Role", "principalId": "AROAEXAMPLE", "arn": issuer,
            "accountId": ACCOUNT}});
    }
    serde_json::json!({
        "version": "0",
        "id": event_id(),
        "detail-type": "AWS API Call via CloudTrail",
        "source": source,
        "account": ACCOUNT,
        "time": now(),
        "region": region,
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": now(),
            "eventSource": format!("{service}.amazonaws.com"),
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": "192.0.2.1",
            "userAgent": "aws-cli/2",
            "requestParameters": request,
            "responseElements": response,
            "requestID": event_id(),
            "eventID": event_id(),
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        },
    })
    .to_string()
}

/// EC2's record of an association call on `instance`, as CloudTrail nests it.
fn association_call(name: &str, caller: &str, instance: &str, association: &str) -> String {
    cloudtrail(
        "ec2",
        name,
        caller,
        &serde_json::json!({format!("{name}Request"): {"AssociationId": association}}),
        &serde_json::json!({format!("{name}Response"): {
            "requestId": event_id(),
            "iamInstanceProfileAssociation": {
                "associationId": association, "instanceId": instance,
                "state": "disassociating"},
            "xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/"}}),
    )
}

async fn caller_arn(aws: &common::Aws) -> String {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(common::REGION))
        .endpoint_url(format!("http://127.0.0.1:{}", aws.moto_port))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_sts::Client::new(&conf)
        .get_caller_identity()
        .send()
        .await
        .expect("caller identity")
        .arn()
        .expect("arn")
        .to_string()
}

/// A launch, an out-of-band disassociation, a replacement and a role
/// removal are each repaired within 5 s of their event, with a 10-minute
/// resync; the controller's own writes cause no second reconcile.
#[tokio::test]
async fn events_repair_within_seconds() {
    require_moto!();
    let cluster = require_real_kube!();
    let env = start(cluster, None, true, "10m").await;
    env.aws.create_role("web-app", common::TRUST_EC2).await;
    env.aws.run_instances(1, &[("app", "web")]).await;
    env.web_binding().await;
    let name = common::profile_name("team-a", "web");
    let ours = env
        .aws
        .profiles()
        .await
        .get(&name)
        .expect("our profile")
        .1
        .clone();
    let limit = Duration::from_secs(5);

    // A new instance: pending (tags may lag), then running.
    let new = env.aws.run_instances(1, &[("app", "web")]).await.remove(0);
    let t0 = now();
    env.send(&state_change(&new, "pending", &t0)).await;
    env.send(&state_change(&new, "running", &now())).await;
    env.until_associated("the new instance associated", &new, &ours, limit)
        .await;

    // Tags that lag behind the launch: not selected at pending, at running.
    let late = env.aws.run_instances(1, &[]).await.remove(0);
    let deleted = env.sum("instance_profile_controller_events_deleted_total");
    env.send(&state_change(&late, "pending", &now())).await;
    env.wait_deleted(deleted + 1.0).await;
    assert_eq!(env.associated_profile(&late).await, None);
    env.aws
        .ec2
        .create_tags()
        .resources(&late)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("app")
                .value("web")
                .build(),
        )
        .send()
        .await
        .expect("tag the instance");
    env.send(&state_change(&late, "running", &now())).await;
    env.until_associated("the late-tagged instance associated", &late, &ours, limit)
        .await;

    // Disassociated by hand.
    let assoc = env.aws.associations().await[&new].0.clone();
    env.aws.disassociate(&assoc).await;
    env.send(&association_call(
        "DisassociateIamInstanceProfile",
        ADMIN,
        &new,
        &assoc,
    ))
    .await;
    env.until_associated("the disassociation repaired", &new, &ours, limit)
        .await;

    // Replaced by hand with someone else's profile.
    let (other_arn, _) = env.aws.create_profile("someone-elses", "/").await;
    let assoc = env.aws.associations().await[&new].0.clone();
    env.aws
        .ec2
        .replace_iam_instance_profile_association()
        .association_id(&assoc)
        .iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .arn(&other_arn)
                .build(),
        )
        .send()
        .await
        .expect("replace");
    assert_ne!(
        env.associated_profile(&new).await.as_deref(),
        Some(ours.as_str())
    );
    env.send(&association_call(
        "ReplaceIamInstanceProfileAssociation",
        ADMIN,
        &new,
        &assoc,
    ))
    .await;
    env.until_associated("the replacement repaired", &new, &ours, limit)
        .await;

    // The role removed from the profile by hand.
    env.aws
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("remove role");
    env.send(&cloudtrail(
        "iam",
        "RemoveRoleFromInstanceProfile",
        ADMIN,
        &serde_json::json!({"instanceProfileName": name, "roleName": "web-app"}),
        &serde_json::Value::Null,
    ))
    .await;
    let took = eventually("the role back in the profile", limit, || async {
        env.aws.profiles().await.get(&name).map(|p| p.2.clone()) == Some(vec!["web-app".into()])
    })
    .await;
    println!("role restored {took:?} after its event");

    // The controller's own writes: their events are deleted and change nothing.
    let before = env.settled_reconciles().await;
    let deleted = env.sum("instance_profile_controller_events_deleted_total");
    let me = caller_arn(&env.aws).await;
    let assoc = env.aws.associations().await[&new].0.clone();
    env.send(&association_call(
        "AssociateIamInstanceProfile",
        &me,
        &new,
        &assoc,
    ))
    .await;
    env.send(&cloudtrail(
        "iam",
        "AddRoleToInstanceProfile",
        &me,
        &serde_json::json!({"instanceProfileName": name, "roleName": "web-app"}),
        &serde_json::Value::Null,
    ))
    .await;
    env.wait_deleted(deleted + 2.0).await;
    assert_eq!(env.ignored("own-write"), 2.0);
    assert_eq!(
        env.settled_reconciles().await,
        before,
        "own writes reconciled again"
    );
    let lat = env.sum("instance_profile_controller_event_latency_seconds_count");
    assert_eq!(lat, 7.0, "latency observed for the seven events acted on");
    assert_eq!(env.queued().await, 0, "queue drained");
}

/// Unusable events are deleted and counted, and 1,000 events for unrelated
/// instances cost at most one DescribeInstances a batch, no other AWS
/// read, no write and no reconcile.
#[tokio::test]
async fn unusable_and_unrelated_events_cost_nothing() {
    require_moto!();
    let cluster = require_real_kube!();
    let env = start(cluster, Some("ipb-events"), true, "10m").await;
    env.aws.create_role("web-app", common::TRUST_EC2).await;
    let web = env.aws.run_instances(1, &[("app", "web")]).await.remove(0);
    let other = env
        .aws
        .run_instances(1, &[("app", "other")])
        .await
        .remove(0);
    env.web_binding().await;
    let before = env.settled_reconciles().await;
    env.aws.reset_calls();

    let running = state_change(&other, "running", &now());
    let earlier = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(30)).to_string();
    let unusable = [
        "{not json".to_string(),
        serde_json::json!({"Records": []}).to_string(),
        state_change(&web, "running", &now()).replace(
            "EC2 Instance State-change Notification",
            "EC2 Spot Instance Interruption Warning",
        ),
        state_change(&web, "running", &now()).replace(ACCOUNT, "999999999999"),
        state_change(&web, "running", &now()).replace(
            &format!("\"region\":\"{}\"", common::REGION),
            "\"region\":\"eu-west-1\"",
        ),
    ];
    for body in &unusable {
        env.send(body).await;
    }
    env.wait_deleted(unusable.len() as f64).await;
    // A duplicate, and a pending that arrives after the running.
    env.send(&running).await;
    env.wait_deleted(unusable.len() as f64 + 1.0).await;
    env.send(&running).await;
    env.send(&state_change(&other, "pending", &earlier)).await;
    env.wait_deleted(unusable.len() as f64 + 3.0).await;
    assert_eq!(env.ignored("malformed"), 2.0);
    assert_eq!(env.ignored("unknown"), 1.0);
    assert_eq!(env.ignored("foreign-account"), 1.0);
    assert_eq!(env.ignored("foreign-region"), 1.0);
    assert_eq!(env.ignored("duplicate"), 1.0);
    assert_eq!(env.ignored("out-of-order"), 1.0);
    assert_eq!(
        env.ignored("no-binding"),
        1.0,
        "the first running of an unrelated instance"
    );

    // The burst: 1,000 state changes of instances no binding selects.
    let deleted = env.sum("instance_profile_controller_events_deleted_total");
    let t = now();
    for chunk in 0..100 {
        let mut batch = env.sqs.send_message_batch().queue_url(&env.queue_url);
        for i in 0..10 {
            let id = format!("i-{:017x}", 0xb0_0000 + chunk * 10 + i);
            batch = batch.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(state_change(&id, "running", &t))
                    .build()
                    .expect("entry"),
            );
        }
        batch.send().await.expect("send batch");
    }
    env.wait_deleted(deleted + 1000.0).await;
    let calls = common::calls_by_action(&env.aws.calls());
    println!("AWS calls for the events: {calls:?}");
    let count = |a: &str| calls.get(a).map_or(0, |c| c.0 + c.1);
    assert!(
        count("DescribeInstances") <= count("ReceiveMessage"),
        "more than one DescribeInstances a batch: {calls:?}"
    );
    assert!(count("DescribeInstances") >= 1, "{calls:?}");
    for action in [
        "DescribeIamInstanceProfileAssociations",
        "GetInstanceProfile",
        "ListInstanceProfiles",
        "GetRole",
    ] {
        assert_eq!(count(action), 0, "{action}: {calls:?}");
    }
    assert_eq!(env.aws_writes(), Vec::<String>::new());
    assert_eq!(
        env.settled_reconciles().await,
        before,
        "a binding was reconciled"
    );
    assert_eq!(env.queued().await, 0, "queue drained");
}

/// A queue that does not exist yet, then one that denies access: `run`
/// reconciles on resyncs meanwhile, says so in /readyz and a metric, and
/// consumes again once the queue answers.
#[tokio::test]
async fn a_failing_queue_falls_back_to_resyncs_and_recovers() {
    require_moto!();
    let cluster = require_real_kube!();
    let mut env = start(cluster, Some("late-queue"), false, "2s").await;
    env.aws.create_role("web-app", common::TRUST_EC2).await;
    let web = env.aws.run_instances(1, &[("app", "web")]).await.remove(0);
    env.web_binding().await;
    eventually(
        "/readyz reports the missing queue",
        Duration::from_secs(30),
        || async {
            env.readyz()
                .contains("event queue: failing (AWS.SimpleQueueService.NonExistentQueue")
        },
    )
    .await;
    assert_eq!(
        env.metric("instance_profile_controller_event_queue_up"),
        0.0
    );
    // Resyncs still repair drift, with no event.
    let assoc = env.aws.associations().await[&web].0.clone();
    env.aws.disassociate(&assoc).await;
    eventually(
        "a resync re-associated",
        Duration::from_secs(20),
        || async { env.aws.associations().await.contains_key(&web) },
    )
    .await;

    env.queue_url = create(&env.sqs, "late-queue").await;
    eventually(
        "/readyz: the queue answers",
        Duration::from_secs(30),
        || async { env.readyz().contains("event queue: ok") },
    )
    .await;
    assert_eq!(
        env.metric("instance_profile_controller_event_queue_up"),
        1.0
    );

    env.aws.fault_config(
        r#"{"scripted_faults": [{"kind": "access_denied", "action": "ReceiveMessage", "count": 1000}]}"#,
    );
    eventually(
        "/readyz reports access denied",
        Duration::from_secs(40),
        || async { env.readyz().contains("event queue: failing (AccessDenied") },
    )
    .await;
    assert_eq!(
        env.metric("instance_profile_controller_event_queue_up"),
        0.0
    );
    env.aws.reset_calls();
    let deleted = env.sum("instance_profile_controller_events_deleted_total");
    env.send(&state_change(&web, "running", &now())).await;
    env.wait_deleted(deleted + 1.0).await;
    assert!(env.readyz().contains("event queue: ok"), "{}", env.readyz());
    assert_eq!(
        env.metric("instance_profile_controller_event_queue_up"),
        1.0
    );
}

/// The EventBridge rules shipped in deploy/events/ forward exactly what the
/// controller acts on: the states, detail-types and calls of its parser.
#[test]
fn the_shipped_rules_match_what_the_controller_reads() {
    use instance_profile_controller::events::parse;
    let text = std::fs::read_to_string(common::repo().join("deploy/events/events.cfn.yaml"))
        .expect("events.cfn.yaml");
    let doc: serde_norway::Value = serde_norway::from_str(&text).expect("CloudFormation YAML");
    let mut patterns = Vec::new();
    for (_, resource) in doc["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() == Some("AWS::Events::Rule") {
            patterns.push(resource["Properties"]["EventPattern"].clone());
        }
    }
    let strings = |v: &serde_norway::Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut states = Vec::new();
    let mut calls = Vec::new();
    for p in &patterns {
        match strings(&p["detail-type"]).as_slice() {
            [t] if t == parse::STATE_CHANGE => states.extend(strings(&p["detail"]["state"])),
            [t] if t == parse::API_CALL => calls.extend(strings(&p["detail"]["eventName"])),
            other => panic!("a rule for {other:?}"),
        }
    }
    assert_eq!(states, parse::STATES);
    let mut expected: Vec<&str> = parse::EC2_CALLS
        .iter()
        .chain(&parse::IAM_CALLS)
        .copied()
        .collect();
    expected.sort_unstable();
    calls.sort();
    assert_eq!(calls, expected);
    for other in [
        "deploy/events/events.tf",
        "deploy/events/events-iam-forwarding.cfn.yaml",
    ] {
        let text = std::fs::read_to_string(common::repo().join(other)).expect(other);
        for name in parse::IAM_CALLS {
            assert!(text.contains(name), "{other} lacks {name}");
        }
    }
    let tf = std::fs::read_to_string(common::repo().join("deploy/events/events.tf")).expect("tf");
    for name in parse::EC2_CALLS.iter().chain(&parse::STATES) {
        assert!(
            tf.contains(&format!("\"{name}\"")),
            "events.tf lacks {name}"
        );
    }
}
