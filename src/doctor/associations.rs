//! Check 5: every instance's association: present, settled, and on the
//! profile's current id.

use super::facts::{Facts, InstanceFacts, Read, Relation, Subject};
use super::finding::{Check, Finding, could_not_read};
use crate::aws::{Association, AssociationState, Profile, RunState};
use crate::naming;
use crate::reconcile::Reason;

/// Check 5: every instance's association: present, settled, and on the
/// profile's current id.
#[must_use]
pub(super) fn check_associations(facts: &Facts) -> Vec<Finding> {
    let list = match &facts.instances {
        Read::Denied(e) => {
            return vec![could_not_read(
                Check::Association,
                "instances and their associations",
                e,
            )];
        }
        Read::Got(list) => list,
    };
    let mut out = Vec::new();
    match &facts.subject {
        Subject::Binding { key, spec, .. }
            if !list.iter().any(|i| i.relation == Relation::Selected) =>
        {
            out.push(
                Finding::warning(
                    Check::Association,
                    format!("binding {key} selects no live instance"),
                    "check spec.instances: the ids must exist in this region and every tag pair must match",
                )
                .with("selectorIds", spec.instances.ids.join(","))
                .with(
                    "selectorTags",
                    spec.instances
                        .tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
        Subject::Profile { name } if list.is_empty() => {
            out.push(Finding::ok(
                Check::Association,
                format!("no instance is associated with instance profile {name}"),
            ));
        }
        _ => {}
    }
    out.extend(list.iter().map(|i| association_finding(facts, i)));
    out
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Stopping => "stopping",
        RunState::Stopped => "stopped",
        RunState::ShuttingDown => "shutting-down",
        RunState::Terminated => "terminated",
    }
}

/// One instance's finding: the first of not live, terminated, without an
/// association, in transition, or where its settled association points.
fn association_finding(facts: &Facts, inst: &InstanceFacts) -> Finding {
    let id = &inst.id;
    let Some(state) = inst.state else {
        return not_live(inst).with("instance", id);
    };
    let with_instance = |f: Finding| {
        f.with("instance", id)
            .with("instanceState", state_name(state))
    };
    if matches!(state, RunState::Terminated | RunState::ShuttingDown) {
        return with_instance(Finding::warning(
            Check::Association,
            format!("instance {id} is {}", state_name(state)),
            "nothing to fix: a terminated instance needs no profile",
        ));
    }
    let Some(a) = &inst.association else {
        return with_instance(unassociated(inst));
    };
    let with_assoc = |f: Finding| {
        with_instance(f)
            .with("association", &a.id)
            .with("associationState", a.state.as_str())
            .with("heldProfileArn", &a.profile_arn)
            .with("heldProfileId", &a.profile_id)
    };
    if matches!(
        a.state,
        AssociationState::Associating | AssociationState::Disassociating
    ) {
        return with_assoc(in_transition(id, a));
    }
    if let Read::Denied(e) = &facts.profile {
        return with_assoc(could_not_read(
            Check::Association,
            &format!("instance profile {} to compare ids", a.profile_name()),
            e,
        ));
    }
    with_assoc(settled(facts, inst, a))
}

/// An instance EC2 does not know: the one asked about, or a selected id.
fn not_live(inst: &InstanceFacts) -> Finding {
    let id = &inst.id;
    if inst.relation == Relation::Requested {
        Finding::problem(
            Check::Association,
            format!("instance {id} does not exist (InvalidInstanceID.NotFound)"),
            "check the instance id and the region (--region)",
        )
        .with("awsError", "InvalidInstanceID.NotFound")
    } else {
        Finding::warning(
            Check::Association,
            format!(
                "instance {id} is not a live instance (terminated or never existed); the controller drops it from status"
            ),
            "remove it from spec.instances.ids",
        )
    }
}

/// A live instance without an association.
fn unassociated(inst: &InstanceFacts) -> Finding {
    let id = &inst.id;
    match inst.relation {
        Relation::Selected => Finding::problem(
            Check::Association,
            format!("instance {id} has no instance profile association"),
            "the controller associates it at its next reconcile; if it does not, the binding's Ready condition says why (PropagationPending for up to minutes after a profile is created is normal)",
        )
        .reason(Reason::PropagationPending.as_str()),
        _ => Finding::warning(
            Check::Association,
            format!("instance {id} has no instance profile"),
            "associate one, or select the instance in an InstanceProfileBinding",
        ),
    }
}

/// An association still associating or disassociating.
fn in_transition(id: &str, a: &Association) -> Finding {
    Finding::warning(
        Check::Association,
        format!(
            "association {} of instance {id} is {}: normal for seconds, stuck if it stays for minutes",
            a.id,
            a.state.as_str()
        ),
        format!(
            "if it is still {} in a few minutes, disassociate it (aws ec2 disassociate-iam-instance-profile --association-id {}) and let the controller associate again",
            a.state.as_str(),
            a.id
        ),
    )
    .reason(Reason::Reconciling.as_str())
}

/// A settled association: on the profile's current id, on an earlier (or
/// deleted) profile of the name wanted, or on another profile.
fn settled(facts: &Facts, inst: &InstanceFacts, a: &Association) -> Finding {
    let held_name = a.profile_name();
    let wanted_name = facts.profile_name.as_deref().unwrap_or(held_name);
    match facts.current_profile() {
        Some(p) if a.profile_id == p.id => on_current_id(inst, p, a),
        current if held_name == wanted_name => on_lost_id(facts, &inst.id, current, a),
        _ => on_other_profile(facts, &inst.id, a),
    }
}

fn on_current_id(inst: &InstanceFacts, p: &Profile, a: &Association) -> Finding {
    let id = &inst.id;
    match inst.relation {
        Relation::Unselected { remembered: true } => Finding::warning(
            Check::Association,
            format!(
                "instance {id} holds instance profile {} but the binding no longer selects it; the controller disassociates it at its next reconcile",
                p.name
            ),
            "nothing to do unless it stays: then read the binding's Ready condition",
        )
        .reason(Reason::Reconciling.as_str()),
        Relation::Unselected { remembered: false } => Finding::warning(
            Check::Association,
            format!(
                "instance {id}, which the binding does not select and the controller did not associate, uses instance profile {}; deleting the binding will wait for it",
                p.name
            ),
            format!(
                "select the instance in the binding, or disassociate it (aws ec2 disassociate-iam-instance-profile --association-id {})",
                a.id
            ),
        )
        .reason(Reason::DeletionBlocked.as_str()),
        _ => Finding::ok(
            Check::Association,
            format!(
                "instance {id} holds instance profile {} by its current id {}",
                p.name, p.id
            ),
        ),
    }
}

/// The association names the profile wanted but not its current id: an
/// earlier profile of that name, deleted (and perhaps recreated).
fn on_lost_id(facts: &Facts, id: &str, current: Option<&Profile>, a: &Association) -> Finding {
    let held_name = a.profile_name();
    let ours = matches!(facts.subject, Subject::Binding { .. })
        || current
            .and_then(|p| p.tags.as_ref())
            .and_then(|t| naming::owner_from_tags(t, &facts.cluster_id))
            .is_some();
    let controller = if ours {
        " (the controller does this for the instances it manages)"
    } else {
        ""
    };
    match current {
        Some(p) => Finding::problem(
            Check::Association,
            format!(
                "instance {id} holds id {} of an earlier instance profile named {held_name}, which was deleted and recreated as {}: the instance gets no credentials",
                a.profile_id, p.id
            ),
            format!(
                "replace the association: aws ec2 replace-iam-instance-profile-association --association-id {} --iam-instance-profile Arn={}{controller}",
                a.id, p.arn
            ),
        )
        .with("currentProfileId", &p.id),
        None if ours => Finding::problem(
            Check::Association,
            format!(
                "instance {id} is associated with instance profile {held_name} (id {}), which no longer exists",
                a.profile_id
            ),
            "let the controller recreate the profile and replace the association at its next reconcile",
        ),
        None => Finding::problem(
            Check::Association,
            format!(
                "instance {id} is associated with instance profile {held_name} (id {}), which no longer exists",
                a.profile_id
            ),
            format!(
                "replace the association with an existing profile: aws ec2 replace-iam-instance-profile-association --association-id {} --iam-instance-profile Name=PROFILE",
                a.id
            ),
        ),
    }
}

/// The association is with a profile other than the binding's.
fn on_other_profile(facts: &Facts, id: &str, a: &Association) -> Finding {
    let held_name = a.profile_name();
    let replace = matches!(&facts.subject, Subject::Binding { spec, .. } if spec.replace_foreign_associations);
    if replace {
        Finding::warning(
            Check::Association,
            format!(
                "instance {id} holds another instance profile, {held_name}; replaceForeignAssociations is true, so the controller replaces it"
            ),
            "nothing to do unless it stays: then read the binding's Ready condition",
        )
        .reason(Reason::Reconciling.as_str())
    } else {
        Finding::problem(
            Check::Association,
            format!(
                "instance {id} is associated with instance profile {held_name}, which the binding does not own; the controller leaves it alone"
            ),
            "set spec.replaceForeignAssociations: true, disassociate the other profile, or stop selecting the instance",
        )
        .reason(Reason::ForeignAssociation.as_str())
    }
}
