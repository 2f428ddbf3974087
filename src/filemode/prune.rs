//! `--prune`: the profiles this cluster id owns whose binding is not in the files.

use std::collections::BTreeSet;

use crate::aws::assume::AssumeTarget;
use crate::crd::{DeletionPolicy, InstanceProfileBindingSpec, InstanceProfileBindingStatus};
use crate::naming::{self, BindingKey};
use crate::reconcile::{BindingInput, Engine};

use super::Work;

/// Profiles under this cluster's path whose owning binding is not in the
/// files: in this account, and in every account the files' policies name.
pub(super) async fn prune_targets(
    engine: &Engine,
    keep: &[Work],
    policies: Option<&std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Result<Vec<Work>, crate::Error> {
    let kept: BTreeSet<String> = keep
        .iter()
        .map(|w| engine.profile_name(&w.input.key))
        .collect();
    let mut out = Vec::new();
    for (owner, path) in owned_elsewhere(engine, &engine.aws, &kept).await? {
        out.push(prune_work(owner, path, None, None));
    }
    let targets: BTreeSet<AssumeTarget> = policies
        .iter()
        .flat_map(|set| set.policies.iter())
        .filter_map(|(_, p)| p.account.as_ref())
        .map(AssumeTarget::from)
        .collect();
    for target in targets {
        let account = engine.accounts.get(&target);
        for (owner, path) in owned_elsewhere(engine, &account.aws, &kept).await? {
            out.push(prune_work(owner, path, Some(&target), policies.cloned()));
        }
    }
    Ok(out)
}

/// Owners (by tags, name checked) of this cluster's profiles not in `kept`,
/// with each profile's path. A binding may have put its profile at a custom
/// `instanceProfile.path`, which its files no longer say once it is gone: so
/// the whole account is listed (prune is rare; a profile listing is one call
/// per 1,000 profiles) and a profile qualifies by its path or its generated name.
pub(super) async fn owned_elsewhere(
    engine: &Engine,
    aws: &crate::aws::Aws,
    kept: &BTreeSet<String>,
) -> Result<Vec<(BindingKey, String)>, crate::Error> {
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
                tracing::warn!(profile = %name, "not pruning a profile whose tags do not name this cluster's binding");
            }
            continue;
        };
        if engine.profile_name(&owner) != name {
            tracing::warn!(profile = %name, binding = %owner, "not pruning: the name does not match the binding its tags name");
            continue;
        }
        // deletionPolicy: Retain outlives the binding: the profile says so.
        if profile
            .tags
            .as_ref()
            .and_then(|t| t.get(naming::TAG_DELETION_POLICY))
            .is_some_and(|v| v == "Retain")
        {
            eprintln!(
                "notice: keeping instance profile {name} of {owner}, gone from the files: its binding had deletionPolicy Retain"
            );
            continue;
        }
        out.push((owner, path));
    }
    Ok(out)
}

/// Cleanup work for a binding gone from the files; `account` says where its
/// resources are (recorded as a status would record it).
pub(super) fn prune_work(
    owner: BindingKey,
    path: String,
    account: Option<&AssumeTarget>,
    policies: Option<std::sync::Arc<crate::reconcile::policy::PolicySet>>,
) -> Work {
    let spec = InstanceProfileBindingSpec {
        role: String::new(),
        // Where the profile is: the snapshot must list that path, and the
        // association check matches profile ARNs by path and name.
        instance_profile: Some(crate::crd::InstanceProfileSettings {
            path: Some(path),
            ..crate::crd::InstanceProfileSettings::default()
        }),
        instances: crate::crd::InstanceSelector::default(),
        replace_foreign_associations: false,
        deletion_policy: DeletionPolicy::Delete,
        rotation: None,
    };
    let previous = account.map(|t| InstanceProfileBindingStatus {
        assume_role_arn: Some(t.role_arn.clone()),
        ..InstanceProfileBindingStatus::default()
    });
    Work {
        input: BindingInput {
            key: owner,
            uid: None,
            generation: None,
            spec,
            previous,
            policies,
        },
        prune: true,
    }
}
