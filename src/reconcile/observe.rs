//! *Observe*: one bulk snapshot of AWS shared by every binding, and the slice
//! of it one binding needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use tokio::time::Instant;

use crate::aws::{
    Association, AssociationState, Aws, AwsError, Instance, Profile, RoleRef, RunState,
};

use crate::naming::BindingKey;

use super::compact::{Id, Interner};
use super::model::Rotation;
pub use super::model::Selector;
use super::policy::{Allowing, refused_instances};
use super::rivals::Rivals;

/// Profiles under our paths, live associations and live instances, read in
/// bulk. Held compactly (ids inline, shared strings once, indexes for the
/// per-binding lookups): a controller keeps one for every binding.
///
/// Read it with [`Self::profile`], [`Self::instance`], [`Self::association`]
/// (the owned forms of the AWS layer); keep it current between refreshes with
/// [`Self::insert_profile`], [`Self::insert_instance`],
/// [`Self::insert_association`] and the `remove_*` methods.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken_at: Instant,
    profiles: HashMap<Box<str>, StoredProfile>,
    /// The live association of each instance, by instance id.
    associations: HashMap<Id, StoredAssociation>,
    instances: HashMap<Id, StoredInstance>,
    /// Instance ids whose live association names a profile, by profile name
    /// (any incarnation) and by profile id: [`holders`] without a scan.
    holders_by_name: HashMap<Box<str>, BTreeSet<Id>>,
    holders_by_id: HashMap<Id, BTreeSet<Id>>,
    /// Instance ids by each of their tag pairs: tag selectors without a scan.
    by_tag: HashMap<(Arc<str>, Arc<str>), BTreeSet<Id>>,
    strings: Interner,
    /// Which bindings select which instances (empty until the caller, who
    /// knows the bindings, sets it).
    pub rivals: Arc<Rivals>,
}

#[derive(Clone, Debug)]
struct StoredProfile {
    path: Arc<str>,
    arn: StoredArn,
    id: Id,
    roles: Box<[(Arc<str>, Arc<str>)]>,
    tags: Option<BTreeMap<String, String>>,
}

/// A profile's ARN: the shared part before its path and name, or whole when
/// it does not end in them.
#[derive(Clone, Debug)]
enum StoredArn {
    Head(Arc<str>),
    Whole(Box<str>),
}

#[derive(Clone, Debug)]
struct StoredAssociation {
    id: Id,
    profile_arn: Arc<str>,
    profile_id: Id,
    state: AssociationState,
}

