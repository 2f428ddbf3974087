//! The vocabulary of what a binding's status says: every reason of its
//! conditions (Ready, Stalled, Reconciling, ProfileReady, RoleAttached,
//! Associated), of the Warning events that repeat Ready's reason, and of the
//! per-binding metric label. One table says, per reason, whether a person has
//! to act (kstatus `Stalled`, `apply` stops waiting) and how a retry backs off.
//! `as_str()` is the string users see; it never changes for a variant.

use std::time::Duration;

use crate::aws::{AwsError, ErrorKind};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Ready: profile, role and associations match the spec.
    Reconciled,
    /// An association is changing state; looked at again soon.
    Reconciling,
    /// The binding's AWS resources are gone (deletion finished).
    Deleted,
    /// Deleting a binding with `deletionPolicy: Retain` left AWS as it was
    /// (the Normal event).
    Retained,
    /// EC2 does not know the new profile yet (IAM propagation).
    PropagationPending,
    Throttled,
    /// 5xx, timeouts, connections dropped after the SDK's retries.
    AwsUnavailable,
    /// An AWS state changed under the controller (a role slot taken, a
    /// profile still holding a role, an association mid-change): it re-reads.
    StateChanged,
    /// A selected instance is gone.
    InstanceNotFound,
    AccessDenied,
    RoleNotFound,
    TrustPolicyMissingEc2,
    /// A profile with the binding's name exists and its tags do not prove it ours.
    ForeignProfileExists,
    /// A selected instance holds another profile and replacing it is not allowed.
    ForeignAssociation,
    /// Instances the binding does not manage still use its profile.
    DeletionBlocked,
    QuotaExceeded,
    PolicyDenied,
    /// Another binding selects the same instance.
    Conflict,
    /// spec.instances.nodeSelector, and the controller does not watch Nodes.
    NodesNotWatched,
    /// The role changed and instances are being moved to fresh associations
    /// in batches (`spec.rotation.onRoleChange: Reassociate`).
    Rotating,
    /// Any other AWS error: the message has its code.
    AwsError,
    /// `apply` was stopped by a signal before the binding was done.
    Interrupted,
    /// A Warning event: the account's instance profiles passed 90 % of the quota.
    QuotaNearlyFull,
    /// The reconcile-result metric label of a failed Kubernetes API call.
    KubeError,
    /// The reconcile-result metric label of a binding object without a name.
    Unnamed,
    /// The reconcile-result metric label of a failed finalizer update.
    FinalizerError,
    /// ProfileReady=False while the profile does not exist yet.
    ProfileMissing,
    /// RoleAttached=False while the profile lacks the role.
    RoleMissing,
    /// Associated=False while instances wait for the profile.
    AssociationPending,
    /// The positive reasons of ProfileReady, RoleAttached and Associated
    /// (`Associated` is also the Normal event of an association made).
    ProfileReady,
    RoleAttached,
    Associated,
    /// The Normal events of the changes the act step makes.
    CreatedProfile,
    AdoptedProfile,
    TaggedProfile,
    RecordedInstances,
    RemovedRole,
    AttachedRole,
    Replaced,
    /// An instance moved to a fresh association to pick up a new role now.
    Reassociated,
    Disassociated,
    DeletedProfile,
}

