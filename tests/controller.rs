//! Request-level tests of the controller's reconcile (the ApiServerVerifier
//! pattern of kube-rs's controller-rs): a tower-test mock API server answers
//! and records every Kubernetes request, while AWS is a real moto server.

use crate::common;

use std::sync::{Arc, Mutex};

use http::{Request, Response};
use instance_profile_controller::controller::CachedBinding;
use instance_profile_controller::controller::{Context, FIELD_MANAGER, reconcile};
use instance_profile_controller::metrics::Metrics;
use instance_profile_controller::reconcile::{Engine, EngineConfig};
use kube::client::Body;
use kube::{Client, Resource};

/// One request the controller made to the API server.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    content_type: String,
    body: serde_json::Value,
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers requests like an API server would, recording them, until `stop`
/// says so. `on_request` runs before each answer (to look at AWS then).
async fn serve(mut handle: Handle, object: serde_json::Value, seen: Arc<Mutex<Vec<Seen>>>) {
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().to_string();
        let path = request.uri().to_string();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if let Ok(mut s) = seen.lock() {
            s.push(Seen {
                method: method.clone(),
                path: path.clone(),
                content_type,
                body: body.clone(),
            });
        }
        let reply = if path.contains("/events") {
            let mut ev = body.clone();
            ev["metadata"]["resourceVersion"] = "1".into();
            (201, ev)
        } else {
            let mut obj = object.clone();
            if let Some(ops) = body.as_array() {
                // JSON patch of the finalizer list: answer with it applied.
                for op in ops {
                    if op["op"] == "add" && op["path"] == "/metadata/finalizers" {
                        obj["metadata"]["finalizers"] = op["value"].clone();
                    }
                    if op["op"] == "remove" {
                        obj["metadata"]["finalizers"] = serde_json::json!([]);
                    }
                }
            }
            if let Some(status) = body.get("status") {
                obj["status"] = status.clone();
            }
            (200, obj)
        };
        let response = Response::builder()
            .status(reply.0)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&reply.1).unwrap_or_default()))
            .expect("response");
        send.send_response(response);
    }
}

fn binding_json(finalizers: &[&str], deleting: bool, ids: &[String]) -> serde_json::Value {
    let mut metadata = serde_json::json!({
        "name": "web", "namespace": "team-a", "uid": "uid-1", "generation": 1, "resourceVersion": "7",
        "finalizers": finalizers,
    });
    if deleting {
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    }
    serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": metadata,
        "spec": {"role": "web-app", "instances": {"ids": ids}},
    })
}

async fn context(endpoint: &str, client: Client) -> Arc<Context> {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(common::REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    let metrics = Arc::new(Metrics::new());
    let aws = instance_profile_controller::aws::Aws::from_conf(
        &conf,
        Default::default(),
        metrics.clone(),
    );
    let engine = Engine::new(
        aws,
        EngineConfig {
            cluster_id: "test".into(),
            path_prefix: "/ipb/".into(),
            role_cache_ttl: std::time::Duration::from_secs(60),
            assume_role_seconds: 3600,
            profile_quota_reserve: 0,
            quota_max_age: std::time::Duration::from_secs(300),
        },
    );
    let (store, _writer) = kube::runtime::reflector::store::<CachedBinding>();
    Arc::new(Context::new(
        engine,
        client,
        metrics,
        store,
        std::time::Duration::from_secs(30),
        Some("test".into()),
    ))
}

fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

#[tokio::test]
async fn finalizer_is_added_before_any_aws_call() {
    // No AWS at all behind this endpoint: any call would fail and be counted.
    let (client, handle) = mock();
    let obj = binding_json(&[], false, &["i-0123456789abcdef0".to_string()]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, obj.clone(), seen.clone()));
    let ctx = context("http://127.0.0.1:9", client).await;
    let binding: CachedBinding = serde_json::from_value(obj).expect("binding");
    let result = reconcile(Arc::new(binding), ctx.clone()).await;
    assert!(result.is_ok(), "{result:?}");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "PATCH");
    assert!(
        seen[0].path.starts_with(
            "/apis/iam.instanceprofile.dev/v1alpha1/namespaces/team-a/instanceprofilebindings/web"
        ),
        "{seen:?}"
    );
    assert_eq!(seen[0].content_type, "application/json-patch+json");
    assert!(
        seen[0]
            .body
            .to_string()
            .contains("iam.instanceprofile.dev/cleanup"),
        "{seen:?}"
    );
    assert!(
        ctx.engine.aws.calls.snapshot().is_empty(),
        "AWS was called before the finalizer: {:?}",
        ctx.engine.aws.calls.summary()
    );
    server.abort();
}

