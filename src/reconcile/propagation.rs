//! Pacing the first association of a profile this process created. EC2
//! refuses a new profile until IAM has propagated it (seconds to minutes), and
//! every refused `AssociateIamInstanceProfile` spends an EC2 write token.
//! So the delay is learned instead of probed for by every binding:
//!
//! - until one profile created here has been accepted, one binding at a time
//!   (the *canary*) probes; the others wait without calling AWS;
//! - the canary's accepted association measures the delay (creation to
//!   acceptance); every later profile first tries at its own creation time
//!   plus that delay, and a refusal there (a slower propagation) raises the
//!   estimate with the next acceptance.
//!
//! Profiles this process did not create (another replica, an earlier run) are
//! not paced: their age is unknown, so they are tried at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long a canary that stopped probing (its binding failed otherwise, or
/// was deleted) keeps the role before another binding takes it.
const CANARY_IDLE: Duration = Duration::from_secs(3);
/// How often a binding waiting for the canary looks again.
const POLL: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Propagation {
    inner: Mutex<Inner>,
    /// Woken when the canary's probe is answered.
    answered: tokio::sync::Notify,
}

/// A profile created here and not yet accepted by EC2.
struct Created {
    at: Instant,
    /// Its id and the tags this process wrote: a later pass needs no read to
    /// prove it ours.
    id: String,
    tags: BTreeMap<String, String>,
    /// When EC2 last refused it: its acceptance measures the delay.
    refused: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    created: HashMap<String, Created>,
    /// Creation to first acceptance, as last measured (smoothed).
    learned: Option<Duration>,
    /// The profile whose binding probes while nothing is learned, and when it last did.
    canary: Option<(String, Instant)>,
    /// The canary's probe is in flight: its answer is moments away.
    probing: bool,
}

impl Propagation {
    /// `name` was just created, with id `id` and `tags`.
    pub fn created(&self, name: &str, id: &str, tags: BTreeMap<String, String>) {
        if let Ok(mut i) = self.inner.lock() {
            i.created.insert(
                name.to_string(),
                Created {
                    at: Instant::now(),
                    id: id.to_string(),
                    tags,
                    refused: None,
                },
            );
        }
    }

    /// The tags of profile `name` (incarnation `id`) while it waits for
    /// propagation: what this process wrote.
    pub fn tags(&self, name: &str, id: &str) -> Option<BTreeMap<String, String>> {
        let i = self.inner.lock().ok()?;
        let c = i.created.get(name).filter(|c| c.id == id)?;
        Some(c.tags.clone())
    }

    /// This process wrote `tags` on `name` (incarnation `id`).
    pub fn wrote_tags(&self, name: &str, id: &str, tags: &BTreeMap<String, String>) {
        if let Ok(mut i) = self.inner.lock()
            && let Some(c) = i.created.get_mut(name).filter(|c| c.id == id)
        {
            c.tags.clone_from(tags);
        }
    }

    /// EC2 accepted an association with `name`: the delay is known for it.
    pub fn accepted(&self, name: &str) {
        let Ok(mut i) = self.inner.lock() else {
            return;
        };
        if let Some(c) = i.created.remove(name) {
            if let Some(refused) = c.refused {
                // Refused, then accepted: the delay ended between the two
                // answers (probes are a second apart); the midpoint
                // overshoots less than the acceptance, and one binding's
                // early try costs one refusal, raising the estimate.
                let sample = (refused.duration_since(c.at) + c.at.elapsed()) / 2;
                i.learned = Some(match i.learned {
                    // A slower propagation counts at once; a faster one
                    // halfway, so one quick profile does not make the rest
                    // probe early.
                    Some(old) if sample < old => (old + sample) / 2,
                    _ => sample,
                });
            } else if i.learned.is_none() {
                // Accepted at the first try: no delay seen (yet).
                i.learned = Some(Duration::ZERO);
            }
        }
        if i.canary.as_ref().is_some_and(|(c, _)| c == name) {
            i.canary = None;
            i.probing = false;
        }
        drop(i);
        self.answered.notify_waiters();
    }

    /// EC2 refused `name` as not yet propagated.
    pub fn refused(&self, name: &str) {
        if let Ok(mut i) = self.inner.lock() {
            if let Some(c) = i.created.get_mut(name) {
                c.refused = Some(Instant::now());
            }
            if let Some((c, at)) = i.canary.as_mut()
                && c == name
            {
                *at = Instant::now();
                i.probing = false;
            }
        }
        self.answered.notify_waiters();
    }

    /// `name` is gone (deleted): forget it.
    pub fn forget(&self, name: &str) {
        if let Ok(mut i) = self.inner.lock() {
            i.created.remove(name);
            if i.canary.as_ref().is_some_and(|(c, _)| c == name) {
                i.canary = None;
            }
        }
    }

