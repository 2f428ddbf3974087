//! The record of "ours" on a profile (its instance memory), as decide reads
//! and rewrites it: grown before associating, so a crash never leaves an
//! association we cannot prove ours; shrunk after an association is gone.

use std::collections::BTreeSet;

use crate::naming::{self, InstanceMemory};

use crate::reconcile::model::Desired;
use crate::reconcile::observe::Observed;

/// The instance memory of the observed profile: `None` while its tags are unread.
pub(crate) fn memory_of(observed: &Observed) -> Option<InstanceMemory> {
    observed
        .profile
        .as_ref()?
        .tags
        .as_ref()
        .map(naming::instances_from_tags)
}

/// The memory with `adding` in it, when it is not there yet. Written before
/// associating so that a crash never leaves an association we cannot prove ours.
/// A full record takes what fits and becomes partial: the rest are associated
/// all the same (they are selected), but nothing will later call them ours
/// once they are not.
pub(crate) fn grown_memory(
    memory: &InstanceMemory,
    adding: &BTreeSet<String>,
    desired: &Desired,
) -> Option<(BTreeSet<String>, bool)> {
    if adding.iter().all(|id| memory.contains(id)) {
        return None;
    }
    let capacity = naming::memory_capacity(desired.memory_slots());
    let mut ids = memory.ids();
    let mut partial = memory.is_partial();
    for id in adding {
        if ids.len() >= capacity {
            partial = true;
            break;
        }
        ids.insert(id.clone());
    }
    if ids == memory.ids() && partial == memory.is_partial() {
        return None;
    }
    Some((ids, partial))
}

/// The memory without `released`, after their associations are gone.
pub(crate) fn shrunk_memory(
    memory: &InstanceMemory,
    released: &BTreeSet<String>,
) -> Option<BTreeSet<String>> {
    let (InstanceMemory::Ids(ids) | InstanceMemory::Partial(ids)) = memory else {
        return None;
    };
    if !released.iter().any(|id| ids.contains(id)) {
        return None;
    }
    Some(ids.difference(released).cloned().collect())
}
