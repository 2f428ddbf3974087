//! Role rotation (`spec.rotation.onRoleChange: Reassociate`): when a
//! binding's role changes, instances already associated keep the old role's
//! credentials until IMDS refreshes them (up to about an hour). A rotation
//! moves each to a fresh association, at most `maxUnavailable` at a time.
//!
//! Which instances still have to move is known from the binding's recorded
//! status (its `rotation.pending`, or the role it recorded before the
//! change), else from the profile itself while it still holds the old role.
//! So a restart mid-rotation carries on where it was; an instance moved
//! twice (a crash between the move and the status write) costs one more
//! credential refresh, nothing else.

use std::collections::BTreeSet;

use crate::aws::{AssociationState, RoleInfo};
use crate::crd::OnRoleChange;

use super::model::{BindingInput, Rotation};
use super::observe::Observed;

/// The rotation `b` has in progress (or starts now) towards `role`, given
/// what is observed; `None` when there is nothing to move.
#[must_use]
pub fn pending(b: &BindingInput, role: &RoleInfo, observed: &Observed) -> Option<Rotation> {
    let spec = b.spec.rotation.as_ref()?;
    if spec.on_role_change != OnRoleChange::Reassociate {
        return None;
    }
    let profile = observed.profile.as_ref()?;
    let selected: BTreeSet<&str> = observed
        .selected
        .iter()
        .map(|s| s.instance.id.as_str())
        .collect();
    // Instances that hold our profile now: the ones a role change strands.
    let associated: BTreeSet<String> = observed
        .selected
        .iter()
        .filter(|s| {
            s.association.as_ref().is_some_and(|a| {
                a.profile_id == profile.id && a.state == AssociationState::Associated
            })
        })
        .map(|s| s.instance.id.clone())
        .collect();
    let previous = b.previous.as_ref();
    let (pending, total) = if let Some(r) = previous
        .and_then(|p| p.rotation.as_ref())
        .filter(|r| r.role == role.name)
    {
        // Carry on: what is left, of the instances still selected.
        let left: BTreeSet<String> = r
            .pending
            .iter()
            .filter(|id| selected.contains(id.as_str()))
            .cloned()
            .collect();
        let total = usize::try_from(r.total)
            .unwrap_or(left.len())
            .max(left.len());
        (left, total)
    } else {
        let recorded_other_role = previous
            .and_then(|p| p.role.as_ref())
            .is_some_and(|r| r.name != role.name);
        let holds_other_role =
            !profile.roles.is_empty() && !profile.roles.iter().any(|r| r.name == role.name);
        if !(recorded_other_role || holds_other_role) {
            return None;
        }
        let total = associated.len();
        (associated, total)
    };
    if pending.is_empty() {
        return None;
    }
    Some(Rotation {
        role: role.name.clone(),
        total,
        max_unavailable: spec.max_unavailable_of(total),
        pending,
    })
}