    /// How long to wait before associating with `name`; `None`: now. While
    /// the canary's probe is in flight, waits (up to a second) for its answer
    /// first, so a propagation that is already done costs no extra pass.
    pub async fn wait_for(&self, name: &str) -> Option<Duration> {
        let answered = self.answered.notified();
        tokio::pin!(answered);
        answered.as_mut().enable();
        let first = self.wait(name)?;
        // Wait for the canary's answer only while its probe is in flight:
        // between its probes, waiting would hold a concurrency slot for up
        // to a second for nothing.
        if first != POLL || !self.waits_for_canary(name) || !self.probing() {
            return Some(first);
        }
        if tokio::time::timeout(POLL, answered).await.is_err() {
            return Some(POLL);
        }
        match self.wait(name) {
            Some(d) if d == POLL && self.waits_for_canary(name) => Some(POLL),
            other => other,
        }
    }

    /// A delay has been learned: bindings no longer wait for a canary.
    pub fn learned(&self) -> bool {
        self.inner.lock().is_ok_and(|i| i.learned.is_some())
    }

    fn probing(&self) -> bool {
        self.inner.lock().is_ok_and(|i| i.probing)
    }

    fn waits_for_canary(&self, name: &str) -> bool {
        self.inner
            .lock()
            .is_ok_and(|i| i.learned.is_none() && i.canary.as_ref().is_some_and(|(c, _)| c != name))
    }

    /// How long to wait before associating with `name`; `None`: now.
    pub fn wait(&self, name: &str) -> Option<Duration> {
        let mut i = self.inner.lock().ok()?;
        let created = i.created.get(name)?.at;
        if let Some(d) = i.learned {
            let due = created + d;
            let now = Instant::now();
            return (due > now).then(|| due - now);
        }
        let now = Instant::now();
        match &i.canary {
            Some((c, last)) if c != name && now.duration_since(*last) < CANARY_IDLE => Some(POLL),
            _ => {
                i.canary = Some((name.to_string(), now));
                i.probing = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_canary_probes_then_everyone_waits_the_learned_delay() {
        let p = Propagation::default();
        // Not created here: no pacing.
        assert_eq!(p.wait("old"), None);
        p.created("a", "A", BTreeMap::new());
        p.created("b", "B", BTreeMap::new());
        assert_eq!(p.wait("a"), None, "the first becomes the canary");
        assert_eq!(p.wait("b"), Some(POLL), "the others wait for it");
        tokio::time::advance(Duration::from_secs(5)).await;
        p.refused("a");
        assert_eq!(p.wait("b"), Some(POLL));
        tokio::time::advance(Duration::from_millis(500)).await;
        p.accepted("a");
        // Learned 5.5 s: b, created at the same time, is due now.
        assert_eq!(p.wait("b"), None);
        p.created("c", "C", BTreeMap::new());
        let wait = p.wait("c").unwrap_or_default();
        assert!(
            wait > Duration::from_secs(5) && wait <= Duration::from_millis(5500),
            "{wait:?}"
        );
        // A slower propagation raises the estimate at once.
        tokio::time::advance(Duration::from_secs(8)).await;
        p.refused("c");
        p.accepted("c");
        p.created("d", "D", BTreeMap::new());
        assert!(p.wait("d").unwrap_or_default() >= Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_canary_hands_over() {
        let p = Propagation::default();
        p.created("a", "A", BTreeMap::new());
        p.created("b", "B", BTreeMap::new());
        assert_eq!(p.wait("a"), None);
        tokio::time::advance(CANARY_IDLE + Duration::from_millis(1)).await;
        assert_eq!(p.wait("b"), None, "a stopped probing: b takes over");
        p.forget("b");
        assert_eq!(p.wait("b"), None, "forgotten: not paced");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_goes_on_at_once_when_the_canary_is_accepted() {
        let p = std::sync::Arc::new(Propagation::default());
        p.created("a", "A", BTreeMap::new());
        p.created("b", "B", BTreeMap::new());
        assert_eq!(p.wait("a"), None);
        let waiter = {
            let p = p.clone();
            tokio::spawn(async move { p.wait_for("b").await })
        };
        tokio::time::advance(Duration::from_millis(50)).await;
        p.accepted("a");
        assert_eq!(waiter.await.ok().flatten(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_try_accepted_means_no_wait() {
        let p = Propagation::default();
        p.created("a", "A", BTreeMap::new());
        p.created("b", "B", BTreeMap::new());
        assert_eq!(p.wait("a"), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        p.accepted("a");
        p.created("c", "C", BTreeMap::new());
        assert_eq!(p.wait("c"), None, "no delay was seen");
    }
}