impl Reason {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reconciled => "Reconciled",
            Self::Reconciling => "Reconciling",
            Self::Deleted => "Deleted",
            Self::PropagationPending => "PropagationPending",
            Self::Throttled => "Throttled",
            Self::AwsUnavailable => "AwsUnavailable",
            Self::StateChanged => "StateChanged",
            Self::InstanceNotFound => "InstanceNotFound",
            Self::AccessDenied => "AccessDenied",
            Self::RoleNotFound => "RoleNotFound",
            Self::TrustPolicyMissingEc2 => "TrustPolicyMissingEc2",
            Self::ForeignProfileExists => "ForeignProfileExists",
            Self::ForeignAssociation => "ForeignAssociation",
            Self::DeletionBlocked => "DeletionBlocked",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::PolicyDenied => "PolicyDenied",
            Self::Rotating => "Rotating",
            Self::NodesNotWatched => "NodesNotWatched",
            Self::Conflict => "Conflict",
            Self::AwsError => "AwsError",
            Self::Interrupted => "Interrupted",
            Self::ProfileMissing => "ProfileMissing",
            Self::RoleMissing => "RoleMissing",
            Self::AssociationPending => "AssociationPending",
            Self::ProfileReady => "ProfileReady",
            Self::RoleAttached => "RoleAttached",
            Self::Associated => "Associated",
            Self::CreatedProfile => "CreatedProfile",
            Self::AdoptedProfile => "AdoptedProfile",
            Self::TaggedProfile => "TaggedProfile",
            Self::RecordedInstances => "RecordedInstances",
            Self::RemovedRole => "RemovedRole",
            Self::AttachedRole => "AttachedRole",
            Self::Replaced => "Replaced",
            Self::Reassociated => "Reassociated",
            Self::Retained => "Retained",
            Self::QuotaNearlyFull => "QuotaNearlyFull",
            Self::KubeError => "KubeError",
            Self::Unnamed => "Unnamed",
            Self::FinalizerError => "FinalizerError",
            Self::Disassociated => "Disassociated",
            Self::DeletedProfile => "DeletedProfile",
        }
    }

    /// A person has to act before retrying can help: kstatus `Stalled`, a
    /// Warning event, `apply` stops waiting for the binding.
    #[must_use]
    pub const fn needs_person(self) -> bool {
        matches!(
            self,
            Self::AccessDenied
                | Self::RoleNotFound
                | Self::TrustPolicyMissingEc2
                | Self::ForeignProfileExists
                | Self::ForeignAssociation
                | Self::DeletionBlocked
                | Self::QuotaExceeded
                | Self::PolicyDenied
                | Self::Conflict
                | Self::NodesNotWatched
                | Self::AwsError
        )
    }

    /// How a failure with this reason is retried.
    #[must_use]
    pub const fn backoff(self) -> BackoffClass {
        if self.needs_person() {
            BackoffClass::Slow
        } else if matches!(self, Self::PropagationPending) {
            BackoffClass::Propagation
        } else {
            BackoffClass::Transient
        }
    }

    /// The reason an AWS error of `kind` gives a binding.
    #[must_use]
    pub const fn of_aws(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::AccessDenied => Self::AccessDenied,
            ErrorKind::Throttled => Self::Throttled,
            ErrorKind::PropagationPending | ErrorKind::NotFound => Self::PropagationPending,
            ErrorKind::QuotaExceeded => Self::QuotaExceeded,
            // The name is taken by a profile whose tags do not prove it ours:
            // the same answer as when observe finds it.
            ErrorKind::AlreadyExists => Self::ForeignProfileExists,
            ErrorKind::RoleSlotTaken | ErrorKind::DeleteConflict | ErrorKind::IncorrectState => {
                Self::StateChanged
            }
            ErrorKind::InstanceGone => Self::InstanceNotFound,
            ErrorKind::Transient => Self::AwsUnavailable,
            ErrorKind::Other => Self::AwsError,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Reason {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for Reason {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_errors_map_to_the_reasons_users_see() {
        assert_eq!(Reason::of_aws(ErrorKind::AccessDenied), "AccessDenied");
        assert_eq!(Reason::of_aws(ErrorKind::Throttled), "Throttled");
        assert_eq!(
            Reason::of_aws(ErrorKind::PropagationPending),
            "PropagationPending"
        );
        assert_eq!(Reason::of_aws(ErrorKind::QuotaExceeded), "QuotaExceeded");
        assert_eq!(
            Reason::of_aws(ErrorKind::AlreadyExists),
            "ForeignProfileExists"
        );
        assert_eq!(Reason::of_aws(ErrorKind::Transient), "AwsUnavailable");
        assert_eq!(Reason::of_aws(ErrorKind::Other), "AwsError");
    }

    #[test]
    fn one_table_for_who_acts_and_how_retries_back_off() {
        assert!(Reason::ForeignProfileExists.needs_person());
        assert!(Reason::Conflict.needs_person());
        assert!(!Reason::StateChanged.needs_person());
        assert!(!Reason::Throttled.needs_person());
        assert_eq!(
            Reason::PropagationPending.backoff(),
            BackoffClass::Propagation
        );
        assert_eq!(Reason::AccessDenied.backoff(), BackoffClass::Slow);
        assert_eq!(Reason::AwsUnavailable.backoff(), BackoffClass::Transient);
    }
}
