//! The invariant checker: reads AWS (moto, directly, not through the fault
//! proxy) and says which of the invariants do not hold.
//!
//! - I1 every binding's profile holds exactly its one role;
//! - I2 every selected instance is associated with its binding's current profile id;
//! - I3 nothing seeded as foreign (profiles, associations, roles) changed;
//! - I4 after deletion no owned profile remains and no instance points at one;
//! - I5 no binding has more than one profile.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use instance_profile_controller::naming::{self, BindingKey};

use crate::common::Aws;

/// A profile as IAM has it, tags included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileFacts {
    pub path: String,
    pub id: String,
    pub arn: String,
    pub roles: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

/// An association as EC2 has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssocFacts {
    pub id: String,
    pub profile_arn: String,
    pub profile_id: String,
    pub state: String,
}

impl AssocFacts {
    pub fn profile_name(&self) -> &str {
        self.profile_arn.rsplit('/').next().unwrap_or_default()
    }
}

/// A role as IAM has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleFacts {
    pub id: String,
    pub arn: String,
    pub trust: String,
    pub profiles: BTreeSet<String>,
}

/// Everything the invariants look at, read in one go.
#[derive(Clone, Debug, Default)]
pub struct AwsState {
    pub profiles: BTreeMap<String, ProfileFacts>,
    /// instance id → its live association (associating, associated, disassociating).
    pub associations: BTreeMap<String, AssocFacts>,
    /// instance id → (state, tags), terminated ones left out.
    pub instances: BTreeMap<String, (String, BTreeMap<String, String>)>,
    pub roles: BTreeMap<String, RoleFacts>,
    /// Instances EC2 lists with more than one live association.
    pub doubly_associated: BTreeSet<String>,
}

