//! The event queue (`run --event-queue`): EC2 state changes and CloudTrail
//! records of profile and association calls, delivered by EventBridge rules
//! to an SQS queue, requeue the bindings they concern within seconds instead
//! of at the next resync (docs/events.md). Events are hints, best effort:
//! the resync stays, and every reconcile still reads AWS itself.
//!
//! One batch of messages costs at most one `DescribeInstances` (the
//! instances of its state changes), one `DescribeIamInstanceProfileAssociations`
//! (the instances whose association changed, or that a binding selects) and
//! one `GetInstanceProfile` per profile of a binding a call touched. What they
//! return is folded into the shared snapshot, so the reconciles the batch
//! triggers see it without a bulk refresh.

pub mod parse;
pub mod route;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::aws::{Association, Aws, AwsError, Instance, Profile, RunState};
use crate::crd::InstanceProfileBinding;
use crate::metrics::{EventMetrics, Metrics};
use crate::naming::BindingKey;
use crate::reconcile::Snapshot;
use crate::reconcile::cache::SnapshotCache;
use crate::server::Detail;

use parse::{Event, Identity, Rejected, What};
use route::{Bindings, Home, Seen};

/// How long a received message stays hidden from other consumers: above
/// the longest handling (three reads of at most 60 s each).
pub const VISIBILITY: Duration = Duration::from_secs(200);
/// Event ids and instance states remembered, for duplicates and order.
const REMEMBERED: usize = 50_000;
/// The `/readyz` detail line of the queue.
const PART: &str = "event queue";

/// What the consumer needs of the controller: the bindings, their profile
/// names, the shared snapshot, and the roles it assumes in other accounts.
pub trait Cluster: Send + Sync + 'static {
    /// The bindings, indexed by what they select and by profile name.
    fn bindings(&self) -> Bindings;
    /// This account's shared snapshot.
    fn snapshots(&self) -> &SnapshotCache;
    /// The ARNs of the roles the controller assumes for other accounts.
    fn assumed_roles(&self) -> Vec<String>;
}

/// The consumer of one queue.
pub struct Consumer<C> {
    pub aws: Aws,
    pub cluster: Arc<C>,
    pub queue: String,
    pub metrics: Arc<Metrics>,
    pub detail: Arc<Detail>,
    /// Where the bindings to reconcile go (the controller's `reconcile_on`).
    pub requeue: mpsc::UnboundedSender<ObjectRef<InstanceProfileBinding>>,
}

impl<C: Cluster> Consumer<C> {
    /// Consumes until the task is dropped (shutdown, lost lease). A queue
    /// that fails (unreachable, access denied, missing) is retried with
    /// backoff and reported in `/readyz`, a metric and a log line; the
    /// resync keeps the bindings converging meanwhile.
    pub async fn run(self) {
        let region = self.aws.region();
        let mut seen = Seen::new(REMEMBERED);
        // Who the controller is (its account, its own CloudTrail events), then the queue's URL.
        let mut caller: Option<crate::aws::assume::CallerIdentity> = None;
        let mut url: Option<String> = None;
        let mut backoff = Backoff::default();
        let events = &self.metrics.events;
        loop {
            let result = if caller.is_none() {
                self.aws.caller_identity().await.map(|c| {
                    caller = Some(c);
                    Vec::new()
                })
            } else if let Some(u) = &url {
                self.aws.receive_messages(u, VISIBILITY).await
            } else {
                self.aws.queue_url(&self.queue).await.map(|u| {
                    tracing::info!(queue = %u, "event queue: consuming");
                    url = Some(u);
                    Vec::new()
                })
            };
            let messages = match result {
                Ok(m) => m,
                Err(e) => {
                    if backoff.failed() {
                        tracing::warn!(queue = %self.queue, error = %e, "event queue unavailable; bindings reconcile on resyncs until it answers");
                    }
                    events.queue_up.set(0);
                    self.detail.set(
                        PART,
                        Some(format!(
                            "failing ({}: {}); bindings reconcile on resyncs until it answers",
                            e.code, e.message
                        )),
                    );
                    if e.code.contains("NonExistentQueue") {
                        url = None;
                    }
                    tokio::time::sleep(backoff.delay()).await;
                    continue;
                }
            };
            let (Some(c), Some(u)) = (&caller, &url) else {
                continue;
            };
            if backoff.recovered() {
                tracing::info!(queue = %self.queue, "event queue answers again");
            }
            events.queue_up.set(1);
            self.detail.set(PART, Some("ok".into()));
            if messages.is_empty() {
                continue;
            }
            let home = Home {
                account: c.account.clone(),
                region: region.clone(),
                identity: Identity::default(),
            };
            self.handle(u, messages, &mut seen, home, &c.arn).await;
        }
    }