#[tokio::test]
async fn apply_reports_events_then_status_by_server_side_apply() {
    require_moto!();
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (client, handle) = mock();
    let obj = binding_json(&["iam.instanceprofile.dev/cleanup"], false, &inst);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = tokio::spawn(serve(handle, obj.clone(), seen.clone()));
    let ctx = context(&aws.endpoint(), client).await;
    let binding: CachedBinding = serde_json::from_value(obj).expect("binding");
    let result = reconcile(Arc::new(binding.clone()), ctx).await;
    assert!(result.is_ok(), "{result:?}");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let events: Vec<&Seen> = seen.iter().filter(|s| s.path.contains("/events")).collect();
    let reasons: Vec<&str> = events
        .iter()
        .filter_map(|e| e.body["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"CreatedProfile")
            && reasons.contains(&"AttachedRole")
            && reasons.contains(&"Associated"),
        "{reasons:?}"
    );
    assert!(
        events.iter().all(|e| e.body["type"] == "Normal"),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| e.body["regarding"]["name"] == "web"),
        "{events:?}"
    );
    let status = seen
        .iter()
        .rfind(|s| s.path.contains("/status"))
        .expect("a status patch");
    assert_eq!(status.method, "PATCH");
    assert_eq!(status.content_type, "application/apply-patch+yaml");
    assert!(
        status
            .path
            .contains(&format!("fieldManager={FIELD_MANAGER}"))
            && status.path.contains("force=true"),
        "{}",
        status.path
    );
    assert_eq!(
        status.body["apiVersion"],
        "iam.instanceprofile.dev/v1alpha1"
    );
    assert_eq!(status.body["kind"], "InstanceProfileBinding");
    assert!(
        status.body.get("spec").is_none(),
        "the status patch must carry only the status"
    );
    let s = &status.body["status"];
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(
        s["instanceProfile"]["name"],
        common::profile_name("team-a", "web")
    );
    let ready = s["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert!(
        ready["lastTransitionTime"].is_string() && ready["observedGeneration"] == 1,
        "{ready}"
    );
    // The last status patch comes after every event of this reconcile.
    let last_event = seen
        .iter()
        .rposition(|s| s.path.contains("/events"))
        .unwrap_or(0);
    let status_at = seen
        .iter()
        .rposition(|s| s.path.contains("/status"))
        .unwrap_or(0);
    assert!(last_event < status_at);
    assert!(binding.meta().name.is_some());
    server.abort();
}

#[tokio::test]
async fn finalizer_is_removed_only_after_aws_cleanup() {
    require_moto!();
    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    // Create the binding's AWS resources through file mode first.
    let yaml = common::binding("team-a", "web", "web-app", &common::ids(&inst), "");
    let (_d, file) = common::write_bindings(&yaml);
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = common::profile_name("team-a", "web");
    assert!(aws.profiles().await.contains_key(&name));

    let (client, mut handle) = mock();
    let obj = binding_json(&["iam.instanceprofile.dev/cleanup"], true, &inst);
    let ctx = context(&aws.endpoint(), client).await;
    let binding: CachedBinding = serde_json::from_value(obj.clone()).expect("binding");
    // The API side: answer everything; when the finalizer patch arrives, AWS must be clean.
    let (iam, ec2) = (aws.iam.clone(), aws.ec2.clone());
    let profile = name.clone();
    let server = tokio::spawn(async move {
        let mut removed = None;
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().to_string();
            let is_finalizer_patch = request.method() == "PATCH"
                && !path.contains("/status")
                && !path.contains("/events");
            if is_finalizer_patch {
                let profile_left = iam
                    .get_instance_profile()
                    .instance_profile_name(&profile)
                    .send()
                    .await
                    .is_ok();
                let assoc = ec2
                    .describe_iam_instance_profile_associations()
                    .send()
                    .await
                    .expect("describe");
                removed =
                    Some(!profile_left && assoc.iam_instance_profile_associations().is_empty());
            }
            let mut body = obj.clone();
            if is_finalizer_patch {
                body["metadata"]["finalizers"] = serde_json::json!([]);
            }
            let status = if path.contains("/events") { 201 } else { 200 };
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
                .expect("response");
            send.send_response(response);
            if is_finalizer_patch {
                return removed;
            }
        }
        removed
    });
    // Deletion waits for disassociation to finish: reconcile until it is done.
    let binding = Arc::new(binding);
    let mut done = false;
    for _ in 0..10 {
        if reconcile(binding.clone(), ctx.clone()).await.is_ok() {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(done, "cleanup never finished");
    let removed_after_cleanup = server.await.expect("server task");
    assert_eq!(
        removed_after_cleanup,
        Some(true),
        "the finalizer was removed before AWS was clean (or never)"
    );
    assert!(!aws.profiles().await.contains_key(&name));
}
