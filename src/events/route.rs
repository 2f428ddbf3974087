//! Which bindings an event concerns, and which events to drop before any
//! AWS read: duplicates, events that arrive after a later one of the same
//! instance, other accounts and regions, the controller's own writes.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::aws::{Association, Instance};
use crate::crd::InstanceProfileBindingSpec;
use crate::naming::BindingKey;
use crate::reconcile::rivals::{Rivals, RivalsBuilder};

use super::parse::{Event, Identity, What};

/// The bindings, indexed for one batch: by what they select and by the
/// name of their profile.
pub struct Bindings {
    selectors: Rivals,
    by_profile: HashMap<String, BindingKey>,
}

/// A key no binding has (`Rivals::of` leaves out the asking binding).
fn nobody() -> BindingKey {
    BindingKey {
        namespace: String::new(),
        name: String::new(),
    }
}

/// Collects the bindings one at a time (from the controller's cache, where
/// their specs are decoded one by one), with no copy of any selector.
#[derive(Default)]
pub struct BindingsBuilder {
    selectors: RivalsBuilder,
    by_profile: HashMap<String, BindingKey>,
}

impl BindingsBuilder {
    /// Adds a binding: its key, spec and profile name.
    pub fn add_spec(
        &mut self,
        key: BindingKey,
        spec: &InstanceProfileBindingSpec,
        profile: String,
    ) {
        self.selectors.add_spec(key.clone(), spec);
        self.by_profile.insert(profile, key);
    }

    #[must_use]
    pub fn build(self) -> Bindings {
        Bindings {
            selectors: self.selectors.build(),
            by_profile: self.by_profile,
        }
    }
}

impl Bindings {
    /// The bindings whose selector matches `instance`.
    #[must_use]
    pub fn selecting(&self, instance: &Instance) -> Vec<BindingKey> {
        self.selectors.of(&nobody(), instance)
    }

    /// The binding whose profile is named `profile`.
    #[must_use]
    pub fn owning(&self, profile: &str) -> Option<&BindingKey> {
        self.by_profile.get(profile)
    }

    /// The bindings an instance concerns: those selecting it as it was or is
    /// now, and those whose profile it held or holds.
    pub fn concerned_by_instance<'a>(
        &self,
        instances: impl IntoIterator<Item = &'a Instance>,
        associations: impl IntoIterator<Item = &'a Association>,
        out: &mut BTreeSet<BindingKey>,
    ) {
        for i in instances {
            out.extend(self.selecting(i));
        }
        for a in associations {
            out.extend(self.owning(a.profile_name()).cloned());
        }
    }
}

/// Why an event is dropped before it is acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    Duplicate,
    /// A state change older than one already handled for the instance.
    OutOfOrder,
    ForeignAccount,
    ForeignRegion,
    OwnWrite,
}

impl Skip {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::OutOfOrder => "out-of-order",
            Self::ForeignAccount => "foreign-account",
            Self::ForeignRegion => "foreign-region",
            Self::OwnWrite => "own-write",
        }
    }
}

/// What the consumer remembers of the events it handled: their ids and the
/// latest state change of each instance, both bounded.
pub struct Seen {
    capacity: usize,
    ids: HashSet<String>,
    order: VecDeque<String>,
    latest: HashMap<String, jiff::Timestamp>,
    latest_order: VecDeque<String>,
}

impl Seen {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            ids: HashSet::new(),
            order: VecDeque::new(),
            latest: HashMap::new(),
            latest_order: VecDeque::new(),
        }
    }

    /// Whether `e` is to be dropped, and why (`None`: act on it).
    #[must_use]
    pub fn skip(&self, e: &Event, home: &Home) -> Option<Skip> {
        if self.ids.contains(&e.id) {
            return Some(Skip::Duplicate);
        }
        if e.account != home.account {
            return Some(Skip::ForeignAccount);
        }
        // IAM is global: its CloudTrail events carry us-east-1 (or the
        // partition's home region), whatever region the controller runs in.
        if !matches!(e.what, What::IamCall { .. }) && e.region != home.region {
            return Some(Skip::ForeignRegion);
        }
        if e.caller().is_some_and(|c| home.identity.is_own(c)) {
            return Some(Skip::OwnWrite);
        }
        if let What::StateChange { instance_id, .. } = &e.what
            && self.latest.get(instance_id).is_some_and(|t| e.time < *t)
        {
            return Some(Skip::OutOfOrder);
        }
        None
    }

    /// Notes `e` as handled.
    pub fn handled(&mut self, e: &Event) {
        if self.ids.insert(e.id.clone()) {
            self.order.push_back(e.id.clone());
            if self.order.len() > self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
        if let What::StateChange { instance_id, .. } = &e.what {
            match self.latest.get_mut(instance_id) {
                Some(t) => *t = (*t).max(e.time),
                None => {
                    self.latest.insert(instance_id.clone(), e.time);
                    self.latest_order.push_back(instance_id.clone());
                    if self.latest_order.len() > self.capacity
                        && let Some(old) = self.latest_order.pop_front()
                    {
                        self.latest.remove(&old);
                    }
                }
            }
        }
    }
}