impl AwsState {
    /// Reads every profile (with tags), association, live instance and role, all pages.
    pub async fn read(aws: &Aws) -> Self {
        let mut state = Self::default();
        let mut marker = None;
        let mut names = Vec::new();
        loop {
            let page = aws
                .iam
                .list_instance_profiles()
                .max_items(1000)
                .set_marker(marker.clone())
                .send()
                .await
                .expect("list instance profiles");
            names.extend(
                page.instance_profiles()
                    .iter()
                    .map(|p| p.instance_profile_name().to_string()),
            );
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        for name in names {
            // Get, not List: only Get returns the tags.
            let out = aws
                .iam
                .get_instance_profile()
                .instance_profile_name(&name)
                .send()
                .await
                .expect("get instance profile");
            let Some(p) = out.instance_profile() else {
                continue;
            };
            state.profiles.insert(
                name,
                ProfileFacts {
                    path: p.path().to_string(),
                    id: p.instance_profile_id().to_string(),
                    arn: p.arn().to_string(),
                    roles: p
                        .roles()
                        .iter()
                        .map(|r| r.role_name().to_string())
                        .collect(),
                    tags: p
                        .tags()
                        .iter()
                        .map(|t| (t.key().to_string(), t.value().to_string()))
                        .collect(),
                },
            );
        }
        let mut token = None;
        loop {
            let page = aws
                .ec2
                .describe_iam_instance_profile_associations()
                .max_results(1000)
                .set_next_token(token.clone())
                .send()
                .await
                .expect("describe associations");
            for a in page.iam_instance_profile_associations() {
                let state_name = a
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                if state_name == "disassociated" {
                    continue;
                }
                let (Some(instance), Some(p)) = (a.instance_id(), a.iam_instance_profile()) else {
                    continue;
                };
                let facts = AssocFacts {
                    id: a.association_id().unwrap_or_default().to_string(),
                    profile_arn: p.arn().unwrap_or_default().to_string(),
                    profile_id: p.id().unwrap_or_default().to_string(),
                    state: state_name,
                };
                if state
                    .associations
                    .insert(instance.to_string(), facts)
                    .is_some()
                {
                    state.doubly_associated.insert(instance.to_string());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut token = None;
        loop {
            let page = aws
                .ec2
                .describe_instances()
                .max_results(1000)
                .set_next_token(token.clone())
                .send()
                .await
                .expect("describe instances");
            for r in page.reservations() {
                for i in r.instances() {
                    let run = i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_string())
                        .unwrap_or_default();
                    if run == "terminated" {
                        continue;
                    }
                    let tags = i
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect();
                    if let Some(id) = i.instance_id() {
                        state.instances.insert(id.to_string(), (run, tags));
                    }
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let mut marker = None;
        let mut role_names = Vec::new();
        loop {
            let page = aws
                .iam
                .list_roles()
                .max_items(1000)
                .set_marker(marker.clone())
                .send()
                .await
                .expect("list roles");
            role_names.extend(page.roles().iter().map(|r| r.role_name().to_string()));
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        for name in role_names {
            let out = aws
                .iam
                .get_role()
                .role_name(&name)
                .send()
                .await
                .expect("get role");
            let Some(r) = out.role() else { continue };
            let profiles = state
                .profiles
                .iter()
                .filter(|(_, p)| p.roles.contains(&name))
                .map(|(n, _)| n.clone())
                .collect();
            state.roles.insert(
                name.clone(),
                RoleFacts {
                    id: r.role_id().to_string(),
                    arn: r.arn().to_string(),
                    trust: r
                        .assume_role_policy_document()
                        .unwrap_or_default()
                        .to_string(),
                    profiles,
                },
            );
        }
        state
    }

    /// Profiles this cluster owns, by binding: the tags name the binding and
    /// the profile carries that binding's name (a profile whose tags name a
    /// binding but whose name is another is not ours to delete).
    pub fn owned_by(&self, cluster_id: &str) -> BTreeMap<BindingKey, Vec<String>> {
        let mut out: BTreeMap<BindingKey, Vec<String>> = BTreeMap::new();
        for (name, p) in &self.profiles {
            if let Some(owner) = naming::owner_from_tags(&p.tags, cluster_id)
                && naming::profile_name(cluster_id, &owner) == *name
            {
                out.entry(owner).or_default().push(name.clone());
            }
        }
        out
    }

    /// Profiles whose tags name a binding of this cluster, whatever their name:
    /// more than one for a binding is a duplicate (I5).
    pub fn tagged_for(&self, cluster_id: &str) -> BTreeMap<BindingKey, Vec<String>> {
        let mut out: BTreeMap<BindingKey, Vec<String>> = BTreeMap::new();
        for (name, p) in &self.profiles {
            if let Some(owner) = naming::owner_from_tags(&p.tags, cluster_id) {
                out.entry(owner).or_default().push(name.clone());
            }
        }
        out
    }
}

/// A binding as the test wrote it, with the instances it selects.
#[derive(Clone, Debug)]
pub struct ExpectedBinding {
    pub key: BindingKey,
    pub role: String,
    pub selected: BTreeSet<String>,
}

/// What the test seeded as someone else's, captured before the controller ran.
#[derive(Clone, Debug, Default)]
pub struct Foreign {
    pub profiles: BTreeMap<String, ProfileFacts>,
    pub associations: BTreeMap<String, AssocFacts>,
    pub roles: BTreeMap<String, RoleFacts>,
}

impl Foreign {
    /// Captures the named resources as they are now.
    pub fn capture(
        state: &AwsState,
        profiles: &[&str],
        instances: &[String],
        roles: &[&str],
    ) -> Self {
        Self {
            profiles: profiles
                .iter()
                .map(|n| {
                    let p = state
                        .profiles
                        .get(*n)
                        .unwrap_or_else(|| panic!("seeded foreign profile {n} missing"));
                    ((*n).to_string(), p.clone())
                })
                .collect(),
            associations: instances
                .iter()
                .map(|i| {
                    let a = state
                        .associations
                        .get(i)
                        .unwrap_or_else(|| panic!("seeded foreign association of {i} missing"));
                    (i.clone(), a.clone())
                })
                .collect(),
            roles: roles
                .iter()
                .map(|n| {
                    let r = state
                        .roles
                        .get(*n)
                        .unwrap_or_else(|| panic!("seeded role {n} missing"));
                    ((*n).to_string(), r.clone())
                })
                .collect(),
        }
    }
}

/// I3: every foreign resource is exactly as seeded. Roles may gain or lose
/// profiles of ours (a binding attaches its role); nothing else about them may change.
pub fn check_foreign(
    state: &AwsState,
    foreign: &Foreign,
    owned_names: &BTreeSet<String>,
) -> Vec<String> {
    let mut v = Vec::new();
    for (name, want) in &foreign.profiles {
        match state.profiles.get(name) {
            Some(got) if got == want => {}
            got => v.push(format!(
                "I3: foreign profile {name} changed: {want:?} -> {got:?}"
            )),
        }
    }
    for (instance, want) in &foreign.associations {
        match state.associations.get(instance) {
            Some(got) if got.id == want.id && got.profile_id == want.profile_id => {}
            got => v.push(format!(
                "I3: foreign association of {instance} changed: {want:?} -> {got:?}"
            )),
        }
    }
    for (name, want) in &foreign.roles {
        match state.roles.get(name) {
            Some(got) => {
                if got.id != want.id || got.arn != want.arn || got.trust != want.trust {
                    v.push(format!("I3: role {name} changed: {want:?} -> {got:?}"));
                }
                let foreign_before: BTreeSet<&String> = want
                    .profiles
                    .iter()
                    .filter(|p| !owned_names.contains(*p))
                    .collect();
                let foreign_now: BTreeSet<&String> = got
                    .profiles
                    .iter()
                    .filter(|p| !owned_names.contains(*p))
                    .collect();
                if foreign_before != foreign_now {
                    v.push(format!(
                        "I3: role {name} is in other profiles now: {foreign_before:?} -> {foreign_now:?}"
                    ));
                }
            }
            None => v.push(format!("I3: role {name} is gone")),
        }
    }
    v
}

/// I1, I2, I3, I5 for bindings that should be converged.
pub fn check_converged(
    state: &AwsState,
    cluster_id: &str,
    bindings: &[ExpectedBinding],
    foreign: &Foreign,
) -> Vec<String> {
    let mut v = Vec::new();
    let owned = state.owned_by(cluster_id);
    let tagged = state.tagged_for(cluster_id);
    let names: BTreeSet<String> = bindings
        .iter()
        .map(|b| naming::profile_name(cluster_id, &b.key))
        .collect();
    for b in bindings {
        let name = naming::profile_name(cluster_id, &b.key);
        let Some(p) = state.profiles.get(&name) else {
            v.push(format!("I1: {} has no profile {name}", b.key));
            continue;
        };
        if !naming::tags_prove_ownership(&p.tags, cluster_id, &b.key) {
            v.push(format!(
                "I1: profile {name} of {} lacks ownership tags: {:?}",
                b.key, p.tags
            ));
        }
        if p.roles != vec![b.role.clone()] {
            v.push(format!(
                "I1: profile {name} of {} holds {:?}, want exactly [{}]",
                b.key, p.roles, b.role
            ));
        }
        for i in &b.selected {
            match state.associations.get(i) {
                Some(a) if a.profile_id == p.id && a.state == "associated" => {}
                other => v.push(format!(
                    "I2: {i} selected by {} is on {other:?}, want profile id {}",
                    b.key, p.id
                )),
            }
            if state.doubly_associated.contains(i) {
                v.push(format!("I2: {i} has two live associations"));
            }
        }
        let all = tagged.get(&b.key).cloned().unwrap_or_default();
        if all.len() > 1 {
            v.push(format!("I5: {} owns several profiles: {all:?}", b.key));
        }
    }
    for (key, profiles) in &owned {
        if !bindings.iter().any(|b| &b.key == key) {
            v.push(format!(
                "I5: profiles {profiles:?} of {key} belong to no binding"
            ));
        }
    }
    v.extend(check_foreign(state, foreign, &names));
    v
}

/// I4 (and I3) once every binding of `cluster_id` is deleted.
pub fn check_deleted(
    state: &AwsState,
    cluster_id: &str,
    keys: &[BindingKey],
    foreign: &Foreign,
) -> Vec<String> {
    let mut v = Vec::new();
    let mut names: BTreeSet<String> = keys
        .iter()
        .map(|k| naming::profile_name(cluster_id, k))
        .collect();
    for (key, profiles) in state.owned_by(cluster_id) {
        v.push(format!("I4: {key} still owns {profiles:?}"));
        names.extend(profiles);
    }
    for name in &names {
        if state.profiles.contains_key(name) {
            v.push(format!("I4: profile {name} remains"));
        }
    }
    for (instance, a) in &state.associations {
        if names.contains(a.profile_name()) {
            v.push(format!(
                "I4: {instance} still points at {} ({})",
                a.profile_arn, a.state
            ));
        }
    }
    v.extend(check_foreign(state, foreign, &names));
    v
}
