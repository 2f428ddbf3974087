//! When to look at a binding again after a failure: per-binding, capped,
//! jittered exponential backoff per class (kube-runtime has none), and the
//! propagation poll. Reset when a binding converges.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use super::model::Next;
use super::reason::BackoffClass;

/// Per-binding error backoff (kube-runtime has none): capped, jittered
/// exponential per class, with no give-up; reset when a binding converges.
///
/// IAM→EC2 propagation is the exception for its first 30 s: a look every
/// second (after a first one at 0.5 s), so a binding is Ready within about a
/// second of the profile becoming visible to EC2 (AWS takes a few seconds,
/// rarely more); after that, exponential up to 20 s.
///
/// `K` names a binding: the controller's `BindingKey`, file mode's string.
pub struct Backoffs<K> {
    entries: HashMap<K, Entry>,
}

impl<K> Default for Backoffs<K> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
        }
    }
}

struct Entry {
    class: BackoffClass,
    since: std::time::Instant,
    attempts: u32,
    exponential: backon::ExponentialBackoff,
}

/// How long propagation is polled every second before backing off.
const PROPAGATION_POLL: Duration = Duration::from_secs(30);

impl<K: Hash + Eq> Backoffs<K> {
    /// The delay before the next look at `key`, or `None` when the periodic
    /// resync is enough.
    pub fn next<Q>(&mut self, key: &Q, next: Next) -> Option<Duration>
    where
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        K: Borrow<Q>,
    {
        use backon::BackoffBuilder;
        match next {
            Next::Resync => {
                self.entries.remove(key);
                None
            }
            Next::Soon => {
                self.entries.remove(key);
                Some(Duration::from_secs(1))
            }
            Next::After(wait) => Some(wait),
            Next::Backoff(class) => {
                let (first, cap) = class.bounds();
                let fresh = || {
                    let min = if class == BackoffClass::Propagation {
                        Duration::from_secs(2)
                    } else {
                        first
                    };
                    Entry {
                        class,
                        since: std::time::Instant::now(),
                        attempts: 0,
                        exponential: backon::ExponentialBuilder::new()
                            .with_min_delay(min)
                            .with_max_delay(cap)
                            .with_factor(2.0)
                            .with_jitter()
                            .without_max_times()
                            .build(),
                    }
                };
                let entry = self.entries.entry(key.to_owned()).or_insert_with(fresh);
                if entry.class != class {
                    *entry = fresh();
                }
                entry.attempts += 1;
                if class == BackoffClass::Propagation
                    && entry.since.elapsed() < PROPAGATION_POLL
                    && entry.attempts <= 30
                {
                    return Some(if entry.attempts == 1 {
                        first
                    } else {
                        Duration::from_secs(1)
                    });
                }
                Some(entry.exponential.next().unwrap_or(cap).min(cap))
            }
        }
    }

    pub fn forget<Q>(&mut self, key: &Q)
    where
        Q: Hash + Eq + ?Sized,
        K: Borrow<Q>,
    {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_resets() {
        let mut b = Backoffs::default();
        let first = b
            .next("a", Next::Backoff(BackoffClass::Propagation))
            .unwrap_or_default();
        assert!(
            first < Duration::from_secs(1),
            "sub-second first retry, got {first:?}"
        );
        let second = b
            .next("a", Next::Backoff(BackoffClass::Propagation))
            .unwrap_or_default();
        assert_eq!(second, Duration::from_secs(1), "then a look every second");
        let mut last = first;
        for _ in 0..40 {
            last = b
                .next("a", Next::Backoff(BackoffClass::Propagation))
                .unwrap_or_default();
        }
        assert!(last <= BackoffClass::Propagation.bounds().1);
        assert!(last >= Duration::from_secs(5), "grew to {last:?}");
        assert_eq!(b.next("a", Next::Resync), None);
        let again = b
            .next("a", Next::Backoff(BackoffClass::Slow))
            .unwrap_or_default();
        assert!(again >= BackoffClass::Slow.bounds().0);
    }
}
