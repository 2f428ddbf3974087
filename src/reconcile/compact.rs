//! Compact forms for what is held per AWS object or per binding at scale:
//! ids inline instead of on the heap, and strings many entries share (paths,
//! role names and ARNs, tag pairs) stored once.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The longest id held inline. AWS ids are shorter: `i-` + 17 hex (19),
/// `iip-assoc-` + 17 hex (27), `AIPA` + 17 (21).
const INLINE: usize = 30;

/// An AWS id (instance, association, instance profile) as a fixed-size value:
/// inline up to 30 bytes, on the heap beyond (ids come from outside).
#[derive(Clone)]
pub enum Id {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<str>),
}

impl Id {
    #[must_use]
    pub fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(s.into()),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            // Always the bytes of a `str` cut at its end: valid UTF-8.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Heap(s) => s,
        }
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

// Hash and equality are the string's, so maps keyed by `Id` answer `&str` lookups.
impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl Borrow<str> for Id {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Each distinct string once; entries hold a shared pointer to it.
#[derive(Clone, Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
}

impl Interner {
    /// The one shared copy of `s`.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return found.clone();
        }
        let shared: Arc<str> = s.into();
        self.strings.insert(shared.clone());
        shared
    }

    /// The shared copy of `s`, if there is one.
    #[must_use]
    pub fn get(&self, s: &str) -> Option<Arc<str>> {
        self.strings.get(s).cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn ids_inline_and_on_the_heap_compare_as_their_strings() {
        let long = "x".repeat(INLINE + 1);
        for s in [
            "",
            "i-0123456789abcdef0",
            "iip-assoc-0123456789abcdef0",
            &long,
        ] {
            let id = Id::new(s);
            assert_eq!(id.as_str(), s);
            let map = HashMap::from([(id.clone(), 1)]);
            assert_eq!(map.get(s), Some(&1));
        }
        assert!(matches!(Id::new("i-0123456789abcdef0"), Id::Inline { .. }));
        assert!(matches!(Id::new(&long), Id::Heap(_)));
        assert!(Id::new("a") < Id::new("b"));
        assert_eq!(std::mem::size_of::<Id>(), 32);
    }

    #[test]
    fn interned_strings_are_shared() {
        let mut strings = Interner::default();
        let a = strings.intern("/ipb/c1/");
        let b = strings.intern("/ipb/c1/");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*strings.intern("other"), "other");
    }
}
