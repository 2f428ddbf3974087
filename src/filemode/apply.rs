//! `apply`: rounds of passes, one snapshot a round, until every binding is
//! Ready (or pruned), needs a person, or the timeout or a signal stops it.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use crate::crd::InstanceProfileBindingStatus;
use crate::files::FileBinding;
use crate::reconcile::{ActionRecord, Backoffs, Engine, Next, Outcome, Reason, Snapshot};

use super::prune::prune_targets;
use super::stop::{Interrupt, Signals, Stop, until};
use super::{
    FileModeOptions, LOOK_AGAIN, Output, ReportWriter, Work, changes_sent, finish_calls, inputs,
    plural, rivals, run_one, take_paths, w_key,
};

/// `apply`: reconcile the files until every binding is Ready or failed, or the
/// timeout passes. Exit 0 when all are Ready (and pruned ones deleted), else 1.
/// The timeout bounds AWS calls too: at it, calls unanswered are abandoned
/// and the summary printed. On SIGINT/SIGTERM no new pass starts, those
/// running get a few seconds to end, then the summary; exit 130/143.
///
/// Passes are pipelined, not run in rounds: a binding whose fresh profile is
/// propagating continues from what its last pass saw (nothing changed since
/// but its own writes) as soon as its wait is over, while the IAM steps of
/// other bindings go on; a binding whose changes must be confirmed (or whose
/// pass failed) waits for a snapshot taken after them. One snapshot serves
/// every binding waiting for one; it is taken when nothing else can run, or
/// when the oldest has waited [`MAX_STALE`]. So the IAM and EC2 write buckets
/// are both kept busy: see docs/design.md §6.
///
/// # Errors
/// AWS errors that keep every round from reading a snapshot until the timeout.
pub async fn apply(
    engine: &Engine,
    bindings: Vec<FileBinding>,
    opts: &FileModeOptions,
) -> Result<i32, crate::Error> {
    let deadline = Instant::now() + opts.timeout;
    let mut work = inputs(bindings, opts);
    // The deadline and SIGINT/SIGTERM bound every wait, AWS calls included:
    // at either, the summary says what is done, what was changed and what not.
    let mut signals = Signals::catch();
    let first = match first_snapshot(engine, &mut work, opts, deadline, &mut signals).await? {
        Ok(s) => s,
        Err(stop) => {
            let n = work.len();
            let progress = Progress {
                outcomes: (0..n).map(|_| None).collect(),
                made: vec![Vec::new(); n],
                done: vec![false; n],
                running: BTreeSet::new(),
            };
            return summary(engine, opts, &work, progress, Some(stop));
        }
    };
    let mut p = Pipeline::new(
        work.len(),
        opts.concurrency,
        first,
        opts.output == Output::Text,
    );
    let stop = p.run(engine, &mut work, deadline, &mut signals).await?;
    let progress = Progress {
        outcomes: p.slots.iter_mut().map(|s| s.last.take()).collect(),
        made: p
            .slots
            .iter_mut()
            .map(|s| std::mem::take(&mut s.made))
            .collect(),
        done: p.slots.iter().map(|s| s.done).collect(),
        running: p
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.running)
            .map(|(i, _)| i)
            .collect(),
    };
    summary(engine, opts, &work, progress, stop)
}

