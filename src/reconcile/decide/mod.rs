//! *Decide*: a pure function from (desired state, observed AWS state) to the
//! next actions. The act step runs the first action, folds its result into the
//! observed state and asks again, so every decision is made on what is known.

use std::collections::BTreeMap;

use crate::naming::{self, InstanceMemory};

pub mod associations;
pub mod cleanup;
pub mod memory;
pub mod role;
pub mod rotation;

pub use super::model::{Action, Decision, Desired, Problem};
use super::observe::Observed;
use associations::association_actions;
use memory::{grown_memory, memory_of, shrunk_memory};
use role::role_actions;
use rotation::rotation_actions;

/// Decide what brings a live binding to its desired state.
#[must_use]
pub fn decide_apply(desired: &Desired, observed: &Observed) -> Decision {
    let Some(profile) = &observed.profile else {
        let memory = observed
            .selected
            .iter()
            .map(|s| s.instance.id.clone())
            .collect();
        return Decision::one(Action::CreateProfile { memory });
    };
    if let Some(tags) = &profile.tags
        && !naming::tags_prove_ownership(tags, &desired.cluster_id, &desired.key)
    {
        return Decision::problem(Problem::ForeignProfile {
            name: profile.name.clone(),
        });
    }
    // Another path: the profile is recreated there, in deletion's safe order
    // (ours disassociated and gone, roles removed, deleted), once its tags
    // prove it ours.
    if profile.path != desired.path {
        if profile.tags.is_none() {
            return Decision::one(Action::ReadProfile);
        }
        return cleanup::decide_cleanup(desired, observed);
    }
    let mut decision = Decision::default();
    if let Some(tags) = &profile.tags {
        let memory = naming::instances_from_tags(tags);
        let memory_keys = tags
            .keys()
            .filter(|k| naming::is_instance_tag_key(k))
            .count();
        if memory_keys > desired.memory_slots() {
            // Fewer keys left for the memory (more user tags): repack it first.
            decision.actions.push(Action::RecordInstances {
                ids: memory.ids(),
                partial: memory.is_partial(),
            });
        }
        if let Some(write) = tag_changes(desired, tags) {
            decision.actions.push(write);
        }
    }
    decision.actions.extend(role_actions(desired, profile));
    let memory = memory_of(observed);
    let assoc = association_actions(desired, observed, memory.as_ref());
    let rotate = rotation_actions(desired, observed, &assoc);
    // Mutations and judging who else uses the profile need its tags: ownership
    // proof first, then the memory of which instances are ours.
    let needs_tags = !decision.actions.is_empty()
        || !assoc.actions.is_empty()
        || !rotate.is_empty()
        || !observed.other_users.is_empty()
        || !desired.tags_checked;
    if profile.tags.is_none() && needs_tags {
        return Decision::one(Action::ReadProfile);
    }
    let memory = memory.unwrap_or_default();
    if let Some((ids, partial)) = grown_memory(&memory, &assoc.associating, desired) {
        decision
            .actions
            .push(Action::RecordInstances { ids, partial });
    }
    decision.actions.extend(assoc.actions);
    decision.actions.extend(rotate);
    // Remembered instances that are neither selected nor holding our profile
    // any more (terminated, or a crash between disassociating and recording)
    // are forgotten, so the memory never claims a stranger's association.
    let mut released = assoc.released.clone();
    if let InstanceMemory::Ids(ids) | InstanceMemory::Partial(ids) = &memory {
        released.extend(
            ids.iter()
                .filter(|id| {
                    !observed.selected.iter().any(|s| &s.instance.id == *id)
                        && !observed.refused.iter().any(|(s, _)| &s.instance.id == *id)
                        && !observed
                            .contested
                            .iter()
                            .any(|(s, _)| &s.instance.id == *id)
                        && !observed.other_users.iter().any(|a| &a.instance_id == *id)
                })
                .cloned(),
        );
    }
    if let Some(shrunk) = shrunk_memory(&memory, &released) {
        decision.actions.push(Action::RecordInstances {
            ids: shrunk,
            partial: memory.is_partial(),
        });
    }
    decision.waiting = assoc.waiting;
    decision.problems = assoc.problems;
    decision
}

