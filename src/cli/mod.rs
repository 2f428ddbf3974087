//! Command-line flags (each also from an environment variable).
//!
//! Flags come in groups, each flattened only into the subcommands that use
//! it, so `--help` lists only what a subcommand reads: [`NamingArgs`],
//! [`AwsArgs`] (with [`RateLimitArgs`]), [`EngineArgs`] (everything that
//! reconciles: `run`, `plan`, `apply`), [`KubeArgs`] (what talks to the
//! cluster: `run`, `doctor --binding`) and [`LogArgs`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use std::sync::Arc;

use crate::aws::ratelimit::{Limit, Limits};
use crate::aws::{Aws, AwsSettings};
use crate::filemode::Output;
use crate::metrics::Metrics;
use crate::naming;
use crate::reconcile::EngineConfig;

mod values;
pub use values::{
    MAX_DURATION, SessionError, parse_binding_ref, parse_duration, parse_event_queue,
    parse_instance_id, parse_profile_name, session_seconds,
};

#[derive(Parser, Debug)]
#[command(
    name = "instance-profile-controller",
    version,
    about = "Keeps EC2 instance profiles in the state InstanceProfileBinding resources declare",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `doctor --help`'s exit codes.
const DOCTOR_EXIT_CODES: &str = "\
Exit codes:
  0  every check passed (warnings allowed)
  1  a check found a problem
  2  doctor could not run: a usage error (an unknown or malformed flag, no
     target or more than one, a file that cannot be read or does not hold
     exactly one binding), no AWS credentials, or AWS or the cluster could
     not be reached";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller in a cluster.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (YAML, `---` separated).
    Crd,
    /// Print the AWS changes that reconciling the bindings in files would make; change nothing.
    /// Exit 0: nothing to change, 2: changes, 1: error.
    Plan(PlanArgs),
    /// Reconcile the bindings in files once, without a cluster, and wait until each is Ready or failed.
    Apply(ApplyArgs),
    /// Run AWS's troubleshooting checklist for one binding, instance or instance profile; change nothing.
    /// Exit 0: no problem, 1: a check found a problem, 2: doctor could not run.
    #[command(after_help = DOCTOR_EXIT_CODES)]
    Doctor(DoctorArgs),
}

impl Command {
    /// The logging flags; `None` for `crd`, which logs nothing.
    #[must_use]
    pub fn log(&self) -> Option<&LogArgs> {
        match self {
            Self::Run(a) => Some(&a.log),
            Self::Plan(a) => Some(&a.log),
            Self::Apply(a) => Some(&a.log),
            Self::Doctor(a) => Some(&a.log),
            Self::Crd => None,
        }
    }
}

/// The exit code of an error before a subcommand could run (a usage error,
/// a bad flag value): 2 for `doctor`, where 1 means "a check found a
/// problem", 1 for every other subcommand (`plan` uses 2 for "changes").
#[must_use]
pub fn usage_error_code(subcommand: Option<&std::ffi::OsStr>) -> u8 {
    if subcommand.is_some_and(|s| s == "doctor") {
        2
    } else {
        1
    }
}

/// What names this cluster's instance profiles.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Cluster naming")]
pub struct NamingArgs {
    /// Identifies this cluster: part of profile names, tags and the IAM path.
    #[arg(long, env = "IPB_CLUSTER_ID", default_value = "default")]
    pub cluster_id: String,
    /// IAM path prefix; profiles live at <prefix><cluster-id>/.
    #[arg(long, env = "IPB_PROFILE_PATH_PREFIX", default_value = "/ipb/")]
    pub profile_path_prefix: String,
}

impl NamingArgs {
    /// The cluster id and the normalized path prefix, checked.
    ///
    /// # Errors
    /// A bad cluster id or path prefix, naming the flag.
    pub fn checked(&self) -> Result<(String, String), crate::Error> {
        naming::validate_cluster_id(&self.cluster_id)
            .map_err(|e| crate::Error::Config(format!("--cluster-id: {e}")))?;
        let path_prefix = naming::normalize_path_prefix(&self.profile_path_prefix)
            .map_err(|e| crate::Error::Config(format!("--profile-path-prefix: {e}")))?;
        Ok((self.cluster_id.clone(), path_prefix))
    }
}

