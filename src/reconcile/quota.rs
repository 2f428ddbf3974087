//! Instance-profile quota headroom: IAM allows 1,000 instance profiles per
//! account by default. Before creating one, the engine checks the account's
//! usage (`GetAccountSummary`, read at most once per `max_age` and counted
//! forward from its own creates and deletes) and refuses, `QuotaExceeded`
//! with usage and quota named and no IAM write, when creating would leave
//! fewer than the configured reserve free.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::{Aws, AwsError, ErrorKind};

/// What is known of one account's profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub quota: u64,
}

impl Usage {
    /// Usage at or above this share of the quota draws a warning.
    pub const WARN_PERCENT: u64 = 90;

    #[must_use]
    pub fn nearly_full(self) -> bool {
        self.quota > 0 && self.used * 100 >= self.quota * Self::WARN_PERCENT
    }
}

/// Per account (keyed by the AssumeRole ARN; `""` for the home account).
/// Admission holds `known` across the summary read and the check, and
/// counts the admitted create at once, so concurrent bindings cannot all
/// take the last free slot.
#[derive(Default)]
pub struct Quota {
    known: tokio::sync::Mutex<HashMap<String, (Usage, Instant)>>,
}

/// Why a create was refused.
fn refused(usage: Usage, reserve: u64) -> AwsError {
    let reserve_note = if reserve > 0 {
        format!(" (--profile-quota-reserve keeps {reserve} free)")
    } else {
        String::new()
    };
    AwsError {
        kind: ErrorKind::QuotaExceeded,
        service: "iam",
        action: "CreateInstanceProfile",
        code: "QuotaReserve".into(),
        message: format!(
            "{} of {} instance profiles in use{reserve_note}; not creating one more",
            usage.used, usage.quota
        ),
    }
}

impl Quota {
    /// Whether one more profile may be created in `account` with `reserve`
    /// kept free: `Err(QuotaExceeded)` when not. Admitted, it counts as
    /// created until [`Quota::counted`] says otherwise. The account's
    /// usage is read when unknown or older than `max_age`.
    ///
    /// # Errors
    /// The refusal, or the summary could not be read.
    pub async fn admit_create(
        &self,
        aws: &Aws,
        account: &str,
        reserve: u64,
        max_age: Duration,
    ) -> Result<Usage, AwsError> {
        let mut known = self.known.lock().await;
        let usage = match known.get(account) {
            Some((usage, at)) if at.elapsed() <= max_age => *usage,
            _ => {
                let (used, quota) = aws.profile_usage().await?;
                let usage = Usage { used, quota };
                known.insert(account.to_string(), (usage, Instant::now()));
                usage
            }
        };
        if usage.used + 1 + reserve > usage.quota {
            return Err(refused(usage, reserve));
        }
        let admitted = Usage {
            used: usage.used + 1,
            ..usage
        };
        if let Some((u, _)) = known.get_mut(account) {
            *u = admitted;
        }
        Ok(admitted)
    }

    /// Corrects the count: `-1` for an admitted create that made nothing
    /// (failed, or adopted an existing profile) and for a profile deleted.
    pub async fn counted(&self, account: &str, delta: i64) {
        let mut known = self.known.lock().await;
        if let Some((usage, _)) = known.get_mut(account) {
            usage.used = usage.used.saturating_add_signed(delta);
        }
    }

    /// Every account's last known usage, for the gauges.
    pub async fn known(&self) -> Vec<(String, Usage)> {
        self.known
            .lock()
            .await
            .iter()
            .map(|(a, (u, _))| (a.clone(), *u))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_usage_quota_and_reserve() {
        let e = refused(
            Usage {
                used: 990,
                quota: 1000,
            },
            10,
        );
        assert_eq!(e.kind, ErrorKind::QuotaExceeded);
        assert!(e.message.contains("990 of 1000"), "{}", e.message);
        assert!(e.message.contains("keeps 10 free"), "{}", e.message);
    }

    #[test]
    fn nearly_full_from_ninety_percent() {
        assert!(
            !Usage {
                used: 899,
                quota: 1000
            }
            .nearly_full()
        );
        assert!(
            Usage {
                used: 900,
                quota: 1000
            }
            .nearly_full()
        );
        assert!(!Usage { used: 0, quota: 0 }.nearly_full());
    }
}
