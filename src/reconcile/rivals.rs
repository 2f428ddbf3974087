//! Bindings that select the same instance. An instance holds one profile, so
//! two bindings selecting it (both with `replaceForeignAssociations: true`)
//! would take it from each other on every pass. Each binding sees the others
//! that select one of its instances as rivals: it leaves the instance as it
//! is and reports `Conflict` naming them, until one of them stops selecting it.
//! `replaceForeignAssociations` never takes an instance another binding selects.
//!
//! Rivals are matched in the controller's own account; bindings whose policy
//! sends them to another account are not compared with each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::aws::Instance;
use crate::naming::BindingKey;

use super::model::Selector;

/// A tag selector: its binding and all its pairs.
type TagSelector = (BindingKey, BTreeMap<String, String>);

/// Every live binding's selection, indexed for "who else selects this instance".
#[derive(Clone, Debug, Default)]
pub struct Rivals {
    by_id: HashMap<String, Vec<BindingKey>>,
    /// Tag selectors under one of their pairs (the first): an instance is
    /// compared only with selectors whose first pair it carries.
    by_tag: HashMap<(String, String), Vec<TagSelector>>,
}

impl Rivals {
    /// Indexes the selections of `bindings` (bindings being deleted left out
    /// by the caller: their selection is on its way out).
    pub fn new<'a>(bindings: impl IntoIterator<Item = (BindingKey, &'a Selector)>) -> Self {
        let mut out = Self::default();
        for (key, selector) in bindings {
            for id in &selector.ids {
                out.by_id.entry(id.clone()).or_default().push(key.clone());
            }
            if let Some((k, v)) = selector.tags.iter().next() {
                out.by_tag
                    .entry((k.clone(), v.clone()))
                    .or_default()
                    .push((key.clone(), selector.tags.clone()));
            }
        }
        out
    }

    /// The bindings other than `me` that select `instance`, sorted.
    #[must_use]
    pub fn of(&self, me: &BindingKey, instance: &Instance) -> Vec<BindingKey> {
        let mut found: BTreeSet<&BindingKey> = BTreeSet::new();
        if let Some(keys) = self.by_id.get(&instance.id) {
            found.extend(keys.iter().filter(|k| *k != me));
        }
        for (k, v) in &instance.tags {
            let Some(candidates) = self.by_tag.get(&(k.clone(), v.clone())) else {
                continue;
            };
            found.extend(
                candidates
                    .iter()
                    .filter(|(key, tags)| {
                        key != me && tags.iter().all(|(k, v)| instance.tags.get(k) == Some(v))
                    })
                    .map(|(key, _)| key),
            );
        }
        found.into_iter().cloned().collect()
    }

    /// The rivals among bindings given by key and spec.
    pub fn of_specs<'a>(
        bindings: impl IntoIterator<Item = (BindingKey, &'a crate::crd::InstanceProfileBindingSpec)>,
    ) -> Self {
        let selectors: Vec<(BindingKey, Selector)> = bindings
            .into_iter()
            .map(|(k, spec)| (k, super::selector_of(spec)))
            .collect();
        Self::new(selectors.iter().map(|(k, s)| (k.clone(), s)))
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty() && self.by_tag.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::RunState;

    fn key(name: &str) -> BindingKey {
        BindingKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn instance(id: &str, tags: &[(&str, &str)]) -> Instance {
        Instance {
            id: id.into(),
            state: RunState::Running,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
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
        let web_prod = instance("i-1", &[("app", "web"), ("env", "prod")]);
        assert_eq!(rivals.of(&key("a"), &web_prod), vec![key("b"), key("d")]);
        assert_eq!(rivals.of(&key("d"), &web_prod), vec![key("a"), key("b")]);
        let lone = instance("i-2", &[("env", "prod")]);
        assert!(rivals.of(&key("b"), &lone).is_empty());
        assert!(Rivals::default().of(&key("a"), &web_prod).is_empty());
    }
}
