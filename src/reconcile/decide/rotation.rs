//! The next moves of a role rotation (see `reconcile::rotation`): once the
//! profile holds exactly the new role, move pending instances to a fresh
//! association while fewer than `maxUnavailable` are between credentials.

use crate::aws::AssociationState;

use super::associations::AssociationPlan;
use crate::reconcile::model::{Action, Desired};
use crate::reconcile::observe::Observed;

pub(crate) fn rotation_actions(
    desired: &Desired,
    observed: &Observed,
    assoc: &AssociationPlan,
) -> Vec<Action> {
    let (Some(rotation), Some(profile)) = (&observed.rotation, &observed.profile) else {
        return Vec::new();
    };
    let role_in_place =
        profile.roles.len() == 1 && profile.roles.iter().all(|r| r.name == desired.role.name);
    if !role_in_place {
        return Vec::new();
    }
    // Between credentials now: associations in transition, and instances
    // about to be (re)associated by this plan.
    let in_flight = assoc.waiting.len() + assoc.associating.len();
    let slots = rotation.max_unavailable.saturating_sub(in_flight);
    let moved = rotation.total.saturating_sub(rotation.pending.len());
    let per_batch = rotation.max_unavailable.max(1);
    observed
        .selected
        .iter()
        .filter(|s| rotation.pending.contains(&s.instance.id))
        .filter_map(|s| {
            let a = s.association.as_ref()?;
            (a.profile_id == profile.id && a.state == AssociationState::Associated)
                .then_some((s, a))
        })
        .take(slots)
        .enumerate()
        .map(|(k, (s, a))| Action::Reassociate {
            instance_id: s.instance.id.clone(),
            association_id: a.id.clone(),
            running: s.instance.state.replaceable(),
            batch: (moved + k) / per_batch + 1,
            batches: rotation.batches(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::aws::{AssociationState, RunState};
    use crate::reconcile::decide::decide_apply;
    use crate::reconcile::decide::tests::{assoc, desired, profile, selected};
    use crate::reconcile::model::{Action, Rotation};
    use crate::reconcile::observe::Observed;

    /// Ten instances on our profile (`associating` ones in transition),
    /// all pending a rotation of three at a time.
    fn world(associating: &[usize]) -> Observed {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&[]));
        let ids: Vec<String> = (0..10).map(|i| format!("i-{i:08x}")).collect();
        let selected = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                let state = if associating.contains(&n) {
                    AssociationState::Associating
                } else {
                    AssociationState::Associated
                };
                selected(id, RunState::Running, Some(assoc(id, &p.arn, &p.id, state)))
            })
            .collect();
        Observed {
            profile: Some(p),
            selected,
            rotation: Some(Rotation {
                role: "web-app".into(),
                total: 10,
                pending: ids.iter().cloned().collect(),
                max_unavailable: 3,
            }),
            ..Observed::default()
        }
    }

    fn moves(o: &Observed) -> Vec<(String, usize)> {
        decide_apply(&desired(), o)
            .actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Reassociate {
                    instance_id, batch, ..
                } => Some((instance_id, batch)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn at_most_max_unavailable_instances_move_at_once() {
        let all = moves(&world(&[]));
        assert_eq!(all.len(), 3, "{all:?}");
        assert!(all.iter().all(|(_, batch)| *batch == 1), "{all:?}");
        // Two still settling from the last batch: one slot left.
        let mut o = world(&[0, 1]);
        if let Some(r) = o.rotation.as_mut() {
            r.pending.remove("i-00000000");
            r.pending.remove("i-00000001");
        }
        let some = moves(&o);
        assert_eq!(some.len(), 1, "{some:?}");
        assert_eq!(some[0].1, 1, "the third of batch 1: {some:?}");
        // Three in transition: nobody else moves.
        assert!(moves(&world(&[0, 1, 2])).is_empty());
    }

    #[test]
    fn nothing_moves_before_the_new_role_is_on_the_profile() {
        let mut o = world(&[]);
        o.profile = Some(profile(&desired(), &["old-role"], Some(&[])));
        let d = decide_apply(&desired(), &o);
        assert!(
            !d.actions
                .iter()
                .any(|a| matches!(a, Action::Reassociate { .. })),
            "{d:?}"
        );
        assert!(matches!(d.actions[0], Action::RemoveRole { .. }), "{d:?}");
    }

    #[test]
    fn only_pending_instances_move_and_batches_count_on() {
        let mut o = world(&[]);
        let keep: BTreeSet<String> = ["i-00000008", "i-00000009"]
            .iter()
            .map(|s| (*s).to_string())
            .collect();
        if let Some(r) = o.rotation.as_mut() {
            r.pending = keep.clone();
        }
        let m = moves(&o);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().all(|(id, _)| keep.contains(id)), "{m:?}");
        // 8 of 10 done, 3 a batch: the 9th and 10th are batch 3 and 4.
        assert_eq!(m.iter().map(|m| m.1).collect::<Vec<_>>(), vec![3, 4]);
    }
}
