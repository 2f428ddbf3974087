//! The `run` controller: a kube-runtime `Controller` over bindings driving the
//! same pipeline as file mode, with a shared AWS snapshot, finalizer, status by
//! server-side apply, events, per-binding backoff, resync and leader election.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use crate::aws::AwsError;
use crate::cli::RunArgs;
use crate::crd::{
    API_VERSION, DeletionPolicy, FINALIZER, InstanceProfileBinding, InstanceProfileBindingStatus,
    InstanceProfilePolicy,
};
use crate::leader::{self, LeaderElector, Leadership};
use crate::metrics::Metrics;
use crate::naming::BindingKey;
use crate::reconcile::Reason;
use crate::reconcile::cache::{Lookup, SnapshotCache};
use crate::reconcile::policy::PolicySet;
use crate::reconcile::rivals::Rivals;
use crate::reconcile::{Backoffs, BindingInput, Engine, Next, Outcome, Snapshot};
use crate::server::{self, ServerState};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef};

/// The one field manager of the status.
pub const FIELD_MANAGER: &str = "instance-profile-controller";

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("binding has no namespace or name")]
    Unnamed,
    /// Deletion is under way or blocked; the finalizer stays.
    #[error("cleanup not finished: {reason}: {message}")]
    CleanupPending {
        reason: Reason,
        message: String,
        next: Next,
    },
}

impl Error {
    /// The reason label for metrics.
    #[must_use]
    pub fn reason(&self) -> String {
        match self {
            Self::Kube(_) => "KubeError".into(),
            Self::Unnamed => "Unnamed".into(),
            Self::CleanupPending { reason, .. } => reason.to_string(),
        }
    }
}

/// Everything a reconcile needs.
pub struct Context {
    pub engine: Engine,
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub snapshots: SnapshotCache,
    pub store: Store<InstanceProfileBinding>,
    /// Policies and namespaces, when the policy gate is on.
    pub gate: Option<(Store<InstanceProfilePolicy>, Store<Namespace>)>,
    backoffs: Mutex<Backoffs>,
    last_write: Mutex<HashMap<String, Instant>>,
    arrivals: Mutex<Arrivals>,
}

/// When this process first saw each binding's current generation, from scans
/// of the store at most every 100 ms: no later than the first reconcile of it,
/// so bindings that arrive together share one snapshot taken after them all.
#[derive(Default)]
struct Arrivals {
    scanned: Option<Instant>,
    /// key → (generation, first seen)
    seen: HashMap<String, (Option<i64>, Instant)>,
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
            snapshots: SnapshotCache::new(Some(snapshot_max_age)),
            store,
            gate: None,
            backoffs: Mutex::new(Backoffs::default()),
            last_write: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Arrivals::default()),
        }
    }

    /// The policies in force now (`None`: gate off).
    fn policy_set(&self) -> Option<Arc<PolicySet>> {
        let (policies, namespaces) = self.gate.as_ref()?;
        Some(Arc::new(PolicySet::from_stores(policies, namespaces)))
    }

    /// A snapshot of this account taken after `fresher_than` (when given),
    /// listing every binding's path; bindings reconciling together share one.
    ///
    /// # Errors
    /// AWS errors of the refresh.
    async fn snapshot(&self, fresher_than: Option<Instant>) -> Result<Arc<Snapshot>, AwsError> {
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

    fn last_write(&self, key: &str) -> Option<Instant> {
        self.last_write
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
    }

    /// When this process first saw `key` at `generation`.
    fn arrival(&self, key: &str, generation: Option<i64>) -> Instant {
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
                let k = format!("{ns}/{name}");
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
                a.seen.insert(key.to_string(), (generation, now));
                now
            }
        }
    }

    fn wrote(&self, key: &str) {
        if let Ok(mut m) = self.last_write.lock() {
            m.insert(key.to_string(), Instant::now());
        }
    }

    fn requeue(&self, key: &str, next: Next) -> Action {
        let delay = self
            .backoffs
            .lock()
            .ok()
            .and_then(|mut b| b.next(key, next));
        delay.map_or_else(Action::await_change, Action::requeue)
    }

    async fn publish(
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
    async fn report_events(&self, b: &InstanceProfileBinding, outcome: &Outcome) {
        for a in &outcome.actions {
            self.publish(b, EventType::Normal, a.reason.as_str(), a.message.clone())
                .await;
        }
        let previous = b
            .status
            .as_ref()
            .and_then(|s| s.condition("Ready"))
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

    async fn patch_status(
        &self,
        b: &InstanceProfileBinding,
        status: &InstanceProfileBindingStatus,
    ) -> Result<(), Error> {
        let (Some(ns), Some(name)) = (b.metadata.namespace.as_deref(), b.metadata.name.as_deref())
        else {
            return Err(Error::Unnamed);
        };
        let api: Api<InstanceProfileBinding> = Api::namespaced(self.client.clone(), ns);
        let body = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": "InstanceProfileBinding",
            "status": status,
        });
        api.patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        Ok(())
    }
}

