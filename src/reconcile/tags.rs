//! Whether a profile's tags need a read just to verify them (docs/design.md,
//! the call budget): ownership is proven by tags before a binding is Ready,
//! and a steady pass reads no tags it already knows.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::naming;

use super::act;
use super::model::{BindingInput, Desired};
use super::observe::Observed;

/// Per profile id, the digest of the desired tags last seen on it.
#[derive(Default)]
pub struct TagChecks {
    /// Remember what was seen (the controller: one read per profile after
    /// it starts). Without it (`plan`, `apply`), tags are read when the spec
    /// asks for more than the ownership tags, or when no association shows
    /// the profile in use (ownership proven before Ready).
    pub remember: bool,
    checked: Mutex<HashMap<String, u64>>,
}

fn digest(desired: &Desired) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    desired.tags.hash(&mut h);
    h.finish()
}

impl TagChecks {
    /// Whether `desired`'s profile (as observed) needs no tag read just to
    /// verify its tags.
    pub fn checked(&self, b: &BindingInput, desired: &Desired, observed: &Observed) -> bool {
        let Some(profile) = &observed.profile else {
            return true;
        };
        if self.remember {
            let digest = digest(desired);
            let Ok(mut checked) = self.checked.lock() else {
                return false;
            };
            if checked.get(&profile.id) == Some(&digest) {
                return true;
            }
            // Ready for this very generation and profile incarnation, as the
            // status says: the tags were verified then (Ready needs it). So a
            // restart over N converged bindings reads no profile's tags.
            let verified_before = b.previous.as_ref().is_some_and(|s| {
                s.is_ready()
                    && s.observed_generation == b.generation
                    && s.instance_profile.as_ref().and_then(|p| p.id.as_deref())
                        == Some(profile.id.as_str())
            });
            if verified_before {
                checked.insert(profile.id.clone(), digest);
            }
            return verified_before;
        }
        let only_ownership = desired.tags.keys().all(|k| {
            k.starts_with(naming::TAG_PREFIX)
                && k != naming::TAG_USER_KEYS
                && k != naming::TAG_DELETION_POLICY
        });
        let in_use = observed.selected.iter().any(|s| {
            s.association
                .as_ref()
                .is_some_and(|a| a.profile_id == profile.id)
        });
        only_ownership && in_use
    }

    /// Notes that `observed`'s profile carries `desired`'s tags.
    pub fn note(&self, desired: &Desired, observed: &Observed) {
        let Some(profile) = &observed.profile else {
            return;
        };
        let Some(tags) = &profile.tags else {
            return;
        };
        if !self.remember
            || !desired
                .tags
                .iter()
                .all(|(k, v)| k == naming::TAG_UID || tags.get(k) == Some(v))
            || profile.id == act::UNKNOWN
        {
            return;
        }
        if let Ok(mut m) = self.checked.lock() {
            m.insert(profile.id.clone(), digest(desired));
        }
    }
}
