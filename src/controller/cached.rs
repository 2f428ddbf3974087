//! A binding as the controller caches it: its metadata, its spec as compact
//! JSON text, and of its status only what the controller reads back (the
//! [`Recorded`] part) with a digest of the whole, so a resync can tell a
//! status it would write again unchanged without holding it.
//!
//! At 10,000 bindings the full objects were most of `run`'s memory: about
//! 3 KB each (the struct, four conditions with their messages, a 640-byte
//! map node for a one-pair tag selector). This form is under 1 KB.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::num::NonZeroU64;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::core::NamespaceResourceScope;
use serde::{Deserialize, Deserializer, Serialize};

use crate::crd::{
    ASSOCIATED, Condition, InstanceProfileBinding, InstanceProfileBindingSpec,
    InstanceProfileBindingStatus, PROFILE_READY, READY, RECONCILING, ROLE_ATTACHED, RoleStatus,
    RotationStatus, STALLED,
};
use crate::reconcile::status::TIME_FORMAT;

/// The condition types the controller writes, in the order it writes them.
const TYPES: [&str; 6] = [
    READY,
    PROFILE_READY,
    ROLE_ATTACHED,
    ASSOCIATED,
    STALLED,
    RECONCILING,
];

/// An `InstanceProfileBinding` in the controller's cache.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct CachedBinding {
    pub metadata: ObjectMeta,
    #[serde(skip_serializing)]
    spec: CompactSpec,
    #[serde(default, deserialize_with = "recorded", skip_serializing)]
    pub status: Option<Recorded>,
}

impl CachedBinding {
    /// The spec, decoded from the compact text the cache holds (`None`
    /// never happens: the text is what a decoded spec encoded to).
    #[must_use]
    pub fn spec(&self) -> Option<InstanceProfileBindingSpec> {
        serde_json::from_str(&self.spec.json).ok()
    }

    /// Whether the spec selects instances by `nodeSelector` (read on every
    /// Node change, so kept without decoding the spec).
    #[must_use]
    pub fn selects_nodes(&self) -> bool {
        self.spec.selects_nodes
    }

    /// The generation the recorded status describes.
    #[must_use]
    pub fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref().and_then(|s| s.observed_generation)
    }

    /// Whether the cached status is `status`, as far as a digest tells.
    #[must_use]
    pub fn status_is(&self, status: &InstanceProfileBindingStatus) -> bool {
        self.status.as_ref().map(|r| r.digest) == Some(digest(status))
    }

    /// A binding as the cache would hold it.
    ///
    /// # Errors
    /// The binding does not serialize (it always does).
    pub fn of(b: &InstanceProfileBinding) -> serde_json::Result<Self> {
        serde_json::from_value(serde_json::to_value(b)?)
    }
}

impl Resource for CachedBinding {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        InstanceProfileBinding::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        InstanceProfileBinding::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        InstanceProfileBinding::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        InstanceProfileBinding::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        InstanceProfileBinding::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The spec as compact JSON text, and whether it has a `nodeSelector`.
#[derive(Clone, Debug)]
struct CompactSpec {
    json: Box<str>,
    selects_nodes: bool,
}

impl<'de> Deserialize<'de> for CompactSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = InstanceProfileBindingSpec::deserialize(d)?;
        Ok(Self {
            json: serde_json::to_string(&spec)
                .map_err(serde::de::Error::custom)?
                .into_boxed_str(),
            selects_nodes: spec.instances.node_selector.is_some(),
        })
    }
}

fn recorded<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Recorded>, D::Error> {
    Ok(Option::<InstanceProfileBindingStatus>::deserialize(d)?
        .as_ref()
        .map(Recorded::of))
}

