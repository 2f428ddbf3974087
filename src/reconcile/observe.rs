//! *Observe*: one bulk snapshot of AWS shared by every binding, and the slice
//! of it one binding needs.

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use crate::aws::{Association, AssociationState, Aws, AwsError, Instance, Profile};

use crate::naming::BindingKey;

use super::model::Rotation;
pub use super::model::Selector;
use super::policy::{Allowing, refused_instances};
use super::rivals::Rivals;

/// Profiles under our paths, live associations and live instances, read in bulk.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken_at: Instant,
    pub profiles: HashMap<String, Profile>,
    /// The live association of each instance.
    pub associations: HashMap<String, Association>,
    pub instances: HashMap<String, Instance>,
    /// Which bindings select which instances (empty until the caller, who
    /// knows the bindings, sets it).
    pub rivals: std::sync::Arc<super::rivals::Rivals>,
}

impl Snapshot {
    /// Reads the three bulk listings concurrently: profiles under each path
    /// prefix (prefixes inside another are not listed twice), every live
    /// association, every live instance.
    ///
    /// # Errors
    /// The first AWS error of any listing.
    pub async fn take(aws: &Aws, path_prefixes: &BTreeSet<String>) -> Result<Self, AwsError> {
        let taken_at = Instant::now();
        let prefixes: Vec<&String> = path_prefixes
            .iter()
            .filter(|p| {
                !path_prefixes
                    .iter()
                    .any(|q| q != *p && p.starts_with(q.as_str()))
            })
            .collect();
        let profiles = async {
            let mut all = HashMap::new();
            for prefix in prefixes {
                for p in aws.list_profiles(prefix).await? {
                    all.insert(p.name.clone(), p);
                }
            }
            Ok::<_, AwsError>(all)
        };
        let (profiles, associations, instances) = tokio::try_join!(
            profiles,
            aws.describe_associations(),
            aws.describe_instances()
        )?;
        Ok(Self::from_parts(
            taken_at,
            profiles,
            associations,
            instances,
        ))
    }

    #[must_use]
    pub fn from_parts(
        taken_at: Instant,
        profiles: HashMap<String, Profile>,
        associations: Vec<Association>,
        instances: Vec<Instance>,
    ) -> Self {
        Self {
            taken_at,
            profiles,
            associations: live_associations(associations),
            instances: instances.into_iter().map(|i| (i.id.clone(), i)).collect(),
            rivals: std::sync::Arc::default(),
        }
    }
}

/// Patches from the event queue (`run --event-queue`, `crate::events`):
/// what one event re-read, folded into the shared snapshot so the reconciles
/// it triggers see it without a bulk refresh.
impl Snapshot {
    /// Notes an instance as just described: a live one replaces what was
    /// known of it, a terminated one is dropped with its association.
    pub fn note_instance(&mut self, instance: Instance) {
        if matches!(
            instance.state,
            crate::aws::RunState::Terminated | crate::aws::RunState::ShuttingDown
        ) {
            self.associations.remove(&instance.id);
            self.instances.remove(&instance.id);
        } else {
            self.instances.insert(instance.id.clone(), instance);
        }
    }

    /// Notes the live associations of `instance_ids` as just described:
    /// an instance without one in `associations` has none.
    pub fn note_associations(&mut self, instance_ids: &[String], associations: Vec<Association>) {
        for id in instance_ids {
            self.associations.remove(id);
        }
        self.associations.extend(live_associations(associations));
    }

    /// Notes a profile as just read (`None`: it does not exist).
    pub fn note_profile(&mut self, name: &str, profile: Option<Profile>) {
        match profile {
            Some(p) => {
                self.profiles.insert(name.to_string(), p);
            }
            None => {
                self.profiles.remove(name);
            }
        }
    }
}

/// The live association of each instance, by instance id. During a Replace an
/// instance can briefly show two; the one not on its way out is the one to act on.
#[must_use]
pub fn live_associations(associations: Vec<Association>) -> HashMap<String, Association> {
    let mut by_instance: HashMap<String, Association> = HashMap::new();
    for a in associations {
        let keep_existing = by_instance.get(&a.instance_id).is_some_and(|old| {
            a.state == AssociationState::Disassociating
                && old.state != AssociationState::Disassociating
        });
        if !keep_existing {
            by_instance.insert(a.instance_id.clone(), a);
        }
    }
    by_instance
}

/// The associations with a profile: by its name (any incarnation: a profile
/// deleted and recreated keeps its name) or by the current profile's id.
/// Observe's `other_users` and doctor's holders are these.
pub fn holders<'a>(
    associations: impl IntoIterator<Item = &'a Association>,
    profile_name: &str,
    profile: Option<&Profile>,
) -> impl Iterator<Item = &'a Association> {
    associations.into_iter().filter(move |a| {
        a.profile_name() == profile_name || profile.is_some_and(|p| p.id == a.profile_id)
    })
}

/// An instance a binding selects, with its live association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedInstance {
    pub instance: Instance,
    pub association: Option<Association>,
}

