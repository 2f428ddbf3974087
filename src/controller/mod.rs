//! The `run` controller: a kube-runtime `Controller` over bindings driving the
//! same pipeline as file mode, with a shared AWS snapshot, finalizer, status by
//! server-side apply, events, per-binding backoff, resync and leader election.
//!
//! `run` only wires: preflight, the AWS engine, the health/metrics server, the
//! lease ([`crate::leader`]), the watches ([`watches`]), and the controller
//! that calls [`reconcile`] ([`reconciler`]) with a [`Context`] ([`context`]).

mod cached;
mod context;
mod queue;
mod reconciler;
mod sweep;
mod watches;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::Api;
use kube::api::ListParams;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use tokio::sync::watch;

use crate::aws::Aws;
use crate::cli::{OrphanSweep, RunArgs};
use crate::crd::InstanceProfilePolicy;
use crate::leader::{self, LeaderElector, Leadership};
use crate::metrics::Metrics;
use crate::reconcile::Engine;
use crate::server::{self, ServerState};

pub use cached::{CachedBinding, Recorded};
pub use context::{Context, FIELD_MANAGER};
pub use reconciler::{Error, error_policy, reconcile};
use watches::PolicyStores;

/// Runs the controller until SIGTERM (or lost leadership).
///
/// # Errors
/// Start-up failures with a message saying what to do.
pub async fn run(args: &RunArgs) -> crate::Result<()> {
    let mut config = args.engine.engine_config()?;
    let metrics = Arc::new(Metrics::new());
    let aws = args.engine.connect(metrics.clone()).await;
    if !aws.region_found() {
        return Err(crate::Error::Config(
            "no AWS region configured: set --region or AWS_REGION (the chart's aws.region value), or a region in the AWS profile; EC2 instances and associations are regional".into(),
        ));
    }
    let client = args.kube.client().await.map_err(crate::Error::Kube)?;
    let bindings: Api<CachedBinding> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let policies: Api<InstanceProfilePolicy> = Api::all(client.clone());
    preflight(args, &bindings, &policies, &aws).await?;
    // The account summary (quota headroom) is reused for one resync.
    config.quota_max_age = args.resync_interval.max(Duration::from_secs(1));
    let mut engine = Engine::new(aws, config);
    // A long-running process: read each profile's tags once, then only when
    // the desired tags change.
    engine.tags.remember = true;

    let ready = Arc::new(AtomicBool::new(false));
    let detail = Arc::new(server::Detail::default());
    server::serve(
        args.metrics_addr,
        ServerState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            detail: detail.clone(),
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

    let (store, trigger) = watches::bindings(bindings);
    let mut controller = Controller::for_stream(trigger, store.clone())
        .with_config(ControllerConfig::default().concurrency(args.engine.concurrency));
    let gate = if args.require_policy {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let stores = PolicyStores::start(policies.clone(), namespaces.clone()).await?;
        controller = watches::requeue_on_gate_changes(controller, policies, namespaces, &store);
        Some(stores)
    } else {
        None
    };
    let nodes = if args.watch_nodes {
        let api: Api<Node> = Api::all(client.clone());
        let node_store = watches::node_store(api.clone()).await?;
        controller = watches::requeue_on_node_changes(controller, api, &store);
        Some(node_store)
    } else {
        None
    };
    let resync = args.resync_interval.max(Duration::from_secs(1));
    let ctx = Arc::new(
        Context::new(
            engine,
            client,
            metrics.clone(),
            store,
            (resync / 2).min(Duration::from_secs(60)),
            Some(identity),
        )
        .with_gate(gate)
        .with_nodes(nodes),
    );
    // The event queue is consumed by the leader only: this point is past the lease.
    let consumer = if args.event_queue.is_empty() {
        None
    } else {
        let (task, requeue) = queue::start(ctx.clone(), args.event_queue.clone(), detail.clone());
        controller = controller.reconcile_on(requeue);
        Some(task)
    };
    let sweeper = (!args.orphan_sweep_interval.is_zero()).then(|| {
        tokio::spawn(sweep::run(
            ctx.clone(),
            sweep::Sweep {
                every: args.orphan_sweep_interval,
                delete: args.orphan_sweep == OrphanSweep::Delete,
                grace: args.orphan_grace,
            },
            args.namespace.clone(),
        ))
    });
    tracing::info!(
        namespace = args.namespace.as_deref().unwrap_or("(all)"),
        event_queue = if args.event_queue.is_empty() { "(off)" } else { args.event_queue.as_str() },
        cluster_id = %ctx.engine.config.cluster_id,
        "controller started"
    );
    controller
        .reconcile_all_on(watches::resync_ticks(resync))
        .graceful_shutdown_on(stop(shutdown_rx, lease.as_ref()))
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile error");
            }
        })
        .await;
    for task in [sweeper, consumer].into_iter().flatten() {
        task.abort();
    }
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

/// The CRDs are installed and readable, and AWS credentials are there.
async fn preflight(
    args: &RunArgs,
    bindings: &Api<CachedBinding>,
    policies: &Api<InstanceProfilePolicy>,
    aws: &Aws,
) -> crate::Result<()> {
    if let Err(e) = bindings.list(&ListParams::default().limit(1)).await {
        return Err(crate::Error::Kube(match e {
            kube::Error::Api(ae) if ae.code == 404 => "the InstanceProfileBinding CRD is not installed: run `instance-profile-controller crd | kubectl apply -f -` or install the Helm chart".to_string(),
            other => format!("cannot list InstanceProfileBindings: {other}"),
        }));
    }
    if args.require_policy {
        if let Err(e) = policies.list(&ListParams::default().limit(1)).await {
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
    })
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
