//! One reconcile of one binding: the finalizer, then apply (reconcile and
//! write the status) or cleanup (delete what the binding made in AWS, then let
//! the finalizer go); and the requeue after an error.

use std::sync::Arc;

use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use tokio::time::Instant;
use tracing::Instrument;

use super::cached::CachedBinding;
use crate::crd::{
    API_VERSION, DeletionPolicy, FINALIZER, InstanceProfileBinding, InstanceProfileBindingStatus,
};
use crate::metrics::ResultLabels;
use crate::naming::BindingKey;
use crate::reconcile::{BackoffClass, BindingInput, Next, Outcome, Reason};

use super::context::{Context, FIELD_MANAGER, key_of};

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("binding has no namespace or name")]
    Unnamed,
    #[error("the cached binding's spec does not decode (a bug: please report it)")]
    Undecodable,
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
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => Reason::KubeError.as_str(),
            Self::Unnamed | Self::Undecodable => Reason::Unnamed.as_str(),
            Self::CleanupPending { reason, .. } => reason.as_str(),
        }
    }
}

/// One reconcile: finalizer first, then apply or cleanup.
///
/// # Errors
/// Errors go to [`error_policy`], which requeues with backoff.
pub async fn reconcile(
    b: Arc<CachedBinding>,
    ctx: Arc<Context>,
) -> Result<Action, finalizer::Error<Error>> {
    let started = Instant::now();
    let ns = b.metadata.namespace.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", namespace = %ns, name = %b.name_any());
    let api: Api<CachedBinding> = Api::namespaced(ctx.client.clone(), &ns);
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
        Ok(_) => "ok",
        Err(finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e)) => e.reason(),
        Err(_) => Reason::FinalizerError.as_str(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ResultLabels {
            result: label.into(),
        })
        .inc();
    result
}

/// Requeue after a failed reconcile, with the binding's backoff.
#[must_use]
pub fn error_policy(
    b: Arc<CachedBinding>,
    err: &finalizer::Error<Error>,
    ctx: Arc<Context>,
) -> Action {
    let key = BindingKey {
        namespace: b.metadata.namespace.clone().unwrap_or_default(),
        name: b.name_any(),
    };
    let next = match err {
        finalizer::Error::ApplyFailed(Error::CleanupPending { next, .. })
        | finalizer::Error::CleanupFailed(Error::CleanupPending { next, .. }) => {
            tracing::info!(binding = %key, "{err}");
            *next
        }
        other => {
            tracing::warn!(binding = %key, error = %other, "reconcile failed");
            Next::Backoff(BackoffClass::Transient)
        }
    };
    let next = if next == Next::Resync {
        Next::Soon
    } else {
        next
    };
    ctx.requeue(&key, next)
}

fn input(b: &CachedBinding, ctx: &Context) -> Result<BindingInput, Error> {
    let key = key_of(b).ok_or(Error::Unnamed)?;
    let policies = ctx.policy_set();
    let spec = b.spec().ok_or(Error::Undecodable)?;
    let nodes = ctx.node_selection(&key.namespace, &spec, policies.as_deref());
    Ok(BindingInput {
        key,
        uid: b.metadata.uid.clone(),
        generation: b.metadata.generation,
        spec,
        previous: b.status.as_ref().map(|r| r.for_engine()),
        policies,
        nodes,
    })
}

async fn apply(b: Arc<CachedBinding>, ctx: &Context, started: Instant) -> Result<Action, Error> {
    let mut input = input(&b, ctx)?;
    let key = &input.key.clone();
    // A spec the controller has not seen yet gets a snapshot from after it
    // arrived; a binding that just wrote reads what it wrote.
    let spec_changed = b.observed_generation() != b.metadata.generation;
    let arrived = spec_changed.then(|| ctx.arrival(key, b.metadata.generation).min(started));
    let fresher_than = [ctx.last_write(key), arrived].into_iter().flatten().max();
    let outcome = pass(ctx, &b, &mut input, fresher_than, Pass::Apply).await?;
    // A converged binding's status is what it was: no write, so a resync of
    // N converged bindings costs the API server nothing.
    if !b.status_is(&outcome.status) {
        write_status(ctx, &b, &outcome.status).await?;
    }
    ctx.metrics
        .set_binding_reason(&key.to_string(), Some(outcome.reason.as_str()));
    Ok(ctx.requeue(key, outcome.next))
}