/// A digest of a status as the controller serializes it: equal statuses have
/// equal digests (within one process).
#[must_use]
pub fn digest(status: &InstanceProfileBindingStatus) -> u64 {
    let mut h = DefaultHasher::new();
    serde_json::to_vec(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// A digest of Ready's reason and message (never zero, so an absent one
/// costs no space).
fn digest_of(reason: &str, message: &str) -> NonZeroU64 {
    let mut h = DefaultHasher::new();
    (reason, message).hash(&mut h);
    NonZeroU64::new(h.finish()).unwrap_or(NonZeroU64::MIN)
}

/// One recorded condition: its type (an index into `TYPES`), whether it was
/// True, and since when (Unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    type_: u8,
    ok: bool,
    since: i64,
}

/// What the controller reads back of a status it wrote: which generation it
/// describes, each condition's state and transition time, where the
/// resources are (profile id, role, account), a rotation in progress, and
/// digests of the whole status and of Ready's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    digest: u64,
    ready_note: Option<NonZeroU64>,
    pub observed_generation: Option<i64>,
    marks: Box<[Mark]>,
    /// `instance_profile`: recorded at all, its id, whether it has an ARN
    /// (it existed in AWS).
    profile: Option<(Option<Box<str>>, bool)>,
    role: Option<Box<str>>,
    assume_role_arn: Option<Box<str>>,
    rotation: Option<Box<RotationStatus>>,
}

impl Recorded {
    #[must_use]
    pub fn of(s: &InstanceProfileBindingStatus) -> Self {
        let marks = s
            .conditions
            .iter()
            .filter_map(|c| {
                Some(Mark {
                    type_: u8::try_from(TYPES.iter().position(|t| *t == c.type_)?).ok()?,
                    ok: c.status == "True",
                    since: c
                        .last_transition_time
                        .parse::<jiff::Timestamp>()
                        .ok()?
                        .as_second(),
                })
            })
            .collect();
        Self {
            digest: digest(s),
            ready_note: s.condition(READY).map(|c| digest_of(&c.reason, &c.message)),
            observed_generation: s.observed_generation,
            marks,
            profile: s
                .instance_profile
                .as_ref()
                .map(|p| (p.id.as_deref().map(Into::into), p.arn.is_some())),
            role: s.role.as_ref().map(|r| r.name.as_str().into()),
            assume_role_arn: s.assume_role_arn.as_deref().map(Into::into),
            rotation: s.rotation.clone().map(Box::new),
        }
    }

    /// Whether Ready said `reason` and `message`.
    #[must_use]
    pub fn ready_says(&self, reason: &str, message: &str) -> bool {
        self.ready_note == Some(digest_of(reason, message))
    }

