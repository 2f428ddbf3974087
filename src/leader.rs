//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder
//! reconciles; a lease not renewed within its duration can be taken over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

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
