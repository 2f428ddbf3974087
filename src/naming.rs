//! Deterministic profile names, paths and the ownership tags that prove a
//! profile belongs to a binding of this cluster.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

pub const TAG_PREFIX: &str = "instanceprofile.dev/";
pub const TAG_CLUSTER_ID: &str = "instanceprofile.dev/cluster-id";
pub const TAG_NAMESPACE: &str = "instanceprofile.dev/namespace";
pub const TAG_NAME: &str = "instanceprofile.dev/name";
pub const TAG_UID: &str = "instanceprofile.dev/uid";
/// Instances this binding has associated (or is about to): the memory that tells
/// "ours" from "someone else's" when a binding no longer selects an instance or is
/// deleted. Written before associating, so a crash never leaves an untracked one.
pub const TAG_INSTANCES: &str = "instanceprofile.dev/instances";
/// Tag keys available for the instance memory, 12 ids each.
pub const INSTANCE_TAG_KEYS: usize = 6;
const IDS_PER_TAG: usize = 12;
/// Memory value meaning "more instances than the tags can hold: every
/// association with this profile is ours".
pub const INSTANCES_ALL: &str = "*";

const NAME_PREFIX: &str = "ipb-";
const HASH_HEX_LEN: usize = 16;
const MAX_NAME_LEN: usize = 128;

/// Identity of a binding: where it lives and which cluster manages it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Checks a cluster id: it becomes part of names, the IAM path and tag values.
///
/// # Errors
/// A message saying what is allowed.
pub fn validate_cluster_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '=' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cluster id {id:?} must be 1-63 characters of letters, digits and _.@=+-"
        ))
    }
}

/// Normalizes a path prefix to `/…/` form.
///
/// # Errors
/// A message when the prefix has characters IAM does not allow in a path.
pub fn normalize_path_prefix(prefix: &str) -> Result<String, String> {
    let mut p = prefix.trim().to_string();
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    if !p.ends_with('/') {
        p.push('/');
    }
    if p.len() > 400 || !p.chars().all(|c| ('!'..='~').contains(&c)) || p.contains("//") {
        return Err(format!(
            "profile path prefix {prefix:?} must be printable ASCII like /ipb/, without '//'"
        ));
    }
    Ok(p)
}

/// The IAM path of every profile this cluster owns: `<prefix><cluster-id>/`.
#[must_use]
pub fn profile_path(prefix: &str, cluster_id: &str) -> String {
    format!("{prefix}{cluster_id}/")
}

/// A distinct, deterministic profile name: readable prefix plus a hash of
/// cluster id, namespace and name; at most 128 characters of `[\w+=,.@-]`.
#[must_use]
pub fn profile_name(cluster_id: &str, key: &BindingKey) -> String {
    let mut hasher = Sha256::new();
    hasher.update(cluster_id.as_bytes());
    hasher.update([0]);
    hasher.update(key.namespace.as_bytes());
    hasher.update([0]);
    hasher.update(key.name.as_bytes());
    let digest = hasher.finalize();
    let hash: String = digest
        .iter()
        .flat_map(|b| [b >> 4, b & 0xf])
        .take(HASH_HEX_LEN)
        .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
        .collect();
    let readable: String = format!("{}.{}", key.namespace, key.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '=' | ',' | '.' | '@' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = MAX_NAME_LEN - NAME_PREFIX.len() - 1 - HASH_HEX_LEN;
    let readable: String = readable.chars().take(room).collect();
    format!("{NAME_PREFIX}{readable}-{hash}")
}

/// Whether a profile name has the shape [`profile_name`] gives (a candidate
/// for ownership; only the tags prove it).
#[must_use]
pub fn is_generated_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX)
}

/// Ownership tags every profile of a binding carries.
#[must_use]
pub fn ownership_tags(
    cluster_id: &str,
    key: &BindingKey,
    uid: Option<&str>,
) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(TAG_CLUSTER_ID.to_string(), cluster_id.to_string());
    tags.insert(TAG_NAMESPACE.to_string(), key.namespace.clone());
    tags.insert(TAG_NAME.to_string(), key.name.clone());
    if let Some(uid) = uid {
        tags.insert(TAG_UID.to_string(), uid.to_string());
    }
    tags
}

/// Whether a profile's tags prove it belongs to this binding of this cluster.
/// The UID is not compared: a binding deleted and recreated under the same
/// name (GitOps does that) takes over its profile.
#[must_use]
pub fn tags_prove_ownership(
    tags: &BTreeMap<String, String>,
    cluster_id: &str,
    key: &BindingKey,
) -> bool {
    tags.get(TAG_CLUSTER_ID).is_some_and(|v| v == cluster_id)
        && tags.get(TAG_NAMESPACE).is_some_and(|v| v == &key.namespace)
        && tags.get(TAG_NAME).is_some_and(|v| v == &key.name)
}

/// The binding a profile's tags name, when they say this cluster owns it.
#[must_use]
pub fn owner_from_tags(tags: &BTreeMap<String, String>, cluster_id: &str) -> Option<BindingKey> {
    if tags.get(TAG_CLUSTER_ID).is_none_or(|v| v != cluster_id) {
        return None;
    }
    Some(BindingKey {
        namespace: tags.get(TAG_NAMESPACE)?.clone(),
        name: tags.get(TAG_NAME)?.clone(),
    })
}

