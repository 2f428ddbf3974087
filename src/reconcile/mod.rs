//! The reconcile pipeline: observe → decide → act → report. File mode and the
//! cluster controller both run [`Engine::reconcile`] and [`Engine::cleanup`].

pub mod accounts;
pub mod act;
pub mod backoff;
pub mod cache;
pub mod decide;
/// Deletion's decisions, also reachable as `reconcile::cleanup`.
pub use decide::cleanup;
pub mod model;
pub mod observe;
pub mod policy;
pub mod propagation;
pub mod reason;
pub mod rivals;
pub mod role;
pub mod status;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::aws::assume::AssumeTarget;
use crate::aws::{Aws, AwsError, ErrorKind, RoleCache, RoleInfo};
use crate::crd::{
    ASSOCIATED, DeletionPolicy, InstanceProfileBindingSpec, InstanceProfileBindingStatus,
    PROFILE_READY, ROLE_ATTACHED,
};
use crate::naming::{self, BindingKey};

pub use act::ActionRecord;
use act::Stop;
pub use backoff::Backoffs;
pub use model::{Action, Decision, Desired, Problem};
pub use observe::{Observed, Selector, Snapshot};
pub use reason::Reason;

/// Why a binding is not Ready, beyond what decide reports.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    #[error("role {role} not found{}", near.as_ref().map(|n| format!("; did you mean {n}? (role names are case-sensitive)")).unwrap_or_default())]
    RoleNotFound { role: String, near: Option<String> },
    #[error(
        "the trust policy of role {role} does not allow ec2.amazonaws.com to call sts:AssumeRole, so instances could not use it; add EC2 as a trusted service"
    )]
    TrustPolicyMissingEc2 { role: String },
    #[error("{0}")]
    Aws(AwsError),
    #[error("{message}")]
    PolicyDenied { message: String },
}

impl Failure {
    /// The condition/event/metric reason.
    #[must_use]
    pub fn reason(&self) -> Reason {
        match self {
            Self::RoleNotFound { .. } => Reason::RoleNotFound,
            Self::TrustPolicyMissingEc2 { .. } => Reason::TrustPolicyMissingEc2,
            Self::PolicyDenied { .. } => Reason::PolicyDenied,
            Self::Aws(e) => Reason::of_aws(e.kind),
        }
    }

    /// A person has to act before retrying can help (the reason's table).
    #[must_use]
    pub fn needs_user(&self) -> bool {
        self.reason().needs_person()
    }

    /// A user-facing message; AWS messages name the action and resource.
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::Aws(e) if e.kind == ErrorKind::AccessDenied => format!(
                "access denied for {}:{}: {} (check the controller's IAM policy, permission boundaries, SCPs and iam:PassRole)",
                e.service, e.action, e.message
            ),
            Self::Aws(e) if e.kind == ErrorKind::PropagationPending => format!(
                "waiting for IAM to propagate the new instance profile to EC2 ({}: {})",
                e.action, e.message
            ),
            Self::Aws(e) if e.kind == ErrorKind::QuotaExceeded => {
                format!(
                    "instance profile quota of the account reached: {}; delete unused profiles or raise the quota",
                    e.message
                )
            }
            other => other.to_string(),
        }
    }
}

/// When to look at a binding again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Converged: the periodic resync is enough.
    Resync,
    /// Changed something or waiting for a transition: confirm soon.
    Soon,
    /// Failed; retry with the backoff of this class.
    Backoff(BackoffClass),
    /// A known wait (IAM propagating a profile created here): look again
    /// after this long, without spending a call to find out.
    After(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackoffClass {
    /// IAM→EC2 propagation: sub-second first retry, capped, no give-up.
    Propagation,
    /// Throttling and transient errors.
    Transient,
    /// Needs a person (access denied, missing role, foreign resources).
    Slow,
}

impl BackoffClass {
    /// (first delay, cap)
    #[must_use]
    pub fn bounds(self) -> (Duration, Duration) {
        match self {
            Self::Propagation => (Duration::from_millis(500), Duration::from_secs(20)),
            Self::Transient => (Duration::from_secs(1), Duration::from_secs(60)),
            Self::Slow => (Duration::from_secs(15), Duration::from_secs(300)),
        }
    }
}

/// The result of one reconcile of one binding.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: InstanceProfileBindingStatus,
    /// Changes made (or, for `plan`, that would be made), in order.
    pub actions: Vec<ActionRecord>,
    pub next: Next,
    /// The Ready reason.
    pub reason: Reason,
    pub message: String,
    /// A person must act: `apply` stops waiting for this binding.
    pub needs_user: bool,
    /// Deletion finished (cleanup only).
    pub deleted: bool,
}

