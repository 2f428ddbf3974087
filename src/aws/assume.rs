//! STS: who the caller is (`doctor`), and cross-account credentials
//! (docs/design.md §3, a policy's `spec.account`): AssumeRole from the
//! controller's own credentials, cached and refreshed before expiry.
//!
//! The controller's own credentials usually come from IRSA or EKS Pod Identity,
//! which are themselves an assumed role, so this is role chaining: AWS caps the
//! session at one hour and rejects a longer `DurationSeconds`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider};

use super::errors::from_sdk;
use super::ratelimit::{Family, RateLimiter};
use super::{Aws, AwsError, ErrorKind};

const STS: &str = "sts";

/// The longest session a chained AssumeRole may ask for.
pub const MAX_CHAINED_SESSION_SECONDS: u32 = 3600;
/// STS's shortest session.
pub const MIN_SESSION_SECONDS: u32 = 900;
/// Credentials closer than this to expiry are refreshed first.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// A role to assume, and how.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssumeTarget {
    pub role_arn: String,
    pub external_id: Option<String>,
}

impl AssumeTarget {
    /// The 12-digit account of the role ARN (`arn:aws:iam::ACCOUNT:role/…`).
    #[must_use]
    pub fn account_id(&self) -> &str {
        self.role_arn.split(':').nth(4).unwrap_or_default()
    }
}

/// A role session name from parts: `[\w+=,.@-]`, at most 64 characters; a long
/// name keeps its start and ends in a hash of the whole, so it stays distinct.
#[must_use]
pub fn session_name(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let raw = parts.join(".");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 64 {
        return clean;
    }
    let digest = Sha256::digest(raw.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}-{hash}", &clean[..55])
}

/// The identity behind the credentials in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// As STS reports it: an assumed-role session ARN for IRSA, Pod Identity
    /// and instance roles.
    pub arn: String,
}

impl CallerIdentity {
    /// The partition (`aws`, `aws-cn`, `aws-us-gov`) of the caller's ARN.
    #[must_use]
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or("aws")
    }
}

/// Credentials of one role session, assumed with the controller's own clients.
pub struct AssumedRole {
    home: Aws,
    target: AssumeTarget,
    session_name: String,
    duration_seconds: u32,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for AssumedRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssumedRole")
            .field("role_arn", &self.target.role_arn)
            .field("session_name", &self.session_name)
            .field("duration_seconds", &self.duration_seconds)
            .finish_non_exhaustive()
    }
}

impl AssumedRole {
    #[must_use]
    pub fn new(
        home: Aws,
        target: AssumeTarget,
        session_name: String,
        duration_seconds: u32,
    ) -> Self {
        Self {
            home,
            target,
            session_name,
            duration_seconds: duration_seconds
                .clamp(MIN_SESSION_SECONDS, MAX_CHAINED_SESSION_SECONDS),
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// Valid credentials: the cached ones, or a fresh AssumeRole when they
    /// are missing or expire within five minutes. One caller assumes at a time.
    ///
    /// # Errors
    /// The classified AssumeRole error (e.g. `AccessDenied` when the target
    /// role's trust policy or the external id does not let us in).
    pub async fn credentials(&self) -> Result<Credentials, AwsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expiry()
                .is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(c.clone());
        }
        let fresh = self
            .home
            .assume_role(&self.target, &self.session_name, self.duration_seconds)
            .await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }
}

impl ProvideCredentials for AssumedRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

impl Aws {
    /// `sts:GetCallerIdentity`: needs no permission, so an error here means
    /// the credentials or the network, never a policy.
    pub async fn caller_identity(&self) -> Result<CallerIdentity, AwsError> {
        let out = self
            .call(Family::IamRead, STS, "GetCallerIdentity", || async {
                self.sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| from_sdk(STS, "GetCallerIdentity", &e))
            })
            .await?;
        Ok(CallerIdentity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        })
    }

    /// `sts:AssumeRole` with this process's credentials.
    ///
    /// # Errors
    /// The classified STS error.
    pub async fn assume_role(
        &self,
        target: &AssumeTarget,
        session_name: &str,
        duration_seconds: u32,
    ) -> Result<Credentials, AwsError> {
        let duration =
            i32::try_from(duration_seconds.min(MAX_CHAINED_SESSION_SECONDS)).unwrap_or(3600);
        let out = self
            .call(Family::IamRead, STS, "AssumeRole", || async {
                self.sts
                    .assume_role()
                    .role_arn(&target.role_arn)
                    .role_session_name(session_name)
                    .duration_seconds(duration)
                    .set_external_id(target.external_id.clone())
                    .send()
                    .await
                    .map_err(|e| from_sdk(STS, "AssumeRole", &e))
            })
            .await?;
        let Some(c) = out.credentials() else {
            return Err(AwsError {
                kind: ErrorKind::Transient,
                service: STS,
                action: "AssumeRole",
                code: "NoCredentials".into(),
                message: format!(
                    "AssumeRole of {} answered without credentials",
                    target.role_arn
                ),
            });
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "AssumeRole",
        ))
    }

    /// Clients of another account: the same endpoint, region and retry
    /// settings, these credentials, their own rate limiter (AWS throttles per
    /// account), and this process's call log and metrics.
    #[must_use]
    pub fn with_credentials(
        &self,
        credentials: Arc<AssumedRole>,
        limiter: Arc<RateLimiter>,
    ) -> Self {
        let conf = self
            .conf
            .clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(ForwardProvider(credentials)))
            .build();
        Self::from_conf_with(
            &conf,
            self.limits,
            limiter,
            self.calls.clone(),
            self.metrics.clone(),
        )
    }

    /// A rate limiter with this process's limits, for another account.
    #[must_use]
    pub fn fresh_limiter(&self) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(self.limits))
    }
}

/// Lets an `Arc<AssumedRole>` be the SDK's credentials provider.
#[derive(Debug)]
struct ForwardProvider(Arc<AssumedRole>);

impl ProvideCredentials for ForwardProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.provide_credentials()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_valid_and_distinct() {
        let short = session_name(&["instance-profile-controller", "team-a", "web"]);
        assert_eq!(short, "instance-profile-controller.team-a.web");
        let long_a = session_name(&["instance-profile-controller", &"a".repeat(63), "x"]);
        let long_b = session_name(&["instance-profile-controller", &"a".repeat(63), "y"]);
        assert_eq!(long_a.len(), 64);
        assert_ne!(long_a, long_b);
        let odd = session_name(&["c", "ns", "n/a b"]);
        assert!(
            odd.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)),
            "{odd}"
        );
    }

    #[test]
    fn account_of_the_role_arn() {
        let t = AssumeTarget {
            role_arn: "arn:aws:iam::444455556666:role/ipb-controller".into(),
            external_id: None,
        };
        assert_eq!(t.account_id(), "444455556666");
    }

    #[test]
    fn partition_comes_from_the_arn() {
        let id = CallerIdentity {
            account: "1".into(),
            arn: "arn:aws-us-gov:sts::1:assumed-role/r/s".into(),
        };
        assert_eq!(id.partition(), "aws-us-gov");
    }
}
