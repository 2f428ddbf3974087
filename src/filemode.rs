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
use crate::reconcile::Reason;
use crate::reconcile::rivals::Rivals;
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
    keep: &[Work],
    policies: Option<&std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Result<Vec<Work>, crate::Error> {
    let kept: BTreeSet<String> = keep
        .iter()
        .map(|w| engine.profile_name(&w.input.key))
        .collect();
    let mut out = Vec::new();
    for (owner, path) in owned_elsewhere(engine, &engine.aws, &kept).await? {
        out.push(prune_work(owner, path, None, None));
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
        for (owner, path) in owned_elsewhere(engine, &account.aws, &kept).await? {
            out.push(prune_work(owner, path, Some(&target), policies.cloned()));
        }
    }
    Ok(out)
}

/// Owners (by tags, name checked) of this cluster's profiles not in `kept`,
/// with each profile's path. A binding may have put its profile at a custom
/// `instanceProfile.path`, which its files no longer say once it is gone: so
/// the whole account is listed (prune is rare; a profile listing is one call
/// per 1,000 profiles) and a profile qualifies by its path or its generated name.
async fn owned_elsewhere(
    engine: &Engine,
    aws: &crate::aws::Aws,
    kept: &BTreeSet<String>,
) -> Result<Vec<(BindingKey, String)>, crate::Error> {
    let root = engine.default_path();
    let mut candidates: Vec<(String, String)> = aws
        .list_profiles("/")
        .await?
        .into_iter()
        .filter(|p| {
            (p.path.starts_with(&root) || naming::is_generated_name(&p.name))
                && !kept.contains(&p.name)
        })
        .map(|p| (p.name, p.path))
        .collect();
    candidates.sort();
    let mut out = Vec::new();
    for (name, path) in candidates {
        let Some(profile) = aws.get_profile(&name).await? else {
            continue;
        };
        let Some(owner) = profile
            .tags
            .as_ref()
            .and_then(|t| naming::owner_from_tags(t, &engine.config.cluster_id))
        else {
            if path.starts_with(&root) {
                tracing::warn!(profile = %name, "not pruning a profile whose tags do not name this cluster's binding");
            }
            continue;
        };
        if engine.profile_name(&owner) != name {
            tracing::warn!(profile = %name, binding = %owner, "not pruning: the name does not match the binding its tags name");
            continue;
        }
        // deletionPolicy: Retain outlives the binding: the profile says so.
        if profile
            .tags
            .as_ref()
            .and_then(|t| t.get(naming::TAG_DELETION_POLICY))
            .is_some_and(|v| v == "Retain")
        {
            eprintln!(
                "notice: keeping instance profile {name} of {owner}, gone from the files: its binding had deletionPolicy Retain"
            );
            continue;
        }
        out.push((owner, path));
    }
    Ok(out)
}

