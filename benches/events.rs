//! Event latency benchmark (issue #17): how long after its EC2 state-change
//! event reaches the queue a new instance is associated, for 10 and 100
//! instances launched at once. The release binary runs `run --event-queue`
//! with a 10-minute resync against moto (SQS included) behind the fault
//! proxy and a real kube-apiserver; the events are put on the queue as
//! EventBridge would (pending, then running, per instance). Prints a
//! Markdown table: p50, p99 and max from event to association, and the AWS
//! calls the events cost. It asserts nothing; tests/events.rs holds the
//! bounds.
//!
//! ```sh
//! cargo bench --bench events -- --launches 10,100
//! ```
//!
//! Needs moto (`$MOTO_SERVER` or `.venv/bin/moto_server`) and the API server
//! (`KUBEBUILDER_ASSETS`, ../shared/kube/install.sh).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use instance_profile_controller::crd::InstanceProfileBinding;
use kube::Api;
use kube::api::PostParams;

const ACCOUNT: &str = "123456789012";

fn launches() -> Result<Vec<usize>, String> {
    let mut out = vec![10, 100];
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--bench" => {}
            "--launches" => {
                let v = args.next().ok_or("--launches needs a value")?;
                out = v
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|e| format!("--launches {v}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(out)
}

fn state_change(id: usize, instance: &str, state: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("bench-{state}-{id}-{instance}"),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": ACCOUNT,
        "time": jiff::Timestamp::now().to_string(),
        "region": common::REGION,
        "resources": [format!("arn:aws:ec2:{}:{ACCOUNT}:instance/{instance}", common::REGION)],
        "detail": {"instance-id": instance, "state": state},
    })
    .to_string()
}

/// The `q`-quantile of sorted `v` (nearest rank).
fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let sizes = match launches() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if common::moto_server_bin().is_none() {
        eprintln!("moto_server not found: bash scripts/python-env.sh");
        std::process::exit(2);
    }
    let assets = match common::kube::prerequisites() {
        Ok(a) => a,
        Err(why) => {
            eprintln!("no API server: {why}");
            std::process::exit(2);
        }
    };
    let cluster = common::kube::RealCluster::start(&assets);
    cluster.install_crds();
    let out = cluster.kubectl(&["create", "namespace", "bench"]);
    assert!(out.ok, "{out:?}");
    let aws = common::Aws::start().await;
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(common::REGION))
        .endpoint_url(format!("http://127.0.0.1:{}", aws.moto_port))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "bench",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = sqs
        .create_queue()
        .queue_name("ipb-events-bench")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    aws.create_role("bench-app", common::TRUST_EC2).await;
    let port = common::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let _run = common::run_controller(
        &cluster.kubeconfig,
        &aws,
        &[
            "--metrics-addr",
            &metrics,
            "--resync-interval",
            "10m",
            "--require-policy",
            "false",
            "--no-leader-election",
            "--event-queue",
            "ipb-events-bench",
        ],
        &[],
    );
    let api: Api<InstanceProfileBinding> = Api::namespaced(cluster.client().await, "bench");
    let mut rows = Vec::new();
    for (round, n) in sizes.iter().copied().enumerate() {
        let tag = format!("launch-{round}");
        // One instance first, so the profile exists and the binding is Ready.
        let first = aws.run_instances(1, &[("app", &tag)]).await;
        let name = format!("web-{round}");
        let b: InstanceProfileBinding = serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.instanceprofile.dev/v1alpha1",
            "kind": "InstanceProfileBinding",
            "metadata": {"name": name, "namespace": "bench"},
            "spec": {"role": "bench-app", "instances": {"tags": {"app": tag}}},
        }))
        .expect("binding");
        api.create(&PostParams::default(), &b)
            .await
            .expect("create binding");
        let start = Instant::now();
        while !aws.all_associations().await.contains_key(&first[0]) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "binding never associated"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        aws.reset_calls();

        // n instances at once, then their events: pending, then running.
        let ids = aws
            .run_instances(i32::try_from(n).unwrap_or(i32::MAX), &[("app", &tag)])
            .await;
        let mut sent: BTreeMap<String, Instant> = BTreeMap::new();
        for state in ["pending", "running"] {
            for chunk in ids.chunks(10) {
                let mut batch = sqs.send_message_batch().queue_url(&queue);
                for (i, id) in chunk.iter().enumerate() {
                    batch = batch.entries(
                        SendMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message_body(state_change(round, id, state))
                            .build()
                            .expect("entry"),
                    );
                }
                batch.send().await.expect("send events");
                let now = Instant::now();
                for id in chunk {
                    sent.entry(id.clone()).or_insert(now);
                }
            }
        }
        let mut done: BTreeMap<String, Instant> = BTreeMap::new();
        let start = Instant::now();
        while done.len() < ids.len() && start.elapsed() < Duration::from_secs(300) {
            let now = Instant::now();
            for id in aws.all_associations().await.keys() {
                if sent.contains_key(id) {
                    done.entry(id.clone()).or_insert(now);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut latencies: Vec<Duration> = done
            .iter()
            .filter_map(|(id, at)| Some(at.saturating_duration_since(*sent.get(id)?)))
            .collect();
        latencies.sort();
        let calls = common::calls_by_action(&aws.calls());
        let count = |a: &str| calls.get(a).map_or(0, |c| c.0 + c.1);
        rows.push(format!(
            "| {n} | {}/{n} | {} | {} | {} | {} | {} | {} |",
            latencies.len(),
            ms(quantile(&latencies, 0.5)),
            ms(quantile(&latencies, 0.99)),
            ms(latencies.last().copied().unwrap_or_default()),
            count("DescribeInstances"),
            count("DescribeIamInstanceProfileAssociations"),
            count("AssociateIamInstanceProfile"),
        ));
    }
    println!();
    println!(
        "| concurrent launches | associated | p50 event→association | p99 | max | DescribeInstances | DescribeIamInstanceProfileAssociations | AssociateIamInstanceProfile |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
    println!(
        "Without --event-queue a new instance waits for the next resync: up to --resync-interval (default 5 min, 2.5 min on average)."
    );
}