/// Where AWS is and how fast to call it.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// AWS region (else the SDK's default chain).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// AWS endpoint URL override, e.g. a local moto server.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    #[command(flatten)]
    pub rate_limits: RateLimitArgs,
}

impl AwsArgs {
    /// AWS clients from the SDK's default chain and these flags.
    pub async fn connect(&self, metrics: Arc<Metrics>) -> Aws {
        let settings = AwsSettings {
            region: self.region.clone(),
            endpoint_url: self.aws_endpoint_url.clone(),
            limits: self.rate_limits.limits(),
            max_attempts: None,
        };
        Aws::connect(&settings, metrics).await
    }
}

/// Client-side rate limits of AWS calls.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "AWS rate limits")]
pub struct RateLimitArgs {
    /// Client-side rate limit of IAM reads, RATE[:BURST] per second.
    #[arg(long, env = "IPB_RATE_LIMIT_IAM_READ", default_value = "10:20")]
    pub rate_limit_iam_read: Limit,
    /// Client-side rate limit of IAM writes, RATE[:BURST] per second.
    #[arg(long, env = "IPB_RATE_LIMIT_IAM_WRITE", default_value = "5:10")]
    pub rate_limit_iam_write: Limit,
    /// Client-side rate limit of EC2 reads, RATE[:BURST] per second.
    #[arg(long, env = "IPB_RATE_LIMIT_EC2_READ", default_value = "10:50")]
    pub rate_limit_ec2_read: Limit,
    /// Client-side rate limit of EC2 writes, RATE[:BURST] per second.
    #[arg(long, env = "IPB_RATE_LIMIT_EC2_WRITE", default_value = "5:20")]
    pub rate_limit_ec2_write: Limit,
}

impl RateLimitArgs {
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits {
            iam_read: self.rate_limit_iam_read,
            iam_write: self.rate_limit_iam_write,
            ec2_read: self.rate_limit_ec2_read,
            ec2_write: self.rate_limit_ec2_write,
        }
    }
}

/// The flags of the subcommands that reconcile: `run`, `plan`, `apply`.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    #[command(flatten)]
    pub naming: NamingArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Session length, in seconds, of the AssumeRole into another account (a
    /// policy's `spec.account`): 900 to 3600. Credentials from IRSA or Pod
    /// Identity are an assumed role already, so this is role chaining, which
    /// AWS caps at one hour.
    #[arg(
        long,
        env = "IPB_ASSUME_ROLE_DURATION_SECONDS",
        default_value = "3600",
        help_heading = "AWS"
    )]
    pub assume_role_duration_seconds: String,
    /// Bindings reconciled at once.
    #[arg(long, env = "IPB_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256), help_heading = "Reconciling")]
    pub concurrency: u16,
    /// How long a role lookup (GetRole) is reused.
    #[arg(long, env = "IPB_ROLE_CACHE_TTL", default_value = "60s", value_parser = parse_duration, help_heading = "Reconciling")]
    pub role_cache_ttl: Duration,
    /// Instance profiles to keep free of the account's quota (IAM allows
    /// 1,000 by default): creating one that would leave fewer is refused
    /// with QuotaExceeded, naming usage and quota, before IAM refuses it.
    #[arg(
        long,
        env = "IPB_PROFILE_QUOTA_RESERVE",
        default_value_t = 0,
        help_heading = "Reconciling"
    )]
    pub profile_quota_reserve: u64,
}

impl EngineArgs {
    /// The engine settings, checked.
    ///
    /// # Errors
    /// A bad cluster id, path prefix or session length, naming the flag.
    pub fn engine_config(&self) -> Result<EngineConfig, crate::Error> {
        let (cluster_id, path_prefix) = self.naming.checked()?;
        Ok(EngineConfig {
            cluster_id,
            path_prefix,
            role_cache_ttl: self.role_cache_ttl,
            assume_role_seconds: self.assume_role_seconds()?,
            profile_quota_reserve: self.profile_quota_reserve,
            quota_max_age: crate::reconcile::model::QUOTA_MAX_AGE,
        })
    }

