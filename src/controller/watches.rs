//! What the controller watches: bindings, cached without what it never reads;
//! with the policy gate on, policies and namespaces in caches of their own,
//! whose changes re-queue the bindings they may affect; and the resync ticks.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSpec};
use kube::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use crate::crd::InstanceProfilePolicy;

use super::cached::CachedBinding;

/// The cache of bindings, and the stream of their changes that drives the
/// controller. The cache holds bindings in their compact form
/// ([`CachedBinding`]), without what the controller never reads
/// (managedFields, kubectl's last-applied copy).
pub fn bindings(
    api: Api<CachedBinding>,
) -> (
    Store<CachedBinding>,
    impl Stream<Item = Result<CachedBinding, watcher::Error>> + Send + 'static,
) {
    let (store, writer) = reflector::store::<CachedBinding>();
    let trigger = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects();
    (store, trigger)
}

/// Drops the fields of a binding the controller never reads from its cache
/// (managedFields alone are about half of an object; labels and annotations,
/// kubectl's last-applied copy among them, can be as large again). The
/// resourceVersion goes too: the watcher has read it already, and without
/// it each reference to the binding (cache keys, the work queue) is one
/// string shorter.
fn slim(b: &mut CachedBinding) {
    let m = &mut b.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.labels = None;
    m.owner_references = None;
    m.creation_timestamp = None;
    m.resource_version = None;
}

/// The caches the policy gate reads: every policy, and every namespace's labels.
pub struct PolicyStores {
    pub policies: Store<InstanceProfilePolicy>,
    pub namespaces: Store<Namespace>,
}

impl PolicyStores {
    /// Starts both caches and waits until both have listed.
    ///
    /// # Errors
    /// Not listed within 60 s (RBAC, most likely).
    pub async fn start(
        policies: Api<InstanceProfilePolicy>,
        namespaces: Api<Namespace>,
    ) -> crate::Result<Self> {
        let (policy_store, policy_writer) = reflector::store::<InstanceProfilePolicy>();
        let (ns_store, ns_writer) = reflector::store::<Namespace>();
        tokio::spawn(
            reflector::reflector(
                policy_writer,
                watcher::watcher(policies, watcher::Config::default())
                    .modify(|p| p.metadata.managed_fields = None),
            )
            .default_backoff()
            .for_each(|_| async {}),
        );
        tokio::spawn(
            reflector::reflector(
                ns_writer,
                watcher::watcher(namespaces, watcher::Config::default()).modify(|n| {
                    n.metadata.managed_fields = None;
                    n.metadata.annotations = None;
                    n.spec = None;
                    n.status = None;
                }),
            )
            .default_backoff()
            .for_each(|_| async {}),
        );
        let (a, b) = (policy_store.wait_until_ready(), ns_store.wait_until_ready());
        if tokio::time::timeout(Duration::from_secs(60), async {
            a.await.is_ok() && b.await.is_ok()
        })
        .await
            != Ok(true)
        {
            return Err(crate::Error::Kube("could not read InstanceProfilePolicies and Namespaces within 60 s (check RBAC: list/watch on both)".into()));
        }
        Ok(Self {
            policies: policy_store,
            namespaces: ns_store,
        })
    }
}

/// Re-queues the bindings a change may affect (seconds, not a resync): every
/// binding on a policy change, a namespace's bindings on a change of it.
pub fn requeue_on_gate_changes(
    controller: Controller<CachedBinding>,
    policies: Api<InstanceProfilePolicy>,
    namespaces: Api<Namespace>,
    bindings: &Store<CachedBinding>,
) -> Controller<CachedBinding> {
    let all = bindings.clone();
    let in_ns = bindings.clone();
    controller
        .watches(
            policies,
            watcher::Config::default(),
            move |_: InstanceProfilePolicy| {
                all.state()
                    .iter()
                    .map(|b| ObjectRef::from_obj(&**b))
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            namespaces,
            watcher::Config::default(),
            move |ns: Namespace| {
                let name = ns.metadata.name.unwrap_or_default();
                in_ns
                    .state()
                    .iter()
                    .filter(|b| b.metadata.namespace.as_deref() == Some(name.as_str()))
                    .map(|b| ObjectRef::from_obj(&**b))
                    .collect::<Vec<_>>()
            },
        )
}

/// The Node cache nodeSelector is resolved from (--watch-nodes): names,
/// labels and `spec.providerID` only. Waits until it has listed.
///
/// # Errors
/// Not listed within 60 s (RBAC: get/list/watch on nodes, most likely).
pub async fn node_store(nodes: Api<Node>) -> crate::Result<Store<Node>> {
    let (store, writer) = reflector::store::<Node>();
    tokio::spawn(
        reflector::reflector(
            writer,
            watcher::watcher(nodes, watcher::Config::default()).modify(slim_node),
        )
        .default_backoff()
        .for_each(|_| async {}),
    );
    match tokio::time::timeout(Duration::from_secs(60), store.wait_until_ready()).await {
        Ok(Ok(())) => Ok(store),
        _ => Err(crate::Error::Kube(
            "could not read Nodes within 60 s (--watch-nodes needs get/list/watch on nodes: the chart's nodeSelection.enabled grants it)".into(),
        )),
    }
}

/// Keeps what nodeSelector reads of a Node.
fn slim_node(n: &mut Node) {
    n.metadata.managed_fields = None;
    n.metadata.annotations = None;
    n.status = None;
    if let Some(spec) = n.spec.as_mut() {
        *spec = NodeSpec {
            provider_id: spec.provider_id.take(),
            ..NodeSpec::default()
        };
    }
}

/// Re-queues the bindings with a nodeSelector when a Node changes, so a new
/// node is associated within seconds of registering.
pub fn requeue_on_node_changes(
    controller: Controller<CachedBinding>,
    nodes: Api<Node>,
    bindings: &Store<CachedBinding>,
) -> Controller<CachedBinding> {
    let with_selector = bindings.clone();
    controller.watches(nodes, watcher::Config::default(), move |_: Node| {
        with_selector
            .state()
            .iter()
            .filter(|b| b.selects_nodes())
            .map(|b| ObjectRef::from_obj(&**b))
            .collect::<Vec<_>>()
    })
}

/// A tick every `interval`, the first one `interval` from now: AWS changes
/// produce no watch events, so every binding is passed again (design.md §3 step 10).
pub fn resync_ticks(interval: Duration) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(
        tokio::time::interval_at(Instant::now() + interval, interval),
        |mut interval| async move {
            interval.tick().await;
            Some(((), interval))
        },
    )
}
