//! Associations per selected instance (docs/design.md §3 step 6), keyed on the profile
//! **id**: a profile deleted and recreated under the same name has a new id,
//! and instances still holding the old one have no working credentials.

use std::collections::BTreeSet;

use crate::aws::AssociationState;
use crate::naming::InstanceMemory;

use crate::reconcile::model::{Action, Desired, Problem};
use crate::reconcile::observe::Observed;

#[derive(Default)]
pub(crate) struct AssociationPlan {
    pub actions: Vec<Action>,
    pub waiting: Vec<String>,
    pub problems: Vec<Problem>,
    /// Instances that will hold our profile once the actions are done.
    pub associating: BTreeSet<String>,
    /// Instances whose association with our profile the actions remove.
    pub released: BTreeSet<String>,
}

pub(crate) fn association_actions(
    desired: &Desired,
    observed: &Observed,
    memory: Option<&InstanceMemory>,
) -> AssociationPlan {
    let mut plan = AssociationPlan::default();
    let Some(profile) = &observed.profile else {
        return plan;
    };
    for sel in &observed.selected {
        let id = &sel.instance.id;
        let Some(a) = &sel.association else {
            plan.actions.push(Action::Associate {
                instance_id: id.clone(),
            });
            plan.associating.insert(id.clone());
            continue;
        };
        if a.profile_id == profile.id {
            if a.state != AssociationState::Associated {
                plan.waiting.push(id.clone());
            }
            continue;
        }
        let ours = desired.is_our_profile_arn(&a.profile_arn);
        if !ours && !desired.replace_foreign {
            plan.problems.push(Problem::ForeignAssociation {
                instance_id: id.clone(),
                profile_arn: a.profile_arn.clone(),
            });
            continue;
        }
        match a.state {
            AssociationState::Associated if sel.instance.state.replaceable() => {
                plan.actions.push(Action::Replace {
                    instance_id: id.clone(),
                    association_id: a.id.clone(),
                    foreign: !ours,
                });
            }
            AssociationState::Associated => {
                // A stopped instance: remove the old association, associate ours next.
                plan.actions.push(Action::Disassociate {
                    instance_id: id.clone(),
                    association_id: a.id.clone(),
                });
            }
            _ => plan.waiting.push(id.clone()),
        }
        plan.associating.insert(id.clone());
    }
    // Instances no longer selected lose our association, but only the ones the
    // memory proves we made; another user of the profile is left alone.
    for a in &observed.other_users {
        let ours = desired.is_our_profile_arn(&a.profile_arn) || a.profile_id == profile.id;
        if !ours || !memory.is_some_and(|m| m.contains(&a.instance_id)) {
            continue;
        }
        match a.state {
            AssociationState::Associated => {
                plan.actions.push(Action::Disassociate {
                    instance_id: a.instance_id.clone(),
                    association_id: a.id.clone(),
                });
                plan.released.insert(a.instance_id.clone());
            }
            AssociationState::Disassociated | AssociationState::Disassociating => {
                plan.released.insert(a.instance_id.clone());
            }
            AssociationState::Associating => plan.waiting.push(a.instance_id.clone()),
        }
    }
    plan
}