/// What one binding sees of AWS.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observed {
    pub profile: Option<Profile>,
    /// Selected, live instances, by id.
    pub selected: Vec<SelectedInstance>,
    /// Associations with this binding's profile (any incarnation of its name)
    /// on instances the binding does not select.
    pub other_users: Vec<Association>,
    /// Explicit ids that do not exist (any more): dropped, not an error.
    pub missing: Vec<String>,
    /// Selected instances the policy gate refuses: never touched, reported.
    pub refused: Vec<(SelectedInstance, String)>,
    /// Selected instances other bindings select too: never touched, reported.
    pub contested: Vec<(SelectedInstance, Vec<crate::naming::BindingKey>)>,
    /// A role rotation in progress (see [`super::rotation`]).
    pub rotation: Option<Rotation>,
}

impl Observed {
    /// The slice of `snapshot` one binding needs.
    #[must_use]
    pub fn from_snapshot(snapshot: &Snapshot, profile_name: &str, selector: &Selector) -> Self {
        let profile = snapshot.profiles.get(profile_name).cloned();
        let mut selected: Vec<SelectedInstance> = snapshot
            .instances
            .values()
            .filter(|i| selector.matches(i))
            .map(|i| SelectedInstance {
                instance: i.clone(),
                association: snapshot.associations.get(&i.id).cloned(),
            })
            .collect();
        selected.sort_by(|a, b| a.instance.id.cmp(&b.instance.id));
        let selected_ids: BTreeSet<&str> =
            selected.iter().map(|s| s.instance.id.as_str()).collect();
        let mut other_users: Vec<Association> = holders(
            snapshot.associations.values(),
            profile_name,
            profile.as_ref(),
        )
        .filter(|a| !selected_ids.contains(a.instance_id.as_str()))
        .cloned()
        .collect();
        other_users.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let missing = selector
            .ids
            .iter()
            .filter(|id| !snapshot.instances.contains_key(*id))
            .cloned()
            .collect();
        Self {
            profile,
            selected,
            other_users,
            missing,
            refused: Vec::new(),
            contested: Vec::new(),
            rotation: None,
        }
    }

    /// Sets aside the selected instances the policy gate refuses: they stay
    /// in `refused`, with why, never touched; the others are reconciled.
    pub fn set_aside_refused(&mut self, allowing: &[Allowing]) {
        let instances: Vec<&Instance> = self.selected.iter().map(|s| &s.instance).collect();
        let refused = refused_instances(allowing, &instances);
        let (keep, out): (Vec<_>, Vec<_>) = self
            .selected
            .drain(..)
            .partition(|s| !refused.iter().any(|(id, _)| id == &s.instance.id));
        self.selected = keep;
        self.refused = out
            .into_iter()
            .map(|s| {
                let why = refused
                    .iter()
                    .find(|(id, _)| id == &s.instance.id)
                    .map(|r| r.1.clone())
                    .unwrap_or_default();
                (s, why)
            })
            .collect();
    }

    /// Sets aside the selected instances another binding selects too (per
    /// `rivals`): they stay in `contested`, with whom, never touched.
    pub fn set_aside_contested(&mut self, rivals: &Rivals, me: &BindingKey) {
        if rivals.is_empty() {
            return;
        }
        let (contested, keep): (Vec<_>, Vec<_>) = self
            .selected
            .drain(..)
            .map(|s| (rivals.of(me, &s.instance), s))
            .partition(|(others, _)| !others.is_empty());
        self.selected = keep.into_iter().map(|(_, s)| s).collect();
        self.contested = contested.into_iter().map(|(o, s)| (s, o)).collect();
    }

    pub(crate) fn selected_mut(&mut self, instance_id: &str) -> Option<&mut SelectedInstance> {
        self.selected
            .iter_mut()
            .find(|s| s.instance.id == instance_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assoc(
        instance: &str,
        profile_name: &str,
        profile_id: &str,
        state: AssociationState,
    ) -> Association {
        Association {
            id: format!("iip-assoc-{profile_id}"),
            instance_id: instance.into(),
            profile_arn: format!(
                "arn:aws:iam::123456789012:instance-profile/ipb/c1/{profile_name}"
            ),
            profile_id: profile_id.into(),
            state,
        }
    }

    #[test]
    fn the_live_association_is_the_one_not_leaving() {
        let leaving = assoc("i-1", "p", "OLD", AssociationState::Disassociating);
        let new = assoc("i-1", "p", "NEW", AssociationState::Associating);
        for both in [
            vec![leaving.clone(), new.clone()],
            vec![new, leaving.clone()],
        ] {
            assert_eq!(live_associations(both)["i-1"].profile_id, "NEW");
        }
        assert_eq!(live_associations(vec![leaving])["i-1"].profile_id, "OLD");
        assert!(live_associations(Vec::new()).is_empty());
    }

    #[test]
    fn holders_match_the_name_or_the_current_id() {
        let current = Profile {
            name: "p".into(),
            path: "/ipb/c1/".into(),
            arn: "arn:aws:iam::123456789012:instance-profile/ipb/c1/p".into(),
            id: "NEW".into(),
            roles: Vec::new(),
            tags: None,
        };
        let all = [
            assoc("i-1", "p", "OLD", AssociationState::Associated),
            assoc("i-2", "renamed", "NEW", AssociationState::Associated),
            assoc("i-3", "other", "OTHER", AssociationState::Associated),
        ];
        let ids = |profile: Option<&Profile>| -> Vec<&str> {
            holders(&all, "p", profile)
                .map(|a| a.instance_id.as_str())
                .collect()
        };
        assert_eq!(ids(Some(&current)), ["i-1", "i-2"]);
        assert_eq!(ids(None), ["i-1"]);
    }
}
