//! The nouns every step of a pass shares: what a binding wants (`Desired`),
//! the actions decide chooses and act runs, the problems only a person can
//! fix, and a decision. Every step imports them from here, so no step imports
//! another to reach them.

use std::collections::{BTreeMap, BTreeSet};

use crate::aws::{Instance, RoleInfo};
use crate::naming::{self, BindingKey};

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
    DeleteProfile,
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

impl Action {
    #[must_use]
    pub fn is_mutating(&self) -> bool {
        !matches!(self, Self::ReadProfile)
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