/// Cleanup work for a binding gone from the files; `account` says where its
/// resources are (recorded as a status would record it).
fn prune_work(
    owner: BindingKey,
    path: String,
    account: Option<&AssumeTarget>,
    policies: Option<std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Work {
    let spec = InstanceProfileBindingSpec {
        role: String::new(),
        // Where the profile is: the snapshot must list that path, and the
        // association check matches profile ARNs by path and name.
        instance_profile: Some(crate::crd::InstanceProfileSettings {
            path: Some(path),
            ..crate::crd::InstanceProfileSettings::default()
        }),
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

/// How soon `apply` looks again at a binding in transition.
const LOOK_AGAIN: Duration = Duration::from_millis(750);

/// Which bindings of the files select which instances (pruned ones left out).
fn rivals(work: &[Work]) -> std::sync::Arc<Rivals> {
    std::sync::Arc::new(Rivals::of_specs(
        work.iter()
            .filter(|w| !w.prune)
            .map(|w| (w.input.key.clone(), &w.input.spec)),
    ))
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
    let paths = take_paths(engine, &work);
    let mut snapshot = Snapshot::take(&engine.aws, &paths).await?;
    if opts.prune {
        work.extend(prune_targets(engine, &work, opts.policies.as_ref()).await?);
        // Profiles to prune at a path no file names: read there too.
        if take_paths(engine, &work) != paths {
            snapshot = Snapshot::take(&engine.aws, &take_paths(engine, &work)).await?;
        }
    }
    snapshot.rivals = rivals(&work);
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
/// The timeout bounds AWS calls too: at it, calls unanswered are abandoned
/// and the summary printed. On SIGINT/SIGTERM no new pass starts, those
/// running get a few seconds to end, then the summary; exit 130/143.
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
    // The deadline and SIGINT/SIGTERM bound every wait, AWS calls included:
    // at either, the summary says what is done, what was changed and what not.
    let mut signals = Signals::catch();
    let mut stop: Option<Stop> = None;
    // Bindings whose pass is running: a stop cuts it short.
    let mut running: BTreeSet<usize> = BTreeSet::new();
    // The files' bindings are the same every round (prune targets are no
    // one's rival): index their selections once.
    let rivals = rivals(&work);
    loop {
        let paths = take_paths(engine, &work);
        let taken = until(deadline, &mut signals, Snapshot::take(&engine.aws, &paths)).await;
        let snapshot = match taken {
            Err(s) => {
                stop = Some(s);
                break;
            }
            Ok(Ok(mut s)) => {
                snapshot_failures = 0;
                s.rivals = rivals.clone();
                s
            }
            Ok(Err(e))
                if Instant::now() + Duration::from_secs(1) < deadline
                    && !matches!(
                        e.kind,
                        crate::aws::ErrorKind::AccessDenied | crate::aws::ErrorKind::Other
                    ) =>
            {
                snapshot_failures += 1;
                tracing::warn!(error = %e, "reading AWS failed; retrying");
                let pause = Duration::from_millis(500 * u64::from(snapshot_failures.min(10)));
                if let Err(s) = until(deadline, &mut signals, tokio::time::sleep(pause)).await {
                    stop = Some(s);
                    break;
                }
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        if !pruned_listed {
            let listed = until(
                deadline,
                &mut signals,
                prune_targets(engine, &work, opts.policies.as_ref()),
            )
            .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(s) => {
                    stop = Some(s);
                    break;
                }
            };
            let targets = match listed {
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
                    let pause = tokio::time::sleep(Duration::from_millis(500));
                    if let Err(s) = until(deadline, &mut signals, pause).await {
                        stop = Some(s);
                        break;
                    }
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
            // Profiles to prune at a path no file names: read there too.
            if take_paths(engine, &work) != paths {
                continue;
            }
        }
        // Bindings due within one look-again interval join this snapshot's
        // round (it was taken after their last change): otherwise the ones
        // that ended a long round last would each cost one more snapshot.
        let horizon = Instant::now() + LOOK_AGAIN;
        let ready_now: Vec<usize> = (0..work.len())
            .filter(|i| !done[*i] && due[*i] <= horizon)
            .collect();
        // Each outcome is taken as it arrives, so a stop loses only the
        // passes still running. On a signal no new pass starts, and those
        // running get INTERRUPT_GRACE to end (their changes then reported).
        running.extend(ready_now.iter().copied());
        let stopping = std::sync::atomic::AtomicBool::new(false);
        let mut passes = futures::stream::iter(ready_now)
            .map(|i| {
                let w = &work[i];
                let snapshot = &snapshot;
                let stopping = &stopping;
                async move {
                    if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                        (i, None)
                    } else {
                        (i, Some(run_one(engine, w, snapshot, false).await))
                    }
                }
            })
            .buffer_unordered(opts.concurrency.max(1));
        let mut grace: Option<(Instant, Interrupt)> = None;
        loop {
            let limit = grace.map_or(deadline, |(end, _)| end.min(deadline));
            let (i, o) = tokio::select! {
                biased;
                next = passes.next() => match next {
                    Some((i, Some(o))) => (i, o),
                    Some((i, None)) => {
                        running.remove(&i);
                        continue;
                    }
                    None => {
                        if let Some((_, s)) = grace {
                            stop = Some(Stop::Signal(s));
                        }
                        break;
                    }
                },
                s = signals.recv() => {
                    if let Some((_, first)) = grace {
                        stop = Some(Stop::Signal(first));
                        break;
                    }
                    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
                    if !running.is_empty() {
                        eprintln!(
                            "{}: stopping; waiting up to {}s for the AWS calls in flight (again to stop at once)",
                            s.name(),
                            INTERRUPT_GRACE.as_secs()
                        );
                    }
                    grace = Some((Instant::now() + INTERRUPT_GRACE, s));
                    continue;
                }
                () = tokio::time::sleep_until(limit) => {
                    stop = Some(grace.map_or(Stop::Deadline, |(_, s)| Stop::Signal(s)));
                    break;
                }
            };
            running.remove(&i);
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
                        LOOK_AGAIN
                    }
                    Next::After(wait) => wait,
                };
                due[i] = Instant::now() + delay;
                tracing::info!(binding = %work[i].input.key, reason = %o.reason, "{}", o.message);
            }
            made[i].extend(o.actions.iter().cloned());
            outcomes[i] = Some(o);
        }
        drop(passes);
        if stop.is_some() || done.iter().all(|d| *d) {
            break;
        }
        let Some(next) = (0..work.len()).filter(|i| !done[*i]).map(|i| due[i]).min() else {
            break;
        };
        if next >= deadline {
            break;
        }
        if let Err(s) = until(deadline, &mut signals, tokio::time::sleep_until(next)).await {
            stop = Some(s);
            break;
        }
    }
    // One outcome per binding, in the order of `work` (a binding stopped
    // before its first pass ended gets one saying so).
    let seen: Vec<bool> = outcomes.iter().map(Option::is_some).collect();
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .zip(made)
        .zip(&work)
        .map(|((o, made), w)| {
            let o = match o {
                Some(o) => o,
                None => unfinished(engine, w, stop.unwrap_or(Stop::Deadline)),
            };
            Outcome { actions: made, ..o }
        })
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
        // A pass cut short: what it was doing is unknown, and so is what it changed.
        let cut = running.contains(&i);
        let last = if cut && seen[i] {
            format!(" (before it: {}: {})", o.reason, o.message)
        } else {
            String::new()
        };
        let state = match (ok, w.prune, timed_out) {
            (false, _, true) if matches!(stop, Some(Stop::Signal(_))) => {
                let s = match stop {
                    Some(Stop::Signal(s)) => s.name(),
                    _ => "a signal",
                };
                if cut {
                    format!("interrupted by {s} during an AWS call{last}")
                } else if seen[i] {
                    format!("interrupted by {s}: {}: {}", o.reason, o.message)
                } else {
                    format!("interrupted by {s} before its first pass")
                }
            }
            (false, _, true) if cut => format!(
                "not ready after {:?}: timed out: an AWS call had not answered{last}",
                opts.timeout
            ),
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
    // Stopped early: the changes made so far, all of them, since a pass cut
    // short has not listed its own.
    let stopped = stop.map(|stop| {
        let how = match stop {
            Stop::Deadline => format!("Timed out after {:?}", opts.timeout),
            Stop::Signal(s) => format!("Interrupted by {}", s.name()),
        };
        let cut = if running.is_empty() {
            String::new()
        } else {
            format!(
                "; {} pass{} cut short with an AWS call unanswered, which AWS may or may not have carried out (`plan` shows where things stand)",
                running.len(),
                if running.len() == 1 { " was" } else { "es were" }
            )
        };
        format!("{how}. Changes sent to AWS: {}{cut}.\n", changes_sent(engine))
    });
    if let (Output::Text, Some(line)) = (opts.output, &stopped) {
        text.push_str(line);
    }
    print_report(opts.output, &text, &work, &outcomes, false);
    if let (Output::Json, Some(line)) = (opts.output, &stopped) {
        eprint!("{line}");
    }
    finish_calls(engine, opts.verbose);
    Ok(match stop {
        Some(Stop::Signal(s)) => s.exit_code(),
        _ => i32::from(failed > 0),
    })
}

/// How long an interrupted `apply` waits for the passes in flight to end, so
/// the summary can list what they changed; a second signal stops at once.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// Why `apply` stopped before every binding was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// `--timeout` passed, possibly with AWS calls unanswered.
    Deadline,
    Signal(Interrupt),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Interrupt {
    Int,
    Term,
}

impl Interrupt {
    fn name(self) -> &'static str {
        match self {
            Self::Int => "SIGINT",
            Self::Term => "SIGTERM",
        }
    }

    /// 128 + the signal number, as a shell reports a process the signal ended.
    fn exit_code(self) -> i32 {
        match self {
            Self::Int => 130,
            Self::Term => 143,
        }
    }
}

/// SIGINT and SIGTERM, caught for as long as `apply` runs.
struct Signals {
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn catch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch = |kind: SignalKind| {
                signal(kind)
                    .map_err(|e| tracing::warn!(error = %e, "cannot catch a signal; it ends apply without a summary"))
                    .ok()
            };
            Self {
                int: catch(SignalKind::interrupt()),
                term: catch(SignalKind::terminate()),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal (cancel-safe).
    async fn recv(&mut self) -> Interrupt {
        #[cfg(unix)]
        {
            async fn one(s: Option<&mut tokio::signal::unix::Signal>) {
                if let Some(s) = s
                    && s.recv().await.is_some()
                {
                    return;
                }
                std::future::pending().await
            }
            let Self { int, term } = self;
            tokio::select! {
                () = one(int.as_mut()) => Interrupt::Int,
                () = one(term.as_mut()) => Interrupt::Term,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            Interrupt::Int
        }
    }
}

/// `f`, unless the deadline passes or a signal arrives first: then it is
/// dropped (an AWS call in it is abandoned) and the reason returned.
async fn until<F: std::future::Future>(
    deadline: Instant,
    signals: &mut Signals,
    f: F,
) -> Result<F::Output, Stop> {
    tokio::select! {
        biased;
        out = f => Ok(out),
        s = signals.recv() => Err(Stop::Signal(s)),
        () = tokio::time::sleep_until(deadline) => Err(Stop::Deadline),
    }
}

/// The outcome reported for a binding `apply` stopped before any pass of it
/// ended: nothing is known of its AWS state.
fn unfinished(engine: &Engine, w: &Work, stop: Stop) -> Outcome {
    let message = match stop {
        Stop::Deadline => "AWS had not answered when the timeout passed".to_string(),
        Stop::Signal(s) => format!("interrupted by {} before its first pass ended", s.name()),
    };
    let mut out = engine.unobserved(
        &w.input,
        crate::aws::AwsError {
            kind: crate::aws::ErrorKind::Transient,
            service: "aws",
            action: "apply",
            code: "Unanswered".into(),
            message: message.clone(),
        },
    );
    if let Some(c) = out
        .status
        .conditions
        .iter_mut()
        .find(|c| c.type_ == "Ready")
    {
        if let Stop::Signal(_) = stop {
            c.reason = Reason::Interrupted.as_str().into();
        }
        c.message.clone_from(&message);
    }
    out.reason = match stop {
        Stop::Deadline => Reason::AwsUnavailable,
        Stop::Signal(_) => Reason::Interrupted,
    };
    out.message = message;
    out
}

/// The changes this run sent to AWS, per action, for the summary of a run
/// that stopped early (a pass cut short has not reported its own).
fn changes_sent(engine: &Engine) -> String {
    let parts: Vec<String> = engine
        .aws
        .calls
        .snapshot()
        .into_iter()
        .filter(|(action, (ok, _))| crate::aws::is_mutating(action) && *ok > 0)
        .map(|(action, (ok, _))| format!("{action}={ok}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
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
