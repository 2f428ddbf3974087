//! The profile's one role: remove any other, add ours (docs/design.md §3 step 5).

use crate::aws::Profile;

use crate::reconcile::model::{Action, Desired};

/// Role changes that leave exactly the desired role on the profile. A profile
/// holds one role, so another is removed before ours is added.
pub(crate) fn role_actions(desired: &Desired, profile: &Profile) -> Vec<Action> {
    let mut actions: Vec<Action> = profile
        .roles
        .iter()
        .filter(|r| !is_desired(desired, &r.name, &r.arn))
        .map(|r| Action::RemoveRole {
            role: r.name.clone(),
        })
        .collect();
    if !profile
        .roles
        .iter()
        .any(|r| is_desired(desired, &r.name, &r.arn))
    {
        actions.push(Action::AddRole);
    }
    actions
}

/// Role names are case-sensitive; the ARN decides when both sides have one.
fn is_desired(desired: &Desired, name: &str, arn: &str) -> bool {
    if !arn.is_empty() && !desired.role.arn.is_empty() {
        arn == desired.role.arn
    } else {
        name == desired.role.name
    }
}