impl Outcome {
    #[must_use]
    pub fn ready(&self) -> bool {
        self.status.is_ready()
    }
}

/// A binding as the pipeline sees it, from a file or from the cluster.
#[derive(Clone, Debug)]
pub struct BindingInput {
    pub key: BindingKey,
    pub uid: Option<String>,
    pub generation: Option<i64>,
    pub spec: InstanceProfileBindingSpec,
    /// The status recorded earlier: only to keep `lastTransitionTime` stable.
    pub previous: Option<InstanceProfileBindingStatus>,
    /// The policy gate; `None` when it is off.
    pub policies: Option<std::sync::Arc<policy::PolicySet>>,
}

/// Controller-wide settings that shape names and paths.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub cluster_id: String,
    /// Normalized `/…/` prefix; profiles live at `<prefix><cluster-id>/`.
    pub path_prefix: String,
    pub role_cache_ttl: Duration,
    /// Session length of cross-account AssumeRole (at most 3600 s: role chaining).
    pub assume_role_seconds: u32,
}

/// Shared by every reconcile: AWS clients and the role cache.
pub struct Engine {
    pub aws: Aws,
    pub config: EngineConfig,
    roles: RoleCache,
    /// Other accounts named by policies' `spec.account`.
    pub accounts: accounts::Accounts,
    /// Remember, per profile id, the desired tags last seen on it, and read a
    /// profile's tags only when they changed (the controller: one read per
    /// profile after it starts). Without it (`plan`, `apply`), tags are read
    /// when the spec asks for more than the ownership tags, or when no
    /// association shows the profile in use (ownership proven before Ready).
    pub remember_tags: bool,
    checked_tags: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    /// When a profile created here may first be associated.
    propagation: propagation::Propagation,
}

/// Where a binding's AWS resources live: this account or one reached by AssumeRole.
enum Place<'a> {
    Home(&'a Snapshot),
    Other(Arc<accounts::Account>, Arc<Snapshot>, Box<Aws>),
}

impl Place<'_> {
    fn snapshot(&self) -> &Snapshot {
        match self {
            Self::Home(s) => s,
            Self::Other(_, s, _) => s,
        }
    }
}

impl Engine {
    #[must_use]
    pub fn new(aws: Aws, config: EngineConfig) -> Self {
        let roles = RoleCache::new(config.role_cache_ttl);
        let accounts = accounts::Accounts::new(
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
            remember_tags: false,
            checked_tags: std::sync::Mutex::default(),
            propagation: propagation::Propagation::default(),
        }
    }

    /// Forgets per-binding state (role sessions) of a binding that is gone.
    pub fn forget(&self, key: &BindingKey) {
        self.accounts.forget(key);
    }