    /// The cross-account session length, checked against STS's limits.
    ///
    /// # Errors
    /// A value that is not a number of seconds within 900..=3600.
    pub fn assume_role_seconds(&self) -> Result<u32, crate::Error> {
        let raw = self.assume_role_duration_seconds.trim();
        session_seconds(raw).map_err(|why| {
            crate::Error::Config(format!(
                "--assume-role-duration-seconds (IPB_ASSUME_ROLE_DURATION_SECONDS) {raw:?}: {why}"
            ))
        })
    }

    /// AWS clients from the SDK's default chain and these flags.
    pub async fn connect(&self, metrics: Arc<Metrics>) -> Aws {
        self.aws.connect(metrics).await
    }

    #[must_use]
    pub fn limits(&self) -> Limits {
        self.aws.rate_limits.limits()
    }
}

/// Logging, for every subcommand that logs.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Logging")]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "IPB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// error, warn, info, debug, trace, or an EnvFilter directive.
    #[arg(long, env = "IPB_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Default for LogArgs {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_level: "info".into(),
        }
    }
}

/// Which Kubernetes API server to talk to, the way kubectl chooses it.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubeArgs {
    /// Path to the kubeconfig file to use (default: the files in KUBECONFIG,
    /// else ~/.kube/config, else the pod's in-cluster service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

impl KubeArgs {
    /// A client for the API server these flags select, checked by asking
    /// the server its version, so a wrong context or an unreachable server
    /// is reported here, naming both, not at the first real request.
    ///
    /// # Errors
    /// A message naming the kubeconfig, the context and the server.
    pub async fn client(&self) -> Result<kube::Client, String> {
        let (config, source) = self.config().await?;
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| format!("{source}: {e}"))?;
        client.apiserver_version().await.map_err(|e| {
            // With its causes: "client error (Connect)" alone does not say
            // "connection refused" or "certificate".
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                let c_text = c.to_string();
                if !why.contains(&c_text) {
                    why = format!("{why}: {c_text}");
                }
                cause = c.source();
            }
            format!("cannot reach the Kubernetes API server {server} ({source}): {why}")
        })?;
        Ok(client)
    }

    /// The client configuration these flags select, and where it came from
    /// (for messages). Without either flag, as kubectl and `kube`'s
    /// `Config::infer`: KUBECONFIG, else ~/.kube/config, else in-cluster.
    ///
    /// # Errors
    /// A message naming the flag, file or context that is wrong.
    pub async fn config(&self) -> Result<(kube::Config, String), String> {
        use kube::config::{KubeConfigOptions, Kubeconfig};
        if self.kubeconfig.is_none() && self.context.is_none() {
            let config = kube::Config::infer().await.map_err(|e| {
                format!(
                    "no kubeconfig or in-cluster configuration ({e}); pass --kubeconfig, set KUBECONFIG or run inside a cluster"
                )
            })?;
            return Ok((
                config,
                "the default kubeconfig or in-cluster configuration".into(),
            ));
        }
        let (kubeconfig, file) = match &self.kubeconfig {
            Some(path) => (
                Kubeconfig::read_from(path)
                    .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?,
                path.display().to_string(),
            ),
            None => (
                Kubeconfig::read().map_err(|e| {
                    format!("--context needs a kubeconfig and none could be read ({e}); pass --kubeconfig or set KUBECONFIG")
                })?,
                std::env::var("KUBECONFIG")
                    .ok()
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "~/.kube/config".into()),
            ),
        };
        let context = match &self.context {
            Some(name) => {
                if !kubeconfig.contexts.iter().any(|c| &c.name == name) {
                    let known: Vec<&str> = kubeconfig
                        .contexts
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    return Err(format!(
                        "--context {name:?}: {file} has no such context (it has: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
                name.clone()
            }
            None => kubeconfig.current_context.clone().unwrap_or_default(),
        };
        let options = KubeConfigOptions {
            context: self.context.clone(),
            cluster: None,
            user: None,
        };
        let source = format!("context {context:?} of kubeconfig {file}");
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| format!("{source}: {e}"))?;
        config.apply_debug_overrides();
        Ok((config, source))
    }
}