fn input(
    b: &InstanceProfileBinding,
    policies: Option<Arc<PolicySet>>,
) -> Result<BindingInput, Error> {
    let key = BindingKey {
        namespace: b.metadata.namespace.clone().ok_or(Error::Unnamed)?,
        name: b.metadata.name.clone().ok_or(Error::Unnamed)?,
    };
    Ok(BindingInput {
        key,
        uid: b.metadata.uid.clone(),
        generation: b.metadata.generation,
        spec: b.spec.clone(),
        previous: b.status.clone(),
        policies,
    })
}

async fn apply(
    b: Arc<InstanceProfileBinding>,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    let input = input(&b, ctx.policy_set())?;
    let key = input.key.to_string();
    // A spec the controller has not seen yet gets a snapshot from after it
    // arrived; a binding that just wrote reads what it wrote.
    let spec_changed =
        b.status.as_ref().and_then(|s| s.observed_generation) != b.metadata.generation;
    let arrived = spec_changed.then(|| ctx.arrival(&key, b.metadata.generation).min(started));
    let fresher_than = [ctx.last_write(&key), arrived].into_iter().flatten().max();
    // AWS unreadable (denied, unreachable): every binding says so in its
    // status and an event, instead of a log line nobody watching it sees.
    let outcome = match ctx.snapshot(fresher_than).await {
        Ok(snapshot) => ctx.engine.reconcile(&input, &snapshot, false).await,
        Err(e) => ctx.engine.unobserved(&input, e),
    };
    if !outcome.actions.is_empty() {
        ctx.wrote(&key);
    }
    ctx.report_events(&b, &outcome).await;
    // A converged binding's status is what it was: no write, so a resync of
    // N converged bindings costs the API server nothing.
    if b.status.as_ref() != Some(&outcome.status) {
        ctx.patch_status(&b, &outcome.status).await?;
    }
    ctx.metrics
        .set_binding_reason(&key, Some(outcome.reason.as_str()));
    Ok(ctx.requeue(&key, outcome.next))
}

async fn cleanup(
    b: Arc<InstanceProfileBinding>,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    // Deletion is not gated: it only removes what an allowed binding made.
    // The policies still travel along: a cross-account binding's external id is theirs.
    let input = input(&b, ctx.policy_set())?;
    let key = input.key.to_string();
    if input.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.publish(
            &b,
            EventType::Normal,
            "Retained",
            "deletionPolicy Retain: instance profile and associations left in AWS".into(),
        )
        .await;
        forget(ctx, &key);
        return Ok(Action::await_change());
    }
    let outcome = match ctx.snapshot(Some(started)).await {
        Ok(snapshot) => ctx.engine.cleanup(&input, &snapshot, false).await,
        Err(e) => ctx.engine.unobserved(&input, e),
    };
    if !outcome.actions.is_empty() {
        ctx.wrote(&key);
    }
    ctx.report_events(&b, &outcome).await;
    // A profile we cannot prove ours is never touched, and does not hold the binding.
    if outcome.deleted || outcome.reason == Reason::ForeignProfileExists {
        forget(ctx, &key);
        return Ok(Action::await_change());
    }
    ctx.patch_status(&b, &outcome.status).await?;
    Err(Error::CleanupPending {
        reason: outcome.reason,
        message: outcome.message,
        next: outcome.next,
    })
}

/// Drops the fields of a binding the controller never reads from its cache
/// (managedFields alone are about half of an object; labels and annotations,
/// kubectl's last-applied copy among them, can be as large again).
fn slim(b: &mut InstanceProfileBinding) {
    let m = &mut b.metadata;
    m.managed_fields = None;
    m.annotations = None;
    m.labels = None;
    m.owner_references = None;
    m.creation_timestamp = None;
}

