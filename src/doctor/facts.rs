//! What doctor examines ([`Target`], [`Subject`]) and everything the checks
//! look at, read up front ([`Facts`]); [`CouldNotRun`] when it cannot be read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::finding::shorten;
use crate::aws::assume::CallerIdentity;
use crate::aws::iam::SimulatedDecision;
use crate::aws::{Association, AwsError, ErrorKind, Profile, RoleInfo, RunState};
use crate::cli::DoctorArgs;
use crate::crd::{InstanceProfileBindingSpec, InstanceProfileBindingStatus};
use crate::naming::{self, BindingKey};
use crate::reconcile::quota::Usage;

/// What doctor was asked to examine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// A binding read from the cluster.
    Binding(BindingKey),
    /// A file holding one binding.
    File(PathBuf),
    Instance(String),
    Profile(String),
}

impl Target {
    /// The one target the flags name (clap's group guarantees exactly one).
    #[must_use]
    pub fn from_args(args: &DoctorArgs) -> Option<Self> {
        if let Some(key) = &args.binding {
            return Some(Self::Binding(key.clone()));
        }
        if let Some(path) = &args.filename {
            return Some(Self::File(path.clone()));
        }
        if let Some(id) = &args.instance {
            return Some(Self::Instance(id.clone()));
        }
        args.instance_profile.clone().map(Self::Profile)
    }
}

/// What the cluster says about a binding.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ClusterView {
    pub generation: Option<i64>,
    pub status: Option<InstanceProfileBindingStatus>,
}

/// The target, resolved.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Subject {
    Binding {
        key: BindingKey,
        spec: Box<InstanceProfileBindingSpec>,
        /// `None` for a binding from a file.
        cluster: Option<Box<ClusterView>>,
        /// Where it came from: `cluster` or `path#document`.
        source: String,
    },
    Instance {
        id: String,
    },
    Profile {
        name: String,
    },
}

/// The answer to one read: what it got, or the `AccessDenied` that refused it
/// (a fact for the checks, not a reason to stop).
#[derive(Clone, Debug)]
pub(super) enum Read<T> {
    Got(T),
    Denied(AwsError),
}

impl<T> Read<T> {
    /// What was read, if it was.
    pub(super) fn got(&self) -> Option<&T> {
        match self {
            Self::Got(v) => Some(v),
            Self::Denied(_) => None,
        }
    }

    /// Both reads, or the first refusal.
    pub(super) fn and<U>(self, other: Read<U>) -> Read<(T, U)> {
        match (self, other) {
            (Self::Got(a), Read::Got(b)) => Read::Got((a, b)),
            (Self::Denied(e), _) | (_, Read::Denied(e)) => Read::Denied(e),
        }
    }

    pub(super) fn map<U>(self, f: impl FnOnce(T) -> U) -> Read<U> {
        match self {
            Self::Got(v) => Read::Got(f(v)),
            Self::Denied(e) => Read::Denied(e),
        }
    }
}

impl<T> Read<Option<T>> {
    /// What was read, when it was and it exists.
    pub(super) fn found(&self) -> Option<&T> {
        self.got().and_then(Option::as_ref)
    }
}

/// Other profiles under a binding's path whose tags name the same binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct DuplicateScan {
    pub owned: Vec<Profile>,
    /// Profiles whose tags were read.
    pub scanned: usize,
    /// Profiles under the path other than the binding's own.
    pub candidates: usize,
}

#[derive(Clone, Debug)]
pub(super) struct RoleFacts {
    /// As the binding names it (name or ARN), or the profile's role name.
    pub wanted: String,
    pub found: Read<Option<RoleInfo>>,
    /// A role whose name differs only in case, when `wanted` does not exist.
    pub near: Option<String>,
}

/// Why an instance is examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Relation {
    /// The binding selects it.
    Selected,
    /// It holds the binding's profile but the binding does not select it;
    /// `remembered`: the profile's instance memory says the controller associated it.
    Unselected { remembered: bool },
    /// The instance doctor was asked about.
    Requested,
    /// It holds the profile doctor was asked about.
    Holder,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct InstanceFacts {
    pub id: String,
    /// `None`: EC2 does not know it (or, for a selection, it is not live).
    pub state: Option<RunState>,
    pub association: Option<Association>,
    pub relation: Relation,
}

#[derive(Clone, Debug)]
pub(super) struct PermissionFacts {
    /// The principal simulated, or why none could be.
    pub principal: Result<String, String>,
    /// `None` when there was no principal to simulate.
    pub simulation: Option<Result<Vec<SimulatedDecision>, AwsError>>,
    /// Actions not simulated, with why.
    pub not_simulated: BTreeMap<String, String>,
    /// `AccessDenied` answers to doctor's own reads.
    pub denied_reads: Vec<AwsError>,
}

/// Everything the checks look at, read up front.
#[derive(Clone, Debug)]
pub(super) struct Facts {
    pub cluster_id: String,
    pub path_prefix: String,
    pub subject: Subject,
    pub caller: CallerIdentity,
    /// The profile in question: the binding's deterministic name, the one
    /// named, or the one the instance holds (`None`: the instance holds none).
    pub profile_name: Option<String>,
    /// With its tags.
    pub profile: Read<Option<Profile>>,
    /// For bindings: other profiles that claim the same binding.
    pub duplicates: Option<Read<DuplicateScan>>,
    pub role: Option<RoleFacts>,
    pub instances: Read<Vec<InstanceFacts>>,
    pub permissions: PermissionFacts,
    /// The value of `IPB_ASSUME_ROLE_DURATION_SECONDS`, when set.
    pub session_duration: Option<String>,
    /// The account's instance profiles and their quota (`GetAccountSummary`),
    /// or why they could not be read (any failure: not a reason to stop).
    pub profile_usage: Result<Usage, AwsError>,
    /// For an instance or profile target whose profile's tags name a binding
    /// of this cluster id: that binding, and whether the cluster has it
    /// (`None` when the cluster could not be asked).
    pub owner: Option<(BindingKey, Option<bool>)>,
}

impl Facts {
    pub(super) fn current_profile(&self) -> Option<&Profile> {
        self.profile.found()
    }

    pub(super) fn cluster_path(&self) -> String {
        naming::profile_path(&self.path_prefix, &self.cluster_id)
    }
}

/// Why doctor could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub(super) enum CouldNotRun {
    #[error("no usable AWS credentials: {0}")]
    Credentials(String),
    #[error("cannot reach AWS: {0}")]
    Network(String),
    #[error("AWS: {0}")]
    Aws(String),
    #[error("cannot read the binding from the cluster: {0}")]
    Kubernetes(String),
    #[error("{0}")]
    Input(String),
}

impl CouldNotRun {
    /// One word saying which: credentials, network, aws, kubernetes or input.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "credentials",
            Self::Network(_) => "network",
            Self::Aws(_) => "aws",
            Self::Kubernetes(_) => "kubernetes",
            Self::Input(_) => "input",
        }
    }

    pub(super) fn from_aws(e: &AwsError) -> Self {
        match e.kind {
            // Only GetCallerIdentity gets here with this kind: it needs no
            // permission, so a refusal is about the credentials themselves.
            ErrorKind::AccessDenied => Self::Credentials(format!(
                "AWS rejected them ({}: {})",
                e.code,
                shorten(&e.message)
            )),
            ErrorKind::Transient => Self::Network(e.to_string()),
            ErrorKind::Throttled => Self::Network(format!("throttled even after retries: {e}")),
            _ => Self::Aws(e.to_string()),
        }
    }
}