    /// One batch: parse, drop what cannot be used, re-read what the rest
    /// names, requeue the bindings concerned, delete the messages.
    async fn handle(
        &self,
        url: &str,
        messages: Vec<crate::aws::sqs::Message>,
        seen: &mut Seen,
        mut home: Home,
        caller_arn: &str,
    ) {
        let events = &self.metrics.events;
        let mut done: Vec<String> = Vec::new();
        let mut usable: Vec<(Event, String)> = Vec::new();
        for m in messages {
            match parse::parse(&m.body) {
                Ok(e) => {
                    events
                        .received
                        .get_or_create(&EventMetrics::label(e.detail_type()))
                        .inc();
                    usable.push((e, m.receipt_handle));
                }
                Err(rejected) => {
                    let (label, reason) = rejected.labels();
                    events
                        .received
                        .get_or_create(&EventMetrics::label(label))
                        .inc();
                    events.ignore(label, reason);
                    match &rejected {
                        Rejected::Malformed(why) => {
                            tracing::info!(
                                why,
                                "event queue: dropping a message that is not a usable event"
                            );
                        }
                        Rejected::Unknown { what, .. } => {
                            tracing::debug!(
                                what,
                                "event queue: dropping an event the controller does not act on"
                            );
                        }
                    }
                    done.push(m.receipt_handle);
                    events
                        .deleted
                        .get_or_create(&EventMetrics::label(label))
                        .inc();
                }
            }
        }
        if usable.iter().any(|(e, _)| e.caller().is_some()) {
            home.identity = Identity::new(
                caller_arn,
                self.cluster.assumed_roles().iter().map(String::as_str),
            );
        }
        // Oldest first: a pending handled before its running.
        usable.sort_by_key(|(e, _)| e.time);
        let mut act: Vec<(Event, String)> = Vec::new();
        for (e, handle) in usable {
            match seen.skip(&e, &home) {
                Some(skip) => {
                    events.ignore(e.detail_type(), skip.as_str());
                    events
                        .deleted
                        .get_or_create(&EventMetrics::label(e.detail_type()))
                        .inc();
                    done.push(handle);
                }
                None => act.push((e, handle)),
            }
        }
        if !act.is_empty() {
            let batch: Vec<&Event> = act.iter().map(|(e, _)| e).collect();
            match self.route(&batch).await {
                Ok(concerned) => {
                    let now = jiff::Timestamp::now();
                    let mut keys = BTreeSet::new();
                    for ((e, handle), concerns) in act.iter().zip(concerned) {
                        seen.handled(e);
                        let late = now.duration_since(e.time).as_secs_f64().max(0.0);
                        events.latency.observe(late);
                        if concerns.is_empty() {
                            events.ignore(e.detail_type(), "no-binding");
                        }
                        keys.extend(concerns);
                        done.push(handle.clone());
                        events
                            .deleted
                            .get_or_create(&EventMetrics::label(e.detail_type()))
                            .inc();
                    }
                    for key in keys {
                        tracing::debug!(binding = %key, "event queue: requeue");
                        let _ = self
                            .requeue
                            .send(ObjectRef::new(&key.name).within(&key.namespace));
                    }
                }
                Err(e) => {
                    // Left on the queue: they come back after the visibility timeout.
                    tracing::warn!(error = %e, events = act.len(), "event queue: cannot re-read what events name; retrying them later");
                }
            }
        }
        match self.aws.delete_messages(url, &done).await {
            Ok(failed) if failed.is_empty() => {}
            Ok(failed) => {
                tracing::warn!(
                    count = failed.len(),
                    "event queue: some messages were not deleted; they come back once"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "event queue: cannot delete handled messages; they come back once")
            }
        }
    }

