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
/// Further keys are `…/instances-2`, `…/instances-3`, … as many as the profile's
/// 50-tag limit leaves after the ownership and user tags.
pub const TAG_INSTANCES: &str = "instanceprofile.dev/instances";
/// `Retain` on the profile of a binding with `deletionPolicy: Retain`, so the
/// policy holds after the binding is gone (`apply --prune` honours it).
pub const TAG_DELETION_POLICY: &str = "instanceprofile.dev/deletion-policy";
/// Which user tags (from `spec.instanceProfile.tags`) the controller wrote: a
/// short hash of each key, so a tag removed from the spec is removed from the
/// profile and a tag someone else put there is never touched.
pub const TAG_USER_KEYS: &str = "instanceprofile.dev/tag-keys";
/// IAM's limit of tags per instance profile.
pub const MAX_PROFILE_TAGS: usize = 50;
/// The fewest memory keys a profile has: 50 minus 4 ownership tags, 40 user
/// tags (the CRD's limit) and 2 reserved for the controller's own settings.
pub const MIN_MEMORY_TAGS: usize = 4;
/// IAM's limit on a tag value's length.
const MAX_TAG_VALUE: usize = 256;
/// A legacy memory value (before the compact form): "more instances than the
/// tags could hold". Read as a record that proves nothing beyond the selection.
pub const INSTANCES_ALL: &str = "*";
/// First character of a compact memory value.
const COMPACT: char = ':';
/// After [`COMPACT`] in the first key: the record is partial (it was full when
/// an instance had to be added), so it proves only the instances it names.
const PARTIAL: char = '_';
/// Characters of the compact id encoding (all allowed in IAM tag values).
const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

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
    format!("{}{hash}", readable_prefix(key))
}

/// What every name [`profile_name`] gives a binding starts with: `ipb-`, its
/// namespace and name (other characters as `-`, cut to fit) and `-`.
#[must_use]
pub fn readable_prefix(key: &BindingKey) -> String {
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
    format!("{NAME_PREFIX}{readable}-")
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

/// The short hash of a user tag key in [`TAG_USER_KEYS`]: 4 characters (24
/// bits), so 40 keys fit in one value.
fn key_hash(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let n = (u32::from(digest[0]) << 16) | (u32::from(digest[1]) << 8) | u32::from(digest[2]);
    (0..4)
        .rev()
        .map(|i| char::from(DIGITS[((n >> (6 * i)) & 63) as usize]))
        .collect()
}

/// The [`TAG_USER_KEYS`] value recording `keys`.
#[must_use]
pub fn user_keys_record<'a>(keys: impl IntoIterator<Item = &'a String>) -> String {
    let hashes: BTreeSet<String> = keys.into_iter().map(|k| key_hash(k)).collect();
    hashes.into_iter().collect()
}

/// Whether a [`TAG_USER_KEYS`] value records `key`.
#[must_use]
pub fn user_keys_record_has(record: &str, key: &str) -> bool {
    let hash = key_hash(key);
    record
        .as_bytes()
        .chunks(4)
        .any(|chunk| chunk == hash.as_bytes())
}

/// The instance memory read back from tags.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum InstanceMemory {
    /// No record (a profile from before the memory, or its tags are unread).
    #[default]
    None,
    /// Exactly these instances were associated by the binding.
    Ids(BTreeSet<String>),
    /// These instances were associated by the binding; others may have been
    /// too (the record was full), but nothing proves which: an association
    /// with the profile on an instance not named here and not selected is left
    /// alone, as a stranger's would be.
    Partial(BTreeSet<String>),
}

impl InstanceMemory {
    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Self::None => false,
            Self::Ids(ids) | Self::Partial(ids) => ids.contains(id),
        }
    }

    #[must_use]
    pub fn ids(&self) -> BTreeSet<String> {
        match self {
            Self::Ids(ids) | Self::Partial(ids) => ids.clone(),
            Self::None => BTreeSet::new(),
        }
    }

    #[must_use]
    pub fn is_partial(&self) -> bool {
        matches!(self, Self::Partial(_))
    }
}

fn instance_tag_key(index: usize) -> String {
    if index == 0 {
        TAG_INSTANCES.to_string()
    } else {
        format!("{TAG_INSTANCES}-{}", index + 1)
    }
}

/// Whether `key` is one of the instance memory's keys.
#[must_use]
pub fn is_instance_tag_key(key: &str) -> bool {
    key == TAG_INSTANCES
        || key
            .strip_prefix(TAG_INSTANCES)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| (2..=MAX_PROFILE_TAGS).contains(&n))
}

