//! What every reconcile shares: the engine, the clients, the home account's
//! snapshot, and what the controller remembers of each binding between
//! reconciles (backoff, last write, arrival); and the Events it publishes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use tokio::time::Instant;

use crate::aws::AwsError;
use crate::crd::{InstanceProfileBinding, READY};
use crate::metrics::Metrics;
use crate::naming::BindingKey;
use crate::reconcile::cache::{Lookup, SnapshotCache};
use crate::reconcile::policy::PolicySet;
use crate::reconcile::rivals::Rivals;
use crate::reconcile::{Backoffs, Engine, Next, Outcome, Reason, Snapshot};

use super::watches::PolicyStores;

/// The one field manager of the status, and the reporter of the events.
pub const FIELD_MANAGER: &str = "instance-profile-controller";

/// Everything a reconcile needs.
pub struct Context {
    pub engine: Engine,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub store: Store<InstanceProfileBinding>,
    /// This account's snapshot, shared by every binding.
    snapshots: SnapshotCache,
    /// Policies and namespaces, when the policy gate is on.
    gate: Option<PolicyStores>,
    backoffs: Mutex<Backoffs<BindingKey>>,
    last_write: Mutex<HashMap<BindingKey, Instant>>,
    arrivals: Mutex<Arrivals>,
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

impl Context {
    #[must_use]
    pub fn new(
        engine: Engine,
        client: Client,
        metrics: Arc<Metrics>,
        store: Store<InstanceProfileBinding>,
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
        let bindings = self.store.state();
        let paths = self.engine.snapshot_paths(bindings.iter().map(|b| &b.spec));
        // Bindings being deleted are nobody's rival: their selection is going.
        let rivals = Arc::new(Rivals::of_specs(bindings.iter().filter_map(|b| {
            if b.metadata.deletion_timestamp.is_some() {
                return None;
            }
            Some((
                BindingKey {
                    namespace: b.metadata.namespace.clone()?,
                    name: b.metadata.name.clone()?,
                },
                &b.spec,
            ))
        })));
        drop(bindings);
        refresh.take(&self.engine.aws, paths, rivals).await
    }

    pub(super) fn last_write(&self, key: &BindingKey) -> Option<Instant> {
        self.last_write
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
    }

    /// When this process first saw `key` at `generation`.
    pub(super) fn arrival(&self, key: &BindingKey, generation: Option<i64>) -> Instant {
        let now = Instant::now();
        let Ok(mut a) = self.arrivals.lock() else {
            return now;
        };
        if a.scanned
            .is_none_or(|t| now.duration_since(t) > Duration::from_millis(100))
        {
            let mut seen = HashMap::with_capacity(a.seen.len());
            for b in self.store.state() {
                let (Some(ns), Some(name)) = (&b.metadata.namespace, &b.metadata.name) else {
                    continue;
                };
                let k = BindingKey {
                    namespace: ns.clone(),
                    name: name.clone(),
                };
                let g = b.metadata.generation;
                let at = match a.seen.get(&k) {
                    Some((old, at)) if *old == g => *at,
                    _ => now,
                };
                seen.insert(k, (g, at));
            }
            a.seen = seen;
            a.scanned = Some(now);
        }
        match a.seen.get(key) {
            Some((g, at)) if *g == generation => *at,
            _ => {
                a.seen.insert(key.clone(), (generation, now));
                now
            }
        }
    }

    pub(super) fn wrote(&self, key: &BindingKey) {
        if let Ok(mut m) = self.last_write.lock() {
            m.insert(key.clone(), Instant::now());
        }
    }

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
        b: &InstanceProfileBinding,
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
    pub(super) async fn report_events(&self, b: &InstanceProfileBinding, outcome: &Outcome) {
        for a in &outcome.actions {
            self.publish(b, EventType::Normal, a.reason.as_str(), a.message.clone())
                .await;
        }
        let previous = b
            .status
            .as_ref()
            .and_then(|s| s.condition(READY))
            .map(|c| (c.reason.clone(), c.message.clone()));
        let changed = previous
            .as_ref()
            .is_none_or(|(r, m)| outcome.reason != r.as_str() || m != &outcome.message);
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