#[derive(Args, Debug, Clone)]
pub struct FileArgs {
    /// Binding files or directories (YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Prune: the instance profiles this cluster id owns whose binding is not
    /// in the files (help set per subcommand).
    #[arg(long)]
    pub prune: bool,
    /// --prune even when the files hold no binding (help set per subcommand).
    #[arg(long)]
    pub prune_all: bool,
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Output,
    /// Print AWS calls per action on standard error.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Args, Debug, Clone)]
#[command(
    mut_arg("prune", |a| a.help(
        "Also show the deletions `apply --prune` would make: the instance profiles this cluster id owns whose binding is not in the files. Refused when the files hold no binding (see --prune-all)"
    )),
    mut_arg("prune_all", |a| a.help(
        "--prune even when the files hold no binding: shows deleting every instance profile this cluster id owns"
    )),
)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone)]
#[command(
    mut_arg("prune", |a| a.help(
        "Also DELETE the instance profiles this cluster id owns whose binding is not in the files (wherever their path), through the safe deletion path. Refused when the files hold no binding (see --prune-all)"
    )),
    mut_arg("prune_all", |a| a.help(
        "--prune even when the files hold no binding: DELETES every instance profile this cluster id owns"
    )),
)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Give up waiting for Ready after this long (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch and reconcile only the bindings in this namespace, like kubectl's
    /// -n (default: all namespaces, like kubectl's -A; the kubeconfig
    /// context's namespace is not used). The leader-election Lease's
    /// namespace is --lease-namespace.
    #[arg(
        short = 'n',
        long,
        env = "IPB_NAMESPACE",
        value_name = "NAMESPACE",
        help_heading = "Kubernetes"
    )]
    pub namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "IPB_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// Reconcile every binding this often even without changes: the only
    /// trigger for AWS-side changes without --event-queue, the safety net with it.
    #[arg(long, env = "IPB_RESYNC_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// Run without leader election (only one replica may run then).
    #[arg(long, env = "IPB_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "IPB_LEASE_NAME",
        default_value = "instance-profile-controller"
    )]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "IPB_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Deny bindings no InstanceProfilePolicy allows (`false` only for single-tenant clusters).
    #[arg(long, env = "IPB_REQUIRE_POLICY", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub require_policy: bool,
    /// How long a leader's lease lasts without renewal.
    #[arg(long, env = "IPB_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// Watch Nodes, so bindings can select instances by
    /// `spec.instances.nodeSelector` (needs get/list/watch on nodes).
    #[arg(long, env = "IPB_WATCH_NODES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", help_heading = "Kubernetes")]
    pub watch_nodes: bool,
    /// How often to look for orphaned instance profiles: this cluster id's,
    /// whose binding is gone (0 turns the sweep off).
    #[arg(long, env = "IPB_ORPHAN_SWEEP_INTERVAL", default_value = "30m", value_parser = parse_duration, help_heading = "Orphan sweep")]
    pub orphan_sweep_interval: Duration,
    /// What the sweep does with an orphan: report it (a metric, a log line)
    /// or, after --orphan-grace, delete it through the safe deletion path.
    #[arg(
        long,
        env = "IPB_ORPHAN_SWEEP",
        value_enum,
        default_value = "report",
        help_heading = "Orphan sweep"
    )]
    pub orphan_sweep: OrphanSweep,
    /// How long an orphan must have been seen before the sweep deletes it
    /// (so a binding restored from a backup is not raced).
    #[arg(long, env = "IPB_ORPHAN_GRACE", default_value = "1h", value_parser = parse_duration, help_heading = "Orphan sweep")]
    pub orphan_grace: Duration,
    /// An SQS queue (name or URL) that EventBridge rules fill with EC2
    /// state changes and CloudTrail profile and association calls: the
    /// bindings they concern reconcile within seconds instead of at the next
    /// resync (docs/events.md). Empty: off.
    #[arg(long, env = "IPB_EVENT_QUEUE", value_name = "NAME_OR_URL", default_value = "", hide_default_value = true, value_parser = parse_event_queue, help_heading = "Events")]
    pub event_queue: String,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// `--orphan-sweep`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OrphanSweep {
    Report,
    Delete,
}