/// The tag writes that bring `tags` (the profile's) to the desired tags: set
/// what differs; remove the controller's own keys it no longer wants and the
/// user tags it wrote (recorded in [`naming::TAG_USER_KEYS`]) that the spec
/// dropped. Tags someone else put on the profile are never touched.
fn tag_changes(desired: &Desired, tags: &BTreeMap<String, String>) -> Option<Action> {
    // The UID tag is informational (ownership never compares it): a profile
    // adopted by a binding with a new UID, or made by `apply`, keeps its own
    // rather than costing a write per binding.
    let set: BTreeMap<String, String> = desired
        .tags
        .iter()
        .filter(|(k, _)| *k != naming::TAG_UID)
        .filter(|(k, v)| tags.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let record = tags.get(naming::TAG_USER_KEYS);
    let remove: Vec<String> = tags
        .keys()
        .filter(|k| !desired.tags.contains_key(*k) && !naming::is_instance_tag_key(k))
        .filter(|k| {
            *k == naming::TAG_DELETION_POLICY
                || *k == naming::TAG_USER_KEYS
                || (!k.starts_with(naming::TAG_PREFIX)
                    && record.is_some_and(|r| naming::user_keys_record_has(r, k)))
        })
        .cloned()
        .collect();
    (!set.is_empty() || !remove.is_empty()).then_some(Action::WriteTags { set, remove })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::aws::{
        Association, AssociationState, Instance, Profile, RoleInfo, RoleRef, RunState,
    };
    use crate::naming::BindingKey;
    use crate::reconcile::observe::SelectedInstance;

    pub(crate) fn desired() -> Desired {
        let key = BindingKey {
            namespace: "team-a".into(),
            name: "web".into(),
        };
        Desired {
            profile_name: naming::profile_name("c1", &key),
            tags: naming::ownership_tags("c1", &key, None),
            key,
            cluster_id: "c1".into(),
            path: "/ipb/c1/".into(),
            role: RoleInfo {
                name: "web-app".into(),
                arn: "arn:aws:iam::123456789012:role/web-app".into(),
                trusts_ec2: true,
            },
            replace_foreign: false,
            tags_checked: true,
        }
    }

    pub(crate) fn profile(d: &Desired, roles: &[&str], memory: Option<&[&str]>) -> Profile {
        let tags = memory.map(|ids| {
            let mut t = d.tags.clone();
            t.extend(naming::instances_to_tags(
                &ids.iter().map(|s| (*s).to_string()).collect(),
            ));
            t
        });
        Profile {
            name: d.profile_name.clone(),
            path: d.path.clone(),
            arn: format!(
                "arn:aws:iam::123456789012:instance-profile/ipb/c1/{}",
                d.profile_name
            ),
            id: "AIPACURRENT".into(),
            roles: role_refs(roles),
            tags,
        }
    }

    /// Roles of account 123456789012 by name, as a profile lists them.
    pub(crate) fn role_refs(roles: &[&str]) -> Vec<RoleRef> {
        roles
            .iter()
            .map(|r| RoleRef {
                name: (*r).into(),
                arn: format!("arn:aws:iam::123456789012:role/{r}"),
            })
            .collect()
    }

    pub(crate) fn instance(id: &str, state: RunState) -> Instance {
        Instance {
            id: id.into(),
            state,
            tags: BTreeMap::new(),
        }
    }

    /// A running instance with these tags.
    pub(crate) fn tagged(id: &str, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            state: RunState::Running,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    pub(crate) fn assoc(
        instance: &str,
        profile_arn: &str,
        profile_id: &str,
        state: AssociationState,
    ) -> Association {
        Association {
            id: format!("iip-assoc-{instance}"),
            instance_id: instance.into(),
            profile_arn: profile_arn.into(),
            profile_id: profile_id.into(),
            state,
        }
    }

    pub(crate) fn selected(
        id: &str,
        state: RunState,
        association: Option<Association>,
    ) -> SelectedInstance {
        SelectedInstance {
            instance: instance(id, state),
            association,
        }
    }

    const FOREIGN_ARN: &str = "arn:aws:iam::123456789012:instance-profile/other";

    #[test]
    fn missing_profile_is_created_with_the_selection_in_memory() {
        let d = desired();
        let o = Observed {
            selected: vec![selected("i-1", RunState::Running, None)],
            ..Observed::default()
        };
        let want: BTreeSet<String> = ["i-1".to_string()].into();
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![Action::CreateProfile { memory: want }]
        );
    }

    #[test]
    fn new_profile_gets_role_then_associations() {
        let d = desired();
        let p = profile(&d, &[], Some(&["i-1", "i-2"]));
        let o = Observed {
            profile: Some(p),
            selected: vec![
                selected("i-1", RunState::Running, None),
                selected("i-2", RunState::Stopped, None),
            ],
            ..Observed::default()
        };
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![
                Action::AddRole,
                Action::Associate {
                    instance_id: "i-1".into()
                },
                Action::Associate {
                    instance_id: "i-2".into()
                },
            ]
        );
    }

    #[test]
    fn converged_binding_needs_no_reads_or_writes() {
        let d = desired();
        let p = profile(&d, &["web-app"], None);
        let a = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            selected: vec![selected("i-1", RunState::Running, Some(a))],
            ..Observed::default()
        };
        assert!(decide_apply(&d, &o).converged());
    }

    #[test]
    fn mutation_on_a_listed_profile_reads_its_tags_first() {
        let d = desired();
        // role removed out of band (docs/design.md §5: "no roles attached")
        let o = Observed {
            profile: Some(profile(&d, &[], None)),
            ..Observed::default()
        };
        assert_eq!(decide_apply(&d, &o).actions, vec![Action::ReadProfile]);
        let o = Observed {
            profile: Some(profile(&d, &[], Some(&[]))),
            ..Observed::default()
        };
        assert_eq!(decide_apply(&d, &o).actions, vec![Action::AddRole]);
    }

    #[test]
    fn foreign_profile_is_never_touched() {
        let d = desired();
        let mut p = profile(&d, &["someone-else"], None);
        p.tags = Some(BTreeMap::from([("owner".to_string(), "them".to_string())]));
        let o = Observed {
            profile: Some(p),
            selected: vec![selected("i-1", RunState::Running, None)],
            ..Observed::default()
        };
        let dec = decide_apply(&d, &o);
        assert!(dec.actions.is_empty());
        assert_eq!(
            dec.problems,
            vec![Problem::ForeignProfile {
                name: d.profile_name.clone()
            }]
        );
    }

    #[test]
    fn other_role_is_removed_before_ours_is_added() {
        let d = desired();
        let o = Observed {
            profile: Some(profile(&d, &["old-role"], Some(&[]))),
            ..Observed::default()
        };
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![
                Action::RemoveRole {
                    role: "old-role".into()
                },
                Action::AddRole
            ]
        );
    }

    #[test]
    fn association_states() {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&["i-1"]));
        let dead_arn = p.arn.clone();
        let cases: Vec<(SelectedInstance, Vec<Action>, bool, bool)> = vec![
            // ours, associated: nothing
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc("i-1", &p.arn, &p.id, AssociationState::Associated)),
                ),
                vec![],
                false,
                false,
            ),
            // ours, associating / disassociating: wait
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc("i-1", &p.arn, &p.id, AssociationState::Associating)),
                ),
                vec![],
                true,
                false,
            ),
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc(
                        "i-1",
                        &p.arn,
                        &p.id,
                        AssociationState::Disassociating,
                    )),
                ),
                vec![],
                true,
                false,
            ),
            // profile recreated under the same name: dead id → replace (running)
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc(
                        "i-1",
                        &dead_arn,
                        "AIPADEAD",
                        AssociationState::Associated,
                    )),
                ),
                vec![Action::Replace {
                    instance_id: "i-1".into(),
                    association_id: "iip-assoc-i-1".into(),
                    foreign: false,
                }],
                false,
                false,
            ),
            // … or disassociate first (stopped)
            (
                selected(
                    "i-1",
                    RunState::Stopped,
                    Some(assoc(
                        "i-1",
                        &dead_arn,
                        "AIPADEAD",
                        AssociationState::Associated,
                    )),
                ),
                vec![Action::Disassociate {
                    instance_id: "i-1".into(),
                    association_id: "iip-assoc-i-1".into(),
                }],
                false,
                false,
            ),
            // foreign association without permission to replace: problem
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc(
                        "i-1",
                        FOREIGN_ARN,
                        "AIPAOTHER",
                        AssociationState::Associated,
                    )),
                ),
                vec![],
                false,
                true,
            ),
            // foreign association in transition: still not ours to touch
            (
                selected(
                    "i-1",
                    RunState::Running,
                    Some(assoc(
                        "i-1",
                        FOREIGN_ARN,
                        "AIPAOTHER",
                        AssociationState::Associating,
                    )),
                ),
                vec![],
                false,
                true,
            ),
        ];
        for (sel, want, waits, problem) in cases {
            let o = Observed {
                profile: Some(p.clone()),
                selected: vec![sel.clone()],
                ..Observed::default()
            };
            let dec = decide_apply(&d, &o);
            assert_eq!(dec.actions, want, "{sel:?}");
            assert_eq!(!dec.waiting.is_empty(), waits, "{sel:?}");
            assert_eq!(!dec.problems.is_empty(), problem, "{sel:?}");
        }
    }

    #[test]
    fn foreign_association_is_replaced_only_when_allowed() {
        let mut d = desired();
        d.replace_foreign = true;
        let p = profile(&d, &["web-app"], Some(&[]));
        let running = selected(
            "i-1",
            RunState::Running,
            Some(assoc(
                "i-1",
                FOREIGN_ARN,
                "AIPAOTHER",
                AssociationState::Associated,
            )),
        );
        let o = Observed {
            profile: Some(p.clone()),
            selected: vec![running],
            ..Observed::default()
        };
        let want: BTreeSet<String> = ["i-1".to_string()].into();
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![
                Action::RecordInstances {
                    ids: want,
                    partial: false
                },
                Action::Replace {
                    instance_id: "i-1".into(),
                    association_id: "iip-assoc-i-1".into(),
                    foreign: true
                },
            ]
        );
    }

    #[test]
    fn new_instance_is_recorded_before_it_is_associated() {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&["i-1"]));
        let a = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            selected: vec![
                selected("i-1", RunState::Running, Some(a)),
                selected("i-2", RunState::Running, None),
            ],
            ..Observed::default()
        };
        let want: BTreeSet<String> = ["i-1".to_string(), "i-2".to_string()].into();
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![
                Action::RecordInstances {
                    ids: want,
                    partial: false
                },
                Action::Associate {
                    instance_id: "i-2".into()
                }
            ]
        );
    }

    #[test]
    fn deselected_instance_loses_our_association_but_not_a_stranger() {
        let d = desired();
        let p = profile(&d, &["web-app"], Some(&["i-1", "i-2"]));
        let ours = assoc("i-2", &p.arn, &p.id, AssociationState::Associated);
        let stranger = assoc("i-9", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            other_users: vec![ours, stranger],
            ..Observed::default()
        };
        // i-1 is neither selected nor associated any more: forgotten too.
        let want: BTreeSet<String> = BTreeSet::new();
        assert_eq!(
            decide_apply(&d, &o).actions,
            vec![
                Action::Disassociate {
                    instance_id: "i-2".into(),
                    association_id: "iip-assoc-i-2".into()
                },
                Action::RecordInstances {
                    ids: want,
                    partial: false
                },
            ]
        );
    }

    #[test]
    fn other_users_of_a_listed_profile_need_its_memory() {
        let d = desired();
        let p = profile(&d, &["web-app"], None);
        let other = assoc("i-2", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            other_users: vec![other],
            ..Observed::default()
        };
        assert_eq!(decide_apply(&d, &o).actions, vec![Action::ReadProfile]);
    }

    #[test]
    fn a_full_record_takes_what_fits_and_then_claims_only_what_it_names() {
        let mut d = desired();
        // 40 user tags leave the memory its fewest keys.
        for n in 0..40 {
            d.tags.insert(format!("user-{n}"), "v".into());
        }
        let capacity = naming::memory_capacity(d.memory_slots());
        let ids: Vec<String> = (0..capacity + 10).map(|n| format!("i-{n:017x}")).collect();
        let mut p = profile(&d, &["web-app"], Some(&[]));
        let o = Observed {
            profile: Some(p.clone()),
            selected: ids
                .iter()
                .map(|id| selected(id, RunState::Running, None))
                .collect(),
            ..Observed::default()
        };
        let decision = decide_apply(&d, &o);
        let Some(Action::RecordInstances { ids: kept, partial }) = decision.actions.first() else {
            panic!("{decision:?}");
        };
        assert!(*partial);
        assert_eq!(kept.len(), capacity);
        // Every selected instance is associated, recorded or not.
        let associates = decision
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Associate { .. }))
            .count();
        assert_eq!(associates, ids.len());
        // Written and read back, the record names exactly what it kept.
        let tags = p.tags.get_or_insert_with(Default::default);
        tags.extend(naming::memory_to_tags(kept, true, d.memory_slots()));
        assert!(tags.len() <= naming::MAX_PROFILE_TAGS, "{}", tags.len());
        let memory = naming::instances_from_tags(tags);
        assert_eq!(memory, InstanceMemory::Partial(kept.clone()));
        // Later nothing is selected: recorded instances lose our association,
        // the unrecorded one (a hand-made association, for all we know) keeps it.
        let unrecorded = ids.iter().find(|id| !kept.contains(*id)).cloned();
        let recorded = kept.iter().next().cloned();
        let (Some(unrecorded), Some(recorded)) = (unrecorded, recorded) else {
            panic!("both kinds exist");
        };
        let o = Observed {
            profile: Some(p.clone()),
            other_users: vec![
                assoc(&recorded, &p.arn, &p.id, AssociationState::Associated),
                assoc(&unrecorded, &p.arn, &p.id, AssociationState::Associated),
            ],
            ..Observed::default()
        };
        let decision = decide_apply(&d, &o);
        let touched: Vec<&String> = decision
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Disassociate { instance_id, .. } => Some(instance_id),
                _ => None,
            })
            .collect();
        assert_eq!(touched, vec![&recorded], "{decision:?}");
        // A steady state writes nothing: the full record does not grow again.
        let o = Observed {
            profile: Some(p.clone()),
            selected: kept
                .iter()
                .chain(std::iter::once(&unrecorded))
                .map(|id| {
                    selected(
                        id,
                        RunState::Running,
                        Some(assoc(id, &p.arn, &p.id, AssociationState::Associated)),
                    )
                })
                .collect(),
            ..Observed::default()
        };
        assert!(decide_apply(&d, &o).converged());
    }
}