    /// Reaches the account `target` names (or this one) for a binding:
    /// its role session and a snapshot no older than `home`.
    async fn place<'a>(
        &self,
        b: &BindingInput,
        target: Option<&AssumeTarget>,
        home: &'a Snapshot,
    ) -> Result<Place<'a>, AwsError> {
        let Some(target) = target else {
            return Ok(Place::Home(home));
        };
        let account = self.accounts.get(target);
        let mut paths = BTreeSet::from([self.default_path()]);
        paths.insert(self.path_for(&b.spec));
        let snapshot = account.snapshot(home.taken_at, &paths).await?;
        let aws = account.session(&b.key);
        Ok(Place::Other(account, snapshot, Box::new(aws)))
    }

    /// The account recorded in a binding's status (where its resources are),
    /// with the external id a current policy gives for it.
    fn recorded_account(&self, b: &BindingInput) -> Option<AssumeTarget> {
        let arn = b.previous.as_ref()?.assume_role_arn.clone()?;
        let external_id = b.policies.as_ref().and_then(|set| {
            set.policies
                .iter()
                .filter_map(|(_, p)| p.account.as_ref())
                .find(|a| a.assume_role_arn == arn)
                .and_then(|a| a.external_id.clone())
        });
        Some(AssumeTarget {
            role_arn: arn,
            external_id,
        })
    }

    /// The path every profile of this cluster lives under by default.
    #[must_use]
    pub fn default_path(&self) -> String {
        naming::profile_path(&self.config.path_prefix, &self.config.cluster_id)
    }

    #[must_use]
    pub fn profile_name(&self, key: &BindingKey) -> String {
        naming::profile_name(&self.config.cluster_id, key)
    }

    #[must_use]
    pub fn path_for(&self, spec: &InstanceProfileBindingSpec) -> String {
        spec.instance_profile
            .as_ref()
            .and_then(|p| p.path.clone())
            .unwrap_or_else(|| self.default_path())
    }

    /// Every path prefix a snapshot has to list for these bindings.
    pub fn snapshot_paths<'a>(
        &self,
        specs: impl IntoIterator<Item = &'a InstanceProfileBindingSpec>,
    ) -> BTreeSet<String> {
        let mut paths: BTreeSet<String> = specs.into_iter().map(|s| self.path_for(s)).collect();
        paths.insert(self.default_path());
        paths
    }

    fn desired(&self, b: &BindingInput, role: RoleInfo) -> Desired {
        let mut tags = naming::ownership_tags(&self.config.cluster_id, &b.key, b.uid.as_deref());
        if let Some(settings) = &b.spec.instance_profile
            && !settings.tags.is_empty()
        {
            for (k, v) in &settings.tags {
                tags.entry(k.clone()).or_insert_with(|| v.clone());
            }
            tags.insert(
                naming::TAG_USER_KEYS.to_string(),
                naming::user_keys_record(settings.tags.keys()),
            );
        }
        if b.spec.deletion_policy == DeletionPolicy::Retain {
            tags.insert(
                naming::TAG_DELETION_POLICY.to_string(),
                "Retain".to_string(),
            );
        }
        Desired {
            key: b.key.clone(),
            cluster_id: self.config.cluster_id.clone(),
            profile_name: self.profile_name(&b.key),
            path: self.path_for(&b.spec),
            tags,
            role,
            replace_foreign: b.spec.replace_foreign_associations,
            tags_checked: false,
        }
    }

    fn tags_digest(desired: &Desired) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        desired.tags.hash(&mut h);
        h.finish()
    }

    /// Whether `desired`'s profile (as observed) needs no tag read just to
    /// verify its tags: see [`Engine::remember_tags`].
    fn tags_checked(&self, b: &BindingInput, desired: &Desired, observed: &Observed) -> bool {
        let Some(profile) = &observed.profile else {
            return true;
        };
        if self.remember_tags {
            let digest = Self::tags_digest(desired);
            let Ok(mut checked) = self.checked_tags.lock() else {
                return false;
            };
            if checked.get(&profile.id) == Some(&digest) {
                return true;
            }
            // Ready for this very generation and profile incarnation, as the
            // status says: the tags were verified then (Ready needs it). So a
            // restart over N converged bindings reads no profile's tags.
            let verified_before = b.previous.as_ref().is_some_and(|s| {
                s.is_ready()
                    && s.observed_generation == b.generation
                    && s.instance_profile.as_ref().and_then(|p| p.id.as_deref())
                        == Some(profile.id.as_str())
            });
            if verified_before {
                checked.insert(profile.id.clone(), digest);
            }
            return verified_before;
        }
        let only_ownership = desired.tags.keys().all(|k| {
            k.starts_with(naming::TAG_PREFIX)
                && k != naming::TAG_USER_KEYS
                && k != naming::TAG_DELETION_POLICY
        });
        let in_use = observed.selected.iter().any(|s| {
            s.association
                .as_ref()
                .is_some_and(|a| a.profile_id == profile.id)
        });
        only_ownership && in_use
    }

    /// Notes that `observed`'s profile carries `desired`'s tags.
    fn note_tags_checked(&self, desired: &Desired, observed: &Observed) {
        let Some(profile) = &observed.profile else {
            return;
        };
        let Some(tags) = &profile.tags else {
            return;
        };
        if !self.remember_tags
            || !desired
                .tags
                .iter()
                .all(|(k, v)| k == naming::TAG_UID || tags.get(k) == Some(v))
            || profile.id == act::UNKNOWN
        {
            return;
        }
        if let Ok(mut m) = self.checked_tags.lock() {
            m.insert(profile.id.clone(), Self::tags_digest(desired));
        }
    }

    /// Brings one live binding to its desired state (or, with `dry_run`, says how).
    pub async fn reconcile(&self, b: &BindingInput, snapshot: &Snapshot, dry_run: bool) -> Outcome {
        // The gate comes before any role lookup or AWS change.
        let (allowing, target) = match &b.policies {
            None => (None, None),
            Some(policies) => match policies.admit(&b.key.namespace, &b.spec) {
                policy::Admission::Denied(message) => {
                    let observed = if self.recorded_account(b).is_some() {
                        Observed::default()
                    } else {
                        Observed::from_snapshot(
                            snapshot,
                            &self.profile_name(&b.key),
                            &selector_of(&b.spec),
                        )
                    };
                    let mut out = self.failed(b, &observed, Failure::PolicyDenied { message });
                    // Denial keeps AWS state where it is, and the record of where.
                    out.status.assume_role_arn =
                        b.previous.as_ref().and_then(|p| p.assume_role_arn.clone());
                    return out;
                }
                policy::Admission::Allowed { policies, account } => (
                    Some(policies),
                    account.map(|a| AssumeTarget {
                        role_arn: a.assume_role_arn,
                        external_id: a.external_id,
                    }),
                ),
            },
        };
        // Resources left in another account (the policy's account changed)
        // are removed there first: a binding lives in one account at a time.
        let mut moved = Vec::new();
        let recorded = self.recorded_account(b);
        let had_resources = b
            .previous
            .as_ref()
            .and_then(|p| p.instance_profile.as_ref())
            .is_some_and(|p| p.arn.is_some());
        if had_resources
            && recorded.as_ref().map(|t| &t.role_arn) != target.as_ref().map(|t| &t.role_arn)
        {
            let out = self
                .cleanup_at(b, recorded.as_ref(), snapshot, dry_run)
                .await;
            if !out.deleted {
                let mut out = out;
                let to = target.as_ref().map_or_else(
                    || "this controller's account".to_string(),
                    |t| format!("account {}", t.account_id()),
                );
                out.message = format!(
                    "moving to {to}: removing this binding's resources from where they are first: {}",
                    out.message
                );
                out.status.set_ready_message(&out.message);
                return out;
            }
            moved = out.actions;
        }
        let place = match self.place(b, target.as_ref(), snapshot).await {
            Ok(p) => p,
            Err(e) => {
                let mut out = self.failed(b, &Observed::default(), Failure::Aws(e));
                out.status.assume_role_arn = recorded.map(|t| t.role_arn);
                return out;
            }
        };
        // Role lookups are reads shared by the account's bindings: the
        // account's own session; changes go through the binding's session.
        let (aws, roles, lookup) = match &place {
            Place::Home(_) => (&self.aws, &self.roles, &self.aws),
            Place::Other(account, _, aws) => (&**aws, &account.roles, &account.aws),
        };
        let mut observed = Observed::from_snapshot(
            place.snapshot(),
            &self.profile_name(&b.key),
            &selector_of(&b.spec),
        );
        if let Some(allowing) = &allowing {
            let instances: Vec<&crate::aws::Instance> =
                observed.selected.iter().map(|s| &s.instance).collect();
            let refused = policy::refused_instances(allowing, &instances);
            let (keep, out): (Vec<_>, Vec<_>) = observed
                .selected
                .drain(..)
                .partition(|s| !refused.iter().any(|(id, _)| id == &s.instance.id));
            observed.selected = keep;
            observed.refused = out
                .into_iter()
                .map(|s| {
                    let why = refused
                        .iter()
                        .find(|(id, _)| id == &s.instance.id)
                        .map(|r| r.1.clone())
                        .unwrap_or_default();
                    (s, why)
                })
                .collect();
        }
        // Instances another binding selects too are left as they are: an
        // instance holds one profile, and two bindings would take turns.
        if let Place::Home(home) = &place
            && !home.rivals.is_empty()
        {
            let (contested, keep): (Vec<_>, Vec<_>) = observed
                .selected
                .drain(..)
                .map(|s| (home.rivals.of(&b.key, &s.instance), s))
                .partition(|(others, _)| !others.is_empty());
            observed.selected = keep.into_iter().map(|(_, s)| s).collect();
            observed.contested = contested.into_iter().map(|(o, s)| (s, o)).collect();
        }
        let stamp = |mut out: Outcome| {
            out.status.assume_role_arn = target.as_ref().map(|t| t.role_arn.clone());
            if !moved.is_empty() {
                let mut actions = moved.clone();
                actions.append(&mut out.actions);
                out.actions = actions;
            }
            out
        };
        let role = match role::resolve_role(lookup, roles, &b.spec.role).await {
            Ok(role) => role,
            Err(failure) => return stamp(self.failed(b, &observed, failure)),
        };
        let mut desired = self.desired(b, role);
        desired.tags_checked = self.tags_checked(b, &desired, &observed);
        stamp(
            self.converge(aws, b, &desired, &mut observed, dry_run, Mode::Apply)
                .await,
        )
    }

    /// The outcome of a binding whose AWS state could not be read at all (the
    /// bulk snapshot failed): `Ready=False` with the reason, and everything
    /// else as last recorded, since nothing newer is known.
    #[must_use]
    pub fn unobserved(&self, b: &BindingInput, error: AwsError) -> Outcome {
        let mut out = self.failed(b, &Observed::default(), Failure::Aws(error));
        if let Some(previous) = &b.previous {
            let s = &mut out.status;
            s.instance_profile.clone_from(&previous.instance_profile);
            s.role.clone_from(&previous.role);
            s.instances.clone_from(&previous.instances);
            s.instance_summary.clone_from(&previous.instance_summary);
            s.assume_role_arn.clone_from(&previous.assume_role_arn);
            for c in &mut s.conditions {
                if let Some(kept) = previous.condition(&c.type_).filter(|_| {
                    [PROFILE_READY, ROLE_ATTACHED, ASSOCIATED].contains(&c.type_.as_str())
                }) {
                    *c = kept.clone();
                }
            }
        }
        out
    }

    /// The outcome of a binding stopped before *act* by `failure`.
    fn failed(&self, b: &BindingInput, observed: &Observed, failure: Failure) -> Outcome {
        let role = RoleInfo {
            name: role::role_name(&b.spec.role).into(),
            arn: String::new(),
            trusts_ec2: false,
        };
        status::outcome(
            b,
            &self.desired(b, role),
            observed,
            &Decision::default(),
            Vec::new(),
            Some(failure),
            false,
        )
    }

    /// Deletes what a binding owns in AWS, safely (or, with `dry_run`, says how),
    /// in the account its status records, else the one its policy names.
    pub async fn cleanup(&self, b: &BindingInput, snapshot: &Snapshot, dry_run: bool) -> Outcome {
        let target = if b
            .previous
            .as_ref()
            .is_some_and(|p| p.instance_profile.is_some() || p.assume_role_arn.is_some())
        {
            self.recorded_account(b)
        } else {
            b.policies
                .as_ref()
                .and_then(|set| match set.admit(&b.key.namespace, &b.spec) {
                    policy::Admission::Allowed {
                        account: Some(a), ..
                    } => Some(AssumeTarget {
                        role_arn: a.assume_role_arn,
                        external_id: a.external_id,
                    }),
                    _ => None,
                })
        };
        self.cleanup_at(b, target.as_ref(), snapshot, dry_run).await
    }

    async fn cleanup_at(
        &self,
        b: &BindingInput,
        target: Option<&AssumeTarget>,
        snapshot: &Snapshot,
        dry_run: bool,
    ) -> Outcome {
        let role = RoleInfo {
            name: role::role_name(&b.spec.role).into(),
            arn: String::new(),
            trusts_ec2: true,
        };
        let desired = self.desired(b, role);
        let stamp = |mut out: Outcome| {
            out.status.assume_role_arn = target.map(|t| t.role_arn.clone());
            out
        };
        if b.spec.deletion_policy == DeletionPolicy::Retain {
            let observed = Observed::default();
            let mut out = status::outcome(
                b,
                &desired,
                &observed,
                &Decision::default(),
                Vec::new(),
                None,
                true,
            );
            out.message = "deletionPolicy Retain: AWS resources left in place".into();
            return stamp(out);
        }
        let place = match self.place(b, target, snapshot).await {
            Ok(p) => p,
            Err(e) => return stamp(self.failed(b, &Observed::default(), Failure::Aws(e))),
        };
        let aws = match &place {
            Place::Home(_) => &self.aws,
            Place::Other(_, _, aws) => &**aws,
        };
        let mut observed = Observed::from_snapshot(
            place.snapshot(),
            &desired.profile_name,
            &selector_of(&b.spec),
        );
        stamp(
            self.converge(aws, b, &desired, &mut observed, dry_run, Mode::Cleanup)
                .await,
        )
    }

    async fn converge(
        &self,
        aws: &Aws,
        b: &BindingInput,
        desired: &Desired,
        observed: &mut Observed,
        dry_run: bool,
        mode: Mode,
    ) -> Outcome {
        let deleting = mode == Mode::Cleanup;
        let decide = match mode {
            Mode::Apply => decide::decide_apply,
            Mode::Cleanup => cleanup::decide_cleanup,
        };
        let mut records = Vec::new();
        let budget = 16 + 4 * (observed.selected.len() + observed.other_users.len());
        for _ in 0..budget {
            // A profile created here moments ago: its tags are what we wrote.
            if let Some(p) = observed.profile.as_mut()
                && p.tags.is_none()
            {
                p.tags = self.propagation.tags(&p.name, &p.id);
            }
            let decision = decide(desired, observed);
            if decision.actions.is_empty() && !deleting {
                self.note_tags_checked(desired, observed);
            }
            let Some(action) = decision.actions.first().cloned() else {
                let deleted = deleting && decision.converged() && observed.profile.is_none();
                return status::outcome(b, desired, observed, &decision, records, None, deleted);
            };
            let associates = matches!(action, Action::Associate { .. } | Action::Replace { .. });
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
                let pending = AwsError {
                    kind: ErrorKind::PropagationPending,
                    service: "ec2",
                    action: "AssociateIamInstanceProfile",
                    code: "NotYetPropagated".into(),
                    message: format!(
                        "instance profile {} was created moments ago; associating in {:.1}s, when it has propagated",
                        desired.profile_name,
                        wait.as_secs_f64()
                    ),
                };
                let mut out = status::outcome(
                    b,
                    desired,
                    observed,
                    &decision,
                    records,
                    Some(Failure::Aws(pending)),
                    false,
                );
                out.next = Next::After(wait);
                return out;
            }
            let result = act::execute(aws, desired, observed, &action, dry_run).await;
            if !dry_run {
                match (&action, &result) {
                    (Action::CreateProfile { .. }, Ok(Some(r)))
                        if r.reason == Reason::CreatedProfile =>
                    {
                        if let Some(p) = &observed.profile {
                            self.propagation.created(
                                &p.name,
                                &p.id,
                                p.tags.clone().unwrap_or_default(),
                            );
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
                    (_, Err(Stop::Failed(e)))
                        if associates && e.kind == ErrorKind::PropagationPending =>
                    {
                        self.propagation.refused(&desired.profile_name);
                    }
                    (Action::DeleteProfile, Ok(_)) => {
                        self.propagation.forget(&desired.profile_name);
                    }
                    _ => {}
                }
            }
            match result {
                Ok(Some(record)) => {
                    if !dry_run {
                        tracing::info!(binding = %b.key, reason = record.reason.as_str(), "{}", record.message);
                    }
                    records.push(record);
                }
                Ok(None) => {}
                Err(Stop::Reobserve) => {
                    let decision = Decision {
                        waiting: vec!["(re-reading AWS state)".into()],
                        ..Decision::default()
                    };
                    return status::outcome(b, desired, observed, &decision, records, None, false);
                }
                Err(Stop::Failed(e)) => {
                    let decision = decide(desired, observed);
                    return status::outcome(
                        b,
                        desired,
                        observed,
                        &decision,
                        records,
                        Some(Failure::Aws(e)),
                        false,
                    );
                }
            }
        }
        let decision = Decision {
            waiting: vec!["(step budget spent)".into()],
            ..decide(desired, observed)
        };
        status::outcome(b, desired, observed, &decision, records, None, false)
    }
}

/// Waits for propagation up to this long happen within the pass (a longer
/// one would hold a concurrency slot that another binding could use). Below
/// the canary's poll, so a binding waiting for the canary never sleeps here:
/// `apply`'s round, and with it the canary's next probe, would wait for it.
const SHORT_WAIT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Cleanup,
}

/// The selector of a spec.
#[must_use]
pub fn selector_of(spec: &InstanceProfileBindingSpec) -> Selector {
    Selector {
        ids: spec.instances.ids.iter().cloned().collect(),
        tags: spec.instances.tags.clone(),
    }
}
