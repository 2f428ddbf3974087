//! The only code that talks to AWS. Every call goes through [`Aws::call`], which
//! applies the client-side rate limit of its family, classifies errors
//! (docs/design.md §5) and counts the call.

pub mod assume;
pub mod ec2;
pub mod errors;
pub mod iam;
pub mod ratelimit;
pub mod sqs;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

pub use errors::{AwsError, ErrorKind};
use ratelimit::{Family, Limits, RateLimiter};

use crate::metrics::Metrics;

/// An IAM instance profile as listed (roles included, tags only when read with Get).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub id: String,
    pub roles: Vec<RoleRef>,
    /// `None` when the profile was listed (List does not return tags).
    pub tags: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRef {
    pub name: String,
    pub arn: String,
}

/// A role with what the pipeline needs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleInfo {
    pub name: String,
    pub arn: String,
    /// The trust policy lets `ec2.amazonaws.com` call `sts:AssumeRole`.
    pub trusts_ec2: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssociationState {
    Associating,
    Associated,
    Disassociating,
    Disassociated,
}

impl AssociationState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Associating => "associating",
            Self::Associated => "associated",
            Self::Disassociating => "disassociating",
            Self::Disassociated => "disassociated",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "associating" => Self::Associating,
            "disassociating" => Self::Disassociating,
            "disassociated" => Self::Disassociated,
            _ => Self::Associated,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub instance_id: String,
    pub profile_arn: String,
    pub profile_id: String,
    pub state: AssociationState,
}

impl Association {
    /// The profile name, the last segment of its ARN.
    #[must_use]
    pub fn profile_name(&self) -> &str {
        self.profile_arn.rsplit('/').next().unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Pending,
    Running,
    Stopping,
    Stopped,
    ShuttingDown,
    Terminated,
}

impl RunState {
    fn parse(s: &str) -> Self {
        match s {
            "pending" => Self::Pending,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            _ => Self::Running,
        }
    }

    /// Whether EC2 can swap the profile of a live instance (Replace), or the
    /// association has to be removed and made anew.
    #[must_use]
    pub fn replaceable(self) -> bool {
        matches!(self, Self::Running | Self::Pending)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub state: RunState,
    pub tags: BTreeMap<String, String>,
}

/// How to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub limits: Limits,
    pub max_attempts: Option<u32>,
}

/// Calls made by this process: (service, action) → (ok, failed).
type CallCounts = BTreeMap<(&'static str, &'static str), (u64, u64)>;

#[derive(Default)]
pub struct CallLog {
    counts: Mutex<CallCounts>,
}

impl CallLog {
    fn record(&self, service: &'static str, action: &'static str, ok: bool) {
        if let Ok(mut c) = self.counts.lock() {
            let e = c.entry((service, action)).or_default();
            if ok {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }

    /// Calls per action, successful and failed.
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<String, (u64, u64)> {
        self.counts
            .lock()
            .map(|c| c.iter().map(|((_, a), v)| ((*a).to_string(), *v)).collect())
            .unwrap_or_default()
    }

    /// One line: `Action=ok[/failed] …`, for `--verbose` and debug logs.
    #[must_use]
    pub fn summary(&self) -> String {
        let snap = self.snapshot();
        if snap.is_empty() {
            return "no AWS calls".into();
        }
        let total: u64 = snap.values().map(|(o, e)| o + e).sum();
        let parts: Vec<String> = snap
            .iter()
            .map(|(a, (ok, err))| {
                if *err > 0 {
                    format!("{a}={ok}/{err} failed")
                } else {
                    format!("{a}={ok}")
                }
            })
            .collect();
        format!("{total} AWS calls: {}", parts.join(" "))
    }
}

/// Actions that change AWS state (`AssumeRole` only hands out credentials).
#[must_use]
pub fn is_mutating(action: &str) -> bool {
    !(action.starts_with("List")
        || action.starts_with("Get")
        || action.starts_with("Describe")
        || action.starts_with("Simulate")
        || action == "AssumeRole")
}

/// The AWS clients of one account, with rate limits and call accounting.
#[derive(Clone)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub sts: aws_sdk_sts::Client,
    /// The event queue's client (`run --event-queue`), with a per-attempt
    /// timeout above SQS's 20 s long poll.
    pub sqs: aws_sdk_sqs::Client,
    limiter: Arc<RateLimiter>,
    limits: Limits,
    pub calls: Arc<CallLog>,
    metrics: Arc<Metrics>,
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
    /// The configuration the clients were built from (for other accounts' clients).
    conf: aws_config::SdkConfig,
    /// A region came from the flags or the SDK's chain (else us-east-1 was assumed).
    region_found: bool,
}

impl Aws {
    /// Builds clients from the SDK's default credential chain.
    pub async fn connect(settings: &AwsSettings, metrics: Arc<Metrics>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                // Standard mode: jittered exponential retries of throttling, 5xx and
                // dropped connections. The slow-down after throttling is our
                // limiter's (SDK adaptive mode stalls for seconds at low request rates).
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts.unwrap_or(4))
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(20))
                    .operation_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        let conf = loader.load().await;
        Self::from_conf(&conf, settings.limits, metrics)
    }