/// The account, region and identity events are checked against.
pub struct Home {
    pub account: String,
    pub region: String,
    pub identity: Identity,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::aws::AssociationState;
    use crate::events::parse::Caller;
    use crate::reconcile::Selector;
    use crate::reconcile::decide::tests::tagged;

    /// Bindings from each one's key, selector and profile name.
    fn bindings_of(entries: Vec<(BindingKey, Selector, String)>) -> Bindings {
        Bindings {
            selectors: Rivals::new(entries.iter().map(|(k, s, _)| (k.clone(), s))),
            by_profile: entries.into_iter().map(|(k, _, p)| (p, k)).collect(),
        }
    }

    fn key(name: &str) -> BindingKey {
        BindingKey {
            namespace: "team-a".into(),
            name: name.into(),
        }
    }

    fn state_change(id: &str, instance: &str, state: &str, time: &str) -> Event {
        Event {
            id: id.into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            time: time.parse().expect("a time"),
            what: What::StateChange {
                instance_id: instance.into(),
                state: state.into(),
            },
        }
    }

    fn home() -> Home {
        Home {
            account: "123456789012".into(),
            region: "us-east-1".into(),
            identity: Identity::new("arn:aws:sts::123456789012:assumed-role/ipb/s", []),
        }
    }

    #[test]
    fn routes_by_selector_and_by_profile() {
        let web = Selector {
            ids: BTreeSet::new(),
            tags: BTreeMap::from([("app".to_string(), "web".to_string())]),
        };
        let db = Selector {
            ids: BTreeSet::from(["i-db".to_string()]),
            tags: BTreeMap::new(),
        };
        let bindings = bindings_of(vec![
            (key("web"), web, "ipb-web".to_string()),
            (key("db"), db, "ipb-db".to_string()),
        ]);
        assert_eq!(
            bindings.selecting(&tagged("i-1", &[("app", "web"), ("x", "y")])),
            [key("web")]
        );
        assert_eq!(bindings.selecting(&tagged("i-db", &[])), [key("db")]);
        assert!(
            bindings
                .selecting(&tagged("i-2", &[("app", "api")]))
                .is_empty()
        );
        assert_eq!(bindings.owning("ipb-db"), Some(&key("db")));
        assert_eq!(bindings.owning("someone-elses"), None);
        // An unselected instance still holding web's profile concerns web.
        let held = Association {
            id: "iip-assoc-1".into(),
            instance_id: "i-3".into(),
            profile_arn: "arn:aws:iam::123456789012:instance-profile/ipb/test/ipb-web".into(),
            profile_id: "AIPA1".into(),
            state: AssociationState::Associated,
        };
        let mut out = BTreeSet::new();
        bindings.concerned_by_instance([&tagged("i-3", &[])], [&held], &mut out);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), [key("web")]);
    }

    #[test]
    fn drops_duplicates_late_state_changes_and_foreign_events() {
        let home = home();
        let mut seen = Seen::new(2);
        let running = state_change("e2", "i-1", "running", "2026-01-01T00:00:10Z");
        let pending = state_change("e1", "i-1", "pending", "2026-01-01T00:00:05Z");
        assert_eq!(seen.skip(&running, &home), None);
        seen.handled(&running);
        assert_eq!(seen.skip(&running, &home), Some(Skip::Duplicate));
        assert_eq!(seen.skip(&pending, &home), Some(Skip::OutOfOrder));
        let other_account = Event {
            account: "999999999999".into(),
            ..state_change("e3", "i-2", "pending", "2026-01-01T00:00:05Z")
        };
        assert_eq!(seen.skip(&other_account, &home), Some(Skip::ForeignAccount));
        let other_region = Event {
            region: "eu-west-1".into(),
            ..state_change("e4", "i-2", "pending", "2026-01-01T00:00:05Z")
        };
        assert_eq!(seen.skip(&other_region, &home), Some(Skip::ForeignRegion));
        let iam = |arn: &str| Event {
            region: "us-east-1".into(),
            what: What::IamCall {
                name: "RemoveRoleFromInstanceProfile".into(),
                caller: Caller {
                    arn: Some(arn.into()),
                    issuer_arn: None,
                },
                profile: "p".into(),
            },
            ..state_change("e5", "i-2", "pending", "2026-01-01T00:00:05Z")
        };
        assert_eq!(
            seen.skip(
                &iam("arn:aws:sts::123456789012:assumed-role/ipb/other"),
                &home
            ),
            Some(Skip::OwnWrite)
        );
        assert_eq!(
            seen.skip(
                &iam("arn:aws:sts::123456789012:assumed-role/Admin/a"),
                &home
            ),
            None
        );
        // Bounded: the oldest ids are forgotten.
        seen.handled(&state_change(
            "e6",
            "i-3",
            "running",
            "2026-01-01T00:00:01Z",
        ));
        seen.handled(&state_change(
            "e7",
            "i-4",
            "running",
            "2026-01-01T00:00:01Z",
        ));
        assert_eq!(seen.skip(&running, &home), None);
    }
}
