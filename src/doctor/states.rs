//! The states the controller's newer capabilities leave: a role rotation in
//! progress, or a role change that moves no instance (`rotation`), what a
//! nodeSelector selected (`node-selection`), and the account's
//! instance-profile quota headroom (`profile-quota`).

use std::time::Duration;

use kube::Api;

use super::facts::{Facts, Subject};
use super::finding::{Check, Finding, could_not_read, shorten};
use crate::aws::ErrorKind;
use crate::cli::KubeArgs;
use crate::crd::InstanceProfileBinding;
use crate::crd::OnRoleChange;
use crate::naming::{self, BindingKey};
use crate::reconcile::Reason;
use crate::reconcile::quota::Usage;
use crate::reconcile::role::role_name;

/// What `spec.instances.nodeSelector` selected, as the controller reports it
/// (`--binding`): nodes left out (a node manager owns them) are a warning,
/// like a controller that does not watch Nodes; a binding from a file only
/// says that `run --watch-nodes` resolves it (doctor reads no Nodes).
#[must_use]
pub(super) fn check_node_selection(facts: &Facts) -> Vec<Finding> {
    let Subject::Binding {
        key, spec, cluster, ..
    } = &facts.subject
    else {
        return Vec::new();
    };
    if spec.instances.node_selector.is_none() {
        return Vec::new();
    }
    let watch = "run the controller with --watch-nodes (the chart's nodeSelection.enabled)";
    let Some(cluster) = cluster else {
        return vec![Finding::warning(
            Check::NodeSelection,
            format!(
                "binding {key} selects instances by nodeSelector, which only the controller resolves (from Nodes it watches); this report covers the instances its ids and tags select"
            ),
            format!("{watch}; doctor --binding {key} shows what it selected"),
        )];
    };
    let Some(nodes) = cluster.status.as_ref().and_then(|s| s.nodes.as_ref()) else {
        return vec![
            Finding::warning(
                Check::NodeSelection,
                format!(
                    "the controller has not reported what binding {key}'s nodeSelector selects"
                ),
                format!("{watch}, and read the binding's Ready condition"),
            )
            .reason(Reason::NodesNotWatched.as_str()),
        ];
    };
    let summary = format!(
        "binding {key}'s nodeSelector selects {} EC2 node(s); {} node(s) skipped (not EC2 instances: Fargate, hybrid, other clouds)",
        nodes.selected, nodes.skipped
    );
    let finding = if nodes.excluded.is_empty() {
        Finding::ok(Check::NodeSelection, summary)
    } else {
        Finding::warning(
            Check::NodeSelection,
            format!("{summary}; left out: {}", nodes.excluded.join("; ")),
            "replacing the profile of a node a node manager owns can take it NotReady (its role must be mapped for the cluster): to include such nodes anyway, an InstanceProfilePolicy covering the namespace sets allowManagedNodes: true",
        )
    };
    vec![
        finding
            .with("selected", nodes.selected.to_string())
            .with("skipped", nodes.skipped.to_string())
            .with("excluded", nodes.excluded.len().to_string()),
    ]
}

/// The binding an instance's or a profile's profile belongs to (its tags
/// name a binding of this cluster id, and the name is that binding's), and
/// whether the cluster still has it. Asked only when a cluster is reachable
/// through `--kubeconfig`/`--context` within a few seconds; otherwise
/// unknown, and nothing is said.
pub(super) async fn owner_binding(
    facts: &Facts,
    kube: &KubeArgs,
) -> Option<(BindingKey, Option<bool>)> {
    if !matches!(
        facts.subject,
        Subject::Instance { .. } | Subject::Profile { .. }
    ) {
        return None;
    }
    let profile = facts.current_profile()?;
    let owner = naming::owner_from_tags(profile.tags.as_ref()?, &facts.cluster_id)?;
    if naming::profile_name(&facts.cluster_id, &owner) != profile.name {
        return None;
    }
    let ask = async {
        let client = kube.client().await.ok()?;
        let api: Api<InstanceProfileBinding> = Api::namespaced(client, &owner.namespace);
        api.get_opt(&owner.name).await.ok().map(|b| b.is_some())
    };
    let exists = tokio::time::timeout(Duration::from_secs(5), ask)
        .await
        .ok()
        .flatten();
    Some((owner, exists))
}