/// How many memory keys a profile whose other tags are `other_tags` may use.
#[must_use]
pub fn memory_slots(other_tags: usize) -> usize {
    MAX_PROFILE_TAGS
        .saturating_sub(other_tags)
        .max(MIN_MEMORY_TAGS)
}

/// One id in compact form: a 17-hex-digit id as 12 characters, an 8-digit
/// one as `.` and 6; anything else verbatim between `=` and `=`.
fn encode_id(id: &str) -> String {
    let hex = id.strip_prefix("i-").filter(|h| {
        (h.len() == 17 || h.len() == 8)
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    let Some(hex) = hex else {
        return format!("={id}=");
    };
    let Ok(mut n) = u128::from_str_radix(hex, 16) else {
        return format!("={id}=");
    };
    let (width, mut out) = if hex.len() == 17 {
        (12, String::new())
    } else {
        (6, String::from("."))
    };
    let mut digits = vec![b'A'; width];
    for slot in digits.iter_mut().rev() {
        *slot = DIGITS[(n & 63) as usize];
        n >>= 6;
    }
    out.extend(digits.into_iter().map(char::from));
    out
}

/// The ids of one compact value (without its leading markers); `None` when
/// it is malformed.
fn decode_ids(mut s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !s.is_empty() {
        let (width, rest) = if let Some(rest) = s.strip_prefix('=') {
            let end = rest.find('=')?;
            out.push(rest[..end].to_string());
            s = &rest[end + 1..];
            continue;
        } else if let Some(rest) = s.strip_prefix('.') {
            (6, rest)
        } else {
            (12, s)
        };
        let chunk = rest.get(..width)?;
        let mut n: u128 = 0;
        for b in chunk.bytes() {
            let d = DIGITS.iter().position(|&x| x == b)?;
            n = (n << 6) | d as u128;
        }
        let hex = if width == 12 { 17 } else { 8 };
        out.push(format!("i-{n:0hex$x}"));
        s = &rest[width..];
    }
    Some(out)
}

/// Reads the instance memory from a profile's tags. A value that cannot be
/// read proves nothing: the record becomes partial.
#[must_use]
pub fn instances_from_tags(tags: &BTreeMap<String, String>) -> InstanceMemory {
    let mut ids = BTreeSet::new();
    let mut any = false;
    let mut partial = false;
    for (key, value) in tags.iter().filter(|(k, _)| is_instance_tag_key(k)) {
        any = true;
        let value = value.trim();
        if let Some(compact) = value.strip_prefix(COMPACT) {
            let compact = match compact.strip_prefix(PARTIAL) {
                Some(rest) if key == TAG_INSTANCES => {
                    partial = true;
                    rest
                }
                _ => compact,
            };
            match decode_ids(compact) {
                Some(found) => ids.extend(found),
                None => partial = true,
            }
        } else if value == INSTANCES_ALL {
            partial = true;
        } else {
            ids.extend(value.split_whitespace().map(str::to_string));
        }
    }
    match (any, partial) {
        (false, _) => InstanceMemory::None,
        (true, false) => InstanceMemory::Ids(ids),
        (true, true) => InstanceMemory::Partial(ids),
    }
}

/// How many ids `slots` memory keys hold for certain (12 characters each).
#[must_use]
pub fn memory_capacity(slots: usize) -> usize {
    slots * ((MAX_TAG_VALUE - 2) / 12)
}

/// Encodes a memory into at most `slots` tags, compactly. Ids beyond what
/// fits are left out and the record is marked partial (so is one marked
/// partial already).
#[must_use]
pub fn memory_to_tags(
    ids: &BTreeSet<String>,
    partial: bool,
    slots: usize,
) -> BTreeMap<String, String> {
    let slots = slots.clamp(1, MAX_PROFILE_TAGS);
    let mut values: Vec<String> = Vec::new();
    let mut current = String::from(COMPACT);
    let mut dropped = false;
    for id in ids {
        let enc = encode_id(id);
        // Room for the partial marker in the first value, whatever happens.
        let limit = if values.is_empty() {
            MAX_TAG_VALUE - 1
        } else {
            MAX_TAG_VALUE
        };
        if current.len() + enc.len() > limit {
            if values.len() + 1 >= slots || enc.len() + 1 > MAX_TAG_VALUE - 1 {
                dropped = true;
                continue;
            }
            values.push(std::mem::replace(&mut current, String::from(COMPACT)));
        }
        current.push_str(&enc);
    }
    values.push(current);
    if partial || dropped {
        values[0].insert(1, PARTIAL);
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (instance_tag_key(i), v))
        .collect()
}

/// Encodes an exact memory into as many keys as it needs (for a profile with
/// only the ownership tags besides).
#[must_use]
pub fn instances_to_tags(ids: &BTreeSet<String>) -> BTreeMap<String, String> {
    memory_to_tags(ids, false, memory_slots(4))
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
        assert_eq!(readable_prefix(&key("team-a", "web")), "ipb-team-a.web-");
        let long_key = key(&"n".repeat(63), &"x".repeat(253));
        let long = profile_name("default", &long_key);
        assert_eq!(long.len(), 128);
        assert!(long.starts_with(&readable_prefix(&long_key)));
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
    fn instance_memory_round_trips_compactly_and_stays_exact_when_full() {
        let ids: BTreeSet<String> = (0..30).map(|i| format!("i-{i:017x}")).collect();
        let tags = instances_to_tags(&ids);
        assert_eq!(tags.len(), 2, "21 ids of 17 digits per tag: {tags:?}");
        assert!(tags.values().all(|v| v.len() <= 256));
        assert!(tags.keys().all(|k| is_instance_tag_key(k)));
        assert_eq!(instances_from_tags(&tags), InstanceMemory::Ids(ids));
        // Real ids, short ids and anything else round-trip.
        let odd: BTreeSet<String> = [
            "i-0123456789abcdef0",
            "i-fffffffffffffffff",
            "i-00000000000000000",
            "i-1a2b3c4d",
            "i-NOT-HEX",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            instances_from_tags(&instances_to_tags(&odd)),
            InstanceMemory::Ids(odd)
        );
        // With every slot free, 900 instances stay exact.
        let many: BTreeSet<String> = (0..900).map(|i| format!("i-{i:017x}")).collect();
        let tags = memory_to_tags(&many, false, memory_slots(4));
        assert!(tags.len() <= 46);
        assert_eq!(
            instances_from_tags(&tags),
            InstanceMemory::Ids(many.clone())
        );
        // Four slots (40 user tags): 84 fit; more make a partial record that
        // still names exactly what it holds, and nothing it does not.
        assert!(memory_capacity(MIN_MEMORY_TAGS) >= 84);
        let tags = memory_to_tags(&many, false, MIN_MEMORY_TAGS);
        assert_eq!(tags.len(), 4);
        let InstanceMemory::Partial(kept) = instances_from_tags(&tags) else {
            panic!("{tags:?}");
        };
        assert!(kept.len() >= 84 && kept.is_subset(&many), "{}", kept.len());
        let empty = instances_to_tags(&BTreeSet::new());
        assert_eq!(
            instances_from_tags(&empty),
            InstanceMemory::Ids(BTreeSet::new())
        );
        assert_eq!(instances_from_tags(&BTreeMap::new()), InstanceMemory::None);
    }

    #[test]
    fn legacy_and_damaged_memory_proves_only_what_it_names() {
        let legacy = BTreeMap::from([(
            TAG_INSTANCES.to_string(),
            "i-00000000000000001 i-00000000000000002".to_string(),
        )]);
        assert_eq!(instances_from_tags(&legacy).ids().len(), 2);
        let all = BTreeMap::from([(TAG_INSTANCES.to_string(), "*".to_string())]);
        assert_eq!(
            instances_from_tags(&all),
            InstanceMemory::Partial(BTreeSet::new())
        );
        let damaged = BTreeMap::from([(TAG_INSTANCES.to_string(), ":AB".to_string())]);
        assert!(instances_from_tags(&damaged).is_partial());
        assert!(!is_instance_tag_key("instanceprofile.dev/instances-1"));
        assert!(!is_instance_tag_key("instanceprofile.dev/instances-51"));
        assert!(is_instance_tag_key("instanceprofile.dev/instances-46"));
    }

    #[test]
    fn the_user_key_record_names_its_keys_and_few_others() {
        let keys: Vec<String> = (0..40).map(|n| format!("team-tag-{n}")).collect();
        let record = user_keys_record(&keys);
        assert!(record.len() <= 160, "{}", record.len());
        assert!(keys.iter().all(|k| user_keys_record_has(&record, k)));
        let strangers = (0..10_000)
            .filter(|n| user_keys_record_has(&record, &format!("other-{n}")))
            .count();
        assert!(
            strangers <= 1,
            "{strangers} of 10,000 other keys look recorded"
        );
        assert!(!user_keys_record_has("", "team-tag-0"));
    }
}
