//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder
//! reconciles; a lease not renewed within its duration can be taken over.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::time::Instant;

/// This replica's name in the Lease: the pod's name, else the host's and the process id.
#[must_use]
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            format!(
                "{}-{}",
                if host.is_empty() {
                    "instance-profile-controller"
                } else {
                    &host
                },
                std::process::id()
            )
        })
}

/// The Lease's namespace: `flag` (--lease-namespace), else the pod's, else `default`.
#[must_use]
pub fn lease_namespace(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "default".into())
}

/// Waits for the lease, then renews it in a background task until `shutdown`
/// or until it is lost. `None`: shutdown came first.
pub async fn hold(
    elector: LeaderElector,
    mut shutdown: watch::Receiver<bool>,
) -> Option<Leadership> {
    tracing::info!(identity = %elector.identity(), lease = %elector.name, "waiting for leadership");
    loop {
        if *shutdown.borrow() {
            return None;
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::select! {
            () = tokio::time::sleep(elector.retry_period()) => {},
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
    tracing::info!(identity = %elector.identity(), "became leader");
    let elector = Arc::new(elector);
    let (lost, lost_rx) = watch::channel(false);
    tokio::spawn(renew(elector.clone(), shutdown, lost));
    Some(Leadership {
        elector,
        lost: lost_rx,
    })
}

/// Renews the lease every retry period until shutdown; says `lost` when
/// another replica took it, or when renewing failed for a whole lease duration.
async fn renew(
    elector: Arc<LeaderElector>,
    mut shutdown: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) {
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(elector.retry_period()) => {},
            _ = shutdown.changed() => return,
        }
        match elector.try_acquire_or_renew().await {
            Ok(true) => last_ok = Instant::now(),
            Ok(false) => {
                tracing::error!("leadership lost to another replica; stopping");
                lost.send_replace(true);
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the lease");
                if last_ok.elapsed() > elector.duration {
                    lost.send_replace(true);
                    return;
                }
            }
        }
    }
}

/// The lease, held: renewed in the background until shutdown or loss.
pub struct Leadership {
    elector: Arc<LeaderElector>,
    lost: watch::Receiver<bool>,
}

impl Leadership {
    /// Resolves when the lease is lost.
    pub fn lost(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut lost = self.lost.clone();
        async move {
            // Renewing ended without a loss (shutdown): never.
            if lost.wait_for(|l| *l).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether the lease was lost.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Gives the lease up so another replica takes over at once.
    pub async fn release(self) {
        if let Err(e) = self.elector.release().await {
            tracing::warn!(error = %e, "cannot release the lease");
        } else {
            tracing::info!("lease released");
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElector {
    #[must_use]
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            duration,
        }
    }

    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How often the holder renews and a candidate retries.
    #[must_use]
    pub fn retry_period(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(200))
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: jiff::Timestamp) -> LeaseSpec {
        let ours =
            previous.is_some_and(|p| p.holder_identity.as_deref() == Some(self.identity.as_str()));
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs().max(1)).unwrap_or(15),
            ),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if ours || previous.is_none() {
                transitions
            } else {
                transitions + 1
            }),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the lease. `Ok(true)` while we hold it.
    ///
    /// # Errors
    /// API errors other than losing a race (409), which is `Ok(false)`.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(None, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.as_deref().unwrap_or_default();
        if !holder.is_empty() && holder != self.identity && !expired(&current, now) {
            return Ok(false);
        }
        lease.spec = Some(self.spec(Some(&current), now));
        // The resourceVersion in `lease` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so another replica takes over at once.
    ///
    /// # Errors
    /// API errors.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

fn expired(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    let Some(renew) = spec.renew_time.as_ref() else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_second() > renew.0.as_second() + secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_renew_time_and_duration() {
        let now = jiff::Timestamp::from_second(1_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let fresh = LeaseSpec {
            renew_time: Some(MicroTime(
                jiff::Timestamp::from_second(990).unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            )),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&fresh, now));
        let stale = LeaseSpec {
            lease_duration_seconds: Some(5),
            ..fresh.clone()
        };
        assert!(expired(&stale, now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