/// A profile whose binding the cluster no longer has: an orphan (a cluster
/// torn down, a binding deleted with its finalizer stripped).
#[must_use]
pub(super) fn check_orphan(facts: &Facts) -> Vec<Finding> {
    let (Some((owner, Some(false))), Some(profile)) = (&facts.owner, facts.current_profile())
    else {
        return Vec::new();
    };
    vec![
        Finding::warning(
            Check::Orphan,
            format!(
                "instance profile {} belongs to binding {owner} of cluster {}, which the cluster no longer has: an orphan",
                profile.name, facts.cluster_id
            ),
            "run --orphan-sweep=delete deletes it after --orphan-grace (plan --prune lists it, apply --prune with the cluster's bindings deletes it), through the safe deletion path; or recreate the binding to adopt it",
        )
        .with("profile", &profile.name)
        .with("binding", owner.to_string()),
    ]
}

/// A rotation the controller reports in progress (`--binding`: a warning,
/// it finishes by itself), and, for any binding, a role change without
/// `rotation.onRoleChange: Reassociate`: the instances keep the old role's
/// credentials until the instance metadata service refreshes them.
#[must_use]
pub(super) fn check_rotation(facts: &Facts) -> Vec<Finding> {
    let Subject::Binding {
        key, spec, cluster, ..
    } = &facts.subject
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(r) = cluster
        .as_ref()
        .and_then(|v| v.status.as_ref())
        .and_then(|s| s.rotation.as_ref())
    {
        let pending = if r.pending.is_empty() {
            "none".to_string()
        } else {
            r.pending.join(", ")
        };
        let mut f = Finding::warning(
            Check::Rotation,
            format!(
                "binding {key} is moving its instances to fresh associations for role {}: {} of {} done, pending: {pending}",
                r.role, r.done, r.total
            ),
            "nothing to do: the controller moves the rest by itself, at most spec.rotation.maxUnavailable at a time; if it stays, read the binding's Ready condition",
        )
        .with("role", &r.role)
        .with("done", r.done.to_string())
        .with("total", r.total.to_string())
        .reason(Reason::Rotating.as_str());
        if !r.pending.is_empty() {
            f = f.with("pending", r.pending.join(","));
        }
        out.push(f);
    }
    let reassociate = spec
        .rotation
        .as_ref()
        .is_some_and(|r| r.on_role_change == OnRoleChange::Reassociate);
    let wanted = role_name(&spec.role);
    if !reassociate
        && let Some(p) = facts.current_profile()
        && let [held] = p.roles.as_slice()
        && held.name != wanted
    {
        out.push(
            Finding::warning(
                Check::Rotation,
                format!(
                    "instance profile {} holds role {}, binding {key} wants {wanted}: after the swap its instances keep role {}'s credentials until the instance metadata service refreshes them (up to an hour)",
                    p.name, held.name, held.name
                ),
                "to move them now, set spec.rotation: {onRoleChange: Reassociate}; otherwise nothing to do, they pick up the new role by themselves",
            )
            .with("profile", &p.name)
            .with("role", &held.name)
            .with("wantedRole", wanted)
            .with("onRoleChange", "None"),
        );
    }
    out
}

/// The account's instance profiles against its quota (`GetAccountSummary`):
/// ok below [`Usage::WARN_PERCENT`] %, a warning from there, a problem when
/// full (creates fail).
#[must_use]
pub(super) fn check_profile_quota(facts: &Facts) -> Finding {
    const WHAT: &str = "the account's instance-profile usage and quota";
    let usage = match &facts.profile_usage {
        Ok(u) => *u,
        Err(e) if e.is(ErrorKind::AccessDenied) => {
            return could_not_read(Check::ProfileQuota, WHAT, e);
        }
        Err(e) => {
            return Finding::warning(
                Check::ProfileQuota,
                format!("could not read {WHAT}: {}", shorten(&e.to_string())),
                "run doctor again; if it persists, read it with aws iam get-account-summary",
            )
            .aws_error(e);
        }
    };
    let Usage { used, quota } = usage;
    let fix = "delete unused instance profiles (plan --prune lists those this cluster id owns without a binding), or ask AWS for a higher InstanceProfilesPerAccount quota";
    let f = if used >= quota {
        Finding::problem(
            Check::ProfileQuota,
            format!(
                "{used} of {quota} instance profiles in use: the account is full, creating a profile fails (LimitExceeded \"Cannot exceed quota for InstanceProfilesPerAccount\")"
            ),
            fix,
        )
        .reason(Reason::QuotaExceeded.as_str())
    } else if usage.nearly_full() {
        Finding::warning(
            Check::ProfileQuota,
            format!(
                "{used} of {quota} instance profiles in use, at least {} %: {} left",
                Usage::WARN_PERCENT,
                quota - used
            ),
            fix,
        )
        .reason(Reason::QuotaNearlyFull.as_str())
    } else {
        Finding::ok(
            Check::ProfileQuota,
            format!("{used} of {quota} instance profiles in use"),
        )
    };
    f.with("used", used.to_string())
        .with("quota", quota.to_string())
}
