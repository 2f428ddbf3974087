//! Bindings that select the same instance. An instance holds one profile, so
//! two bindings selecting it (both with `replaceForeignAssociations: true`)
//! would take it from each other on every pass. Each binding sees the others
//! that select one of its instances as rivals: it leaves the instance as it
//! is and reports `Conflict` naming them, until one of them stops selecting it.
//! `replaceForeignAssociations` never takes an instance another binding selects.
//!
//! Rivals are matched in the controller's own account; bindings whose policy
//! sends them to another account are not compared with each other.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::aws::Instance;
use crate::naming::BindingKey;

use super::compact::Interner;
use super::model::Selector;

/// A tag selector: its binding and all its pairs.
/// A tag selector: its binding (an index into `keys`) and every pair.
type TagSelector = (u32, Box<[(Arc<str>, Arc<str>)]>);

#[derive(Clone, Debug, Default)]
pub struct Rivals {
    /// Each binding once; the indexes below point here.
    keys: Vec<BindingKey>,
    by_id: HashMap<Box<str>, Vec<u32>>,
    /// Tag selectors under one of their pairs (the first), by key then value:
    /// an instance is compared only with selectors whose first pair it carries.
    by_tag: HashMap<Arc<str>, HashMap<Arc<str>, Vec<TagSelector>>>,
}

impl Rivals {
    /// Indexes the selections of `bindings` (bindings being deleted left out
    /// by the caller: their selection is on its way out).
    pub fn new<'a>(bindings: impl IntoIterator<Item = (BindingKey, &'a Selector)>) -> Self {
        let mut out = Self::default();
        let mut strings = Interner::default();
        for (key, selector) in bindings {
            let Ok(index) = u32::try_from(out.keys.len()) else {
                break;
            };
            let mut selects = false;
            for id in &selector.ids {
                out.by_id.entry(id.as_str().into()).or_default().push(index);
                selects = true;
            }
            let tags: Box<[(Arc<str>, Arc<str>)]> = selector
                .tags
                .iter()
                .map(|(k, v)| (strings.intern(k), strings.intern(v)))
                .collect();
            if let Some((k, v)) = tags.first().cloned() {
                out.by_tag
                    .entry(k)
                    .or_default()
                    .entry(v)
                    .or_default()
                    .push((index, tags));
                selects = true;
            }
            if selects {
                out.keys.push(key);
            }
        }
        out
    }

    /// The bindings other than `me` that select `instance`, sorted.
    #[must_use]
    pub fn of(&self, me: &BindingKey, instance: &Instance) -> Vec<BindingKey> {
        let mut found: BTreeSet<&BindingKey> = BTreeSet::new();
        let key = |i: &u32| self.keys.get(usize::try_from(*i).ok()?);
        if let Some(indexes) = self.by_id.get(instance.id.as_str()) {
            found.extend(indexes.iter().filter_map(key).filter(|k| *k != me));
        }
        for (k, v) in &instance.tags {
            let Some(candidates) = self.by_tag.get(k.as_str()).and_then(|m| m.get(v.as_str()))
            else {
                continue;
            };
            found.extend(
                candidates
                    .iter()
                    .filter(|(_, tags)| {
                        tags.iter()
                            .all(|(k, v)| instance.tags.get(&**k).map(String::as_str) == Some(&**v))
                    })
                    .filter_map(|(i, _)| key(i))
                    .filter(|k| *k != me),
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
