//! The nouns every step of a pass shares: what a binding wants (`Desired`),
//! the actions decide chooses and act runs, the problems only a person can
//! fix, and a decision. Every step imports them from here, so no step imports
//! another to reach them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::aws::{Instance, RoleInfo};
use crate::crd::{DeletionPolicy, InstanceProfileBindingSpec, InstanceProfileBindingStatus};
use crate::naming::{self, BindingKey};

use super::nodes::NodeSelection;
use super::policy::PolicySet;
use super::reason::{BackoffClass, Reason};

/// What a binding wants, resolved (role looked up, names computed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub key: BindingKey,
    pub cluster_id: String,
    pub profile_name: String,
    pub path: String,
    /// Ownership and user tags for the profile (the instance memory is added on create).
    pub tags: BTreeMap<String, String>,
    pub role: RoleInfo,
    pub replace_foreign: bool,
    /// The profile's tags are known to match `tags` (the controller read
    /// them earlier, or nothing needs checking): no read just to verify.
    pub tags_checked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the profile's tags and roles (ownership proof, instance memory).
    ReadProfile,
    CreateProfile {
        memory: BTreeSet<String>,
    },
    /// Bring the profile's tags to the desired ones: remove `remove` (first,
    /// so the 50-tag limit holds), then write `set`.
    WriteTags {
        set: BTreeMap<String, String>,
        remove: Vec<String>,
    },
    /// Write the instance memory tags; `partial` when it could not hold
    /// every instance the binding associated.
    RecordInstances {
        ids: BTreeSet<String>,
        partial: bool,
    },
    RemoveRole {
        role: String,
    },
    AddRole,
    Associate {
        instance_id: String,
    },
    Replace {
        instance_id: String,
        association_id: String,
        foreign: bool,
    },
    Disassociate {
        instance_id: String,
        association_id: String,
    },
    /// Move an instance to a fresh association with our profile, so it gets
    /// the new role's credentials now (a role rotation): replace it when
    /// the instance runs; else disassociate (associated again next).
    Reassociate {
        instance_id: String,
        association_id: String,
        running: bool,
        /// Which batch of how many, for `plan` and the event.
        batch: usize,
        batches: usize,
    },
    DeleteProfile,
}

/// A role rotation in progress: the instances still to move to a fresh
/// association, at most `max_unavailable` between credentials at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub role: String,
    pub total: usize,
    pub pending: BTreeSet<String>,
    pub max_unavailable: usize,
}

impl Rotation {
    /// How many batches the whole rotation takes.
    #[must_use]
    pub fn batches(&self) -> usize {
        self.total.div_ceil(self.max_unavailable.max(1))
    }
}

impl Action {
    /// Makes a new association with the profile: what EC2 refuses while a
    /// fresh profile propagates (a rotation's reassociation uses a profile
    /// long since propagated).
    #[must_use]
    pub fn associates_anew(&self) -> bool {
        matches!(self, Self::Associate { .. } | Self::Replace { .. })
    }
}

impl Desired {
    /// Whether an association's profile ARN is this binding's profile (any
    /// incarnation): our path and our name. The name alone is not proof: a
    /// foreign profile elsewhere may bear it.
    #[must_use]
    pub fn is_our_profile_arn(&self, arn: &str) -> bool {
        arn.ends_with(&format!(
            "instance-profile{}{}",
            self.path, self.profile_name
        ))
    }

    /// How many tag keys the instance memory may use on this profile.
    #[must_use]
    pub fn memory_slots(&self) -> usize {
        naming::memory_slots(self.tags.len())
    }
}

