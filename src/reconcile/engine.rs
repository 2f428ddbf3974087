//! The engine: one pass over one binding, as a straight line — gate → place
//! → observe → role → converge (decide ⇄ act) → report. File mode and the
//! cluster controller both run [`Engine::reconcile`] and [`Engine::cleanup`];
//! docs/design.md says why the steps come in this order.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::aws::assume::AssumeTarget;
use crate::aws::{Aws, AwsError, ErrorKind, RoleCache};
use crate::crd::{DeletionPolicy, InstanceProfileBindingSpec};
use crate::naming::BindingKey;

use super::accounts::Accounts;
use super::act::{self, Stop};
use super::decide::{self, cleanup};
use super::model::{Action, BindingInput, Decision, Desired, EngineConfig, Outcome};
use super::observe::{Observed, Snapshot};
use super::place::{self, Place};
use super::policy::Admission;
use super::propagation::Propagation;
use super::quota::Quota;
use super::reason::{Failure, Reason};
use super::role;
use super::rotation;
use super::status::{self, Note, Report};
use super::tags::TagChecks;

/// Shared by every reconcile: AWS clients and the caches of what was learnt.
pub struct Engine {
    pub aws: Aws,
    pub config: EngineConfig,
    roles: RoleCache,
    /// Other accounts named by policies' `spec.account`.
    pub accounts: Accounts,
    /// Which profiles' tags are known (see [`TagChecks::remember`]).
    pub tags: TagChecks,
    /// When a profile created here may first be associated.
    propagation: Propagation,
    /// Each account's instance-profile usage and quota.
    pub quota: Quota,
}

/// Waits for propagation up to this long happen within the pass (a longer
/// one would hold a concurrency slot that another binding could use). Below
/// the canary's poll, so a binding waiting for the canary never sleeps here:
/// `apply`'s round, and with it the canary's next probe, would wait for it.
const SHORT_WAIT: Duration = Duration::from_millis(500);

/// The most steps (actions) one pass takes for a binding with `instances`
/// selected (or otherwise using its profile) instances: a pass that would
/// take more stops and looks again.
#[must_use]
pub fn step_budget(instances: usize) -> usize {
    16 + 4 * instances
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Cleanup,
}

impl Engine {
    #[must_use]
    pub fn new(aws: Aws, config: EngineConfig) -> Self {
        let roles = RoleCache::new(config.role_cache_ttl);
        let accounts = Accounts::new(
            aws.clone(),
            config.cluster_id.clone(),
            config.assume_role_seconds,
            config.role_cache_ttl,
        );
        Self {
            aws,
            config,
            roles,
            accounts,
            tags: TagChecks::default(),
            propagation: Propagation::default(),
            quota: Quota::default(),
        }
    }

    /// Forgets per-binding state (role sessions) of a binding that is gone.
    pub fn forget(&self, key: &BindingKey) {
        self.accounts.forget(key);
    }

    /// The propagation delay of new profiles is known (a canary's
    /// association was accepted): bindings that waited for the canary can go on.
    #[must_use]
    pub fn propagation_learned(&self) -> bool {
        self.propagation.learned()
    }

    /// The path every profile of this cluster lives under by default.
    #[must_use]
    pub fn default_path(&self) -> String {
        self.config.default_path()
    }

    #[must_use]
    pub fn profile_name(&self, key: &BindingKey) -> String {
        self.config.profile_name(key)
    }

