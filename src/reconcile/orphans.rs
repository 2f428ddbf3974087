//! Orphans: profiles this cluster id owns (by its tags, name checked) whose
//! binding is gone — a cluster torn down, a CRD deleted with finalizers
//! stripped, a namespace force-deleted, or a binding dropped from the files
//! of `apply --prune`. Found the same way for `plan --prune`/`apply --prune`
//! and for `run`'s orphan sweep, and deleted through a binding's own safe
//! deletion path (disassociate ours, refuse while others use it, roles,
//! delete).

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aws::assume::AssumeTarget;
use crate::aws::{Aws, AwsError};
use crate::crd::{
    DeletionPolicy, InstanceProfileBindingSpec, InstanceProfileBindingStatus,
    InstanceProfileSettings, InstanceSelector,
};
use crate::naming::{self, BindingKey};

use super::engine::Engine;
use super::model::BindingInput;
use super::policy::PolicySet;

/// A profile whose binding is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// The binding its tags name.
    pub owner: BindingKey,
    pub name: String,
    pub path: String,
    /// The binding had `deletionPolicy: Retain` (the profile's tag says so):
    /// reported, never deleted.
    pub retained: bool,
}

/// Profiles of this cluster id in the account `aws` reaches whose name is not
/// in `kept` (the profile names of the bindings that exist). A binding may
/// have put its profile at a custom `instanceProfile.path`, which nothing
/// says any more once it is gone: so the whole account is listed (one call
/// per 1,000 profiles) and a profile qualifies by the cluster's path or its
/// generated name; then its tags (one read each) must name a binding of this
/// cluster id whose generated name is the profile's. A profile without our
/// tags, or of another cluster id, is never an orphan.
///
/// # Errors
/// AWS errors of the listing or a tag read.
pub async fn find(
    engine: &Engine,
    aws: &Aws,
    kept: &BTreeSet<String>,
) -> Result<Vec<Orphan>, AwsError> {
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
                tracing::warn!(profile = %name, "not an orphan: its tags do not name a binding of this cluster id");
            }
            continue;
        };
        if engine.profile_name(&owner) != name {
            tracing::warn!(profile = %name, binding = %owner, "not an orphan: the name does not match the binding its tags name");
            continue;
        }
        let retained = profile
            .tags
            .as_ref()
            .and_then(|t| t.get(naming::TAG_DELETION_POLICY))
            .is_some_and(|v| v == "Retain");
        out.push(Orphan {
            owner,
            name,
            path,
            retained,
        });
    }
    Ok(out)
}

/// The accounts other than the controller's own that `policies` name.
#[must_use]
pub fn other_accounts(policies: Option<&PolicySet>) -> BTreeSet<AssumeTarget> {
    policies
        .iter()
        .flat_map(|set| set.policies.iter())
        .filter_map(|(_, p)| p.account.as_ref())
        .map(AssumeTarget::from)
        .collect()
}

/// The input that deletes `orphan` through a binding's deletion path;
/// `account` says where it is (recorded as a status would record it).
#[must_use]
pub fn cleanup_input(
    orphan: &Orphan,
    account: Option<&AssumeTarget>,
    policies: Option<Arc<PolicySet>>,
) -> BindingInput {
    let spec = InstanceProfileBindingSpec {
        role: String::new(),
        // Where the profile is: the snapshot must list that path, and the
        // association check matches profile ARNs by path and name.
        instance_profile: Some(InstanceProfileSettings {
            path: Some(orphan.path.clone()),
            ..InstanceProfileSettings::default()
        }),
        instances: InstanceSelector::default(),
        replace_foreign_associations: false,
        deletion_policy: DeletionPolicy::Delete,
        rotation: None,
    };
    let previous = account.map(|t| InstanceProfileBindingStatus {
        assume_role_arn: Some(t.role_arn.clone()),
        ..InstanceProfileBindingStatus::default()
    });
    BindingInput {
        key: orphan.owner.clone(),
        uid: None,
        generation: None,
        spec,
        previous,
        policies,
        nodes: None,
    }
}