    /// The previous status as the engine reads it: generation, conditions'
    /// states and transition times, profile id (and whether it has an ARN,
    /// given as an empty one), role name, account, rotation. Messages,
    /// instances and ARNs are not kept: a status that needs them (AWS
    /// unreadable, everything else kept as recorded) is read from the API.
    #[must_use]
    pub fn for_engine(&self) -> InstanceProfileBindingStatus {
        InstanceProfileBindingStatus {
            observed_generation: self.observed_generation,
            instance_profile: self
                .profile
                .as_ref()
                .map(|(id, arn)| crate::crd::ProfileStatus {
                    name: String::new(),
                    arn: arn.then(String::new),
                    id: id.as_deref().map(Into::into),
                }),
            role: self.role.as_deref().map(|name| RoleStatus {
                name: name.into(),
                arn: None,
            }),
            conditions: self
                .marks
                .iter()
                .filter_map(|m| {
                    Some(Condition {
                        type_: (*TYPES.get(usize::from(m.type_))?).into(),
                        status: if m.ok { "True" } else { "False" }.into(),
                        last_transition_time: jiff::Timestamp::from_second(m.since)
                            .ok()?
                            .strftime(TIME_FORMAT)
                            .to_string(),
                        ..Condition::default()
                    })
                })
                .collect(),
            assume_role_arn: self.assume_role_arn.as_deref().map(Into::into),
            rotation: self.rotation.as_deref().cloned(),
            ..InstanceProfileBindingStatus::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(status: serde_json::Value) -> InstanceProfileBinding {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "iam.instanceprofile.dev/v1alpha1",
            "kind": "InstanceProfileBinding",
            "metadata": {"namespace": "team-a", "name": "web", "generation": 3,
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"role": "web-app", "instances": {"tags": {"app": "web"}}},
            "status": status,
        }))
        .expect("a binding")
    }

    fn status() -> serde_json::Value {
        serde_json::json!({
            "observedGeneration": 3,
            "instanceProfile": {"name": "ipb-c1.team-a.web-0123", "arn": "arn:aws:iam::123456789012:instance-profile/ipb-c1.team-a.web-0123", "id": "AIPAEXAMPLE"},
            "role": {"name": "web-app", "arn": "arn:aws:iam::123456789012:role/web-app"},
            "instances": [{"id": "i-0123456789abcdef0", "state": "associated"}],
            "instanceSummary": "1/1",
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "all good", "lastTransitionTime": "2026-12-05T10:00:00Z", "observedGeneration": 3},
                {"type": "Associated", "status": "False", "reason": "AssociationPending", "message": "0/1", "lastTransitionTime": "2026-12-05T10:00:01Z"},
            ],
        })
    }

    #[test]
    fn the_cache_keeps_the_spec_and_what_is_read_of_the_status() {
        let full = binding(status());
        let cached = CachedBinding::of(&full).expect("cached");
        assert_eq!(cached.spec(), Some(full.spec));
        assert!(!cached.selects_nodes());
        assert_eq!(cached.observed_generation(), Some(3));
        let full_status = full.status.expect("status");
        assert!(cached.status_is(&full_status));
        let mut changed = full_status.clone();
        changed.instance_summary = Some("0/1".into());
        assert!(!cached.status_is(&changed));

        let recorded = cached.status.expect("recorded");
        assert!(recorded.ready_says("Reconciled", "all good"));
        assert!(!recorded.ready_says("Reconciled", "other"));
        let engine = recorded.for_engine();
        assert!(engine.is_ready());
        assert_eq!(engine.observed_generation, Some(3));
        let profile = engine.instance_profile.expect("profile");
        assert_eq!(profile.id.as_deref(), Some("AIPAEXAMPLE"));
        assert!(profile.arn.is_some());
        assert_eq!(engine.role.map(|r| r.name).as_deref(), Some("web-app"));
        let times: Vec<(&str, &str, &str)> = engine
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.last_transition_time.as_str(),
                )
            })
            .collect();
        assert_eq!(
            times,
            [
                ("Ready", "True", "2026-12-05T10:00:00Z"),
                ("Associated", "False", "2026-12-05T10:00:01Z")
            ]
        );
    }

    #[test]
    fn no_status_and_odd_conditions() {
        let cached = CachedBinding::of(&binding(serde_json::Value::Null)).expect("cached");
        assert!(cached.status.is_none());
        assert!(!cached.status_is(&InstanceProfileBindingStatus::default()));
        // A condition type the controller does not write, or a time it cannot
        // read, is left out: the engine sets it afresh.
        let odd = serde_json::json!({"conditions": [
            {"type": "Custom", "status": "True", "reason": "X", "lastTransitionTime": "2026-12-05T10:00:00Z"},
            {"type": "Ready", "status": "False", "reason": "X", "lastTransitionTime": "yesterday"},
        ]});
        let cached = CachedBinding::of(&binding(odd)).expect("cached");
        assert!(
            cached
                .status
                .expect("recorded")
                .for_engine()
                .conditions
                .is_empty()
        );
    }

    #[test]
    fn a_node_selector_is_known_without_decoding() {
        let mut b = binding(serde_json::Value::Null);
        b.spec.instances.tags.clear();
        b.spec.instances.node_selector = Some(crate::crd::LabelSelector {
            match_labels: [("pool".to_string(), "web".to_string())].into(),
            ..crate::crd::LabelSelector::default()
        });
        let cached = CachedBinding::of(&b).expect("cached");
        assert!(cached.selects_nodes());
        assert_eq!(cached.spec(), Some(b.spec));
    }

    #[test]
    fn it_stays_small() {
        // The struct the cache holds per binding, before its few heap parts:
        // with the Arc's two counts, within jemalloc's 512-byte size class.
        assert!(std::mem::size_of::<CachedBinding>() + 16 <= 512);
    }
}