    /// Every path prefix a snapshot has to list for these bindings.
    pub fn snapshot_paths<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a InstanceProfileBindingSpec>,
    ) -> BTreeSet<String> {
        self.config.snapshot_paths(specs)
    }

    /// Brings one live binding to its desired state (or, with `dry_run`, says how).
    pub async fn reconcile(&self, b: &BindingInput, home: &Snapshot, dry_run: bool) -> Outcome {
        let mut report = Report::new(&self.config, b);
        if let Err(failure) = self.try_reconcile(&mut report, home, dry_run).await {
            report.failure = Some(failure);
        }
        status::outcome(report)
    }

    async fn try_reconcile(
        &self,
        report: &mut Report<'_>,
        home: &Snapshot,
        dry_run: bool,
    ) -> Result<(), Failure> {
        let b = report.b;
        // The gate comes before any role lookup or AWS change.
        let (allowing, target) = match b
            .policies
            .as_ref()
            .map(|p| p.admit(&b.key.namespace, &b.spec))
        {
            None => (None, None),
            Some(Admission::Denied(message)) => {
                // Denial keeps AWS state where it is, and the record of where.
                report.account = b.previous.as_ref().and_then(|p| p.assume_role_arn.clone());
                if place::recorded(b).is_none() {
                    report.observed = self.observe(home, b);
                }
                return Err(Failure::PolicyDenied { message });
            }
            Some(Admission::Allowed { policies, account }) => {
                (Some(policies), account.as_ref().map(AssumeTarget::from))
            }
        };
        // Resources left in another account (the policy's account changed)
        // are removed there first: a binding lives in one account at a time.
        let recorded = place::recorded(b);
        if place::must_move(b, recorded.as_ref(), target.as_ref()) {
            let left = self.cleanup_at(b, recorded.as_ref(), home, dry_run).await;
            if !left.deleted {
                let to = target.as_ref().map_or_else(
                    || "this controller's account".to_string(),
                    |t| format!("account {}", t.account_id()),
                );
                *report = Report {
                    note: Some(Note::MovingTo(to)),
                    ..left
                };
                return Ok(());
            }
            report.moved = left.records;
        }
        let place = match self.place(b, target.as_ref(), home).await {
            Ok(place) => place,
            Err(e) => {
                report.account = recorded.map(|t| t.role_arn);
                return Err(Failure::Aws(e));
            }
        };
        report.account = target.map(|t| t.role_arn);
        report.observed = self.observe(place.snapshot(), b);
        if let Some(allowing) = &allowing {
            report.observed.set_aside_refused(allowing);
        }
        // Instances another binding selects too are left as they are: an
        // instance holds one profile, and two bindings would take turns.
        if let Place::Home { snapshot, .. } = &place {
            report
                .observed
                .set_aside_contested(&snapshot.rivals, &b.key);
        }
        let (lookup, roles) = place.lookup();
        let role = role::resolve_role(lookup, roles, &b.spec.role).await?;
        report.desired = Desired::new(&self.config, b, role);
        report.observed.rotation = rotation::pending(b, &report.desired.role, &report.observed);
        report.desired.tags_checked = self.tags.checked(b, &report.desired, &report.observed);
        self.converge(place.aws(), report, dry_run, Mode::Apply)
            .await;
        Ok(())
    }

    /// The outcome of a binding whose AWS state could not be read at all (the
    /// bulk snapshot failed): `Ready=False` with the reason, and everything
    /// else as last recorded, since nothing newer is known.
    #[must_use]
    pub fn unobserved(&self, b: &BindingInput, error: AwsError) -> Outcome {
        let mut report = Report::new(&self.config, b);
        report.failure = Some(Failure::Aws(error));
        let mut out = status::outcome(report);
        if let Some(previous) = &b.previous {
            status::keep_recorded(&mut out.status, previous);
        }
        out
    }

    /// Deletes what a binding owns in AWS, safely (or, with `dry_run`, says how),
    /// in the account its status records, else the one its policy names.
    pub async fn cleanup(&self, b: &BindingInput, home: &Snapshot, dry_run: bool) -> Outcome {
        let target = place::of_cleanup(b);
        status::outcome(self.cleanup_at(b, target.as_ref(), home, dry_run).await)
    }

    async fn cleanup_at<'b>(
        &self,
        b: &'b BindingInput,
        target: Option<&AssumeTarget>,
        home: &Snapshot,
        dry_run: bool,
    ) -> Report<'b> {
        let mut report = Report::new(&self.config, b);
        report.account = target.map(|t| t.role_arn.clone());
        if b.spec.deletion_policy == DeletionPolicy::Retain {
            report.deleted = true;
            report.note = Some(Note::Retained);
            return report;
        }
        match self.place(b, target, home).await {
            Err(e) => report.failure = Some(Failure::Aws(e)),
            Ok(place) => {
                report.observed = self.observe(place.snapshot(), b);
                // A listing can miss a profile that exists (IAM's lists are
                // eventually consistent, and a list paged while profiles are
                // deleted can skip one): before concluding that nothing is
                // left to delete, ask for the profile by name.
                if report.observed.profile.is_none() {
                    match place.aws().get_profile(&self.profile_name(&b.key)).await {
                        Ok(found) => report.observed.profile = found,
                        Err(e) => {
                            report.failure = Some(Failure::Aws(e));
                            return report;
                        }
                    }
                }
                self.converge(place.aws(), &mut report, dry_run, Mode::Cleanup)
                    .await;
            }
        }
        report
    }

    /// Reaches the account `target` names (or this one) for a binding.
    async fn place<'a>(
        &'a self,
        b: &BindingInput,
        target: Option<&AssumeTarget>,
        home: &'a Snapshot,
    ) -> Result<Place<'a>, AwsError> {
        let mut paths = BTreeSet::from([self.default_path()]);
        paths.insert(self.config.path_for(&b.spec));
        let home = Place::Home {
            snapshot: home,
            aws: &self.aws,
            roles: &self.roles,
        };
        place::resolve(&self.accounts, home, &b.key, target, &paths).await
    }

    /// A binding's slice of a snapshot: its profile and selected instances.
    fn observe(&self, snapshot: &Snapshot, b: &BindingInput) -> Observed {
        let mut selector = super::model::selector_of(&b.spec);
        // The instances behind the Nodes nodeSelector selected.
        if let Some(nodes) = &b.nodes {
            selector.ids.extend(nodes.ids.iter().cloned());
        }
        Observed::from_snapshot(snapshot, &self.profile_name(&b.key), &selector)
    }

    /// Decide and act, one action at a time, until nothing is left to do,
    /// a wait or a failure stops the pass, or the step budget is spent.
    async fn converge(&self, aws: &Aws, report: &mut Report<'_>, dry_run: bool, mode: Mode) {
        let deleting = mode == Mode::Cleanup;
        let decide = match mode {
            Mode::Apply => decide::decide_apply,
            Mode::Cleanup => cleanup::decide_cleanup,
        };
        let budget =
            step_budget(report.observed.selected.len() + report.observed.other_users.len());
        for _ in 0..budget {
            let (desired, observed) = (&report.desired, &mut report.observed);
            // A profile created here moments ago: its tags are what we wrote.
            if let Some(p) = observed.profile.as_mut()
                && p.tags.is_none()
            {
                p.tags = self.propagation.tags(&p.name, &p.id);
            }
            let decision = decide(desired, observed);
            if decision.actions.is_empty() && !deleting {
                self.tags.note(desired, observed);
            }
            let Some(action) = decision.actions.first().cloned() else {
                report.deleted = deleting && decision.converged() && observed.profile.is_none();
                report.decision = decision;
                return;
            };
            let associates = action.associates_anew();
            if associates
                && !dry_run
                && let Some(wait) = self.propagation.wait_for(&desired.profile_name).await
            {
                // A short wait is cheaper here than a new pass (a snapshot).
                if wait <= SHORT_WAIT {
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // A profile created moments ago: EC2 would refuse it. Wait
                // the learned delay instead of spending a write on finding out.
                report.failure = Some(Failure::Aws(not_yet_propagated(
                    &desired.profile_name,
                    wait,
                )));
                report.wait = Some(wait);
                report.decision = decision;
                return;
            }
            if matches!(action, Action::CreateProfile { .. }) {
                match self.admit_create(aws, report.account.as_deref()).await {
                    Ok(notice) => report.notices.extend(notice),
                    Err(e) => {
                        report.failure = Some(Failure::Aws(e));
                        report.decision = decision;
                        return;
                    }
                }
            }
            let (desired, observed) = (&report.desired, &mut report.observed);
            let result = act::execute(aws, desired, observed, &action, dry_run).await;
            if !dry_run {
                self.learn(desired, observed, &action, &result);
            }
            self.count_profiles(report.account.as_deref(), &action, &result)
                .await;
            match result {
                Ok(Some(record)) => {
                    if !dry_run {
                        tracing::info!(binding = %report.b.key, reason = record.reason.as_str(), "{}", record.message);
                    }
                    report.records.push(record);
                }
                Ok(None) => {}
                Err(Stop::Reobserve) => {
                    report.decision = Decision {
                        waiting: vec!["(re-reading AWS state)".into()],
                        ..Decision::default()
                    };
                    return;
                }
                Err(Stop::Failed(e)) => {
                    report.decision = decide(&report.desired, &report.observed);
                    report.failure = Some(Failure::Aws(e));
                    return;
                }
            }
        }
        report.decision = Decision {
            waiting: vec!["(step budget spent)".into()],
            ..decide(&report.desired, &report.observed)
        };
    }

    /// The quota check before a create: refused (`QuotaExceeded`) when it
    /// would leave fewer free than the reserve. An account summary that
    /// cannot be read blocks the create only when a reserve was asked for.
    async fn admit_create(
        &self,
        aws: &Aws,
        account: Option<&str>,
    ) -> Result<Option<(Reason, String)>, AwsError> {
        let reserve = self.config.profile_quota_reserve;
        let account = account.unwrap_or_default();
        match self
            .quota
            .admit_create(aws, account, reserve, self.config.quota_max_age)
            .await
        {
            Ok(usage) if usage.nearly_full() => {
                let message = format!(
                    "{} of {} instance profiles of the account are in use (over {} %); delete unused ones (plan --prune lists this cluster's orphans) or raise the quota",
                    usage.used,
                    usage.quota,
                    super::quota::Usage::WARN_PERCENT
                );
                tracing::warn!(account, "{message}");
                Ok(Some((Reason::QuotaNearlyFull, message)))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind == ErrorKind::QuotaExceeded || reserve > 0 => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "account summary unread; creating without the quota check");
                Ok(None)
            }
        }
    }

    /// Keeps the account's profile count current between summary reads.
    async fn count_profiles(
        &self,
        account: Option<&str>,
        action: &Action,
        result: &Result<Option<super::model::ActionRecord>, Stop>,
    ) {
        let account = account.unwrap_or_default();
        match (action, result) {
            // Admitted and counted before the call (a plan's too: its
            // later creates see the ones before them).
            (Action::CreateProfile { .. }, Ok(Some(r))) if r.reason == Reason::CreatedProfile => {}
            (Action::CreateProfile { .. }, _) => self.quota.counted(account, -1).await,
            (Action::DeleteProfile, Ok(Some(_))) => self.quota.counted(account, -1).await,
            _ => {}
        }
    }

    /// What an action's result teaches the propagation pacing.
    fn learn(
        &self,
        desired: &Desired,
        observed: &Observed,
        action: &Action,
        result: &Result<Option<super::model::ActionRecord>, Stop>,
    ) {
        let associates = action.associates_anew();
        match (action, result) {
            (Action::CreateProfile { .. }, Ok(Some(r))) if r.reason == Reason::CreatedProfile => {
                if let Some(p) = &observed.profile {
                    self.propagation
                        .created(&p.name, &p.id, p.tags.clone().unwrap_or_default());
                }
            }
            (Action::RecordInstances { .. } | Action::WriteTags { .. }, Ok(_)) => {
                if let Some(p) = &observed.profile
                    && let Some(tags) = &p.tags
                {
                    self.propagation.wrote_tags(&p.name, &p.id, tags);
                }
            }
            (_, Ok(Some(_))) if associates => {
                self.propagation.accepted(&desired.profile_name);
            }
            (_, Err(Stop::Failed(e))) if associates && e.kind == ErrorKind::PropagationPending => {
                self.propagation.refused(&desired.profile_name);
            }
            (Action::DeleteProfile, Ok(_)) => {
                self.propagation.forget(&desired.profile_name);
            }
            _ => {}
        }
    }
}

/// The error a binding waits on while its fresh profile propagates.
fn not_yet_propagated(profile_name: &str, wait: Duration) -> AwsError {
    AwsError {
        kind: ErrorKind::PropagationPending,
        service: "ec2",
        action: "AssociateIamInstanceProfile",
        code: "NotYetPropagated".into(),
        message: format!(
            "instance profile {profile_name} was created moments ago; associating in {:.1}s, when it has propagated",
            wait.as_secs_f64()
        ),
    }
}
