//! The event queue's side of `run` (`--event-queue`): what the consumer
//! reads of the controller, and the stream of bindings it requeues.

use std::sync::Arc;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::crd::InstanceProfileBinding;
use crate::events::route::{Bindings, BindingsBuilder};
use crate::events::{Cluster, Consumer};
use crate::reconcile::cache::SnapshotCache;
use crate::server::Detail;

use super::cached::CachedBinding;
use super::context::{Context, key_of};

impl Cluster for Context {
    fn bindings(&self) -> Bindings {
        // One spec decoded at a time: the cache holds them compact.
        let mut out = BindingsBuilder::default();
        for b in self.store.state() {
            let (Some(key), Some(spec)) = (key_of(&b), b.spec()) else {
                continue;
            };
            let profile = self.engine.profile_name(&key);
            out.add_spec(key, &spec, profile);
        }
        out.build()
    }

    fn snapshots(&self) -> &SnapshotCache {
        self.snapshot_cache()
    }

    fn assumed_roles(&self) -> Vec<String> {
        self.policy_set()
            .map(|p| {
                p.policies
                    .iter()
                    .filter_map(|(_, spec)| Some(spec.account.as_ref()?.assume_role_arn.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Starts consuming `queue` for `ctx`'s bindings: the task (abort it when the
/// controller stops) and the bindings to reconcile, for `reconcile_on`.
pub fn start(
    ctx: Arc<Context>,
    queue: String,
    detail: Arc<Detail>,
) -> (
    tokio::task::JoinHandle<()>,
    impl Stream<Item = ObjectRef<CachedBinding>> + Send + 'static,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let consumer = Consumer {
        aws: ctx.engine.aws.clone(),
        metrics: ctx.metrics.clone(),
        cluster: ctx,
        queue,
        detail,
        requeue: tx,
    };
    let task = tokio::spawn(consumer.run());
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|r: ObjectRef<InstanceProfileBinding>| {
            let mut cached = ObjectRef::<CachedBinding>::new(&r.name);
            cached.namespace = r.namespace;
            (cached, rx)
        })
    });
    (task, stream)
}