/// The first snapshot and, with `--prune`, the profiles to prune (added to
/// `work`; read again when they live at a path no file names). Failed reads
/// are retried until the deadline unless they are denied outright.
async fn first_snapshot(
    engine: &Engine,
    work: &mut Vec<Work>,
    opts: &FileModeOptions,
    deadline: Instant,
    signals: &mut Signals,
) -> Result<Result<Snapshot, Stop>, crate::Error> {
    let mut pruned_listed = !opts.prune;
    let mut failures = 0u32;
    let rivals = rivals(work);
    loop {
        let paths = take_paths(engine, work);
        let snapshot = match until(deadline, signals, Snapshot::take(&engine.aws, &paths)).await {
            Err(s) => return Ok(Err(s)),
            Ok(Ok(mut s)) => {
                failures = 0;
                s.rivals = rivals.clone();
                s
            }
            Ok(Err(e)) if retryable_snapshot(&e, deadline) => {
                failures += 1;
                tracing::warn!(error = %e, "reading AWS failed; retrying");
                if let Err(s) = until(deadline, signals, tokio::time::sleep(pause(failures))).await
                {
                    return Ok(Err(s));
                }
                continue;
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        if pruned_listed {
            return Ok(Ok(snapshot));
        }
        let listed = match until(
            deadline,
            signals,
            prune_targets(engine, work, opts.policies.as_ref()),
        )
        .await
        {
            Ok(listed) => listed,
            Err(s) => return Ok(Err(s)),
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
                if let Err(s) = until(deadline, signals, pause).await {
                    return Ok(Err(s));
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        pruned_listed = true;
        work.extend(targets);
        // Profiles to prune at a path no file names: read there too.
        if take_paths(engine, work) == paths {
            return Ok(Ok(snapshot));
        }
    }
}

/// A snapshot that failed for a reason a retry may fix, with time left.
fn retryable_snapshot(e: &crate::aws::AwsError, deadline: Instant) -> bool {
    Instant::now() + Duration::from_secs(1) < deadline
        && !matches!(
            e.kind,
            crate::aws::ErrorKind::AccessDenied | crate::aws::ErrorKind::Other
        )
}

fn pause(failures: u32) -> Duration {
    Duration::from_millis(500 * u64::from(failures.min(10)))
}

/// How long a binding waiting for a snapshot waits at most while other
/// passes run (when none runs, the snapshot is taken at once).
const MAX_STALE: Duration = Duration::from_secs(5);

/// Where one binding of the pipeline stands.
struct Slot {
    /// When its next pass may start.
    due: Instant,
    done: bool,
    running: bool,
    /// The lane of the pass running.
    lane: Lane,
    /// Its last pass changed AWS or failed at this instant: its next pass
    /// needs a snapshot taken after it. `None`: any snapshot does.
    fresh_after: Option<Instant>,
    /// What its last pass saw, when it waits for its profile to propagate:
    /// its next pass continues from it (no snapshot needed).
    overlay: Option<Box<crate::reconcile::Observed>>,
    last: Option<Last>,
    /// Changes made in every pass, for the report.
    made: Vec<ActionRecord>,
}

/// What the pipeline waits on.
enum Event {
    Pass(usize, Option<Box<Outcome>>),
    Snapshot(Box<Result<Snapshot, crate::aws::AwsError>>),
}

/// Which passes may share the concurrency: continuing a binding that waited
/// for propagation (its EC2 writes) or a pass from a snapshot (a new
/// binding's IAM writes, a confirmation). Each gets half the slots when both
/// have work, so neither write bucket idles while the other's queue is long.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lane {
    Continue,
    Fresh,
}

struct Pipeline {
    slots: Vec<Slot>,
    concurrency: usize,
    snapshot: std::sync::Arc<Snapshot>,
    refreshing: bool,
    snapshot_failures: u32,
    retry_snapshot_at: Option<Instant>,
    backoffs: Backoffs<String>,
    /// The summary is text: a binding that is done keeps only what it prints.
    text_only: bool,
}

impl Pipeline {
    fn new(n: usize, concurrency: usize, first: Snapshot, text_only: bool) -> Self {
        let now = Instant::now();
        Self {
            slots: (0..n)
                .map(|_| Slot {
                    due: now,
                    done: false,
                    running: false,
                    lane: Lane::Fresh,
                    fresh_after: None,
                    overlay: None,
                    last: None,
                    made: Vec::new(),
                })
                .collect(),
            concurrency: concurrency.max(1),
            snapshot: std::sync::Arc::new(first),
            refreshing: false,
            snapshot_failures: 0,
            retry_snapshot_at: None,
            backoffs: Backoffs::default(),
            text_only,
        }
    }

    fn lane(&self, i: usize) -> Lane {
        if self.slots[i].overlay.is_some() {
            Lane::Continue
        } else {
            Lane::Fresh
        }
    }

    /// Can start now: due, and either continuing from its overlay or served
    /// by the current snapshot.
    fn runnable(&self, i: usize, now: Instant) -> bool {
        let s = &self.slots[i];
        !s.done
            && !s.running
            && s.due <= now
            && (s.overlay.is_some() || s.fresh_after.is_none_or(|t| t <= self.snapshot.taken_at))
    }

    /// Due (within `horizon`) but waiting for a snapshot newer than the current one.
    fn blocked(&self, i: usize, horizon: Instant) -> bool {
        let s = &self.slots[i];
        !s.done
            && !s.running
            && s.overlay.is_none()
            && s.due <= horizon
            && s.fresh_after.is_some_and(|t| t > self.snapshot.taken_at)
    }

    /// The bindings to start now, earliest due first, within the lanes' shares.
    fn to_start(&self, now: Instant) -> Vec<usize> {
        let mut ready: Vec<usize> = (0..self.slots.len())
            .filter(|i| self.runnable(*i, now))
            .collect();
        if ready.is_empty() {
            return ready;
        }
        ready.sort_by_key(|i| self.slots[*i].due);
        let (mut cont, mut fresh) = (0, 0);
        for s in self.slots.iter().filter(|s| s.running) {
            match s.lane {
                Lane::Continue => cont += 1,
                Lane::Fresh => fresh += 1,
            }
        }
        let wants = |lane: Lane| ready.iter().any(|i| self.lane(*i) == lane);
        let both = wants(Lane::Continue) && wants(Lane::Fresh);
        let share = |lane: Lane| {
            let half = (self.concurrency / 2).max(1);
            match (both, lane) {
                (false, _) => self.concurrency,
                (true, Lane::Continue) => half,
                (true, Lane::Fresh) => self.concurrency.saturating_sub(half).max(1),
            }
        };
        let mut start = Vec::new();
        for i in ready {
            if cont + fresh >= self.concurrency {
                break;
            }
            let lane = self.lane(i);
            let n = match lane {
                Lane::Continue => &mut cont,
                Lane::Fresh => &mut fresh,
            };
            if *n < share(lane) {
                *n += 1;
                start.push(i);
            }
        }
        start
    }

    /// A snapshot is due: bindings wait for one, and nothing else can run
    /// (or the oldest has waited long enough).
    fn snapshot_due(&self, now: Instant) -> bool {
        if self.refreshing || self.retry_snapshot_at.is_some_and(|t| t > now) {
            return false;
        }
        let idle = self.slots.iter().all(|s| !s.running);
        let horizon = now + LOOK_AGAIN;
        let mut oldest: Option<Instant> = None;
        let mut any = false;
        for i in 0..self.slots.len() {
            if self.blocked(i, horizon) {
                any = true;
                let due = self.slots[i].due;
                if due <= now {
                    oldest = Some(oldest.map_or(due, |o| o.min(due)));
                }
            }
        }
        any && (idle || oldest.is_some_and(|o| now.duration_since(o) >= MAX_STALE))
    }

    /// When to look again without any pass or snapshot ending: the next
    /// binding to fall due, the stale limit of one waiting for a snapshot, a
    /// snapshot retry.
    fn wake(&self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = self.retry_snapshot_at.filter(|t| *t > now);
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for (i, s) in self.slots.iter().enumerate() {
            if s.done || s.running {
                continue;
            }
            if s.due > now {
                earliest(s.due);
            } else if self.blocked(i, now) && !self.refreshing {
                earliest(s.due + MAX_STALE);
            }
        }
        next
    }

    /// Runs until every binding is done, or a stop.
    async fn run(
        &mut self,
        engine: &Engine,
        work: &mut [Work],
        deadline: Instant,
        signals: &mut Signals,
    ) -> Result<Option<Stop>, crate::Error> {
        let paths = take_paths(engine, work);
        let rivals = self.snapshot.rivals.clone();
        let mut events: futures::stream::FuturesUnordered<futures::future::BoxFuture<'_, Event>> =
            futures::stream::FuturesUnordered::new();
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut grace: Option<(Instant, Interrupt)> = None;
        let mut learned = engine.propagation_learned();
        loop {
            let now = Instant::now();
            let limit = grace.map_or(deadline, |(end, _)| end.min(deadline));
            if now >= limit {
                return Ok(Some(grace.map_or(Stop::Deadline, |(_, s)| Stop::Signal(s))));
            }
            if grace.is_none() {
                for i in self.to_start(now) {
                    self.slots[i].lane = self.lane(i);
                    self.slots[i].running = true;
                    let overlay = self.slots[i].overlay.take();
                    let snapshot = match overlay {
                        Some(seen) => std::sync::Arc::new(continued(&self.snapshot, *seen)),
                        None => self.snapshot.clone(),
                    };
                    let w = work[i].clone();
                    let stopping = stopping.clone();
                    events.push(Box::pin(async move {
                        if stopping.load(std::sync::atomic::Ordering::Relaxed) {
                            return Event::Pass(i, None);
                        }
                        Event::Pass(
                            i,
                            Some(Box::new(run_one(engine, &w, &snapshot, false).await)),
                        )
                    }));
                }
                if self.snapshot_due(now) {
                    self.refreshing = true;
                    let paths = paths.clone();
                    events.push(Box::pin(async move {
                        Event::Snapshot(Box::new(Snapshot::take(&engine.aws, &paths).await))
                    }));
                }
            }
            let running = self.slots.iter().any(|s| s.running);
            if grace.is_some() && !running {
                return Ok(grace.map(|(_, s)| Stop::Signal(s)));
            }
            if self.slots.iter().all(|s| s.done) {
                return Ok(None);
            }
            if events.is_empty() && self.wake(now).is_none() {
                // Nothing runs and nothing falls due: the ones left wait for
                // a snapshot that nothing will take (cannot happen), or
                // nothing at all.
                return Ok(None);
            }
            let wake = self.wake(now).map_or(limit, |w| w.min(limit));
            let event = tokio::select! {
                biased;
                Some(e) = events.next(), if !events.is_empty() => e,
                s = signals.recv() => {
                    if let Some((_, first)) = grace {
                        return Ok(Some(Stop::Signal(first)));
                    }
                    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
                    if running {
                        eprintln!(
                            "{}: stopping; waiting up to {}s for the AWS calls in flight (again to stop at once)",
                            s.name(),
                            INTERRUPT_GRACE.as_secs()
                        );
                    }
                    grace = Some((Instant::now() + INTERRUPT_GRACE, s));
                    continue;
                }
                () = tokio::time::sleep_until(wake) => continue,
            };
            match event {
                Event::Pass(i, None) => self.slots[i].running = false,
                Event::Pass(i, Some(o)) => {
                    self.passed(i, *o, work);
                    // The canary was accepted: those that waited for it
                    // (polling each second) go on now, each to its own wait.
                    if !learned && engine.propagation_learned() {
                        learned = true;
                        let now = Instant::now();
                        for slot in &mut self.slots {
                            if slot.overlay.is_some() && !slot.running {
                                slot.due = slot.due.min(now);
                            }
                        }
                    }
                }
                Event::Snapshot(taken) => {
                    self.refreshing = false;
                    match *taken {
                        Ok(mut s) => {
                            self.snapshot_failures = 0;
                            self.retry_snapshot_at = None;
                            s.rivals = rivals.clone();
                            // Bindings due within one look-again interval
                            // join it (it was taken after their last change):
                            // otherwise each would cost one more snapshot.
                            let horizon = s.taken_at + LOOK_AGAIN;
                            let now = Instant::now();
                            for slot in &mut self.slots {
                                if !slot.done
                                    && !slot.running
                                    && slot.overlay.is_none()
                                    && slot.due <= horizon
                                    && slot.fresh_after.is_none_or(|t| t <= s.taken_at)
                                {
                                    slot.due = slot.due.min(now);
                                }
                            }
                            self.snapshot = std::sync::Arc::new(s);
                        }
                        Err(e) if retryable_snapshot(&e, deadline) => {
                            self.snapshot_failures += 1;
                            tracing::warn!(error = %e, "reading AWS failed; retrying");
                            self.retry_snapshot_at =
                                Some(Instant::now() + pause(self.snapshot_failures));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
    }

    /// Takes in one pass's outcome: done, or when to look again and from what.
    fn passed(&mut self, i: usize, mut o: Outcome, work: &mut [Work]) {
        let w = &mut work[i];
        let key = w_key(w);
        let slot = &mut self.slots[i];
        slot.running = false;
        let finished = if w.prune {
            o.deleted || o.needs_user
        } else {
            o.ready() || o.needs_user
        };
        let now = Instant::now();
        slot.overlay = o.observed.take();
        if finished {
            slot.done = true;
            slot.overlay = None;
            if self.text_only {
                // Its summary line is known now: keep that, not its outcome
                // (a run over 10,000 bindings would hold them all to the end).
                let ok = if w.prune { o.deleted } else { o.ready() };
                slot.made.append(&mut o.actions);
                slot.last = Some(Last::Done {
                    ok,
                    state: done_state(w.prune, ok, &o).into(),
                });
                return;
            }
        } else {
            // Transitions are looked at again within a second; failures back off.
            let delay = match o.next {
                Next::Backoff(_) => self
                    .backoffs
                    .next(key.as_str(), o.next)
                    .unwrap_or(Duration::from_secs(1)),
                Next::Resync | Next::Soon => {
                    self.backoffs.forget(key.as_str());
                    LOOK_AGAIN
                }
                Next::After(wait) => wait,
            };
            slot.due = now + delay;
            // Anything but a wait for propagation is looked at again in a
            // snapshot taken after this pass (its changes, its failure).
            if slot.overlay.is_none() {
                slot.fresh_after = Some(now);
            }
            tracing::info!(binding = %w.input.key, reason = %o.reason, "{}", o.message);
        }
        slot.made.append(&mut o.actions);
        o.notices = Vec::new();
        if !w.prune {
            // A role rotation's progress, carried from one pass to the next
            // as the cluster carries it in the status.
            w.input.previous = o
                .status
                .rotation
                .clone()
                .map(|r| InstanceProfileBindingStatus {
                    rotation: Some(r),
                    ..InstanceProfileBindingStatus::default()
                });
        }
        slot.last = Some(Last::Outcome(Box::new(o)));
    }
}

/// The snapshot a binding continues from after waiting for propagation: what
/// its last pass saw (its profile, its instances and their associations, the
/// other users of its profile), with the shared snapshot's rivals.
fn continued(shared: &Snapshot, seen: crate::reconcile::Observed) -> Snapshot {
    let mut profiles = std::collections::HashMap::new();
    if let Some(p) = seen.profile {
        profiles.insert(p.name.clone(), p);
    }
    let mut associations = seen.other_users;
    let mut instances = Vec::new();
    let selected = seen
        .selected
        .into_iter()
        .chain(seen.refused.into_iter().map(|(s, _)| s))
        .chain(seen.contested.into_iter().map(|(s, _)| s));
    for s in selected {
        associations.extend(s.association);
        instances.push(s.instance);
    }
    let mut s = Snapshot::from_parts(shared.taken_at, profiles, associations, instances);
    s.rivals = shared.rivals.clone();
    s
}

/// Where each binding of a run stands when it ends (indexes of `work`).
struct Progress {
    /// The last outcome of each binding; `None` before its first pass ended.
    outcomes: Vec<Option<Last>>,
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
    // One line (and its changes) per binding, in the order of `work`; JSON
    // reports each binding's status, so there every binding kept its
    // outcome (a binding stopped before its first pass ended gets one
    // saying so).
    let mut failed = 0;
    let mut text = String::new();
    let mut out = ReportWriter::new(opts.output);
    for (i, ((w, last), made)) in work.iter().zip(outcomes).zip(made).enumerate() {
        for a in &made {
            text.push_str(&format!("{}: {}\n", w.input.key, a.message));
        }
        let seen = last.is_some();
        let o = match last {
            Some(Last::Done { ok, state }) => {
                if !ok {
                    failed += 1;
                }
                text.push_str(&format!(
                    "{}{}: {state}\n",
                    if w.prune { "prune " } else { "" },
                    w.input.key
                ));
                continue;
            }
            Some(Last::Outcome(o)) => *o,
            None => unfinished(engine, w, stop.unwrap_or(Stop::Deadline)),
        };
        let ok = if w.prune { o.deleted } else { o.ready() };
        if !ok {
            failed += 1;
        }
        let timed_out = !done[i];
        // A pass cut short: what it was doing is unknown, and so is what it changed.
        let cut = running.contains(&i);
        let last = if cut && seen {
            format!(" (before it: {}: {})", o.reason, o.message)
        } else {
            String::new()
        };
        let state = match (ok, timed_out) {
            (false, true) if matches!(stop, Some(Stop::Signal(_))) => {
                let s = match stop {
                    Some(Stop::Signal(s)) => s.name(),
                    _ => "a signal",
                };
                if cut {
                    format!("interrupted by {s} during an AWS call{last}")
                } else if seen {
                    format!("interrupted by {s}: {}: {}", o.reason, o.message)
                } else {
                    format!("interrupted by {s} before its first pass")
                }
            }
            (false, true) if cut => format!(
                "not ready after {:?}: timed out: an AWS call had not answered{last}",
                opts.timeout
            ),
            (false, true) => format!(
                "not ready after {:?}: {}: {}",
                opts.timeout, o.reason, o.message
            ),
            _ => done_state(w.prune, ok, &o),
        };
        text.push_str(&format!(
            "{}{}: {state}\n",
            if w.prune { "prune " } else { "" },
            w.input.key
        ));
        out.binding(w, &Outcome { actions: made, ..o }, false);
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
    out.text(&text);
    out.finish();
    if let (Output::Json, Some(line)) = (opts.output, &stopped) {
        eprint!("{line}");
    }
    finish_calls(engine, opts.verbose);
    Ok(match stop {
        Some(Stop::Signal(s)) => s.exit_code(),
        _ => i32::from(failed > 0),
    })
}
/// What `apply` keeps of a binding's last pass, for its summary.
enum Last {
    Outcome(Box<Outcome>),
    /// Done, with text output: whether it ended well, and its line.
    Done {
        ok: bool,
        state: Box<str>,
    },
}

/// The summary's word on a binding that is done (or failed without a stop).
fn done_state(prune: bool, ok: bool, o: &Outcome) -> String {
    match (ok, prune) {
        (true, true) => "pruned".to_string(),
        (true, false) => format!(
            "Ready (profile {}, instances {})",
            o.status
                .instance_profile
                .as_ref()
                .map_or("?", |p| p.name.as_str()),
            o.status.instance_summary.as_deref().unwrap_or("0/0")
        ),
        (false, _) => format!("failed: {}: {}", o.reason, o.message),
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

/// How long an interrupted `apply` waits for the passes in flight to end, so
/// the summary can list what they changed; a second signal stops at once.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