/// The instance memory read back from tags.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum InstanceMemory {
    /// Exactly these instances were associated by the binding.
    #[default]
    None,
    Ids(BTreeSet<String>),
    /// Too many to record: treat every association with the profile as ours.
    All,
}

impl InstanceMemory {
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Self::None => false,
            Self::Ids(ids) => ids.contains(id),
            Self::All => true,
        }
    }

    #[must_use]
    pub fn ids(&self) -> BTreeSet<String> {
        match self {
            Self::Ids(ids) => ids.clone(),
            Self::None | Self::All => BTreeSet::new(),
        }
    }
}

fn instance_tag_key(index: usize) -> String {
    if index == 0 {
        TAG_INSTANCES.to_string()
    } else {
        format!("{TAG_INSTANCES}-{}", index + 1)
    }
}

/// Every tag key the instance memory may use.
#[must_use]
pub fn instance_tag_keys() -> Vec<String> {
    (0..INSTANCE_TAG_KEYS).map(instance_tag_key).collect()
}

/// Reads the instance memory from a profile's tags.
#[must_use]
pub fn instances_from_tags(tags: &BTreeMap<String, String>) -> InstanceMemory {
    let mut ids = BTreeSet::new();
    let mut any = false;
    for key in instance_tag_keys() {
        if let Some(value) = tags.get(&key) {
            any = true;
            if value.trim() == INSTANCES_ALL {
                return InstanceMemory::All;
            }
            ids.extend(value.split_whitespace().map(str::to_string));
        }
    }
    if any {
        InstanceMemory::Ids(ids)
    } else {
        InstanceMemory::None
    }
}

/// Encodes instance ids as memory tags (space separated, 12 per tag); more
/// than the tags hold becomes the "all" marker.
#[must_use]
pub fn instances_to_tags(ids: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    if ids.len() > IDS_PER_TAG * INSTANCE_TAG_KEYS {
        tags.insert(instance_tag_key(0), INSTANCES_ALL.to_string());
        return tags;
    }
    let ids: Vec<&String> = ids.iter().collect();
    if ids.is_empty() {
        tags.insert(instance_tag_key(0), String::new());
    }
    for (index, chunk) in ids.chunks(IDS_PER_TAG).enumerate() {
        let value = chunk
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        tags.insert(instance_tag_key(index), value);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> BindingKey {
        BindingKey {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn names_are_deterministic_distinct_and_valid() {
        let a = profile_name("default", &key("team-a", "web"));
        assert_eq!(a, profile_name("default", &key("team-a", "web")));
        assert_ne!(a, profile_name("default", &key("team-b", "web")));
        assert_ne!(a, profile_name("other", &key("team-a", "web")));
        // "a.b"/"c" and "a"/"b.c" share the readable part but not the hash.
        assert_ne!(
            profile_name("c", &key("a.b", "c")),
            profile_name("c", &key("a", "b.c"))
        );
        assert!(a.starts_with("ipb-team-a.web-"));
        let long = profile_name("default", &key(&"n".repeat(63), &"x".repeat(253)));
        assert_eq!(long.len(), 128);
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        );
    }

    #[test]
    fn path_prefix_is_normalized_and_checked() {
        assert_eq!(normalize_path_prefix("ipb").as_deref(), Ok("/ipb/"));
        assert_eq!(normalize_path_prefix("/ipb/").as_deref(), Ok("/ipb/"));
        assert!(normalize_path_prefix("/a b/").is_err());
        assert!(normalize_path_prefix("//").is_err());
        assert_eq!(profile_path("/ipb/", "prod"), "/ipb/prod/");
    }

    #[test]
    fn cluster_ids_are_checked() {
        assert!(validate_cluster_id("prod-eu.1").is_ok());
        assert!(validate_cluster_id("").is_err());
        assert!(validate_cluster_id("a/b").is_err());
        assert!(validate_cluster_id(&"x".repeat(64)).is_err());
    }

    #[test]
    fn ownership_needs_cluster_namespace_and_name() {
        let k = key("ns", "b");
        let tags = ownership_tags("c1", &k, Some("uid-1"));
        assert!(tags_prove_ownership(&tags, "c1", &k));
        assert!(!tags_prove_ownership(&tags, "c2", &k));
        assert!(!tags_prove_ownership(&tags, "c1", &key("ns", "other")));
        assert!(!tags_prove_ownership(&BTreeMap::new(), "c1", &k));
        assert_eq!(owner_from_tags(&tags, "c1"), Some(k));
        assert_eq!(owner_from_tags(&tags, "c2"), None);
    }

    #[test]
    fn instance_memory_round_trips_and_overflows_to_all() {
        let ids: BTreeSet<String> = (0..30).map(|i| format!("i-{i:017x}")).collect();
        let tags = instances_to_tags(&ids);
        assert_eq!(tags.len(), 3);
        assert!(tags.values().all(|v| v.len() <= 256));
        assert_eq!(instances_from_tags(&tags), InstanceMemory::Ids(ids));
        let many: BTreeSet<String> = (0..100).map(|i| format!("i-{i:017x}")).collect();
        assert_eq!(
            instances_from_tags(&instances_to_tags(&many)),
            InstanceMemory::All
        );
        let empty = instances_to_tags(&BTreeSet::new());
        assert_eq!(
            instances_from_tags(&empty),
            InstanceMemory::Ids(BTreeSet::new())
        );
        assert_eq!(instances_from_tags(&BTreeMap::new()), InstanceMemory::None);
    }
}