#[derive(Args, Debug, Clone)]
#[command(group(
    clap::ArgGroup::new("target")
        .required(true)
        .args(["binding", "filename", "instance", "instance_profile"])
))]
pub struct DoctorArgs {
    /// A binding in the cluster, read through the kubeconfig (see --kubeconfig, --context).
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_binding_ref)]
    pub binding: Option<naming::BindingKey>,
    /// A file holding one binding.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub filename: Option<PathBuf>,
    /// An EC2 instance, managed by the controller or not.
    #[arg(long, value_name = "ID", value_parser = parse_instance_id)]
    pub instance: Option<String>,
    /// An EC2 instance profile, by name (not an AWS CLI credentials profile).
    // `--profile`, its name until 0.1, still works for one release, hidden from --help.
    #[arg(long = "instance-profile", alias = "profile", value_name = "NAME", value_parser = parse_profile_name)]
    pub instance_profile: Option<String>,
    /// Simulate this principal's permissions instead of the caller's, e.g. the controller's role ARN.
    #[arg(long, value_name = "ARN")]
    pub principal_arn: Option<String>,
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: Output,
    /// Print AWS calls per action on standard error.
    #[arg(short, long)]
    pub verbose: bool,
    /// The cross-account session length the controller is configured with
    /// (run's --assume-role-duration-seconds), judged by check 7 with the
    /// controller's own rule. Unset: no chained session is configured.
    #[arg(long, env = "IPB_ASSUME_ROLE_DURATION_SECONDS", help_heading = "AWS")]
    pub assume_role_duration_seconds: Option<String>,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub naming: NamingArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl DoctorArgs {
    /// The settings doctor reads: the cluster id and path prefix, checked.
    /// The other fields are the defaults; doctor does not use them (it
    /// judges `--assume-role-duration-seconds` as one of its checks instead
    /// of refusing to run).
    ///
    /// # Errors
    /// A bad cluster id or path prefix, naming the flag.
    pub fn engine_config(&self) -> Result<EngineConfig, crate::Error> {
        let (cluster_id, path_prefix) = self.naming.checked()?;
        Ok(EngineConfig {
            cluster_id,
            path_prefix,
            role_cache_ttl: Duration::from_secs(60),
            assume_role_seconds: crate::aws::assume::MAX_CHAINED_SESSION_SECONDS,
            profile_quota_reserve: 0,
            quota_max_age: crate::reconcile::model::QUOTA_MAX_AGE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for extreme in [
            "18446744073709551615",
            "10000000000000000000s10000000000000000000s",
            "8761h",
            "1e400s",
        ] {
            let err = parse_duration(extreme).expect_err(extreme);
            assert!(
                err.contains("out of range") || err.contains("invalid"),
                "{err}"
            );
        }
    }

    #[test]
    fn doctor_target_values_are_checked() {
        let key = naming::BindingKey {
            namespace: "team-a".into(),
            name: "web".into(),
        };
        assert_eq!(parse_binding_ref("team-a/web"), Ok(key));
        for bad in ["web", "/web", "team-a/", "a/b/c"] {
            assert!(parse_binding_ref(bad).is_err(), "{bad}");
        }
        assert!(parse_instance_id("i-0123456789abcdef0").is_ok());
        assert!(parse_instance_id("i-01234567").is_ok());
        assert!(parse_instance_id("i-xyz").is_err());
        assert!(parse_instance_id("0123456789abcdef0").is_err());
        assert!(parse_profile_name("ipb-team-a.web-0123").is_ok());
        assert!(parse_profile_name("bad name").is_err());
        assert!(parse_profile_name("").is_err());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
