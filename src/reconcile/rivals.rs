//! Bindings that select the same instance. An instance holds one profile, so
//! two bindings selecting it (both with `replaceForeignAssociations: true`)
//! would take it from each other on every pass. Each binding sees the others
//! that select one of its instances as rivals: it leaves the instance as it
//! is and reports `Conflict` naming them, until one of them stops selecting it.
//! `replaceForeignAssociations` never takes an instance another binding selects.
//!
//! Rivals are matched in the controller's own account; bindings whose policy
//! sends them to another account are not compared with each other.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::aws::Instance;
use crate::naming::BindingKey;

use super::compact::Interner;
use super::model::Selector;

/// A tag pair, its strings shared with every other selector that has them.
type Pair = (Arc<str>, Arc<str>);

/// Every binding that selects something, indexed by what it selects: sorted
/// vectors looked up by binary search, each string once, nothing copied per
/// lookup. Built from borrowed selectors (the controller's cache, the
/// files), so building it holds no second copy of them.
#[derive(Clone, Debug, Default)]
pub struct Rivals {
    /// Each selecting binding once; the indexes below point here.
    keys: Vec<BindingKey>,
    /// Each binding's tag pairs (empty when it selects by id only).
    tags: Vec<Box<[Pair]>>,
    /// (instance id, binding), sorted.
    by_id: Vec<(Box<str>, u32)>,
    /// (first tag pair, binding), sorted: an instance is compared only with
    /// the selectors whose first pair it carries.
    by_tag: Vec<(Pair, u32)>,
}

/// Collects selectors, then sorts them into [`Rivals`].
#[derive(Default)]
pub struct RivalsBuilder {
    rivals: Rivals,
    strings: Interner,
}

impl RivalsBuilder {
    /// Adds a binding's selection: instance ids and tag pairs.
    pub fn add<'a>(
        &mut self,
        key: BindingKey,
        ids: impl IntoIterator<Item = &'a str>,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let r = &mut self.rivals;
        let Ok(index) = u32::try_from(r.keys.len()) else {
            return;
        };
        let before = r.by_id.len();
        r.by_id.extend(ids.into_iter().map(|id| (id.into(), index)));
        let tags: Box<[Pair]> = tags
            .into_iter()
            .map(|(k, v)| (self.strings.intern(k), self.strings.intern(v)))
            .collect();
        if let Some(first) = tags.first() {
            r.by_tag.push((first.clone(), index));
        }
        if tags.is_empty() && r.by_id.len() == before {
            return;
        }
        r.keys.push(key);
        r.tags.push(tags);
    }

    /// Adds what a binding's spec selects.
    pub fn add_spec(&mut self, key: BindingKey, spec: &crate::crd::InstanceProfileBindingSpec) {
        self.add(
            key,
            spec.instances.ids.iter().map(String::as_str),
            spec.instances
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }

    #[must_use]
    pub fn build(self) -> Rivals {
        let mut r = self.rivals;
        r.by_id.sort_unstable();
        r.by_id.shrink_to_fit();
        r.by_tag.sort_unstable();
        r.by_tag.shrink_to_fit();
        r.keys.shrink_to_fit();
        r.tags.shrink_to_fit();
        r
    }
}

impl Rivals {
    /// Indexes the selections of `bindings` (bindings being deleted left out
    /// by the caller: their selection is on its way out).
    pub fn new<'a>(bindings: impl IntoIterator<Item = (BindingKey, &'a Selector)>) -> Self {
        let mut out = RivalsBuilder::default();
        for (key, s) in bindings {
            out.add(
                key,
                s.ids.iter().map(String::as_str),
                s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        out.build()
    }

    /// The bindings other than `me` that select `instance`, sorted.
    #[must_use]
    pub fn of(&self, me: &BindingKey, instance: &Instance) -> Vec<BindingKey> {
        let mut found: BTreeSet<&BindingKey> = BTreeSet::new();
        let key = |i: u32| self.keys.get(usize::try_from(i).ok()?);
        let id = instance.id.as_str();
        let from = self.by_id.partition_point(|(i, _)| &**i < id);
        found.extend(
            self.by_id[from..]
                .iter()
                .take_while(|(i, _)| &**i == id)
                .filter_map(|(_, b)| key(*b))
                .filter(|k| *k != me),
        );
        for (k, v) in &instance.tags {
            let pair = (k.as_str(), v.as_str());
            let from = self
                .by_tag
                .partition_point(|((pk, pv), _)| (&**pk, &**pv) < pair);
            let all_pairs = |b: u32| {
                self.tags
                    .get(usize::try_from(b).unwrap_or(usize::MAX))
                    .is_some_and(|tags| {
                        tags.iter()
                            .all(|(k, v)| instance.tags.get(&**k).map(String::as_str) == Some(&**v))
                    })
            };
            found.extend(
                self.by_tag[from..]
                    .iter()
                    .take_while(|((pk, pv), _)| (&**pk, &**pv) == pair)
                    .filter(|(_, b)| all_pairs(*b))
                    .filter_map(|(_, b)| key(*b))
                    .filter(|k| *k != me),
            );
        }
        found.into_iter().cloned().collect()
    }

    /// The rivals among bindings given by key and spec.
    pub fn of_specs<'a>(
        bindings: impl IntoIterator<Item = (BindingKey, &'a crate::crd::InstanceProfileBindingSpec)>,
    ) -> Self {
        let mut out = RivalsBuilder::default();
        for (key, spec) in bindings {
            out.add_spec(key, spec);
        }
        out.build()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.by_tag.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::decide::tests::tagged;

    fn key(name: &str) -> BindingKey {
        BindingKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn selector(ids: &[&str], tags: &[(&str, &str)]) -> Selector {
        Selector {
            ids: ids.iter().map(|s| (*s).to_string()).collect(),
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn finds_every_other_binding_that_selects_the_instance() {
        let a = selector(&["i-1"], &[]);
        let b = selector(&[], &[("app", "web"), ("env", "prod")]);
        let c = selector(&[], &[("app", "web"), ("env", "dev")]);
        let d = selector(&["i-1"], &[("app", "web")]);
        let rivals = Rivals::new([
            (key("a"), &a),
            (key("b"), &b),
            (key("c"), &c),
            (key("d"), &d),
        ]);
        let web_prod = tagged("i-1", &[("app", "web"), ("env", "prod")]);
        assert_eq!(rivals.of(&key("a"), &web_prod), vec![key("b"), key("d")]);
        assert_eq!(rivals.of(&key("d"), &web_prod), vec![key("a"), key("b")]);
        let lone = tagged("i-2", &[("env", "prod")]);
        assert!(rivals.of(&key("b"), &lone).is_empty());
        assert!(Rivals::default().of(&key("a"), &web_prod).is_empty());
    }
}
