//! What every reconcile shares: the engine, the clients, the home account's
//! snapshot, and what the controller remembers of each binding between
//! reconciles (backoff, last write, arrival); and the Events it publishes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use tokio::time::Instant;

use crate::aws::AwsError;
use crate::crd::InstanceProfileBindingSpec;
use crate::metrics::Metrics;
use crate::naming::BindingKey;
use crate::reconcile::cache::{Lookup, SnapshotCache};
use crate::reconcile::nodes::{self, NodeInfo, NodeSelection};
use crate::reconcile::policy::PolicySet;
use crate::reconcile::rivals::RivalsBuilder;
use crate::reconcile::{Backoffs, Engine, Next, Outcome, Reason, Snapshot};

use super::cached::CachedBinding;
use super::watches::PolicyStores;

/// The one field manager of the status, and the reporter of the events.
pub const FIELD_MANAGER: &str = "instance-profile-controller";

/// Everything a reconcile needs.
pub struct Context {
    pub engine: Engine,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub store: Store<CachedBinding>,
    /// This account's snapshot, shared by every binding.
    snapshots: SnapshotCache,
    /// Policies and namespaces, when the policy gate is on.
    gate: Option<PolicyStores>,
    /// Nodes (spec.providerID and labels), with --watch-nodes.
    nodes: Option<Store<Node>>,
    backoffs: Mutex<Backoffs<BindingKey>>,
    last_write: Mutex<HashMap<BindingKey, Instant>>,
    arrivals: Mutex<Arrivals>,
}

impl Context {
    #[must_use]
    pub fn new(
        engine: Engine,
        client: Client,
        metrics: Arc<Metrics>,
        store: Store<CachedBinding>,
        snapshot_max_age: Duration,
        reporter_instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: reporter_instance,
        };
        Self {
            engine,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            store,
            snapshots: SnapshotCache::new(Some(snapshot_max_age)),
            gate: None,
            nodes: None,
            backoffs: Mutex::new(Backoffs::default()),
            last_write: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Arrivals::default()),
        }
    }

    /// Turns the policy gate on (`Some`), reading policies and namespaces from these stores.
    #[must_use]
    pub(super) fn with_gate(self, gate: Option<PolicyStores>) -> Self {
        Self { gate, ..self }
    }

    /// Resolves nodeSelector from this Node cache (--watch-nodes).
    #[must_use]
    pub(super) fn with_nodes(self, nodes: Option<Store<Node>>) -> Self {
        Self { nodes, ..self }
    }

    /// What a binding's nodeSelector selects now. Without --watch-nodes,
    /// every node it would select is unknown: an empty selection that says so.
    pub(super) fn node_selection(
        &self,
        namespace: &str,
        spec: &InstanceProfileBindingSpec,
        policies: Option<&PolicySet>,
    ) -> Option<NodeSelection> {
        let selector = spec.instances.node_selector.as_ref()?;
        let Some(store) = &self.nodes else {
            return Some(NodeSelection {
                unwatched: true,
                ..NodeSelection::default()
            });
        };
        let nodes: Vec<NodeInfo> = store
            .state()
            .iter()
            .map(|n| NodeInfo {
                name: n.name_any(),
                labels: n.labels().clone(),
                provider_id: n.spec.as_ref().and_then(|s| s.provider_id.clone()),
            })
            .collect();
        let allow = policies.is_some_and(|p| p.allows_managed_nodes(namespace));
        Some(nodes::select(selector, &nodes, allow))
    }

    /// The policies in force now (`None`: gate off).
    pub(super) fn policy_set(&self) -> Option<Arc<PolicySet>> {
        let gate = self.gate.as_ref()?;
        Some(Arc::new(PolicySet::from_stores(
            &gate.policies,
            &gate.namespaces,
        )))
    }

    /// A snapshot of this account taken after `fresher_than` (when given),
    /// listing every binding's path; bindings reconciling together share one.
    ///
    /// # Errors
    /// AWS errors of the refresh.
    pub(super) async fn snapshot(
        &self,
        fresher_than: Option<Instant>,
    ) -> Result<Arc<Snapshot>, AwsError> {
        // Every binding's path is listed at each refresh, so nobody needs more.
        let refresh = match self.snapshots.lookup(fresher_than, &BTreeSet::new()).await {
            Lookup::Fresh(s) => return Ok(s),
            Lookup::Stale(refresh) => refresh,
        };
        // One binding's spec decoded at a time: the cache holds them compact.
        let mut paths = self.engine.snapshot_paths([]);
        let mut rivals = RivalsBuilder::default();
        for b in self.store.state() {
            let Some(spec) = b.spec() else {
                continue;
            };
            paths.insert(self.engine.config.path_for(&spec));
            // Bindings being deleted are nobody's rival: their selection is going.
            if b.metadata.deletion_timestamp.is_some() {
                continue;
            }
            if let Some(key) = key_of(&b) {
                rivals.add_spec(key, &spec);
            }
        }
        let rivals = Arc::new(rivals.build());
        refresh.take(&self.engine.aws, paths, rivals).await
    }

    /// This account's shared snapshot (the event queue patches it).
    pub(super) fn snapshot_cache(&self) -> &SnapshotCache {
        &self.snapshots
    }

    /// When a reconcile of `key` last changed AWS: its next snapshot is
    /// newer, so it reads what it wrote.
    pub(super) fn last_write(&self, key: &BindingKey) -> Option<Instant> {
        self.last_write
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
    }

    /// When this process first saw `key` at `generation`.
    pub(super) fn arrival(&self, key: &BindingKey, generation: Option<i64>) -> Instant {
        let now = Instant::now();
        self.arrivals
            .lock()
            .map_or(now, |mut a| a.first_seen(&self.store, key, generation, now))
    }

    /// Notes that a reconcile of `key` changed AWS just now.
    pub(super) fn wrote(&self, key: &BindingKey) {
        if let Ok(mut m) = self.last_write.lock() {
            m.insert(key.clone(), Instant::now());
        }
    }

    /// When to look at `key` again, after its backoff when it failed.
    pub(super) fn requeue(&self, key: &BindingKey, next: Next) -> Action {
        let delay = self
            .backoffs
            .lock()
            .ok()
            .and_then(|mut b| b.next(key, next));
        delay.map_or_else(Action::await_change, Action::requeue)
    }

    /// Drops what is remembered of a binding that is gone.
    pub(super) fn forget(&self, key: &BindingKey) {
        self.metrics.set_binding_reason(&key.to_string(), None);
        self.engine.forget(key);
        if let Ok(mut b) = self.backoffs.lock() {
            b.forget(key);
        }
        if let Ok(mut m) = self.last_write.lock() {
            m.remove(key);
        }
    }

    pub(super) async fn publish(
        &self,
        b: &CachedBinding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &b.object_ref(&())).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
    }

    /// Normal events for actions taken, a Warning when the Ready reason turns bad.
    pub(super) async fn report_events(&self, b: &CachedBinding, outcome: &Outcome) {
        for a in &outcome.actions {
            self.publish(b, EventType::Normal, a.reason.as_str(), a.message.clone())
                .await;
        }
        for (reason, message) in &outcome.notices {
            self.publish(b, EventType::Warning, reason.as_str(), message.clone())
                .await;
        }
        for (account, usage) in self.engine.quota.known().await {
            self.metrics
                .set_profile_usage(&account, usage.used, usage.quota);
        }
        let changed = b
            .status
            .as_ref()
            .is_none_or(|r| !r.ready_says(outcome.reason.as_str(), &outcome.message));
        if !outcome.ready() && changed && outcome.reason != Reason::Reconciling {
            let type_ = if outcome.reason == Reason::PropagationPending {
                EventType::Normal
            } else {
                EventType::Warning
            };
            self.publish(b, type_, outcome.reason.as_str(), outcome.message.clone())
                .await;
        }
    }
}