fn forget(ctx: &Context, key: &str) {
    ctx.metrics.set_binding_reason(key, None);
    if let Some((namespace, name)) = key.split_once('/') {
        ctx.engine.forget(&crate::naming::BindingKey {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    if let Ok(mut b) = ctx.backoffs.lock() {
        b.forget(key);
    }
    if let Ok(mut m) = ctx.last_write.lock() {
        m.remove(key);
    }
}

/// One reconcile: finalizer first, then apply or cleanup.
///
/// # Errors
/// Errors go to [`error_policy`], which requeues with backoff.
pub async fn reconcile(
    b: Arc<InstanceProfileBinding>,
    ctx: Arc<Context>,
) -> Result<Action, kube::runtime::finalizer::Error<Error>> {
    let started = Instant::now();
    let ns = b.metadata.namespace.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", namespace = %ns, name = %b.name_any());
    let api: Api<InstanceProfileBinding> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, FINALIZER, b, |event| async {
        match event {
            FinalizerEvent::Apply(b) => apply(b, &ctx, started).await,
            FinalizerEvent::Cleanup(b) => cleanup(b, &ctx, started).await,
        }
    })
    .instrument(span)
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(_) => "ok".to_string(),
        Err(
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e),
        ) => e.reason(),
        Err(_) => "FinalizerError".to_string(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&crate::metrics::ResultLabels { result: label })
        .inc();
    result
}

/// Requeue after a failed reconcile, with the binding's backoff.
#[must_use]
pub fn error_policy(
    b: Arc<InstanceProfileBinding>,
    err: &kube::runtime::finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    let key = format!(
        "{}/{}",
        b.metadata.namespace.as_deref().unwrap_or_default(),
        b.name_any()
    );
    let next = match err {
        kube::runtime::finalizer::Error::ApplyFailed(Error::CleanupPending { next, .. })
        | kube::runtime::finalizer::Error::CleanupFailed(Error::CleanupPending { next, .. }) => {
            tracing::info!(binding = %key, "{err}");
            *next
        }
        other => {
            tracing::warn!(binding = %key, error = %other, "reconcile failed");
            Next::Backoff(crate::reconcile::BackoffClass::Transient)
        }
    };
    let next = if next == Next::Resync {
        Next::Soon
    } else {
        next
    };
    ctx.requeue(&key, next)
}

async fn shutdown_signal(tx: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight reconciles");
    let _ = tx.send(true);
}

/// Runs the controller until SIGTERM (or lost leadership).
///
/// # Errors
/// Start-up failures with a message saying what to do.
pub async fn run(args: &RunArgs) -> crate::Result<()> {
    let config = args.engine.engine_config()?;
    let metrics = Arc::new(Metrics::new());
    let aws = args.engine.connect(metrics.clone()).await;
    if !aws.region_found() {
        return Err(crate::Error::Config(
            "no AWS region configured: set --region or AWS_REGION (the chart's aws.region value), or a region in the AWS profile; EC2 instances and associations are regional".into(),
        ));
    }
    let client = args.kube.client().await.map_err(crate::Error::Kube)?;
    let bindings: Api<InstanceProfileBinding> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = bindings.list(&ListParams::default().limit(1)).await {
        return Err(crate::Error::Kube(match e {
            kube::Error::Api(ae) if ae.code == 404 => "the InstanceProfileBinding CRD is not installed: run `instance-profile-controller crd | kubectl apply -f -` or install the Helm chart".to_string(),
            other => format!("cannot list InstanceProfileBindings: {other}"),
        }));
    }
    let policies_api: Api<InstanceProfilePolicy> = Api::all(client.clone());
    if args.require_policy {
        if let Err(e) = policies_api.list(&ListParams::default().limit(1)).await {
            return Err(crate::Error::Kube(match e {
                kube::Error::Api(ae) if ae.code == 404 => "the InstanceProfilePolicy CRD is not installed (needed by --require-policy): run `instance-profile-controller crd | kubectl apply -f -` or install the Helm chart".to_string(),
                other => format!("cannot list InstanceProfilePolicies: {other}"),
            }));
        }
    } else {
        tracing::warn!(
            "--require-policy=false: the policy gate is off and any namespace may bind any role to any instance; use this only in single-tenant clusters"
        );
    }
    aws.check_credentials().await.map_err(|e| {
        crate::Error::Config(format!(
            "no AWS credentials: {e}; configure IRSA, EKS Pod Identity, AWS_* environment variables or a profile"
        ))
    })?;
    let mut engine = Engine::new(aws, config);
    // A long-running process: read each profile's tags once, then only when
    // the desired tags change.
    engine.remember_tags = true;

    let ready = Arc::new(AtomicBool::new(false));
    server::serve(
        args.metrics_addr,
        ServerState {
            metrics: metrics.clone(),
            ready: ready.clone(),
        },
    )
    .await
    .map_err(|e| crate::Error::Config(format!("--metrics-addr {}: {e}", args.metrics_addr)))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(shutdown_signal(shutdown_tx));
    if args.no_leader_election {
        tracing::warn!("running without leader election: only one replica may run");
    }

    let identity = leader::identity();
    // A standby replica is healthy and ready; it just does not reconcile.
    ready.store(true, Ordering::Relaxed);
    let lease = if args.no_leader_election {
        None
    } else {
        let elector = LeaderElector::new(
            client.clone(),
            &leader::lease_namespace(args.lease_namespace.as_deref()),
            &args.lease_name,
            &identity,
            args.lease_duration,
        );
        let Some(lease) = leader::hold(elector, shutdown_rx.clone()).await else {
            return Ok(());
        };
        metrics.leader.set(1);
        Some(lease)
    };

    // The cache holds bindings without what the controller never reads
    // (managedFields, kubectl's last-applied copy): about half of each object.
    let (store, writer) = reflector::store::<InstanceProfileBinding>();
    let trigger = watcher::watcher(bindings, watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .applied_objects();
    let mut controller = Controller::for_stream(trigger, store.clone())
        .with_config(ControllerConfig::default().concurrency(args.engine.concurrency));
    let gate = if args.require_policy {
        // Stores to read policies and namespace labels from, and triggers that
        // re-queue the bindings a change may affect (seconds, not a resync).
        let (policy_store, policy_writer) = reflector::store::<InstanceProfilePolicy>();
        let (ns_store, ns_writer) = reflector::store::<Namespace>();
        let namespaces_api: Api<Namespace> = Api::all(client.clone());
        tokio::spawn(
            reflector::reflector(
                policy_writer,
                watcher::watcher(policies_api.clone(), watcher::Config::default())
                    .modify(|p| p.metadata.managed_fields = None),
            )
            .default_backoff()
            .for_each(|_| async {}),
        );
        tokio::spawn(
            reflector::reflector(
                ns_writer,
                watcher::watcher(namespaces_api.clone(), watcher::Config::default()).modify(|n| {
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
        let all = store.clone();
        controller = controller.watches(
            policies_api,
            watcher::Config::default(),
            move |_: InstanceProfilePolicy| {
                all.state()
                    .iter()
                    .map(|b| ObjectRef::from_obj(&**b))
                    .collect::<Vec<_>>()
            },
        );
        let in_ns = store.clone();
        controller = controller.watches(
            namespaces_api,
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
        );
        Some((policy_store, ns_store))
    } else {
        None
    };
    let resync = args.resync_interval.max(Duration::from_secs(1));
    let ticks = futures::stream::unfold(
        tokio::time::interval_at(Instant::now() + resync, resync),
        |mut interval| async move {
            interval.tick().await;
            Some(((), interval))
        },
    );
    let mut ctx = Context::new(
        engine,
        client.clone(),
        metrics.clone(),
        store,
        (resync / 2).min(Duration::from_secs(60)),
        Some(identity.clone()),
    );
    ctx.gate = gate;
    let ctx = Arc::new(ctx);
    tracing::info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        cluster_id = %ctx.engine.config.cluster_id,
        "controller started"
    );
    controller
        .reconcile_all_on(ticks)
        .graceful_shutdown_on(stop(shutdown_rx, lease.as_ref()))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
    metrics.leader.set(0);
    match lease {
        Some(lease) if lease.is_lost() => Err(crate::Error::Kube(
            "leadership lost; exiting so a fresh start can rejoin the election".into(),
        )),
        Some(lease) => {
            lease.release().await;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Resolves on shutdown, or when the lease is lost.
fn stop(
    mut shutdown: watch::Receiver<bool>,
    lease: Option<&Leadership>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let lost = lease.map(Leadership::lost);
    async move {
        let lost = async {
            match lost {
                Some(lost) => lost.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => {},
            () = lost => {},
        }
    }
}
