//! `plan` and `apply`: the reconcile pipeline driven from files instead of a
//! cluster. One bulk snapshot per round serves every binding.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::time::Instant;

use crate::aws::assume::AssumeTarget;
use crate::crd::{DeletionPolicy, InstanceProfileBindingSpec, InstanceProfileBindingStatus};
use crate::files::FileBinding;
use crate::naming::{self, BindingKey};
use crate::reconcile::{ActionRecord, Backoffs, BindingInput, Engine, Next, Outcome, Snapshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub struct FileModeOptions {
    pub prune: bool,
    pub timeout: Duration,
    pub output: Output,
    pub concurrency: usize,
    pub verbose: bool,
    /// The policy gate, when the files hold at least one policy.
    pub policies: Option<std::sync::Arc<crate::reconcile::policy::PolicySet>>,
}

/// What one binding came to, for the report.
#[derive(Serialize)]
struct Report<'a> {
    namespace: &'a str,
    name: &'a str,
    status: &'a InstanceProfileBindingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<&'a [ActionRecord]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pruned: bool,
}

#[derive(Clone)]
struct Work {
    input: BindingInput,
    prune: bool,
}

fn inputs(bindings: &[FileBinding], opts: &FileModeOptions) -> Vec<Work> {
    bindings
        .iter()
        .map(|fb| Work {
            input: BindingInput {
                key: BindingKey {
                    namespace: fb
                        .binding
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: fb.binding.metadata.name.clone().unwrap_or_default(),
                },
                uid: None,
                generation: None,
                spec: fb.binding.spec.clone(),
                previous: None,
                policies: opts.policies.clone(),
            },
            prune: false,
        })
        .collect()
}

/// Profiles under this cluster's path whose owning binding is not in the
/// files: in this account, and in every account the files' policies name.
async fn prune_targets(
    engine: &Engine,
    snapshot: &Snapshot,
    keep: &[Work],
    policies: Option<&std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Result<Vec<Work>, crate::Error> {
    let kept: BTreeSet<String> = keep
        .iter()
        .map(|w| engine.profile_name(&w.input.key))
        .collect();
    let mut out = Vec::new();
    for owner in owned_elsewhere(engine, &engine.aws, snapshot, &kept).await? {
        out.push(prune_work(owner, None, None));
    }
    let targets: BTreeSet<AssumeTarget> = policies
        .iter()
        .flat_map(|set| set.policies.iter())
        .filter_map(|(_, p)| p.account.as_ref())
        .map(|a| AssumeTarget {
            role_arn: a.assume_role_arn.clone(),
            external_id: a.external_id.clone(),
        })
        .collect();
    for target in targets {
        let account = engine.accounts.get(&target);
        let paths = BTreeSet::from([engine.default_path()]);
        let theirs = account.snapshot(snapshot.taken_at, &paths).await?;
        for owner in owned_elsewhere(engine, &account.aws, &theirs, &kept).await? {
            out.push(prune_work(owner, Some(&target), policies.cloned()));
        }
    }
    Ok(out)
}

/// Owners (by tags, name checked) of profiles under the cluster path not in `kept`.
async fn owned_elsewhere(
    engine: &Engine,
    aws: &crate::aws::Aws,
    snapshot: &Snapshot,
    kept: &BTreeSet<String>,
) -> Result<Vec<BindingKey>, crate::Error> {
    let root = engine.default_path();
    let mut names: Vec<&String> = snapshot
        .profiles
        .values()
        .filter(|p| p.path.starts_with(&root) && !kept.contains(&p.name))
        .map(|p| &p.name)
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let Some(profile) = aws.get_profile(name).await? else {
            continue;
        };
        let Some(owner) = profile
            .tags
            .as_ref()
            .and_then(|t| naming::owner_from_tags(t, &engine.config.cluster_id))
        else {
            tracing::warn!(profile = %name, "not pruning a profile whose tags do not name this cluster's binding");
            continue;
        };
        if engine.profile_name(&owner) != *name {
            tracing::warn!(profile = %name, binding = %owner, "not pruning: the name does not match the binding its tags name");
            continue;
        }
        out.push(owner);
    }
    Ok(out)
}

