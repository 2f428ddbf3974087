//! The orphan sweep (`--orphan-sweep-interval`): every interval, the leader
//! looks for profiles of this cluster id whose binding is gone
//! (`reconcile::orphans`), reports them (a gauge, a log line each when first
//! seen) and, with `--orphan-sweep=delete`, deletes those seen for longer
//! than `--orphan-grace` through a binding's safe deletion path. A profile
//! without our tags, of another cluster id, kept by `deletionPolicy: Retain`
//! or still used by an instance we do not manage (`DeletionBlocked`) is never
//! deleted.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use tokio::time::Instant;

use crate::aws::assume::AssumeTarget;
use crate::crd::InstanceProfileBinding;
use crate::naming::BindingKey;
use crate::reconcile::Snapshot;
use crate::reconcile::orphans::{self, Orphan};

use super::context::Context;

/// How the sweep runs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sweep {
    pub every: Duration,
    pub delete: bool,
    pub grace: Duration,
}

/// Sweeps every `sweep.every` until the process ends (the task is aborted
/// with the controller). With `-n`, only orphans of that namespace are
/// judged: the controller may not read the others.
pub(super) async fn run(ctx: Arc<Context>, sweep: Sweep, namespace: Option<String>) {
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut ticks = tokio::time::interval_at(Instant::now() + sweep.every, sweep.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        once(&ctx, sweep, namespace.as_deref(), &mut first_seen).await;
    }
}

async fn once(
    ctx: &Context,
    sweep: Sweep,
    namespace: Option<&str>,
    first_seen: &mut HashMap<String, Instant>,
) {
    let engine = &ctx.engine;
    // Which bindings exist, asked of the API server itself (metadata only):
    // a cache that has not filled yet must not make every profile look
    // orphaned.
    let api: Api<InstanceProfileBinding> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let bindings = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            tracing::warn!(error = %e, "orphan sweep: listing the bindings failed");
            return;
        }
    };
    let kept: BTreeSet<String> = bindings
        .iter()
        .map(|b| {
            engine.profile_name(&BindingKey {
                namespace: b.namespace().unwrap_or_default(),
                name: b.name_any(),
            })
        })
        .collect();
    let policies = ctx.policy_set();
    tracing::debug!(bindings = kept.len(), "orphan sweep");
    let mut found: Vec<(Orphan, Option<AssumeTarget>)> = Vec::new();
    match orphans::find(engine, &engine.aws, &kept).await {
        Ok(list) => found.extend(list.into_iter().map(|o| (o, None))),
        Err(e) => {
            tracing::warn!(error = %e, "orphan sweep: listing this account's profiles failed");
            return;
        }
    }
    for target in orphans::other_accounts(policies.as_deref()) {
        let account = engine.accounts.get(&target);
        match orphans::find(engine, &account.aws, &kept).await {
            Ok(list) => found.extend(list.into_iter().map(|o| (o, Some(target.clone())))),
            Err(e) => {
                tracing::warn!(error = %e, account = target.account_id(), "orphan sweep: listing the account's profiles failed");
            }
        }
    }
    found.retain(|(o, _)| namespace.is_none_or(|ns| o.owner.namespace == ns));
    ctx.metrics
        .orphaned_profiles
        .set(i64::try_from(found.len()).unwrap_or(i64::MAX));
    let now = Instant::now();
    first_seen.retain(|name, _| found.iter().any(|(o, _)| &o.name == name));
    for (orphan, account) in &found {
        let seen = *first_seen.entry(orphan.name.clone()).or_insert_with(|| {
            tracing::warn!(
                profile = %orphan.name,
                binding = %orphan.owner,
                retained = orphan.retained,
                "orphaned instance profile: its binding is gone"
            );
            now
        });
        if !sweep.delete || orphan.retained || now.duration_since(seen) < sweep.grace {
            continue;
        }
        let input = orphans::cleanup_input(orphan, account.as_ref(), policies.clone());
        let paths = BTreeSet::from([orphan.path.clone()]);
        let snapshot = match Snapshot::take(&engine.aws, &paths).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, profile = %orphan.name, "orphan sweep: reading AWS failed");
                continue;
            }
        };
        let outcome = engine.cleanup(&input, &snapshot, false).await;
        if outcome.deleted {
            ctx.metrics.orphans_deleted.inc();
            tracing::info!(profile = %orphan.name, binding = %orphan.owner, "deleted orphaned instance profile");
        } else {
            tracing::warn!(
                profile = %orphan.name,
                binding = %orphan.owner,
                reason = outcome.reason.as_str(),
                "orphaned instance profile not deleted: {}",
                outcome.message
            );
        }
    }
}
