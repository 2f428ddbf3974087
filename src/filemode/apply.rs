//! `apply`: rounds of passes, one snapshot a round, until every binding is
//! Ready (or pruned), needs a person, or the timeout or a signal stops it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::crd::{InstanceProfileBindingStatus, RotationStatus};
use crate::files::FileBinding;
use crate::reconcile::{ActionRecord, Backoffs, Engine, Next, Outcome, Reason, Snapshot};

use super::prune::prune_targets;
use super::stop::{Interrupt, Signals, Stop, until};
use super::{
    FileModeOptions, LOOK_AGAIN, Output, Work, changes_sent, finish_calls, inputs, plural,
    print_report, rivals, run_one, take_paths, w_key,
};

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
    // A role rotation's progress, carried from one round to the next as the
    // cluster carries it in the status (file mode keeps no other status).
    let mut carried: Vec<(usize, Option<RotationStatus>)> = Vec::new();
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
            if !work[i].prune {
                carried.push((i, o.status.rotation.clone()));
            }
            outcomes[i] = Some(o);
        }
        drop(passes);
        for (i, rotation) in carried.drain(..) {
            work[i].input.previous = rotation.map(|r| InstanceProfileBindingStatus {
                rotation: Some(r),
                ..InstanceProfileBindingStatus::default()
            });
        }
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
    let progress = Progress {
        outcomes,
        made,
        done,
        running,
    };
    summary(engine, opts, &work, progress, stop)
}

/// Where each binding of a run stands when it ends (indexes of `work`).
struct Progress {
    /// The last outcome of each binding; `None` before its first pass ended.
    outcomes: Vec<Option<Outcome>>,
    /// The changes of every round.
    made: Vec<Vec<ActionRecord>>,
    done: Vec<bool>,
    /// Passes cut short by the stop.
    running: BTreeSet<usize>,
}

/// The report of a run: one line per change and per binding, the totals,
/// and, when it stopped early, what was sent to AWS; the exit code.
fn summary(
    engine: &Engine,
    opts: &FileModeOptions,
    work: &[Work],
    progress: Progress,
    stop: Option<Stop>,
) -> Result<i32, crate::Error> {
    let Progress {
        outcomes,
        made,
        done,
        running,
    } = progress;
    // One outcome per binding, in the order of `work` (a binding stopped
    // before its first pass ended gets one saying so).
    let seen: Vec<bool> = outcomes.iter().map(Option::is_some).collect();
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .zip(made)
        .zip(work)
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
    print_report(opts.output, &text, work, &outcomes, false);
    if let (Output::Json, Some(line)) = (opts.output, &stopped) {
        eprint!("{line}");
    }
    finish_calls(engine, opts.verbose);
    Ok(match stop {
        Some(Stop::Signal(s)) => s.exit_code(),
        _ => i32::from(failed > 0),
    })
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

/// How long an interrupted `apply` waits for the passes in flight to end, so
/// the summary can list what they changed; a second signal stops at once.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