/// Something only a person (or time) can fix; reported, never acted around.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// A profile with our name exists and its tags do not prove it ours.
    ForeignProfile { name: String },
    /// A selected instance holds another profile and replacing it is not allowed.
    ForeignAssociation {
        instance_id: String,
        profile_arn: String,
    },
    /// Instances we do not manage still use the profile.
    DeletionBlocked { instance_ids: Vec<String> },
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Decision {
    pub actions: Vec<Action>,
    /// Instances whose association is in transition: look again soon.
    pub waiting: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Decision {
    pub(crate) fn one(action: Action) -> Self {
        Self {
            actions: vec![action],
            ..Self::default()
        }
    }

    pub(crate) fn problem(problem: Problem) -> Self {
        Self {
            problems: vec![problem],
            ..Self::default()
        }
    }

    /// Nothing to do, nothing to wait for, nothing wrong.
    #[must_use]
    pub fn converged(&self) -> bool {
        self.actions.is_empty() && self.waiting.is_empty() && self.problems.is_empty()
    }
}

/// Which instances a binding selects.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Selector {
    pub ids: BTreeSet<String>,
    pub tags: BTreeMap<String, String>,
}

impl Selector {
    #[must_use]
    pub fn matches(&self, instance: &Instance) -> bool {
        self.ids.contains(&instance.id)
            || (!self.tags.is_empty()
                && self
                    .tags
                    .iter()
                    .all(|(k, v)| instance.tags.get(k) == Some(v)))
    }
}

/// The selector of a spec.
#[must_use]
pub fn selector_of(spec: &InstanceProfileBindingSpec) -> Selector {
    Selector {
        ids: spec.instances.ids.iter().cloned().collect(),
        tags: spec.instances.tags.clone(),
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
    /// Warnings beside the verdict (the quota nearly full), for events.
    pub notices: Vec<(Reason, String)>,
    /// What the binding saw of AWS at the end of a pass that waits for its
    /// fresh profile to propagate (in the controller's own account): nothing
    /// changed since but its own writes, so `apply` continues from it
    /// without reading a new snapshot. `None` otherwise.
    pub observed: Option<Box<super::observe::Observed>>,
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
    pub policies: Option<Arc<PolicySet>>,
    /// What `spec.instances.nodeSelector` selected (`run` resolves it from
    /// its Node cache); `None` without one.
    pub nodes: Option<NodeSelection>,
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
    /// Instance profiles kept free of the account's quota: creating one
    /// that would leave fewer is refused (`QuotaExceeded`).
    pub profile_quota_reserve: u64,
    /// How long an account's profile usage (`GetAccountSummary`) is reused.
    pub quota_max_age: Duration,
}

/// How long an account's profile usage is reused by default: the default
/// resync interval (`run` uses its own).
pub const QUOTA_MAX_AGE: Duration = Duration::from_secs(300);

/// What the act step did, for events, plan output and logs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ActionRecord {
    /// The Normal event's reason: CreatedProfile, AttachedRole, Associated, …
    pub reason: Reason,
    pub message: String,
}

/// The path a binding's profile lives at: the spec's, else the cluster's
/// default `<prefix><cluster-id>/`.
#[must_use]
pub fn path_of(spec: &InstanceProfileBindingSpec, path_prefix: &str, cluster_id: &str) -> String {
    spec.instance_profile
        .as_ref()
        .and_then(|p| p.path.clone())
        .unwrap_or_else(|| naming::profile_path(path_prefix, cluster_id))
}

impl EngineConfig {
    /// The path every profile of this cluster lives under by default.
    #[must_use]
    pub fn default_path(&self) -> String {
        naming::profile_path(&self.path_prefix, &self.cluster_id)
    }

    #[must_use]
    pub fn profile_name(&self, key: &BindingKey) -> String {
        naming::profile_name(&self.cluster_id, key)
    }

    #[must_use]
    pub fn path_for(&self, spec: &InstanceProfileBindingSpec) -> String {
        path_of(spec, &self.path_prefix, &self.cluster_id)
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
}

impl Desired {
    /// What `b` wants under `config`, with `role` resolved (or, before it
    /// is, named only: see [`super::role::unresolved`]).
    #[must_use]
    pub fn new(config: &EngineConfig, b: &BindingInput, role: RoleInfo) -> Self {
        let mut tags = naming::ownership_tags(&config.cluster_id, &b.key, b.uid.as_deref());
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
        Self {
            key: b.key.clone(),
            cluster_id: config.cluster_id.clone(),
            profile_name: config.profile_name(&b.key),
            path: config.path_for(&b.spec),
            tags,
            role,
            replace_foreign: b.spec.replace_foreign_associations,
            tags_checked: false,
        }
    }
}
