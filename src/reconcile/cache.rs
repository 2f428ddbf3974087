//! One bulk snapshot per account, shared: the bindings reconciling at the same
//! time wait for one refresh instead of each reading AWS. The controller keeps
//! one for its own account; [`super::accounts`] one for each other account.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, MutexGuard};
use tokio::time::Instant;

use crate::aws::{Aws, AwsError};

use super::Snapshot;
use super::rivals::Rivals;

/// The last snapshot of one account and the paths it listed.
pub struct SnapshotCache {
    state: Mutex<State>,
    /// A snapshot this old is refreshed whoever asks (`None`: only when a
    /// caller needs a newer one or more paths).
    max_age: Option<Duration>,
}

#[derive(Default)]
struct State {
    /// The profile paths the last refresh listed (kept when it failed).
    listed: BTreeSet<String>,
    snapshot: Option<Arc<Snapshot>>,
}

/// What [`SnapshotCache::lookup`] found.
pub enum Lookup<'a> {
    /// A snapshot the caller can use.
    Fresh(Arc<Snapshot>),
    /// None: the caller takes one, and every other caller waits for it.
    Stale(Refresh<'a>),
}

/// The right to refresh a cache; the others wait until it is dropped.
pub struct Refresh<'a> {
    state: MutexGuard<'a, State>,
}

impl SnapshotCache {
    #[must_use]
    pub fn new(max_age: Option<Duration>) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_age,
        }
    }

    /// The current snapshot if it was taken at or after `after` (when given),
    /// is younger than the max age and listed every path of `need`; else the
    /// right to take a new one.
    pub async fn lookup(&self, after: Option<Instant>, need: &BTreeSet<String>) -> Lookup<'_> {
        // Holding the lock while refreshing makes concurrent callers share one refresh.
        let state = self.state.lock().await;
        if let Some(s) = state.snapshot.as_ref()
            && self.max_age.is_none_or(|m| s.taken_at.elapsed() < m)
            && after.is_none_or(|t| s.taken_at >= t)
            && need.is_subset(&state.listed)
        {
            return Lookup::Fresh(s.clone());
        }
        Lookup::Stale(Refresh { state })
    }
}

impl SnapshotCache {
    /// Folds what was read at `read_at` into the current snapshot (the event
    /// queue's re-reads), unless that snapshot was taken later and already
    /// knows as much. Whether anything was patched.
    pub async fn patch(&self, read_at: Instant, f: impl FnOnce(&mut Snapshot)) -> bool {
        let mut state = self.state.lock().await;
        match state.snapshot.as_mut() {
            Some(s) if s.taken_at <= read_at => {
                // Reconciles holding the old one keep it; the next get this one.
                f(Arc::make_mut(s));
                true
            }
            _ => false,
        }
    }

    /// The current snapshot, however old (the event queue matches events
    /// against it; `None` before the first).
    pub async fn current(&self) -> Option<Arc<Snapshot>> {
        self.state.lock().await.snapshot.clone()
    }
}

impl Refresh<'_> {
    /// The profile paths the last snapshot listed.
    #[must_use]
    pub fn listed(&self) -> &BTreeSet<String> {
        &self.state.listed
    }

    /// Takes a snapshot of `aws`'s account under `paths`, with `rivals`, and
    /// keeps it for the callers to come.
    ///
    /// # Errors
    /// AWS errors of the listings.
    pub async fn take(
        mut self,
        aws: &Aws,
        paths: BTreeSet<String>,
        rivals: Arc<Rivals>,
    ) -> Result<Arc<Snapshot>, AwsError> {
        // Whoever waits on the lock gets the new snapshot, so the old one goes
        // now: two full snapshots at once would double the peak at scale.
        self.state.snapshot = None;
        let mut fresh = Snapshot::take(aws, &paths).await?;
        fresh.rivals = rivals;
        let fresh = Arc::new(fresh);
        self.state.listed = paths;
        self.state.snapshot = Some(fresh.clone());
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn paths(p: &[&str]) -> BTreeSet<String> {
        p.iter().map(|s| (*s).to_string()).collect()
    }

    /// Fills the cache as a refresh listing `listed` at `taken_at` would.
    async fn fill(cache: &SnapshotCache, taken_at: Instant, listed: &[&str]) {
        let mut state = cache.state.lock().await;
        state.listed = paths(listed);
        state.snapshot = Some(Arc::new(Snapshot::from_parts(
            taken_at,
            HashMap::new(),
            Vec::new(),
            Vec::new(),
        )));
    }

    fn fresh(l: &Lookup<'_>) -> bool {
        matches!(l, Lookup::Fresh(_))
    }

    #[tokio::test(start_paused = true)]
    async fn patches_only_a_snapshot_older_than_the_read() {
        let cache = SnapshotCache::new(None);
        let note = |s: &mut Snapshot| s.note_profile("p", None);
        assert!(!cache.patch(Instant::now(), note).await, "no snapshot yet");
        let taken = Instant::now();
        fill(&cache, taken, &["/a/"]).await;
        let held = cache.current().await.expect("a snapshot");
        tokio::time::advance(Duration::from_secs(1)).await;
        let read_at = Instant::now();
        assert!(
            cache
                .patch(read_at, |s| s
                    .note_associations(&["i-1".to_string()], Vec::new()))
                .await
        );
        // A reconcile holding the old snapshot keeps it; the patched one keeps
        // its age and paths, so it is as fresh as before.
        let patched = cache.current().await.expect("a snapshot");
        assert!(!Arc::ptr_eq(&held, &patched));
        assert_eq!(patched.taken_at, taken);
        assert!(fresh(&cache.lookup(Some(taken), &paths(&["/a/"])).await));
        // A snapshot taken after the read knows as much already.
        fill(&cache, read_at + Duration::from_secs(1), &["/a/"]).await;
        assert!(!cache.patch(read_at, note).await);
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_by_age_time_and_paths() {
        let cache = SnapshotCache::new(Some(Duration::from_secs(30)));
        assert!(!fresh(&cache.lookup(None, &BTreeSet::new()).await));
        let taken = Instant::now();
        fill(&cache, taken, &["/a/"]).await;
        assert!(fresh(&cache.lookup(Some(taken), &paths(&["/a/"])).await));
        assert!(!fresh(&cache.lookup(None, &paths(&["/a/", "/b/"])).await));
        // A refresh learns what the last one listed.
        assert!(matches!(
            cache.lookup(None, &paths(&["/b/"])).await,
            Lookup::Stale(r) if r.listed() == &paths(&["/a/"])
        ));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!fresh(
            &cache.lookup(Some(Instant::now()), &BTreeSet::new()).await
        ));
        fill(&cache, taken, &["/a/"]).await;
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(!fresh(&cache.lookup(None, &BTreeSet::new()).await));

        let ageless = SnapshotCache::new(None);
        fill(&ageless, taken, &["/a/"]).await;
        assert!(fresh(&ageless.lookup(Some(taken), &paths(&["/a/"])).await));
    }
}