    /// Re-reads what the events name, folds it into the snapshot, and says
    /// which bindings each event concerns.
    async fn route(&self, batch: &[&Event]) -> Result<Vec<BTreeSet<BindingKey>>, AwsError> {
        let snapshot = self.cluster.snapshots().current().await;
        let known_instance = |id: &str| snapshot.as_ref().and_then(|s| s.instance(id));
        let known_association = |id: &str| snapshot.as_ref().and_then(|s| s.association(id));
        let bindings = self.cluster.bindings();
        let read_at = Instant::now();

        // The instances to describe (state changes but terminations, and
        // instances an association call names that the snapshot does not
        // know), the instances whose association to re-read, the profiles.
        let mut describe: BTreeSet<String> = BTreeSet::new();
        let mut terminated: BTreeSet<String> = BTreeSet::new();
        let mut reassociated: BTreeSet<String> = BTreeSet::new();
        let mut profiles: BTreeSet<String> = BTreeSet::new();
        for e in batch {
            match &e.what {
                What::StateChange { instance_id, state } if state == "terminated" => {
                    terminated.insert(instance_id.clone());
                }
                What::StateChange { instance_id, .. } => {
                    describe.insert(instance_id.clone());
                }
                What::Ec2Call { .. } => {
                    for id in call_instances(e, snapshot.as_deref()) {
                        if known_instance(&id).is_none() {
                            describe.insert(id.clone());
                        }
                        reassociated.insert(id);
                    }
                }
                What::IamCall { profile, .. } => {
                    if bindings.owning(profile).is_some() {
                        profiles.insert(profile.clone());
                    }
                }
            }
        }
        let described: BTreeMap<String, Instance> = if describe.is_empty() {
            BTreeMap::new()
        } else {
            let ids: Vec<String> = describe.into_iter().collect();
            self.aws
                .describe_instances_by_id(&ids)
                .await?
                .into_iter()
                .map(|i| (i.id.clone(), i))
                .collect()
        };
        // A new instance a binding selects may have come with a profile
        // (RunInstances with one): read its association too.
        for e in batch {
            if let What::StateChange { instance_id, .. } = &e.what
                && described
                    .get(instance_id)
                    .is_some_and(|i| !bindings.selecting(i).is_empty())
            {
                reassociated.insert(instance_id.clone());
            }
        }
        let reassociated: Vec<String> = reassociated.into_iter().collect();
        let associations: BTreeMap<String, Association> = if reassociated.is_empty() {
            BTreeMap::new()
        } else {
            crate::reconcile::observe::live_associations(
                self.aws.describe_associations_of(&reassociated).await?,
            )
            .into_iter()
            .collect()
        };
        let mut reread: BTreeMap<String, Option<Profile>> = BTreeMap::new();
        for name in profiles {
            let p = self.aws.get_profile(&name).await?;
            reread.insert(name, p);
        }

        // What each event concerns, by the snapshot before and the reads now;
        // and the instances that concern a binding at all.
        let mut relevant: BTreeSet<String> = BTreeSet::new();
        let concerned: Vec<BTreeSet<BindingKey>> = batch
            .iter()
            .map(|e| {
                let mut out = BTreeSet::new();
                let ids: Vec<String> = match &e.what {
                    What::StateChange { instance_id, .. } => vec![instance_id.clone()],
                    What::Ec2Call { .. } => call_instances(e, snapshot.as_deref()),
                    What::IamCall { profile, .. } => {
                        out.extend(bindings.owning(profile).cloned());
                        Vec::new()
                    }
                };
                for id in ids {
                    let mut by_id = BTreeSet::new();
                    bindings.concerned_by_instance(
                        [known_instance(&id).as_ref(), described.get(&id)]
                            .into_iter()
                            .flatten(),
                        [known_association(&id).as_ref(), associations.get(&id)]
                            .into_iter()
                            .flatten(),
                        &mut by_id,
                    );
                    if !by_id.is_empty() {
                        relevant.insert(id);
                        out.append(&mut by_id);
                    }
                }
                out
            })
            .collect();

        // Only what concerns a binding is patched in: a burst of unrelated
        // events leaves the snapshot (and its readers) alone.
        if relevant.is_empty() && reread.is_empty() {
            return Ok(concerned);
        }
        let reassociated: Vec<String> = reassociated
            .into_iter()
            .filter(|id| relevant.contains(id))
            .collect();
        self.cluster
            .snapshots()
            .patch(read_at, |s| {
                for id in terminated.iter().filter(|id| relevant.contains(*id)) {
                    if let Some(mut gone) = s.instance(id) {
                        gone.state = RunState::Terminated;
                        s.note_instance(gone);
                    }
                }
                for i in described.into_values().filter(|i| relevant.contains(&i.id)) {
                    s.note_instance(i);
                }
                s.note_associations(
                    &reassociated,
                    associations
                        .into_values()
                        .filter(|a| relevant.contains(&a.instance_id))
                        .collect(),
                );
                for (name, p) in reread {
                    s.note_profile(&name, p);
                }
            })
            .await;
        Ok(concerned)
    }
}

/// The instances an EC2 association call names, directly or by an
/// association id the snapshot knows.
fn call_instances(e: &Event, snapshot: Option<&Snapshot>) -> Vec<String> {
    let What::Ec2Call {
        instance_ids,
        association_ids,
        ..
    } = &e.what
    else {
        return Vec::new();
    };
    let mut out: BTreeSet<String> = instance_ids.clone();
    if let Some(s) = snapshot {
        out.extend(s.instances_of_associations(association_ids));
    }
    out.into_iter().collect()
}

/// The queue's retry pace: 1 s doubling to 60 s; logs once per outage.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Notes a failure; whether it starts an outage (log it).
    fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Notes a success; whether it ends an outage.
    fn recovered(&mut self) -> bool {
        std::mem::take(&mut self.failures) > 0
    }

    fn delay(&self) -> Duration {
        Duration::from_secs(1 << self.failures.saturating_sub(1).min(6))
            .min(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_minute_and_resets() {
        let mut b = Backoff::default();
        assert!(b.failed());
        assert_eq!(b.delay(), Duration::from_secs(1));
        assert!(!b.failed());
        assert_eq!(b.delay(), Duration::from_secs(2));
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.delay(), Duration::from_secs(60));
        assert!(b.recovered());
        assert!(!b.recovered());
    }
}