    #[must_use]
    pub fn from_conf(conf: &aws_config::SdkConfig, limits: Limits, metrics: Arc<Metrics>) -> Self {
        let mut conf = conf.clone();
        let region_found = conf.region().is_some();
        if !region_found {
            // IAM is global; EC2 needs a region, and a clear error later beats
            // none. `run` refuses to start without one (see `region_found`).
            conf = conf.into_builder().region(Region::new("us-east-1")).build();
        }
        let mut aws = Self::from_conf_with(
            &conf,
            limits,
            Arc::new(RateLimiter::new(limits)),
            Arc::new(CallLog::default()),
            metrics,
        );
        aws.region_found = region_found;
        aws
    }

    /// Whether a region was configured (flag, environment, profile or IMDS).
    #[must_use]
    pub fn region_found(&self) -> bool {
        self.region_found
    }

    fn from_conf_with(
        conf: &aws_config::SdkConfig,
        limits: Limits,
        limiter: Arc<RateLimiter>,
        calls: Arc<CallLog>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            iam: aws_sdk_iam::Client::new(conf),
            ec2: aws_sdk_ec2::Client::new(conf),
            sts: aws_sdk_sts::Client::new(conf),
            sqs: sqs::client(conf),
            limits,
            limiter,
            calls,
            metrics,
            credentials: conf.credentials_provider(),
            conf: conf.clone(),
            region_found: conf.region().is_some(),
        }
    }

    /// Resolves credentials once, so a missing chain fails at start, not at the first call.
    ///
    /// # Errors
    /// The credential chain's error.
    pub async fn check_credentials(&self) -> Result<(), String> {
        use aws_credential_types::provider::ProvideCredentials;
        let Some(provider) = &self.credentials else {
            return Err("no credentials provider configured".into());
        };
        provider
            .provide_credentials()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Runs one AWS call: rate limit, classify, count.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        family: Family,
        service: &'static str,
        action: &'static str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        // A new profile's propagation starts with its creation: creates go
        // before the other IAM writes waiting, so every clock starts early.
        if action == "CreateInstanceProfile" {
            self.limiter.acquire_first(family).await;
        } else {
            self.limiter.acquire(family).await;
        }
        let result = self.counted(service, action, f).await;
        if let Err(e) = &result
            && e.kind == ErrorKind::Throttled
        {
            self.limiter.throttled(family).await;
        }
        result
    }

    /// Runs one AWS call outside the rate limits (the event queue's, which
    /// spends no IAM or EC2 budget): classify, count.
    pub(crate) async fn counted<T, F, Fut>(
        &self,
        service: &'static str,
        action: &'static str,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let result = f().await;
        match &result {
            Ok(_) => {
                self.calls.record(service, action, true);
                self.metrics.record_aws_call(service, action, "ok");
            }
            Err(e) => {
                self.calls.record(service, action, false);
                self.metrics.record_aws_call(service, action, &e.code);
                tracing::debug!(service, action, code = %e.code, kind = ?e.kind, "AWS call failed");
            }
        }
        result
    }
}

type CachedRole = (tokio::time::Instant, Result<RoleInfo, AwsError>);

/// A short-lived cache of role lookups, so many bindings of one role cost one `GetRole`.
pub struct RoleCache {
    ttl: Duration,
    /// Misses look up one at a time, so many bindings of one role cost one call.
    pub(crate) lookup: tokio::sync::Mutex<()>,
    entries: Mutex<HashMap<String, CachedRole>>,
}

impl RoleCache {
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            lookup: tokio::sync::Mutex::new(()),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<Result<RoleInfo, AwsError>> {
        let entries = self.entries.lock().ok()?;
        let (at, value) = entries.get(name)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn put(&self, name: &str, value: Result<RoleInfo, AwsError>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            entries.insert(name.to_string(), (tokio::time::Instant::now(), value));
        }
    }
}