/// Cleanup work for a binding gone from the files; `account` says where its
/// resources are (recorded as a status would record it).
fn prune_work(
    owner: BindingKey,
    account: Option<&AssumeTarget>,
    policies: Option<std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Work {
    let spec = InstanceProfileBindingSpec {
        role: String::new(),
        instance_profile: None,
        instances: crate::crd::InstanceSelector::default(),
        replace_foreign_associations: false,
        deletion_policy: DeletionPolicy::Delete,
    };
    let previous = account.map(|t| InstanceProfileBindingStatus {
        assume_role_arn: Some(t.role_arn.clone()),
        ..InstanceProfileBindingStatus::default()
    });
    Work {
        input: BindingInput {
            key: owner,
            uid: None,
            generation: None,
            spec,
            previous,
            policies,
        },
        prune: true,
    }
}

async fn run_one(engine: &Engine, w: &Work, snapshot: &Snapshot, dry_run: bool) -> Outcome {
    if w.prune {
        engine.cleanup(&w.input, snapshot, dry_run).await
    } else {
        engine.reconcile(&w.input, snapshot, dry_run).await
    }
}

fn take_paths(engine: &Engine, work: &[Work]) -> BTreeSet<String> {
    engine.snapshot_paths(work.iter().map(|w| &w.input.spec))
}

/// `plan`: what reconciling the files would change. Exit 0 no changes, 2 changes, 1 errors.
///
/// # Errors
/// AWS errors while reading the snapshot.
pub async fn plan(
    engine: &Engine,
    bindings: &[FileBinding],
    opts: &FileModeOptions,
) -> Result<i32, crate::Error> {
    let mut work = inputs(bindings, opts);
    let snapshot = Snapshot::take(&engine.aws, &take_paths(engine, &work)).await?;
    if opts.prune {
        work.extend(prune_targets(engine, &snapshot, &work, opts.policies.as_ref()).await?);
    }
    let outcomes: Vec<Outcome> = futures::stream::iter(work.iter())
        .map(|w| run_one(engine, w, &snapshot, true))
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut errors = 0;
    let mut changes = 0;
    let mut text = String::new();
    for (w, o) in work.iter().zip(&outcomes) {
        let failed = o.needs_user || (!o.ready() && !o.deleted && o.actions.is_empty() && !w.prune);
        if failed {
            errors += 1;
        }
        changes += o.actions.len();
        let verb = if w.prune { "prune " } else { "" };
        if failed {
            text.push_str(&format!(
                "{verb}{}: error: {}: {}\n",
                w.input.key, o.reason, o.message
            ));
        } else if o.actions.is_empty() {
            text.push_str(&format!("{verb}{}: no changes\n", w.input.key));
        } else {
            text.push_str(&format!(
                "{verb}{}: {} change{}\n",
                w.input.key,
                o.actions.len(),
                plural(o.actions.len())
            ));
        }
        for a in &o.actions {
            text.push_str(&format!("  + {}\n", a.message));
        }
    }
    let with_changes = outcomes.iter().filter(|o| !o.actions.is_empty()).count();
    text.push_str(&format!(
        "Plan: {changes} change{} for {with_changes} of {} binding{}{}.\n",
        plural(changes),
        work.len(),
        plural(work.len()),
        if errors > 0 {
            format!(", {errors} with errors")
        } else {
            String::new()
        }
    ));
    print_report(opts.output, &text, &work, &outcomes, true);
    finish_calls(engine, opts.verbose);
    Ok(if errors > 0 {
        1
    } else if changes > 0 {
        2
    } else {
        0
    })
}

/// `apply`: reconcile the files until every binding is Ready or failed, or the
/// timeout passes. Exit 0 when all are Ready (and pruned ones deleted), else 1.
///
/// # Errors
/// AWS errors that keep every round from reading a snapshot until the timeout.
pub async fn apply(
    engine: &Engine,
    bindings: &[FileBinding],
    opts: &FileModeOptions,
) -> Result<i32, crate::Error> {
    let deadline = Instant::now() + opts.timeout;
    let mut work = inputs(bindings, opts);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; work.len()];
    // Changes made in every round, for the report.
    let mut made: Vec<Vec<ActionRecord>> = vec![Vec::new(); work.len()];
    let mut due: Vec<Instant> = vec![Instant::now(); work.len()];
    let mut done: Vec<bool> = vec![false; work.len()];
    let mut backoffs = Backoffs::default();
    let mut pruned_listed = !opts.prune;
    let mut snapshot_failures = 0u32;
    loop {
        let snapshot = match Snapshot::take(&engine.aws, &take_paths(engine, &work)).await {
            Ok(s) => {
                snapshot_failures = 0;
                s
            }
            Err(e)
                if Instant::now() + Duration::from_secs(1) < deadline
                    && !matches!(
                        e.kind,
                        crate::aws::ErrorKind::AccessDenied | crate::aws::ErrorKind::Other
                    ) =>
            {
                snapshot_failures += 1;
                tracing::warn!(error = %e, "reading AWS failed; retrying");
                tokio::time::sleep(Duration::from_millis(
                    500 * u64::from(snapshot_failures.min(10)),
                ))
                .await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if !pruned_listed {
            let targets =
                match prune_targets(engine, &snapshot, &work, opts.policies.as_ref()).await {
                    Ok(t) => t,
                    // A throttled or failed read while listing what to prune is
                    // retried like the snapshot, not fatal.
                    Err(crate::Error::Aws(e))
                        if Instant::now() + Duration::from_secs(1) < deadline
                            && matches!(
                                e.kind,
                                crate::aws::ErrorKind::Throttled | crate::aws::ErrorKind::Transient
                            ) =>
                    {
                        tracing::warn!(error = %e, "listing profiles to prune failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
            pruned_listed = true;
            for t in targets {
                work.push(t);
                outcomes.push(None);
                made.push(Vec::new());
                due.push(Instant::now());
                done.push(false);
            }
        }
        let now = Instant::now();
        let ready_now: Vec<usize> = (0..work.len())
            .filter(|i| !done[*i] && due[*i] <= now)
            .collect();
        let results: Vec<(usize, Outcome)> = futures::stream::iter(ready_now)
            .map(|i| {
                let w = &work[i];
                let snapshot = &snapshot;
                async move { (i, run_one(engine, w, snapshot, false).await) }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        for (i, o) in results {
            let finished = if work[i].prune {
                o.deleted || o.needs_user
            } else {
                o.ready() || o.needs_user
            };
            if finished {
                done[i] = true;
            } else {
                // Transitions are looked at again within a second; failures back off.
                let key = w_key(&work[i]);
                let delay = match o.next {
                    Next::Backoff(_) => backoffs
                        .next(&key, o.next)
                        .unwrap_or(Duration::from_secs(1)),
                    Next::Resync | Next::Soon => {
                        backoffs.forget(&key);
                        Duration::from_millis(750)
                    }
                };
                due[i] = Instant::now() + delay;
                tracing::info!(binding = %work[i].input.key, reason = %o.reason, "{}", o.message);
            }
            made[i].extend(o.actions.iter().cloned());
            outcomes[i] = Some(o);
        }
        if done.iter().all(|d| *d) {
            break;
        }
        let Some(next) = (0..work.len()).filter(|i| !done[*i]).map(|i| due[i]).min() else {
            break;
        };
        if next >= deadline {
            break;
        }
        tokio::time::sleep_until(next).await;
    }
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .zip(made)
        .filter_map(|(o, made)| o.map(|o| Outcome { actions: made, ..o }))
        .collect();
    let mut failed = 0;
    let mut text = String::new();
    for (i, (w, o)) in work.iter().zip(&outcomes).enumerate() {
        let ok = if w.prune { o.deleted } else { o.ready() };
        if !ok {
            failed += 1;
        }
        let timed_out = !done[i];
        for a in &o.actions {
            text.push_str(&format!("{}: {}\n", w.input.key, a.message));
        }
        let state = match (ok, w.prune, timed_out) {
            (true, true, _) => "pruned".to_string(),
            (true, false, _) => format!(
                "Ready (profile {}, instances {})",
                o.status
                    .instance_profile
                    .as_ref()
                    .map_or("?", |p| p.name.as_str()),
                o.status.instance_summary.as_deref().unwrap_or("0/0")
            ),
            (false, _, true) => format!(
                "not ready after {:?}: {}: {}",
                opts.timeout, o.reason, o.message
            ),
            (false, _, false) => format!("failed: {}: {}", o.reason, o.message),
        };
        text.push_str(&format!(
            "{}{}: {state}\n",
            if w.prune { "prune " } else { "" },
            w.input.key
        ));
    }
    text.push_str(&format!(
        "Apply: {} of {} binding{} done{}.\n",
        work.len() - failed,
        work.len(),
        plural(work.len()),
        if failed > 0 {
            format!(", {failed} not")
        } else {
            String::new()
        }
    ));
    print_report(opts.output, &text, &work, &outcomes, false);
    finish_calls(engine, opts.verbose);
    Ok(i32::from(failed > 0))
}

fn w_key(w: &Work) -> String {
    format!("{}{}", if w.prune { "prune:" } else { "" }, w.input.key)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print_report(
    output: Output,
    text: &str,
    work: &[Work],
    outcomes: &[Outcome],
    with_changes: bool,
) {
    match output {
        Output::Text => print!("{text}"),
        Output::Json => {
            let reports: Vec<Report> = work
                .iter()
                .zip(outcomes)
                .map(|(w, o)| Report {
                    namespace: &w.input.key.namespace,
                    name: &w.input.key.name,
                    status: &o.status,
                    changes: with_changes.then_some(o.actions.as_slice()),
                    pruned: w.prune,
                })
                .collect();
            match serde_json::to_string_pretty(&reports) {
                Ok(s) => println!("{s}"),
                Err(e) => eprintln!("error: cannot encode the report: {e}"),
            }
        }
    }
}

fn finish_calls(engine: &Engine, verbose: bool) {
    let summary = engine.aws.calls.summary();
    if verbose {
        eprintln!("{summary}");
    }
    tracing::debug!(calls = ?engine.aws.calls.snapshot().into_iter().collect::<BTreeMap<_, _>>(), "{summary}");
}
