//! Other AWS accounts (policy `spec.account`): per account, clients with
//! assumed-role credentials, its own rate limiter, role cache and bulk
//! snapshot; per binding, a role session named after the controller and the
//! binding, so CloudTrail says which binding made each change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::assume::{AssumeTarget, AssumedRole, session_name};
use crate::aws::ratelimit::RateLimiter;
use crate::aws::{Aws, AwsError, RoleCache};
use crate::naming::BindingKey;

use super::Snapshot;
use super::cache::{Lookup, SnapshotCache};

/// The controller's name in role session names.
const CONTROLLER: &str = "instance-profile-controller";
/// A binding's session unused this long is dropped (its credentials are stale by then).
const SESSION_IDLE: Duration = Duration::from_secs(3600);

/// Every other account the policies have named so far.
pub struct Accounts {
    home: Aws,
    cluster_id: String,
    duration_seconds: u32,
    role_cache_ttl: Duration,
    map: Mutex<HashMap<AssumeTarget, Arc<Account>>>,
}

impl Accounts {
    #[must_use]
    pub fn new(
        home: Aws,
        cluster_id: String,
        duration_seconds: u32,
        role_cache_ttl: Duration,
    ) -> Self {
        Self {
            home,
            cluster_id,
            duration_seconds,
            role_cache_ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The account behind `target`, set up on first use (no AWS call yet).
    #[must_use]
    pub fn get(&self, target: &AssumeTarget) -> Arc<Account> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.entry(target.clone())
            .or_insert_with(|| {
                let limiter = self.home.fresh_limiter();
                let credentials = Arc::new(AssumedRole::new(
                    self.home.clone(),
                    target.clone(),
                    session_name(&[CONTROLLER, &self.cluster_id]),
                    self.duration_seconds,
                ));
                Arc::new(Account {
                    target: target.clone(),
                    aws: self
                        .home
                        .with_credentials(credentials.clone(), limiter.clone()),
                    credentials,
                    limiter,
                    roles: RoleCache::new(self.role_cache_ttl),
                    home: self.home.clone(),
                    duration_seconds: self.duration_seconds,
                    snapshots: SnapshotCache::new(None),
                    sessions: Mutex::new(HashMap::new()),
                })
            })
            .clone()
    }

    /// Drops the role session of a binding that is gone.
    pub fn forget(&self, key: &BindingKey) {
        let accounts: Vec<Arc<Account>> = match self.map.lock() {
            Ok(m) => m.values().cloned().collect(),
            Err(_) => return,
        };
        for a in accounts {
            a.forget(key);
        }
    }
}

type Session = (Instant, Aws, Arc<AssumedRole>);

/// One other account.
pub struct Account {
    pub target: AssumeTarget,
    /// Clients of the controller's own session in this account: bulk reads and role lookups.
    pub aws: Aws,
    credentials: Arc<AssumedRole>,
    limiter: Arc<RateLimiter>,
    pub roles: RoleCache,
    home: Aws,
    duration_seconds: u32,
    snapshots: SnapshotCache,
    sessions: Mutex<HashMap<BindingKey, Session>>,
}

impl Account {
    /// Clients whose role session names the binding. The session is assumed
    /// lazily, at the binding's first call that needs it (a write or a
    /// read-after-write), so a converged binding costs no AssumeRole; the
    /// account's own session, checked by [`Self::snapshot`], vouches that the
    /// role can be assumed at all.
    #[must_use]
    pub fn session(&self, key: &BindingKey) -> Aws {
        let mut sessions = match self.sessions.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        sessions.retain(|_, (used, _, _)| used.elapsed() < SESSION_IDLE);
        let entry = sessions.entry(key.clone()).or_insert_with(|| {
            let credentials = Arc::new(AssumedRole::new(
                self.home.clone(),
                self.target.clone(),
                session_name(&[CONTROLLER, &key.namespace, &key.name]),
                self.duration_seconds,
            ));
            let aws = self
                .home
                .with_credentials(credentials.clone(), self.limiter.clone());
            (Instant::now(), aws, credentials)
        });
        entry.0 = Instant::now();
        entry.1.clone()
    }

    /// The controller's own session works (credentials assumed).
    ///
    /// # Errors
    /// The AssumeRole error.
    pub async fn check(&self) -> Result<(), AwsError> {
        self.credentials.credentials().await.map(|_| ())
    }

    /// A snapshot of this account taken no earlier than `not_before` and
    /// covering `paths`; callers at the same time share one refresh.
    ///
    /// # Errors
    /// AWS errors of the listings (or of AssumeRole).
    pub async fn snapshot(
        &self,
        not_before: Instant,
        paths: &BTreeSet<String>,
    ) -> Result<Arc<Snapshot>, AwsError> {
        let refresh = match self.snapshots.lookup(Some(not_before), paths).await {
            Lookup::Fresh(s) => return Ok(s),
            Lookup::Stale(refresh) => refresh,
        };
        // A refresh lists again what the last one did: bindings under
        // different paths would otherwise take turns refreshing.
        let mut all = refresh.listed().clone();
        all.extend(paths.iter().cloned());
        self.check().await?;
        // Rivals are matched in the controller's own account only.
        refresh.take(&self.aws, all, Arc::default()).await
    }

    fn forget(&self, key: &BindingKey) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(key);
        }
    }
}