async fn cleanup(b: Arc<CachedBinding>, ctx: &Context, started: Instant) -> Result<Action, Error> {
    // Deletion is not gated: it only removes what an allowed binding made.
    // The policies still travel along: a cross-account binding's external id is theirs.
    let mut input = input(&b, ctx)?;
    let key = &input.key.clone();
    if input.spec.deletion_policy == DeletionPolicy::Retain {
        ctx.publish(
            &b,
            EventType::Normal,
            Reason::Retained.as_str(),
            "deletionPolicy Retain: instance profile and associations left in AWS".into(),
        )
        .await;
        ctx.forget(key);
        return Ok(Action::await_change());
    }
    let outcome = pass(ctx, &b, &mut input, Some(started), Pass::Cleanup).await?;
    // A profile we cannot prove ours is never touched, and does not hold the binding.
    if outcome.deleted || outcome.reason == Reason::ForeignProfileExists {
        ctx.forget(key);
        return Ok(Action::await_change());
    }
    write_status(ctx, &b, &outcome.status).await?;
    Err(Error::CleanupPending {
        reason: outcome.reason,
        message: outcome.message,
        next: outcome.next,
    })
}

#[derive(Clone, Copy)]
enum Pass {
    Apply,
    Cleanup,
}

/// One pass of the engine over a snapshot taken after `fresher_than` (when
/// given): its outcome, with a write noted and the events published.
///
/// # Errors
/// AWS unreadable, and the full status (kept as recorded) unreadable too.
async fn pass(
    ctx: &Context,
    b: &CachedBinding,
    input: &mut BindingInput,
    fresher_than: Option<Instant>,
    pass: Pass,
) -> Result<Outcome, Error> {
    // AWS unreadable (denied, unreachable): every binding says so in its
    // status and an event, instead of a log line nobody watching it sees.
    let outcome = match (ctx.snapshot(fresher_than).await, pass) {
        (Ok(snapshot), Pass::Apply) => ctx.engine.reconcile(input, &snapshot, false).await,
        (Ok(snapshot), Pass::Cleanup) => ctx.engine.cleanup(input, &snapshot, false).await,
        (Err(e), _) => {
            // Everything but Ready stays as recorded: the cache holds only
            // part of the status, so the whole is read.
            if b.status.is_some() {
                input.previous = full_status(ctx, b).await?;
            }
            ctx.engine.unobserved(input, e)
        }
    };
    if !outcome.actions.is_empty() {
        ctx.wrote(&input.key);
    }
    ctx.report_events(b, &outcome).await;
    Ok(outcome)
}

/// The binding's status as the API server has it.
async fn full_status(
    ctx: &Context,
    b: &CachedBinding,
) -> Result<Option<InstanceProfileBindingStatus>, Error> {
    let (Some(ns), Some(name)) = (b.metadata.namespace.as_deref(), b.metadata.name.as_deref())
    else {
        return Err(Error::Unnamed);
    };
    let api: Api<InstanceProfileBinding> = Api::namespaced(ctx.client.clone(), ns);
    Ok(api.get_status(name).await?.status)
}

/// The status, by server-side apply with the one field manager.
async fn write_status(
    ctx: &Context,
    b: &CachedBinding,
    status: &InstanceProfileBindingStatus,
) -> Result<(), Error> {
    let (Some(ns), Some(name)) = (b.metadata.namespace.as_deref(), b.metadata.name.as_deref())
    else {
        return Err(Error::Unnamed);
    };
    let api: Api<InstanceProfileBinding> = Api::namespaced(ctx.client.clone(), ns);
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