/// When this process first saw each binding's current generation, from scans
/// of the store at most every 100 ms: no later than the first reconcile of it,
/// so bindings that arrive together share one snapshot taken after them all.
#[derive(Default)]
struct Arrivals {
    scanned: Option<Instant>,
    /// binding → (generation, first seen)
    seen: HashMap<BindingKey, (Option<i64>, Instant)>,
}

impl Arrivals {
    /// When `key` was first seen at `generation`: by a scan of `store` (made
    /// again when the last is over 100 ms old), else `now`.
    fn first_seen(
        &mut self,
        store: &Store<CachedBinding>,
        key: &BindingKey,
        generation: Option<i64>,
        now: Instant,
    ) -> Instant {
        if self
            .scanned
            .is_none_or(|t| now.duration_since(t) > Duration::from_millis(100))
        {
            self.scan(store, now);
        }
        match self.seen.get(key) {
            Some((g, at)) if *g == generation => *at,
            _ => {
                self.seen.insert(key.clone(), (generation, now));
                now
            }
        }
    }

    /// Notes every binding in `store`: a generation seen before keeps its
    /// time, a new one is seen `now`; bindings gone are forgotten.
    fn scan(&mut self, store: &Store<CachedBinding>, now: Instant) {
        let mut seen = HashMap::with_capacity(self.seen.len());
        for b in store.state() {
            let Some(k) = key_of(&b) else {
                continue;
            };
            let g = b.metadata.generation;
            let at = match self.seen.get(&k) {
                Some((old, at)) if *old == g => *at,
                _ => now,
            };
            seen.insert(k, (g, at));
        }
        self.seen = seen;
        self.scanned = Some(now);
    }
}

/// A binding's key; `None` without a namespace or a name.
pub(super) fn key_of(b: &CachedBinding) -> Option<BindingKey> {
    Some(BindingKey {
        namespace: b.metadata.namespace.clone()?,
        name: b.metadata.name.clone()?,
    })
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn binding(name: &str, generation: i64) -> CachedBinding {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.instanceprofile.dev/v1alpha1",
            "kind": "InstanceProfileBinding",
            "metadata": {"namespace": "team-a", "name": name, "generation": generation},
            "spec": {"role": "web-app", "instances": {"ids": ["i-0123456789abcdef0"]}},
        }))
        .expect("a binding")
    }

    fn key(name: &str) -> BindingKey {
        BindingKey {
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_generation_arrives_once() {
        let (store, mut writer) = reflector::store::<CachedBinding>();
        writer.apply_watcher_event(&watcher::Event::Apply(binding("web", 1)));
        let mut arrivals = Arrivals::default();
        let t0 = Instant::now();
        let later = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(arrivals.first_seen(&store, &key("web"), Some(1), t0), t0);
        // Scanned again a second later: still first seen at t0.
        assert_eq!(
            arrivals.first_seen(&store, &key("web"), Some(1), later(1)),
            t0
        );
        writer.apply_watcher_event(&watcher::Event::Apply(binding("web", 2)));
        assert_eq!(
            arrivals.first_seen(&store, &key("web"), Some(2), later(2)),
            later(2)
        );
        // Not in the store (yet): seen now, and remembered until the next scan.
        assert_eq!(
            arrivals.first_seen(&store, &key("db"), Some(1), later(2)),
            later(2)
        );
        assert_eq!(
            arrivals.first_seen(&store, &key("db"), Some(1), later(2)),
            later(2)
        );
    }
}