#[derive(Clone, Debug)]
struct StoredInstance {
    state: RunState,
    /// Sorted by key, as the instance's tag map.
    tags: Box<[(Arc<str>, Arc<str>)]>,
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
            let mut all = Self::empty(taken_at);
            for prefix in prefixes {
                for p in aws.list_profiles(prefix).await? {
                    all.insert_profile(p);
                }
            }
            Ok::<_, AwsError>(all)
        };
        let (mut snapshot, associations, instances) = tokio::try_join!(
            profiles,
            aws.describe_associations(),
            aws.describe_instances()
        )?;
        snapshot.fill(associations, instances);
        Ok(snapshot)
    }

    #[must_use]
    pub fn from_parts(
        taken_at: Instant,
        profiles: HashMap<String, Profile>,
        associations: Vec<Association>,
        instances: Vec<Instance>,
    ) -> Self {
        let mut snapshot = Self::empty(taken_at);
        for p in profiles.into_values() {
            snapshot.insert_profile(p);
        }
        snapshot.fill(associations, instances);
        snapshot
    }

    fn empty(taken_at: Instant) -> Self {
        Self {
            taken_at,
            profiles: HashMap::new(),
            associations: HashMap::new(),
            instances: HashMap::new(),
            holders_by_name: HashMap::new(),
            holders_by_id: HashMap::new(),
            by_tag: HashMap::new(),
            strings: Interner::default(),
            rivals: Arc::default(),
        }
    }

    fn fill(&mut self, associations: Vec<Association>, instances: Vec<Instance>) {
        for a in associations {
            self.insert_association(a);
        }
        for i in instances {
            self.insert_instance(i);
        }
    }

    /// The profile named `name`, if it is under a listed path.
    #[must_use]
    pub fn profile(&self, name: &str) -> Option<Profile> {
        let (name, p) = self.profiles.get_key_value(name)?;
        Some(Profile {
            name: name.to_string(),
            path: p.path.to_string(),
            arn: match &p.arn {
                StoredArn::Head(head) => format!("{head}{}{name}", p.path),
                StoredArn::Whole(arn) => arn.to_string(),
            },
            id: p.id.as_str().to_string(),
            roles: p
                .roles
                .iter()
                .map(|(name, arn)| RoleRef {
                    name: name.to_string(),
                    arn: arn.to_string(),
                })
                .collect(),
            tags: p.tags.clone(),
        })
    }

    /// The live instance `id`.
    #[must_use]
    pub fn instance(&self, id: &str) -> Option<Instance> {
        let (id, i) = self.instances.get_key_value(id)?;
        Some(Instance {
            id: id.as_str().to_string(),
            state: i.state,
            tags: i
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    /// The live association of instance `instance_id`.
    #[must_use]
    pub fn association(&self, instance_id: &str) -> Option<Association> {
        let (instance, a) = self.associations.get_key_value(instance_id)?;
        Some(Association {
            id: a.id.as_str().to_string(),
            instance_id: instance.as_str().to_string(),
            profile_arn: a.profile_arn.to_string(),
            profile_id: a.profile_id.as_str().to_string(),
            state: a.state,
        })
    }

    /// How many profiles, live associations and live instances it holds.
    #[must_use]
    pub fn len(&self) -> (usize, usize, usize) {
        (
            self.profiles.len(),
            self.associations.len(),
            self.instances.len(),
        )
    }

    /// Adds a profile, or replaces the one of the same name.
    pub fn insert_profile(&mut self, p: Profile) {
        let path = self.strings.intern(&p.path);
        let arn = match p
            .arn
            .strip_suffix(p.name.as_str())
            .and_then(|a| a.strip_suffix(p.path.as_str()))
        {
            Some(head) => StoredArn::Head(self.strings.intern(head)),
            None => StoredArn::Whole(p.arn.into()),
        };
        let roles = p
            .roles
            .iter()
            .map(|r| (self.strings.intern(&r.name), self.strings.intern(&r.arn)))
            .collect();
        let stored = StoredProfile {
            path,
            arn,
            id: Id::new(&p.id),
            roles,
            tags: p.tags,
        };
        self.profiles.insert(p.name.into(), stored);
    }

    /// Drops the profile named `name` (deleted).
    pub fn remove_profile(&mut self, name: &str) {
        self.profiles.remove(name);
    }

    /// Adds a live instance, or replaces the one of the same id (one that
    /// terminated is removed with [`Self::remove_instance`] instead).
    pub fn insert_instance(&mut self, i: Instance) {
        self.remove_instance(&i.id);
        let id = Id::new(&i.id);
        let tags: Box<[(Arc<str>, Arc<str>)]> = i
            .tags
            .iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        for pair in &tags {
            self.by_tag
                .entry(pair.clone())
                .or_default()
                .insert(id.clone());
        }
        self.instances.insert(
            id,
            StoredInstance {
                state: i.state,
                tags,
            },
        );
    }

    /// Drops instance `id` (terminated, or gone).
    pub fn remove_instance(&mut self, id: &str) {
        let Some(old) = self.instances.remove(id) else {
            return;
        };
        for pair in old.tags.iter() {
            if let Some(ids) = self.by_tag.get_mut(pair) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_tag.remove(pair);
                }
            }
        }
    }

    /// Notes an association as listed or just made: it becomes its instance's
    /// live one, unless it is leaving (`disassociating`) and the instance has
    /// one that is not (during a Replace an instance briefly shows two). One
    /// that is gone (`disassociated`) is removed with
    /// [`Self::remove_association`] instead.
    pub fn insert_association(&mut self, a: Association) {
        let keep_existing = self
            .associations
            .get(a.instance_id.as_str())
            .is_some_and(|old| {
                a.state == AssociationState::Disassociating
                    && old.state != AssociationState::Disassociating
            });
        if keep_existing {
            return;
        }
        self.remove_association(&a.instance_id);
        let instance = Id::new(&a.instance_id);
        let profile_id = Id::new(&a.profile_id);
        self.holders_by_name
            .entry(a.profile_name().into())
            .or_default()
            .insert(instance.clone());
        self.holders_by_id
            .entry(profile_id.clone())
            .or_default()
            .insert(instance.clone());
        let stored = StoredAssociation {
            id: Id::new(&a.id),
            profile_arn: self.strings.intern(&a.profile_arn),
            profile_id,
            state: a.state,
        };
        self.associations.insert(instance, stored);
    }

    /// Drops the live association of instance `instance_id` (gone).
    pub fn remove_association(&mut self, instance_id: &str) {
        let Some(old) = self.associations.remove(instance_id) else {
            return;
        };
        let name = old.profile_arn.rsplit('/').next().unwrap_or_default();
        if let Some(ids) = self.holders_by_name.get_mut(name) {
            ids.remove(instance_id);
            if ids.is_empty() {
                self.holders_by_name.remove(name);
            }
        }
        if let Some(ids) = self.holders_by_id.get_mut(&old.profile_id) {
            ids.remove(instance_id);
            if ids.is_empty() {
                self.holders_by_id.remove(&old.profile_id);
            }
        }
    }

    /// The live instances `selector` selects, sorted by id.
    fn selected(&self, selector: &Selector) -> Vec<Instance> {
        let mut ids: BTreeSet<&str> = selector
            .ids
            .iter()
            .map(String::as_str)
            .filter(|id| self.instances.contains_key(*id))
            .collect();
        // Candidates for the tags: the instances carrying the first pair.
        if let Some((k, v)) = selector.tags.iter().next()
            && let (Some(k), Some(v)) = (self.strings.get(k), self.strings.get(v))
            && let Some(candidates) = self.by_tag.get(&(k, v))
        {
            ids.extend(candidates.iter().map(Id::as_str));
        }
        ids.into_iter()
            .filter_map(|id| self.instance(id))
            .filter(|i| selector.matches(i))
            .collect()
    }

    /// The live associations naming profile `name`, or whose profile id is `id`.
    fn holders_of(&self, name: &str, id: Option<&str>) -> Vec<Association> {
        let by_name = self.holders_by_name.get(name).into_iter().flatten();
        let by_id = id
            .and_then(|id| self.holders_by_id.get(id))
            .into_iter()
            .flatten();
        let instances: BTreeSet<&str> = by_name.chain(by_id).map(Id::as_str).collect();
        instances
            .into_iter()
            .filter_map(|i| self.association(i))
            .collect()
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
            RunState::Terminated | RunState::ShuttingDown
        ) {
            self.remove_association(&instance.id);
            self.remove_instance(&instance.id);
        } else {
            self.insert_instance(instance);
        }
    }

    /// Notes the live associations of `instance_ids` as just described:
    /// an instance without one in `associations` has none.
    pub fn note_associations(&mut self, instance_ids: &[String], associations: Vec<Association>) {
        for id in instance_ids {
            self.remove_association(id);
        }
        for a in live_associations(associations).into_values() {
            self.insert_association(a);
        }
    }

    /// Notes a profile as just read (`None`: it does not exist).
    pub fn note_profile(&mut self, name: &str, profile: Option<Profile>) {
        match profile {
            Some(p) => self.insert_profile(p),
            None => self.remove_profile(name),
        }
    }

    /// The instances whose live association has one of `association_ids`.
    #[must_use]
    pub fn instances_of_associations(&self, association_ids: &BTreeSet<String>) -> Vec<String> {
        if association_ids.is_empty() {
            return Vec::new();
        }
        self.associations
            .iter()
            .filter(|(_, a)| association_ids.contains(a.id.as_str()))
            .map(|(instance, _)| instance.as_str().to_string())
            .collect()
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
        let profile = snapshot.profile(profile_name);
        let selected: Vec<SelectedInstance> = snapshot
            .selected(selector)
            .into_iter()
            .map(|i| SelectedInstance {
                association: snapshot.association(&i.id),
                instance: i,
            })
            .collect();
        let selected_ids: BTreeSet<&str> =
            selected.iter().map(|s| s.instance.id.as_str()).collect();
        let other_users: Vec<Association> = snapshot
            .holders_of(profile_name, profile.as_ref().map(|p| p.id.as_str()))
            .into_iter()
            .filter(|a| !selected_ids.contains(a.instance_id.as_str()))
            .collect();
        let missing = selector
            .ids
            .iter()
            .filter(|id| !snapshot.instances.contains_key(id.as_str()))
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
    use crate::reconcile::decide::tests::tagged;

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

    fn profile(name: &str, id: &str) -> Profile {
        Profile {
            name: name.into(),
            path: "/ipb/c1/".into(),
            arn: format!("arn:aws:iam::123456789012:instance-profile/ipb/c1/{name}"),
            id: id.into(),
            roles: vec![RoleRef {
                name: "web".into(),
                arn: "arn:aws:iam::123456789012:role/web".into(),
            }],
            tags: None,
        }
    }

    #[test]
    fn lookups_give_back_what_went_in() {
        let odd_arn = Profile {
            arn: "arn:aws-cn:iam::1:instance-profile/elsewhere/q".into(),
            ..profile("q", "Q")
        };
        let a = assoc("i-1", "p", "P", AssociationState::Associated);
        let i = tagged("i-1", &[("app", "web"), ("env", "prod")]);
        let snapshot = Snapshot::from_parts(
            Instant::now(),
            HashMap::from([
                ("p".to_string(), profile("p", "P")),
                ("q".to_string(), odd_arn.clone()),
            ]),
            vec![a.clone()],
            vec![i.clone()],
        );
        assert_eq!(snapshot.profile("p"), Some(profile("p", "P")));
        assert_eq!(snapshot.profile("q"), Some(odd_arn));
        assert_eq!(snapshot.profile("r"), None);
        assert_eq!(snapshot.instance("i-1"), Some(i));
        assert_eq!(snapshot.association("i-1"), Some(a));
        assert_eq!(snapshot.association("i-2"), None);
        assert_eq!(snapshot.len(), (2, 1, 1));
    }

    #[test]
    fn inserts_and_removals_keep_the_lookups_current() {
        let mut snapshot =
            Snapshot::from_parts(Instant::now(), HashMap::new(), Vec::new(), Vec::new());
        let web = Selector {
            ids: ["i-3".to_string()].into(),
            tags: [("app".to_string(), "web".to_string())].into(),
        };
        let seen = |s: &Snapshot| {
            let o = Observed::from_snapshot(s, "p", &web);
            let selected: Vec<String> = o.selected.iter().map(|s| s.instance.id.clone()).collect();
            let others: Vec<String> = o
                .other_users
                .iter()
                .map(|a| a.instance_id.clone())
                .collect();
            (o.profile.is_some(), selected, others, o.missing)
        };
        assert_eq!(
            seen(&snapshot),
            (false, vec![], vec![], vec!["i-3".to_string()])
        );

        snapshot.insert_profile(profile("p", "P"));
        snapshot.insert_instance(tagged("i-1", &[("app", "web")]));
        snapshot.insert_instance(tagged("i-2", &[("app", "db")]));
        snapshot.insert_instance(tagged("i-3", &[]));
        snapshot.insert_association(assoc("i-2", "p", "P", AssociationState::Associated));
        assert_eq!(
            seen(&snapshot),
            (
                true,
                vec!["i-1".into(), "i-3".into()],
                vec!["i-2".into()],
                vec![]
            )
        );
        // Retagged, then on its way to another profile: neither selected nor a user.
        snapshot.insert_instance(tagged("i-1", &[("app", "api")]));
        snapshot.insert_association(assoc("i-2", "other", "O", AssociationState::Associated));
        assert_eq!(seen(&snapshot), (true, vec!["i-3".into()], vec![], vec![]));
        // A leaving association does not displace the live one.
        snapshot.insert_association(assoc("i-2", "p", "P", AssociationState::Disassociating));
        assert_eq!(
            snapshot.association("i-2").map(|a| a.profile_id),
            Some("O".into())
        );
        // A recreated profile: associations by the old name still count.
        snapshot.insert_association(assoc("i-1", "p", "OLD", AssociationState::Associated));
        snapshot.insert_profile(profile("p", "NEW"));
        assert_eq!(seen(&snapshot).2, vec!["i-1".to_string()]);

        snapshot.remove_association("i-1");
        snapshot.remove_instance("i-3");
        snapshot.remove_profile("p");
        assert_eq!(
            seen(&snapshot),
            (false, vec![], vec![], vec!["i-3".to_string()])
        );
    }
}
