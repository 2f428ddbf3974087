//! Deletion (docs/design.md §3 step 9): disassociate ours and wait, refuse while an
//! instance we do not manage uses the profile, remove every role, delete.

use crate::aws::{Association, AssociationState};
use crate::naming;

use super::memory::memory_of;
use crate::reconcile::model::{Action, Decision, Desired, Problem};
use crate::reconcile::observe::Observed;

/// Decide the next deletion step. `desired.role` is not used: deletion works
/// whatever the spec says now.
#[must_use]
pub fn decide_cleanup(desired: &Desired, observed: &Observed) -> Decision {
    let mut decision = Decision::default();
    let users: Vec<&Association> = observed
        .selected
        .iter()
        .filter_map(|s| s.association.as_ref())
        .filter(|a| uses_our_profile(desired, observed, a))
        .chain(
            observed
                .other_users
                .iter()
                .filter(|a| uses_our_profile(desired, observed, a)),
        )
        .collect();
    let Some(profile) = &observed.profile else {
        // Already gone. Instances we select that still point at a dead
        // incarnation of our profile lose that association; nobody else's is touched.
        for a in users
            .iter()
            .filter(|a| is_selected(observed, &a.instance_id))
        {
            step_out(&mut decision, a);
        }
        return decision;
    };
    let Some(tags) = &profile.tags else {
        return Decision {
            actions: vec![Action::ReadProfile],
            ..Decision::default()
        };
    };
    if !naming::tags_prove_ownership(tags, &desired.cluster_id, &desired.key) {
        decision.problems.push(Problem::ForeignProfile {
            name: profile.name.clone(),
        });
        return decision;
    }
    let memory = memory_of(observed).unwrap_or_default();
    let mut blocked = Vec::new();
    for a in &users {
        if is_selected(observed, &a.instance_id) || memory.contains(&a.instance_id) {
            step_out(&mut decision, a);
        } else if a.state != AssociationState::Disassociated {
            blocked.push(a.instance_id.clone());
        }
    }
    if !blocked.is_empty() {
        decision.problems.push(Problem::DeletionBlocked {
            instance_ids: blocked,
        });
    }
    if !decision.converged() {
        return decision;
    }
    decision
        .actions
        .extend(profile.roles.iter().map(|r| Action::RemoveRole {
            role: r.name.clone(),
        }));
    decision.actions.push(Action::DeleteProfile);
    decision
}

fn uses_our_profile(desired: &Desired, observed: &Observed, a: &Association) -> bool {
    desired.is_our_profile_arn(&a.profile_arn)
        || observed
            .profile
            .as_ref()
            .is_some_and(|p| p.id == a.profile_id)
}

fn is_selected(observed: &Observed, instance_id: &str) -> bool {
    observed
        .selected
        .iter()
        .any(|s| s.instance.id == instance_id)
}

fn step_out(decision: &mut Decision, a: &Association) {
    match a.state {
        AssociationState::Associated => decision.actions.push(Action::Disassociate {
            instance_id: a.instance_id.clone(),
            association_id: a.id.clone(),
        }),
        AssociationState::Associating | AssociationState::Disassociating => {
            decision.waiting.push(a.instance_id.clone())
        }
        AssociationState::Disassociated => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::RunState;
    use crate::reconcile::decide::tests::{assoc, desired, profile, selected};

    #[test]
    fn deletion_order_disassociate_wait_remove_roles_delete() {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&["i-1"]));
        let a = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let mut o = Observed {
            profile: Some(p.clone()),
            selected: vec![selected("i-1", RunState::Running, Some(a.clone()))],
            ..Observed::default()
        };
        assert_eq!(
            decide_cleanup(&d, &o).actions,
            vec![Action::Disassociate {
                instance_id: "i-1".into(),
                association_id: a.id.clone()
            }]
        );
        if let Some(a) = o.selected[0].association.as_mut() {
            a.state = AssociationState::Disassociating;
        }
        let dec = decide_cleanup(&d, &o);
        assert!(dec.actions.is_empty());
        assert_eq!(dec.waiting, vec!["i-1".to_string()]);
        o.selected[0].association = None;
        assert_eq!(
            decide_cleanup(&d, &o).actions,
            vec![
                Action::RemoveRole {
                    role: "web-app".into()
                },
                Action::DeleteProfile
            ]
        );
    }

    #[test]
    fn unmanaged_user_blocks_deletion_after_ours_are_gone() {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&["i-1"]));
        let ours = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let theirs = assoc("i-9", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p.clone()),
            selected: vec![selected("i-1", RunState::Running, Some(ours.clone()))],
            other_users: vec![theirs],
            ..Observed::default()
        };
        let dec = decide_cleanup(&d, &o);
        assert_eq!(
            dec.actions,
            vec![Action::Disassociate {
                instance_id: "i-1".into(),
                association_id: ours.id
            }]
        );
        assert_eq!(
            dec.problems,
            vec![Problem::DeletionBlocked {
                instance_ids: vec!["i-9".into()]
            }]
        );
    }

    #[test]
    fn remembered_instance_is_ours_even_when_no_longer_selected() {
        let d = desired();
        let p = profile(&d, &[], Some(&["i-2"]));
        let a = assoc("i-2", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            other_users: vec![a.clone()],
            ..Observed::default()
        };
        assert_eq!(
            decide_cleanup(&d, &o).actions,
            vec![Action::Disassociate {
                instance_id: "i-2".into(),
                association_id: a.id
            }]
        );
    }

    #[test]
    fn cleanup_reads_tags_and_never_deletes_a_foreign_profile() {
        let d = desired();
        let o = Observed {
            profile: Some(profile(&d, &["web-app"], None)),
            ..Observed::default()
        };
        assert_eq!(decide_cleanup(&d, &o).actions, vec![Action::ReadProfile]);
        let mut p = profile(&d, &["web-app"], Some(&[]));
        p.tags = Some(std::collections::BTreeMap::new());
        let o = Observed {
            profile: Some(p),
            ..Observed::default()
        };
        let dec = decide_cleanup(&d, &o);
        assert!(dec.actions.is_empty());
        assert!(matches!(dec.problems[..], [Problem::ForeignProfile { .. }]));
    }

    #[test]
    fn gone_profile_with_no_users_is_done() {
        let d = desired();
        assert!(decide_cleanup(&d, &Observed::default()).converged());
    }
}
