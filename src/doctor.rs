//! `doctor` (docs/design.md §7): AWS's troubleshooting checklist for one binding,
//! instance or instance profile. [`gather`] reads everything up front, with
//! read-only calls only, into [`Facts`]; each check is a pure function from
//! facts to [`Finding`]s; the report renders as text or JSON. Exit 0 when no
//! finding is a problem, 1 when one is, 2 when doctor itself could not run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::aws::assume::CallerIdentity;
use crate::aws::iam::SimulatedDecision;
use crate::aws::{Association, AssociationState, Aws, AwsError, ErrorKind, Instance, Profile};
use crate::aws::{RoleInfo, RunState};
use crate::cli::{DoctorArgs, KubeArgs};
use crate::crd::{
    InstanceProfileBinding, InstanceProfileBindingSpec, InstanceProfileBindingStatus,
};
use crate::filemode::Output;
use crate::metrics::Metrics;
use crate::naming::{self, BindingKey};
use crate::reconcile::role::{near_match, role_name};
use crate::reconcile::{EngineConfig, Reason, selector_of};

/// The controller's IAM policy, as shipped: check 6 simulates every action in it.
const CONTROLLER_POLICY: &str = include_str!("../deploy/iam-policy.json");
/// Statements whose `Sid` starts with this grant what only optional features use.
const OPTIONAL_SID_PREFIX: &str = "Optional";
/// Environment variable naming the session length of a chained AssumeRole.
pub const SESSION_DURATION_ENV: &str = "IPB_ASSUME_ROLE_DURATION_SECONDS";
/// Role chaining caps a session at one hour; STS's floor is 15 minutes.
const MAX_CHAINED_SESSION_SECONDS: u64 = 3600;
const MIN_SESSION_SECONDS: u64 = 900;
/// Other profiles whose tags are read when looking for a binding's duplicates.
const DUPLICATE_SCAN_LIMIT: usize = 100;
/// An instance id to simulate EC2 actions on when no instance is known.
const EXAMPLE_INSTANCE: &str = "i-0123456789abcdef0";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Problem,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "WARNING",
            Self::Problem => "PROBLEM",
        }
    }
}

/// The checks, in the order they run (issue #8's numbering after `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// What the controller itself reports in the binding's status (`--binding`).
    Status,
    /// 1. The profile exists; its path and ownership tags; duplicates.
    Profile,
    /// 2. It holds exactly one role, and which.
    ProfileRole,
    /// 3. The role exists; a case-insensitive near match when it does not.
    Role,
    /// 4. The role's trust policy lets EC2 assume it.
    TrustPolicy,
    /// 5. Each instance's association, its state and profile id.
    Association,
    /// 6. The controller's own permissions, by the policy simulator.
    Permissions,
    /// 7. A chained role session asks for at most 3600 s.
    SessionDuration,
}

impl Check {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Profile => "profile",
            Self::ProfileRole => "profile-role",
            Self::Role => "role",
            Self::TrustPolicy => "trust-policy",
            Self::Association => "association",
            Self::Permissions => "permissions",
            Self::SessionDuration => "session-duration",
        }
    }
}

/// One result of one check: what was found, the evidence, and the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub summary: String,
    /// Ids, names and AWS error codes the summary rests on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, String>,
    /// What to do, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The condition reason the controller reports for the same state
    /// (docs/troubleshooting.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Finding {
    fn new(check: Check, severity: Severity, summary: impl Into<String>) -> Self {
        Self {
            check,
            severity,
            summary: summary.into(),
            evidence: BTreeMap::new(),
            fix: None,
            reason: None,
        }
    }

    fn ok(check: Check, summary: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, summary)
    }

    fn warning(check: Check, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Severity::Warning, summary).fix(fix)
    }

    fn problem(check: Check, summary: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::new(check, Severity::Problem, summary).fix(fix)
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    fn aws_error(self, e: &AwsError) -> Self {
        let f = self
            .with("awsError", &e.code)
            .with("awsAction", format!("{}:{}", e.service, e.action));
        if e.message.is_empty() {
            f
        } else {
            f.with("awsMessage", shorten(&e.message))
        }
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 240;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

/// What doctor was asked to examine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A binding read from the cluster.
    Binding(BindingKey),
    /// A file holding one binding.
    File(PathBuf),
    Instance(String),
    Profile(String),
}

impl Target {
    /// The one target the flags name (clap's group guarantees exactly one).
    #[must_use]
    pub fn from_args(args: &DoctorArgs) -> Option<Self> {
        if let Some(key) = &args.binding {
            return Some(Self::Binding(key.clone()));
        }
        if let Some(path) = &args.filename {
            return Some(Self::File(path.clone()));
        }
        if let Some(id) = &args.instance {
            return Some(Self::Instance(id.clone()));
        }
        args.instance_profile.clone().map(Self::Profile)
    }
}

/// What the cluster says about a binding.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    pub generation: Option<i64>,
    pub status: Option<InstanceProfileBindingStatus>,
}

/// The target, resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Subject {
    Binding {
        key: BindingKey,
        spec: Box<InstanceProfileBindingSpec>,
        /// `None` for a binding from a file.
        cluster: Option<Box<ClusterView>>,
        /// Where it came from: `cluster` or `path#document`.
        source: String,
    },
    Instance {
        id: String,
    },
    Profile {
        name: String,
    },
}

/// A read that the credentials in use were not allowed to make.
#[derive(Clone, Debug)]
pub enum Read<T> {
    Got(T),
    Denied(AwsError),
}

/// Other profiles under a binding's path whose tags name the same binding.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DuplicateScan {
    pub owned: Vec<Profile>,
    /// Profiles whose tags were read.
    pub scanned: usize,
    /// Profiles under the path other than the binding's own.
    pub candidates: usize,
}

#[derive(Clone, Debug)]
pub struct RoleFacts {
    /// As the binding names it (name or ARN), or the profile's role name.
    pub wanted: String,
    pub found: Read<Option<RoleInfo>>,
    /// A role whose name differs only in case, when `wanted` does not exist.
    pub near: Option<String>,
}

/// Why an instance is examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The binding selects it.
    Selected,
    /// It holds the binding's profile but the binding does not select it;
    /// `remembered`: the profile's instance memory says the controller associated it.
    Unselected { remembered: bool },
    /// The instance doctor was asked about.
    Requested,
    /// It holds the profile doctor was asked about.
    Holder,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceFacts {
    pub id: String,
    /// `None`: EC2 does not know it (or, for a selection, it is not live).
    pub state: Option<RunState>,
    pub association: Option<Association>,
    pub relation: Relation,
}

#[derive(Clone, Debug)]
pub struct PermissionFacts {
    /// The principal simulated, or why none could be.
    pub principal: Result<String, String>,
    /// `None` when there was no principal to simulate.
    pub simulation: Option<Result<Vec<SimulatedDecision>, AwsError>>,
    /// Actions not simulated, with why.
    pub not_simulated: BTreeMap<String, String>,
    /// `AccessDenied` answers to doctor's own reads.
    pub denied_reads: Vec<AwsError>,
}

/// Everything the checks look at, read up front.
#[derive(Clone, Debug)]
pub struct Facts {
    pub cluster_id: String,
    pub path_prefix: String,
    pub subject: Subject,
    pub caller: CallerIdentity,
    /// The profile in question: the binding's deterministic name, the one
    /// named, or the one the instance holds (`None`: the instance holds none).
    pub profile_name: Option<String>,
    /// With its tags.
    pub profile: Read<Option<Profile>>,
    /// For bindings: other profiles that claim the same binding.
    pub duplicates: Option<Read<DuplicateScan>>,
    pub role: Option<RoleFacts>,
    pub instances: Read<Vec<InstanceFacts>>,
    pub permissions: PermissionFacts,
    /// The value of `IPB_ASSUME_ROLE_DURATION_SECONDS`, when set.
    pub session_duration: Option<String>,
}

impl Facts {
    fn current_profile(&self) -> Option<&Profile> {
        match &self.profile {
            Read::Got(Some(p)) => Some(p),
            _ => None,
        }
    }

    fn cluster_path(&self) -> String {
        naming::profile_path(&self.path_prefix, &self.cluster_id)
    }
}

/// Why doctor could not run at all (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum CouldNotRun {
    #[error("no usable AWS credentials: {0}")]
    Credentials(String),
    #[error("cannot reach AWS: {0}")]
    Network(String),
    #[error("AWS: {0}")]
    Aws(String),
    #[error("cannot read the binding from the cluster: {0}")]
    Kubernetes(String),
    #[error("{0}")]
    Input(String),
}

impl CouldNotRun {
    /// One word saying which: credentials, network, aws, kubernetes or input.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Credentials(_) => "credentials",
            Self::Network(_) => "network",
            Self::Aws(_) => "aws",
            Self::Kubernetes(_) => "kubernetes",
            Self::Input(_) => "input",
        }
    }

    fn from_aws(e: &AwsError) -> Self {
        match e.kind {
            // Only GetCallerIdentity gets here with this kind: it needs no
            // permission, so a refusal is about the credentials themselves.
            ErrorKind::AccessDenied => Self::Credentials(format!(
                "AWS rejected them ({}: {})",
                e.code,
                shorten(&e.message)
            )),
            ErrorKind::Transient => Self::Network(e.to_string()),
            ErrorKind::Throttled => Self::Network(format!("throttled even after retries: {e}")),
            _ => Self::Aws(e.to_string()),
        }
    }
}

/// The whole `doctor` subcommand: prints the report and returns the exit code.
pub async fn command(args: &DoctorArgs) -> i32 {
    match diagnose(args).await {
        Ok(report) => {
            match args.output {
                Output::Text => print!("{}", render_text(&report)),
                Output::Json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot render the report as JSON: {e}");
                        return 2;
                    }
                },
            }
            report.exit_code
        }
        Err(e) => {
            eprintln!("error: doctor could not run ({}): {e}", e.kind());
            if args.output == Output::Json {
                let body = serde_json::json!({
                    "error": {"kind": e.kind(), "message": e.to_string()},
                    "exitCode": 2,
                });
                println!("{body}");
            }
            2
        }
    }
}

async fn diagnose(args: &DoctorArgs) -> Result<Report, CouldNotRun> {
    let config = &args
        .engine_config()
        .map_err(|e| CouldNotRun::Input(e.to_string()))?;
    let target = Target::from_args(args).ok_or_else(|| {
        CouldNotRun::Input(
            "name one target: --binding, -f, --instance or --instance-profile".into(),
        )
    })?;
    let subject = resolve(&target, &args.kube).await?;
    let aws = args.aws.connect(Arc::new(Metrics::new())).await;
    aws.check_credentials().await.map_err(|e| {
        CouldNotRun::Credentials(format!(
            "{e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or run where IRSA/Pod Identity/an instance role provides them"
        ))
    })?;
    let session_duration = args.assume_role_duration_seconds.clone();
    let facts = gather(
        &aws,
        config,
        subject,
        args.principal_arn.as_deref(),
        session_duration,
    )
    .await;
    if args.verbose {
        eprintln!("{}", aws.calls.summary());
    }
    Ok(Report::new(&facts?, run_checks))
}

/// Reads the target's binding (from the cluster or a file); instances and
/// profiles need nothing yet.
async fn resolve(target: &Target, cluster: &KubeArgs) -> Result<Subject, CouldNotRun> {
    match target {
        Target::Instance(id) => Ok(Subject::Instance { id: id.clone() }),
        Target::Profile(name) => Ok(Subject::Profile { name: name.clone() }),
        Target::File(path) => {
            let bindings = crate::files::load(std::slice::from_ref(path))
                .map_err(|errors| CouldNotRun::Input(errors.join("\n")))?;
            let [fb] = bindings.as_slice() else {
                return Err(CouldNotRun::Input(format!(
                    "{} holds {} bindings; doctor examines one: keep one in the file, or use --binding NAMESPACE/NAME",
                    path.display(),
                    bindings.len()
                )));
            };
            Ok(Subject::Binding {
                key: BindingKey {
                    namespace: fb
                        .binding
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into()),
                    name: fb.binding.metadata.name.clone().unwrap_or_default(),
                },
                spec: Box::new(fb.binding.spec.clone()),
                cluster: None,
                source: fb.source.clone(),
            })
        }
        Target::Binding(key) => {
            let client = cluster.client().await.map_err(|e| {
                CouldNotRun::Kubernetes(format!("{e}; or pass the binding's file with -f"))
            })?;
            let api: kube::Api<InstanceProfileBinding> =
                kube::Api::namespaced(client, &key.namespace);
            let binding = api
                .get_opt(&key.name)
                .await
                .map_err(|e| CouldNotRun::Kubernetes(format!("{key}: {e}")))?
                .ok_or_else(|| {
                    CouldNotRun::Input(format!(
                        "binding {key} not found in the cluster (or the InstanceProfileBinding CRD is not installed)"
                    ))
                })?;
            Ok(Subject::Binding {
                key: key.clone(),
                spec: Box::new(binding.spec.clone()),
                cluster: Some(Box::new(ClusterView {
                    generation: binding.metadata.generation,
                    status: binding.status.clone(),
                })),
                source: "cluster".into(),
            })
        }
    }
}

/// Sorts AWS answers: `AccessDenied` is a fact for the checks, anything else
/// (network, throttling, bad requests) means doctor cannot run.
fn soft<T>(res: Result<T, AwsError>, denied: &mut Vec<AwsError>) -> Result<Read<T>, CouldNotRun> {
    match res {
        Ok(v) => Ok(Read::Got(v)),
        Err(e) if e.is(ErrorKind::AccessDenied) => {
            denied.push(e.clone());
            Ok(Read::Denied(e))
        }
        Err(e) => Err(CouldNotRun::from_aws(&e)),
    }
}

/// The path a binding's profile lives at.
fn binding_path(spec: &InstanceProfileBindingSpec, path_prefix: &str, cluster_id: &str) -> String {
    spec.instance_profile
        .as_ref()
        .and_then(|p| p.path.clone())
        .unwrap_or_else(|| naming::profile_path(path_prefix, cluster_id))
}

/// Reads every fact the checks need. Read-only: List, Get, Describe,
/// GetCallerIdentity and SimulatePrincipalPolicy calls, nothing else.
///
/// # Errors
/// When AWS cannot be reached or rejects the credentials.
pub async fn gather(
    aws: &Aws,
    config: &EngineConfig,
    subject: Subject,
    principal_override: Option<&str>,
    session_duration: Option<String>,
) -> Result<Facts, CouldNotRun> {
    let caller = aws
        .caller_identity()
        .await
        .map_err(|e| CouldNotRun::from_aws(&e))?;
    let mut denied = Vec::new();
    let cluster_id = config.cluster_id.clone();
    let (profile_name, profile, duplicates, wanted_role, instances) = match &subject {
        Subject::Binding { key, spec, .. } => {
            let name = naming::profile_name(&cluster_id, key);
            let profile = soft(aws.get_profile(&name).await, &mut denied)?;
            let mut paths = BTreeSet::new();
            paths.insert(binding_path(spec, &config.path_prefix, &cluster_id));
            paths.insert(naming::profile_path(&config.path_prefix, &cluster_id));
            let scan = scan_duplicates(aws, &cluster_id, key, &name, &paths).await;
            let duplicates = soft(scan, &mut denied)?;
            let live = soft(aws.describe_instances().await, &mut denied)?;
            let assocs = soft(aws.describe_associations().await, &mut denied)?;
            let instances = match (live, assocs) {
                (Read::Got(live), Read::Got(assocs)) => {
                    let current = match &profile {
                        Read::Got(p) => p.as_ref(),
                        Read::Denied(_) => None,
                    };
                    Read::Got(binding_instances(spec, &name, current, &live, &assocs))
                }
                (Read::Denied(e), _) | (_, Read::Denied(e)) => Read::Denied(e),
            };
            (
                Some(name),
                profile,
                Some(duplicates),
                Some(spec.role.clone()),
                instances,
            )
        }
        Subject::Instance { id } => {
            let instance = soft(aws.describe_instance(id).await, &mut denied)?;
            let assocs = soft(aws.describe_associations().await, &mut denied)?;
            let association = match &assocs {
                Read::Got(a) => live_association(a, id),
                Read::Denied(_) => None,
            };
            let name = association.as_ref().map(|a| a.profile_name().to_string());
            let profile = match &name {
                Some(n) => soft(aws.get_profile(n).await, &mut denied)?,
                None => Read::Got(None),
            };
            let instances = match (instance, assocs) {
                (Read::Got(instance), Read::Got(_)) => Read::Got(vec![InstanceFacts {
                    id: id.clone(),
                    state: instance.map(|i| i.state),
                    association,
                    relation: Relation::Requested,
                }]),
                (Read::Denied(e), _) | (_, Read::Denied(e)) => Read::Denied(e),
            };
            let role = single_role(&profile);
            (name, profile, None, role, instances)
        }
        Subject::Profile { name } => {
            let profile = soft(aws.get_profile(name).await, &mut denied)?;
            let live = soft(aws.describe_instances().await, &mut denied)?;
            let assocs = soft(aws.describe_associations().await, &mut denied)?;
            let instances = match (live, assocs) {
                (Read::Got(live), Read::Got(assocs)) => {
                    let current = match &profile {
                        Read::Got(p) => p.as_ref(),
                        Read::Denied(_) => None,
                    };
                    Read::Got(profile_holders(name, current, &live, &assocs))
                }
                (Read::Denied(e), _) | (_, Read::Denied(e)) => Read::Denied(e),
            };
            let role = single_role(&profile);
            (Some(name.clone()), profile, None, role, instances)
        }
    };
    let role = match wanted_role {
        Some(wanted) => Some(role_facts(aws, wanted, &mut denied).await?),
        None => None,
    };
    let mut facts = Facts {
        cluster_id,
        path_prefix: config.path_prefix.clone(),
        subject,
        caller,
        profile_name,
        profile,
        duplicates,
        role,
        instances,
        permissions: PermissionFacts {
            principal: Err(String::new()),
            simulation: None,
            not_simulated: BTreeMap::new(),
            denied_reads: Vec::new(),
        },
        session_duration,
    };
    facts.permissions = gather_permissions(aws, &facts, principal_override, denied).await;
    Ok(facts)
}

/// The role of a profile that holds exactly one (several are check 2's problem).
fn single_role(profile: &Read<Option<Profile>>) -> Option<String> {
    match profile {
        Read::Got(Some(p)) => p.roles.first().map(|r| r.name.clone()),
        _ => None,
    }
}

async fn role_facts(
    aws: &Aws,
    wanted: String,
    denied: &mut Vec<AwsError>,
) -> Result<RoleFacts, CouldNotRun> {
    let found = soft(aws.get_role(role_name(&wanted)).await, denied)?;
    let near = match &found {
        Read::Got(None) => match soft(aws.list_role_names().await, denied)? {
            Read::Got(names) => near_match(role_name(&wanted), &names).map(str::to_string),
            Read::Denied(_) => None,
        },
        _ => None,
    };
    Ok(RoleFacts {
        wanted,
        found,
        near,
    })
}

/// Profiles under `paths` other than `own_name` whose tags name `key`: the
/// most likely (same readable prefix) first, at most [`DUPLICATE_SCAN_LIMIT`].
async fn scan_duplicates(
    aws: &Aws,
    cluster_id: &str,
    key: &BindingKey,
    own_name: &str,
    paths: &BTreeSet<String>,
) -> Result<DuplicateScan, AwsError> {
    let mut names = BTreeSet::new();
    for path in paths {
        for p in aws.list_profiles(path).await? {
            if p.name != own_name {
                names.insert(p.name);
            }
        }
    }
    let readable = format!("ipb-{}.{}-", key.namespace, key.name);
    let mut ordered: Vec<String> = names.into_iter().collect();
    ordered.sort_by_key(|n| !n.starts_with(&readable));
    let mut scan = DuplicateScan {
        candidates: ordered.len(),
        ..DuplicateScan::default()
    };
    for name in ordered.into_iter().take(DUPLICATE_SCAN_LIMIT) {
        scan.scanned += 1;
        if let Some(p) = aws.get_profile(&name).await?
            && p.tags
                .as_ref()
                .is_some_and(|t| naming::tags_prove_ownership(t, cluster_id, key))
        {
            scan.owned.push(p);
        }
    }
    Ok(scan)
}

/// The live association of an instance; during a Replace the one not on its way out.
fn live_association(assocs: &[Association], instance_id: &str) -> Option<Association> {
    let mut mine = assocs.iter().filter(|a| a.instance_id == instance_id);
    let first = mine.next()?;
    Some(
        std::iter::once(first)
            .chain(mine)
            .find(|a| a.state != AssociationState::Disassociating)
            .unwrap_or(first)
            .clone(),
    )
}

/// The instances a binding selects, and those holding its profile unselected.
fn binding_instances(
    spec: &InstanceProfileBindingSpec,
    profile_name: &str,
    profile: Option<&Profile>,
    live: &[Instance],
    assocs: &[Association],
) -> Vec<InstanceFacts> {
    let selector = selector_of(spec);
    let mut out: Vec<InstanceFacts> = live
        .iter()
        .filter(|i| selector.matches(i))
        .map(|i| InstanceFacts {
            id: i.id.clone(),
            state: Some(i.state),
            association: live_association(assocs, &i.id),
            relation: Relation::Selected,
        })
        .collect();
    for id in &selector.ids {
        if !live.iter().any(|i| &i.id == id) {
            out.push(InstanceFacts {
                id: id.clone(),
                state: None,
                association: None,
                relation: Relation::Selected,
            });
        }
    }
    let memory = profile
        .and_then(|p| p.tags.as_ref())
        .map(naming::instances_from_tags)
        .unwrap_or_default();
    let selected: BTreeSet<String> = out.iter().map(|i| i.id.clone()).collect();
    let holders: BTreeSet<&str> = assocs
        .iter()
        .filter(|a| !selected.contains(&a.instance_id))
        .filter(|a| {
            a.profile_name() == profile_name || profile.is_some_and(|p| p.id == a.profile_id)
        })
        .map(|a| a.instance_id.as_str())
        .collect();
    for id in holders {
        out.push(InstanceFacts {
            id: id.to_string(),
            state: live.iter().find(|i| i.id == id).map(|i| i.state),
            association: live_association(assocs, id),
            relation: Relation::Unselected {
                remembered: memory.contains(id),
            },
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The instances whose association names the profile (by name or by id).
fn profile_holders(
    profile_name: &str,
    profile: Option<&Profile>,
    live: &[Instance],
    assocs: &[Association],
) -> Vec<InstanceFacts> {
    let ids: BTreeSet<&str> = assocs
        .iter()
        .filter(|a| {
            a.profile_name() == profile_name || profile.is_some_and(|p| p.id == a.profile_id)
        })
        .map(|a| a.instance_id.as_str())
        .collect();
    ids.into_iter()
        .map(|id| InstanceFacts {
            id: id.to_string(),
            state: live.iter().find(|i| i.id == id).map(|i| i.state),
            association: live_association(assocs, id),
            relation: Relation::Holder,
        })
        .collect()
}

/// Where in AWS the controller's permissions are simulated.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SimulationResources {
    profile_arn: String,
    role_arn: Option<String>,
    instance_arn: String,
}

fn simulation_resources(facts: &Facts, region: &str) -> SimulationResources {
    let partition = facts.caller.partition();
    let account = &facts.caller.account;
    let cluster_path = facts.cluster_path();
    let profile_arn = match (&facts.subject, facts.current_profile()) {
        (Subject::Binding { .. }, Some(p)) => p.arn.clone(),
        (_, Some(p)) if p.path.starts_with(&cluster_path) => p.arn.clone(),
        (Subject::Binding { spec, .. }, None) => format!(
            "arn:{partition}:iam::{account}:instance-profile{}{}",
            binding_path(spec, &facts.path_prefix, &facts.cluster_id),
            facts.profile_name.as_deref().unwrap_or("ipb-example")
        ),
        // A profile the controller would own: it never needs rights on others.
        _ => format!("arn:{partition}:iam::{account}:instance-profile{cluster_path}ipb-example"),
    };
    let role_arn = match facts.role.as_ref().map(|r| &r.found) {
        Some(Read::Got(Some(role))) => Some(role.arn.clone()),
        _ => None,
    };
    let instance = match &facts.instances {
        Read::Got(list) => list
            .iter()
            .find(|i| i.state.is_some())
            .map_or(EXAMPLE_INSTANCE, |i| i.id.as_str()),
        Read::Denied(_) => EXAMPLE_INSTANCE,
    };
    SimulationResources {
        profile_arn,
        role_arn,
        instance_arn: format!("arn:{partition}:ec2:{region}:{account}:instance/{instance}"),
    }
}

/// What a statement's `Resource` is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ResourceKind {
    Any,
    Profile,
    Role,
    Instance,
}

/// One action of the controller's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PolicyAction {
    sid: String,
    action: String,
    resource: ResourceKind,
}

/// Every action of the shipped policy but the optional ones, once each.
fn policy_actions(policy: &str) -> Vec<PolicyAction> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return Vec::new();
    };
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let mut out: Vec<PolicyAction> = Vec::new();
    for st in doc["Statement"].as_array().into_iter().flatten() {
        let sid = st["Sid"].as_str().unwrap_or_default();
        if sid.starts_with(OPTIONAL_SID_PREFIX) || st["Effect"] != "Allow" {
            continue;
        }
        let resource = strings(st.get("Resource"))
            .first()
            .map_or(ResourceKind::Any, |r| {
                if r.contains(":instance-profile/") {
                    ResourceKind::Profile
                } else if r.contains(":role/") {
                    ResourceKind::Role
                } else if r.contains(":instance/") {
                    ResourceKind::Instance
                } else {
                    ResourceKind::Any
                }
            });
        for action in strings(st.get("Action")) {
            if !out.iter().any(|a| a.action == action) {
                out.push(PolicyAction {
                    sid: sid.to_string(),
                    action,
                    resource,
                });
            }
        }
    }
    out
}

/// The condition keys the shipped policy tests, as the controller's calls carry them.
fn simulation_context(cluster_id: &str, profile_arn: &str) -> BTreeMap<String, String> {
    let mut c = BTreeMap::new();
    c.insert(
        format!("aws:RequestTag/{}", naming::TAG_CLUSTER_ID),
        cluster_id.to_string(),
    );
    c.insert(
        format!("aws:ResourceTag/{}", naming::TAG_CLUSTER_ID),
        cluster_id.to_string(),
    );
    c.insert(
        "iam:PassedToService".to_string(),
        "ec2.amazonaws.com".to_string(),
    );
    c.insert(
        "ec2:NewInstanceProfile".to_string(),
        profile_arn.to_string(),
    );
    c
}

async fn gather_permissions(
    aws: &Aws,
    facts: &Facts,
    principal_override: Option<&str>,
    denied_reads: Vec<AwsError>,
) -> PermissionFacts {
    let principal = aws
        .simulation_principal_arn(principal_override.unwrap_or(&facts.caller.arn))
        .await;
    let resources = simulation_resources(facts, &aws.region());
    let context = simulation_context(&facts.cluster_id, &resources.profile_arn);
    let mut groups: BTreeMap<ResourceKind, Vec<String>> = BTreeMap::new();
    let mut not_simulated = BTreeMap::new();
    for a in policy_actions(CONTROLLER_POLICY) {
        if a.resource == ResourceKind::Role && resources.role_arn.is_none() {
            not_simulated.insert(a.action, "no role known to simulate it on".to_string());
        } else {
            groups.entry(a.resource).or_default().push(a.action);
        }
    }
    let simulation = match &principal {
        Err(_) => None,
        Ok(arn) => {
            let mut all = Vec::new();
            let mut failed = None;
            for (kind, actions) in &groups {
                let resource = match kind {
                    ResourceKind::Any => None,
                    ResourceKind::Profile => Some(resources.profile_arn.as_str()),
                    ResourceKind::Role => resources.role_arn.as_deref(),
                    ResourceKind::Instance => Some(resources.instance_arn.as_str()),
                };
                match aws
                    .simulate_principal_policy(arn, actions, resource, &context)
                    .await
                {
                    Ok(decisions) => all.extend(decisions),
                    // One refusal or an endpoint without the simulator: the
                    // other groups would fail the same way.
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            Some(failed.map_or(Ok(all), Err))
        }
    };
    PermissionFacts {
        principal,
        simulation,
        not_simulated,
        denied_reads,
    }
}

/// Runs every check, in order.
#[must_use]
pub fn run_checks(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(check_status(facts));
    out.extend(check_profile(facts));
    out.extend(check_profile_role(facts));
    out.extend(check_role(facts));
    out.extend(check_trust_policy(facts));
    out.extend(check_associations(facts));
    out.extend(check_permissions(facts));
    out.push(check_session_duration(facts.session_duration.as_deref()));
    out
}

fn could_not_read(check: Check, what: &str, e: &AwsError) -> Finding {
    Finding::warning(
        check,
        format!("could not read {what}: {} denied it", e.code),
        format!(
            "run doctor with credentials that may call {}:{} (the controller's policy grants it)",
            e.service, e.action
        ),
    )
    .aws_error(e)
}

/// What the controller reports in the binding's status.
#[must_use]
pub fn check_status(facts: &Facts) -> Vec<Finding> {
    let Subject::Binding {
        key,
        cluster: Some(view),
        ..
    } = &facts.subject
    else {
        return Vec::new();
    };
    let Some(status) = &view.status else {
        return vec![Finding::warning(
            Check::Status,
            format!("the controller has not written a status for binding {key}"),
            format!(
                "check that the controller runs and watches namespace {} (its logs say why not)",
                key.namespace
            ),
        )];
    };
    let mut finding = match status.condition("Ready") {
        Some(c) if c.status == "True" => Finding::ok(
            Check::Status,
            format!("binding {key} is Ready ({})", c.reason),
        ),
        Some(c) => Finding::warning(
            Check::Status,
            format!(
                "binding {key} is Ready={} with reason {}: {}",
                c.status, c.reason, c.message
            ),
            format!(
                "see the findings below and the {} section of docs/troubleshooting.md",
                c.reason
            ),
        )
        .with("conditionReason", &c.reason),
        None => Finding::warning(
            Check::Status,
            format!("binding {key} has no Ready condition yet"),
            "wait for the controller's first reconcile, or read its logs",
        ),
    };
    if let (Some(seen), Some(current)) = (status.observed_generation, view.generation)
        && seen < current
    {
        finding = finding
            .with("observedGeneration", seen.to_string())
            .with("generation", current.to_string());
    }
    vec![finding]
}

/// Check 1: the profile exists, where, whose; duplicates of a binding's profile.
#[must_use]
pub fn check_profile(facts: &Facts) -> Vec<Finding> {
    let Some(name) = &facts.profile_name else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match (&facts.profile, &facts.subject) {
        (Read::Denied(e), _) => out.push(could_not_read(
            Check::Profile,
            &format!("instance profile {name}"),
            e,
        )),
        (Read::Got(None), Subject::Binding { key, spec, .. }) => out.push(
            Finding::problem(
                Check::Profile,
                format!("instance profile {name} of binding {key} does not exist"),
                "let the controller create it: check that it runs and read the binding's Ready condition, or run `apply -f` with the binding",
            )
            .with("profile", name)
            .with(
                "expectedPath",
                binding_path(spec, &facts.path_prefix, &facts.cluster_id),
            ),
        ),
        (Read::Got(None), Subject::Profile { .. }) => out.push(
            Finding::problem(
                Check::Profile,
                format!("instance profile {name} does not exist"),
                "check the name: instance profile names are case-sensitive",
            )
            .with("profile", name)
            .with("awsError", "NoSuchEntity"),
        ),
        // The association check reports an instance left on a deleted profile.
        (Read::Got(None), Subject::Instance { .. }) => {}
        (Read::Got(Some(p)), subject) => out.extend(profile_findings(facts, subject, p)),
    }
    match &facts.duplicates {
        Some(Read::Denied(e)) => out.push(could_not_read(
            Check::Profile,
            "the other instance profiles under the binding's path",
            e,
        )),
        Some(Read::Got(scan)) => out.extend(duplicate_findings(facts, name, scan)),
        None => {}
    }
    out
}

fn profile_evidence(f: Finding, p: &Profile) -> Finding {
    f.with("profile", &p.name)
        .with("profileId", &p.id)
        .with("profileArn", &p.arn)
        .with("path", &p.path)
}

fn profile_findings(facts: &Facts, subject: &Subject, p: &Profile) -> Vec<Finding> {
    let tags = p.tags.clone().unwrap_or_default();
    let cluster = &facts.cluster_id;
    let tag = |k: &str| tags.get(k).cloned().unwrap_or_else(|| "(none)".into());
    let mut out = Vec::new();
    match subject {
        Subject::Binding { key, spec, .. } => {
            if !naming::tags_prove_ownership(&tags, cluster, key) {
                let fix = match tags.get(naming::TAG_CLUSTER_ID) {
                    Some(other) if other != cluster => format!(
                        "its tags name cluster id {other}: if that is the controller's --cluster-id, run doctor with --cluster-id {other}; otherwise delete or rename the profile"
                    ),
                    _ => "delete or rename that profile (the controller never touches a profile it cannot prove it owns), or rename the binding".to_string(),
                };
                out.push(
                    profile_evidence(
                        Finding::problem(
                            Check::Profile,
                            format!(
                                "an instance profile named {} exists but its tags do not prove binding {key} of cluster {cluster} owns it",
                                p.name
                            ),
                            fix,
                        ),
                        p,
                    )
                    .with("tagClusterId", tag(naming::TAG_CLUSTER_ID))
                    .with("tagNamespace", tag(naming::TAG_NAMESPACE))
                    .with("tagName", tag(naming::TAG_NAME))
                    .reason(Reason::ForeignProfileExists.as_str()),
                );
                return out;
            }
            out.push(profile_evidence(
                Finding::ok(
                    Check::Profile,
                    format!(
                        "instance profile {} exists and its ownership tags name binding {key} of cluster {cluster}",
                        p.name
                    ),
                ),
                p,
            ));
            let expected = binding_path(spec, &facts.path_prefix, cluster);
            if p.path != expected {
                out.push(
                    profile_evidence(
                        Finding::warning(
                            Check::Profile,
                            format!(
                                "instance profile {} is at path {}, not {expected}: the controller's bulk listing and its path-scoped IAM policy miss it",
                                p.name, p.path
                            ),
                            "IAM cannot move a profile: delete it (after disassociating its instances) and let the controller recreate it at the right path",
                        ),
                        p,
                    )
                    .with("expectedPath", expected),
                );
            }
        }
        Subject::Instance { .. } | Subject::Profile { .. } => {
            match naming::owner_from_tags(&tags, cluster) {
                Some(owner) => {
                    out.push(profile_evidence(
                        Finding::ok(
                            Check::Profile,
                            format!(
                                "instance profile {} exists and belongs to binding {owner} of cluster {cluster}",
                                p.name
                            ),
                        ),
                        p,
                    ));
                    let expected = naming::profile_name(cluster, &owner);
                    if p.name != expected {
                        out.push(profile_evidence(
                            Finding::warning(
                                Check::Profile,
                                format!(
                                    "instance profile {} carries the ownership tags of binding {owner} but is not its name {expected}: a copy or a leftover the controller does not manage",
                                    p.name
                                ),
                                format!("move its instances to {expected} and delete it"),
                            ),
                            p,
                        ).with("expectedName", expected));
                    }
                }
                None => out.push(
                    profile_evidence(
                        Finding::ok(
                            Check::Profile,
                            format!(
                                "instance profile {} exists and is not managed by this controller (no ownership tags of cluster {cluster})",
                                p.name
                            ),
                        ),
                        p,
                    )
                    .with("tagClusterId", tag(naming::TAG_CLUSTER_ID)),
                ),
            }
        }
    }
    out
}

fn duplicate_findings(facts: &Facts, name: &str, scan: &DuplicateScan) -> Vec<Finding> {
    let Subject::Binding { key, .. } = &facts.subject else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !scan.owned.is_empty() {
        let names: Vec<&str> = scan.owned.iter().map(|p| p.name.as_str()).collect();
        let ids: Vec<&str> = scan.owned.iter().map(|p| p.id.as_str()).collect();
        out.push(
            Finding::problem(
                Check::Profile,
                format!(
                    "binding {key} has {} more instance profile(s) carrying its ownership tags: {}; the controller manages only {name}",
                    scan.owned.len(),
                    names.join(", ")
                ),
                format!(
                    "move any instance off {} and delete it (remove its role first)",
                    names.join(" and ")
                ),
            )
            .with("duplicates", names.join(","))
            .with("duplicateIds", ids.join(","))
            .with("profile", name),
        );
    }
    if scan.scanned < scan.candidates {
        out.push(
            Finding::warning(
                Check::Profile,
                format!(
                    "looked for duplicates of {name} among {} of the {} other profiles under the path",
                    scan.scanned, scan.candidates
                ),
                "list the rest with aws iam list-instance-profiles --path-prefix and compare their tags",
            )
            .with("scanned", scan.scanned.to_string())
            .with("candidates", scan.candidates.to_string()),
        );
    }
    out
}

/// Check 2: the profile holds exactly one role, the one wanted.
#[must_use]
pub fn check_profile_role(facts: &Facts) -> Vec<Finding> {
    let Some(p) = facts.current_profile() else {
        return Vec::new();
    };
    let binding = match &facts.subject {
        Subject::Binding { key, spec, .. } => Some((key, role_name(&spec.role))),
        _ => None,
    };
    let finding = match p.roles.as_slice() {
        [] => {
            let role = binding.map_or("ROLE", |(_, r)| r);
            let then = if binding.is_some() {
                " (the controller re-adds it at its next resync)"
            } else {
                ""
            };
            Finding::problem(
                Check::ProfileRole,
                format!(
                    "instance profile {} holds no role, so its instances get no credentials (\"No roles attached to instance profile\")",
                    p.name
                ),
                format!(
                    "add the role: aws iam add-role-to-instance-profile --instance-profile-name {} --role-name {role}{then}",
                    p.name
                ),
            )
        }
        [only] => match binding {
            Some((key, wanted)) if only.name != wanted => Finding::problem(
                Check::ProfileRole,
                format!(
                    "instance profile {} holds role {}, but binding {key} wants {wanted}",
                    p.name, only.name
                ),
                "the controller swaps the role at its next reconcile; if it does not, the binding's Ready condition says why",
            )
            .with("role", &only.name)
            .with("wantedRole", wanted),
            _ => Finding::ok(
                Check::ProfileRole,
                format!(
                    "instance profile {} holds exactly one role: {}",
                    p.name, only.name
                ),
            )
            .with("role", &only.name)
            .with("roleArn", &only.arn),
        },
        many => {
            let names: Vec<&str> = many.iter().map(|r| r.name.as_str()).collect();
            Finding::problem(
                Check::ProfileRole,
                format!(
                    "instance profile {} holds {} roles ({}); an instance profile holds one",
                    p.name,
                    many.len(),
                    names.join(", ")
                ),
                "remove all but one with aws iam remove-role-from-instance-profile",
            )
            .with("roles", names.join(","))
        }
    };
    vec![finding.with("profile", &p.name)]
}

/// Check 3: the role exists (case-sensitive), with a near match when it does not.
#[must_use]
pub fn check_role(facts: &Facts) -> Vec<Finding> {
    let Some(rf) = &facts.role else {
        return Vec::new();
    };
    let name = role_name(&rf.wanted);
    let in_binding = matches!(facts.subject, Subject::Binding { .. });
    let finding = match &rf.found {
        Read::Denied(e) => could_not_read(Check::Role, &format!("role {name}"), e),
        Read::Got(None) => {
            let (summary, fix) = match &rf.near {
                Some(near) => (
                    format!(
                        "role {name} does not exist; did you mean {near}? (role names are case-sensitive)"
                    ),
                    if in_binding {
                        format!("set spec.role to {near}")
                    } else {
                        format!("use role {near}, or create {name}")
                    },
                ),
                None => (
                    format!("role {name} does not exist"),
                    format!("create role {name}, or correct the role name"),
                ),
            };
            let mut f = Finding::problem(Check::Role, summary, fix)
                .with("role", name)
                .with("awsError", "NoSuchEntity")
                .reason(Reason::RoleNotFound.as_str());
            if let Some(near) = &rf.near {
                f = f.with("nearMatch", near);
            }
            f
        }
        Read::Got(Some(role)) if rf.wanted.starts_with("arn:") && role.arn != rf.wanted => {
            Finding::problem(
                Check::Role,
                format!(
                    "role ARN {} does not match role {name}, whose ARN is {} (path or account differ)",
                    rf.wanted, role.arn
                ),
                format!("set spec.role to {} or to the name {name}", role.arn),
            )
            .with("role", name)
            .with("roleArn", &role.arn)
            .reason(Reason::RoleNotFound.as_str())
        }
        Read::Got(Some(role)) => Finding::ok(Check::Role, format!("role {} exists", role.name))
            .with("role", &role.name)
            .with("roleArn", &role.arn),
    };
    vec![finding]
}

/// Check 4: the trust policy lets `ec2.amazonaws.com` call `sts:AssumeRole`.
#[must_use]
pub fn check_trust_policy(facts: &Facts) -> Vec<Finding> {
    let Some(RoleFacts {
        found: Read::Got(Some(role)),
        ..
    }) = &facts.role
    else {
        return Vec::new();
    };
    let f = if role.trusts_ec2 {
        Finding::ok(
            Check::TrustPolicy,
            format!(
                "the trust policy of role {} lets ec2.amazonaws.com call sts:AssumeRole",
                role.name
            ),
        )
    } else {
        Finding::problem(
            Check::TrustPolicy,
            format!(
                "the trust policy of role {} does not let ec2.amazonaws.com call sts:AssumeRole, so instances get no credentials (AssumeRoleUnauthorizedAccess in the instance metadata's iam/info)",
                role.name
            ),
            format!(
                "add {{\"Effect\":\"Allow\",\"Principal\":{{\"Service\":\"ec2.amazonaws.com\"}},\"Action\":\"sts:AssumeRole\"}} to the trust policy: aws iam update-assume-role-policy --role-name {}",
                role.name
            ),
        )
        .reason(Reason::TrustPolicyMissingEc2.as_str())
    };
    vec![f.with("role", &role.name).with("roleArn", &role.arn)]
}

/// Check 5: every instance's association: present, settled, and on the
/// profile's current id.
#[must_use]
pub fn check_associations(facts: &Facts) -> Vec<Finding> {
    let list = match &facts.instances {
        Read::Denied(e) => {
            return vec![could_not_read(
                Check::Association,
                "instances and their associations",
                e,
            )];
        }
        Read::Got(list) => list,
    };
    let mut out = Vec::new();
    match &facts.subject {
        Subject::Binding { key, spec, .. }
            if !list.iter().any(|i| i.relation == Relation::Selected) =>
        {
            out.push(
                Finding::warning(
                    Check::Association,
                    format!("binding {key} selects no live instance"),
                    "check spec.instances: the ids must exist in this region and every tag pair must match",
                )
                .with("selectorIds", spec.instances.ids.join(","))
                .with(
                    "selectorTags",
                    spec.instances
                        .tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                ),
            );
        }
        Subject::Profile { name } if list.is_empty() => {
            out.push(Finding::ok(
                Check::Association,
                format!("no instance is associated with instance profile {name}"),
            ));
        }
        _ => {}
    }
    out.extend(list.iter().map(|i| association_finding(facts, i)));
    out
}

fn state_name(state: RunState) -> &'static str {
    match state {
        RunState::Pending => "pending",
        RunState::Running => "running",
        RunState::Stopping => "stopping",
        RunState::Stopped => "stopped",
        RunState::ShuttingDown => "shutting-down",
        RunState::Terminated => "terminated",
    }
}

fn association_finding(facts: &Facts, inst: &InstanceFacts) -> Finding {
    let id = &inst.id;
    let Some(state) = inst.state else {
        let f = if inst.relation == Relation::Requested {
            Finding::problem(
                Check::Association,
                format!("instance {id} does not exist (InvalidInstanceID.NotFound)"),
                "check the instance id and the region (--region)",
            )
            .with("awsError", "InvalidInstanceID.NotFound")
        } else {
            Finding::warning(
                Check::Association,
                format!(
                    "instance {id} is not a live instance (terminated or never existed); the controller drops it from status"
                ),
                "remove it from spec.instances.ids",
            )
        };
        return f.with("instance", id);
    };
    let with_instance = |f: Finding| {
        f.with("instance", id)
            .with("instanceState", state_name(state))
    };
    if matches!(state, RunState::Terminated | RunState::ShuttingDown) {
        return with_instance(Finding::warning(
            Check::Association,
            format!("instance {id} is {}", state_name(state)),
            "nothing to fix: a terminated instance needs no profile",
        ));
    }
    let Some(a) = &inst.association else {
        return with_instance(match inst.relation {
            Relation::Selected => Finding::problem(
                Check::Association,
                format!("instance {id} has no instance profile association"),
                "the controller associates it at its next reconcile; if it does not, the binding's Ready condition says why (PropagationPending for up to minutes after a profile is created is normal)",
            )
            .reason(Reason::PropagationPending.as_str()),
            _ => Finding::warning(
                Check::Association,
                format!("instance {id} has no instance profile"),
                "associate one, or select the instance in an InstanceProfileBinding",
            ),
        });
    };
    let with_assoc = |f: Finding| {
        with_instance(f)
            .with("association", &a.id)
            .with("associationState", a.state.as_str())
            .with("heldProfileArn", &a.profile_arn)
            .with("heldProfileId", &a.profile_id)
    };
    if matches!(
        a.state,
        AssociationState::Associating | AssociationState::Disassociating
    ) {
        return with_assoc(
            Finding::warning(
                Check::Association,
                format!(
                    "association {} of instance {id} is {}: normal for seconds, stuck if it stays for minutes",
                    a.id,
                    a.state.as_str()
                ),
                format!(
                    "if it is still {} in a few minutes, disassociate it (aws ec2 disassociate-iam-instance-profile --association-id {}) and let the controller associate again",
                    a.state.as_str(),
                    a.id
                ),
            )
            .reason(Reason::Reconciling.as_str()),
        );
    }
    if let Read::Denied(e) = &facts.profile {
        return with_assoc(could_not_read(
            Check::Association,
            &format!("instance profile {} to compare ids", a.profile_name()),
            e,
        ));
    }
    let held_name = a.profile_name();
    let wanted_name = facts.profile_name.as_deref().unwrap_or(held_name);
    let current = facts.current_profile();
    if let Some(p) = current
        && a.profile_id == p.id
    {
        return with_assoc(match inst.relation {
            Relation::Unselected { remembered: true } => Finding::warning(
                Check::Association,
                format!(
                    "instance {id} holds instance profile {} but the binding no longer selects it; the controller disassociates it at its next reconcile",
                    p.name
                ),
                "nothing to do unless it stays: then read the binding's Ready condition",
            )
            .reason(Reason::Reconciling.as_str()),
            Relation::Unselected { remembered: false } => Finding::warning(
                Check::Association,
                format!(
                    "instance {id}, which the binding does not select and the controller did not associate, uses instance profile {}; deleting the binding will wait for it",
                    p.name
                ),
                format!(
                    "select the instance in the binding, or disassociate it (aws ec2 disassociate-iam-instance-profile --association-id {})",
                    a.id
                ),
            )
            .reason(Reason::DeletionBlocked.as_str()),
            _ => Finding::ok(
                Check::Association,
                format!(
                    "instance {id} holds instance profile {} by its current id {}",
                    p.name, p.id
                ),
            ),
        });
    }
    if held_name == wanted_name {
        let ours = matches!(facts.subject, Subject::Binding { .. })
            || current
                .and_then(|p| p.tags.as_ref())
                .and_then(|t| naming::owner_from_tags(t, &facts.cluster_id))
                .is_some();
        let controller = if ours {
            " (the controller does this for the instances it manages)"
        } else {
            ""
        };
        return with_assoc(match current {
            Some(p) => Finding::problem(
                Check::Association,
                format!(
                    "instance {id} holds id {} of an earlier instance profile named {held_name}, which was deleted and recreated as {}: the instance gets no credentials",
                    a.profile_id, p.id
                ),
                format!(
                    "replace the association: aws ec2 replace-iam-instance-profile-association --association-id {} --iam-instance-profile Arn={}{controller}",
                    a.id, p.arn
                ),
            )
            .with("currentProfileId", &p.id),
            None if ours => Finding::problem(
                Check::Association,
                format!(
                    "instance {id} is associated with instance profile {held_name} (id {}), which no longer exists",
                    a.profile_id
                ),
                "let the controller recreate the profile and replace the association at its next reconcile",
            ),
            None => Finding::problem(
                Check::Association,
                format!(
                    "instance {id} is associated with instance profile {held_name} (id {}), which no longer exists",
                    a.profile_id
                ),
                format!(
                    "replace the association with an existing profile: aws ec2 replace-iam-instance-profile-association --association-id {} --iam-instance-profile Name=PROFILE",
                    a.id
                ),
            ),
        });
    }
    let replace = matches!(&facts.subject, Subject::Binding { spec, .. } if spec.replace_foreign_associations);
    with_assoc(if replace {
        Finding::warning(
            Check::Association,
            format!(
                "instance {id} holds another instance profile, {held_name}; replaceForeignAssociations is true, so the controller replaces it"
            ),
            "nothing to do unless it stays: then read the binding's Ready condition",
        )
        .reason(Reason::Reconciling.as_str())
    } else {
        Finding::problem(
            Check::Association,
            format!(
                "instance {id} is associated with instance profile {held_name}, which the binding does not own; the controller leaves it alone"
            ),
            "set spec.replaceForeignAssociations: true, disassociate the other profile, or stop selecting the instance",
        )
        .reason(Reason::ForeignAssociation.as_str())
    })
}

/// Check 6: the controller's own permissions, by simulation where it works,
/// else from the `AccessDenied` answers seen.
#[must_use]
pub fn check_permissions(facts: &Facts) -> Vec<Finding> {
    let p = &facts.permissions;
    let actions = policy_actions(CONTROLLER_POLICY);
    let sid_of = |action: &str| {
        actions
            .iter()
            .find(|a| a.action.eq_ignore_ascii_case(action))
            .map_or("", |a| a.sid.as_str())
            .to_string()
    };
    let mut out = Vec::new();
    let could_not = match (&p.principal, &p.simulation) {
        (Err(why), _) => Some(
            Finding::warning(
                Check::Permissions,
                format!("could not simulate the controller's permissions: {why}"),
                "run doctor with the controller's credentials, or pass its role with --principal-arn",
            )
            .with("caller", &facts.caller.arn),
        ),
        (Ok(principal), Some(Err(e))) => {
            let (summary, fix) = if e.is(ErrorKind::AccessDenied) {
                (
                    format!(
                        "could not simulate the permissions of {principal}: the credentials in use may not call iam:SimulatePrincipalPolicy"
                    ),
                    "allow iam:SimulatePrincipalPolicy (statement DoctorSimulateOwnPermissions of deploy/iam-policy.json) to have every permission checked",
                )
            } else {
                (
                    format!(
                        "could not simulate the permissions of {principal}: SimulatePrincipalPolicy failed ({}); the endpoint may not implement it",
                        e.code
                    ),
                    "run doctor against real IAM to have every permission checked",
                )
            };
            Some(
                Finding::warning(Check::Permissions, summary, fix)
                    .with("principal", principal)
                    .aws_error(e),
            )
        }
        (Ok(principal), Some(Ok(decisions))) => {
            for d in decisions.iter().filter(|d| !d.allowed) {
                out.push(denied_finding(principal, d, &sid_of(&d.action)));
            }
            if out.is_empty() {
                let mut ok = Finding::ok(
                    Check::Permissions,
                    format!(
                        "{principal} may call all {} actions of deploy/iam-policy.json that were simulated",
                        decisions.len()
                    ),
                )
                .with("principal", principal);
                if !p.not_simulated.is_empty() {
                    ok = ok.with(
                        "notSimulated",
                        p.not_simulated
                            .iter()
                            .map(|(a, why)| format!("{a} ({why})"))
                            .collect::<Vec<_>>()
                            .join(", "),
                    );
                }
                out.push(ok);
            }
            None
        }
        (Ok(_), None) => None,
    };
    if let Some(warning) = could_not {
        out.push(warning);
        out.extend(fallback_findings(facts, &sid_of));
    }
    out
}

fn denied_finding(principal: &str, d: &SimulatedDecision, sid: &str) -> Finding {
    let by = if d.denied_by_organizations {
        " by an organization SCP"
    } else if d.denied_by_boundary {
        " by a permissions boundary"
    } else if d.decision == "explicitDeny" {
        " by an explicit Deny"
    } else {
        ""
    };
    let pass_role = if d.action.eq_ignore_ascii_case("iam:PassRole") {
        " with the condition iam:PassedToService = ec2.amazonaws.com"
    } else {
        ""
    };
    let fix = if by.is_empty() {
        format!(
            "grant {} on {}{pass_role} (statement {sid} of deploy/iam-policy.json)",
            d.action, d.resource
        )
    } else {
        format!(
            "lift the denial{by} of {} on {}, which the controller needs (statement {sid} of deploy/iam-policy.json)",
            d.action, d.resource
        )
    };
    let mut f = Finding::problem(
        Check::Permissions,
        format!(
            "{principal} may not call {} on {} ({}{by})",
            d.action, d.resource, d.decision
        ),
        fix,
    )
    .with("principal", principal)
    .with("action", &d.action)
    .with("resource", &d.resource)
    .with("decision", &d.decision)
    .with("statement", sid)
    .reason(Reason::AccessDenied.as_str());
    if !d.missing_context.is_empty() {
        f = f.with("missingContext", d.missing_context.join(","));
    }
    f
}

/// Without simulation, the `AccessDenied` answers seen are the evidence: the
/// controller's own (in the binding's status) and doctor's reads.
fn fallback_findings(facts: &Facts, sid_of: &dyn Fn(&str) -> String) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Subject::Binding {
        key,
        cluster: Some(view),
        ..
    } = &facts.subject
        && let Some(status) = &view.status
        && let Some(c) = status.condition("Ready")
        && c.reason == Reason::AccessDenied.as_str()
    {
        out.push(
            Finding::problem(
                Check::Permissions,
                format!("the controller reports AccessDenied for binding {key}: {}", c.message),
                "grant the action its message names as in deploy/iam-policy.json, and check permission boundaries, SCPs and iam:PassRole",
            )
            .with("conditionReason", "AccessDenied")
            .reason(Reason::AccessDenied.as_str()),
        );
    }
    let mut seen = BTreeSet::new();
    for e in &facts.permissions.denied_reads {
        let action = format!("{}:{}", e.service, e.action);
        if !seen.insert(action.clone()) {
            continue;
        }
        let sid = sid_of(&action);
        out.push(
            Finding::problem(
                Check::Permissions,
                format!(
                    "the credentials doctor ran with ({}) may not call {action}, which the controller needs",
                    facts.caller.arn
                ),
                format!(
                    "if these are the controller's credentials, grant {action} (statement {sid} of deploy/iam-policy.json)"
                ),
            )
            .with("statement", sid)
            .aws_error(e)
            .reason(Reason::AccessDenied.as_str()),
        );
    }
    out
}

/// Check 7: a role session chained through AssumeRole lasts at most 3600 s.
/// `IPB_ASSUME_ROLE_DURATION_SECONDS` (`--assume-role-duration-seconds`) is
/// what the controller requests when a policy's `spec.account` sends a
/// binding to another account; `run`, `plan` and `apply` refuse to start with
/// a value STS would reject, and doctor says why.
#[must_use]
pub fn check_session_duration(value: Option<&str>) -> Finding {
    let Some(raw) = value else {
        return Finding::ok(
            Check::SessionDuration,
            format!("no chained role session is configured ({SESSION_DURATION_ENV} unset)"),
        );
    };
    let fix = format!(
        "set {SESSION_DURATION_ENV} to between {MIN_SESSION_SECONDS} and {MAX_CHAINED_SESSION_SECONDS} seconds"
    );
    // The controller's own rule (`run` refuses to start on what it refuses).
    let f = match crate::cli::session_seconds(raw) {
        Err(crate::cli::SessionError::NotSeconds) => Finding::problem(
            Check::SessionDuration,
            format!("{SESSION_DURATION_ENV}={raw:?} is not a number of seconds"),
            fix,
        ),
        Err(crate::cli::SessionError::OverChainLimit(s)) => Finding::problem(
            Check::SessionDuration,
            format!(
                "a chained role session asks for {s} s; role chaining caps sessions at {MAX_CHAINED_SESSION_SECONDS} s and STS rejects more (ValidationError: DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining)"
            ),
            fix,
        )
        .with("awsError", "ValidationError"),
        Err(crate::cli::SessionError::BelowMinimum(s)) => Finding::problem(
            Check::SessionDuration,
            format!("a role session of {s} s is below STS's minimum of {MIN_SESSION_SECONDS} s"),
            fix,
        )
        .with("awsError", "ValidationError"),
        Ok(s) => Finding::ok(
            Check::SessionDuration,
            format!("a chained role session asks for {s} s, within the {MAX_CHAINED_SESSION_SECONDS} s limit"),
        ),
    };
    f.with("durationSeconds", raw.trim())
}

/// What the report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TargetView {
    Binding {
        namespace: String,
        name: String,
        source: String,
    },
    Instance {
        id: String,
    },
    Profile {
        name: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub problem: usize,
}

/// The report, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: TargetView,
    pub cluster_id: String,
    /// The identity doctor ran as.
    pub caller: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    pub exit_code: i32,
}

impl Report {
    #[must_use]
    pub fn new(facts: &Facts, checks: fn(&Facts) -> Vec<Finding>) -> Self {
        let findings = checks(facts);
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        let summary = Summary {
            ok: count(Severity::Ok),
            warning: count(Severity::Warning),
            problem: count(Severity::Problem),
        };
        let target = match &facts.subject {
            Subject::Binding { key, source, .. } => TargetView::Binding {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                source: source.clone(),
            },
            Subject::Instance { id } => TargetView::Instance { id: id.clone() },
            Subject::Profile { name } => TargetView::Profile { name: name.clone() },
        };
        Self {
            target,
            cluster_id: facts.cluster_id.clone(),
            caller: facts.caller.arn.clone(),
            profile: facts.profile_name.clone(),
            exit_code: exit_code(&findings),
            findings,
            summary,
        }
    }
}

/// 1 when any finding is a problem, else 0 (warnings pass).
#[must_use]
pub fn exit_code(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.severity == Severity::Problem))
}

/// The report for people: one block per finding, problems stand out.
#[must_use]
pub fn render_text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let what = match &report.target {
        TargetView::Binding {
            namespace,
            name,
            source,
        } => format!("binding {namespace}/{name} (from {source})"),
        TargetView::Instance { id } => format!("instance {id}"),
        TargetView::Profile { name } => format!("instance profile {name}"),
    };
    let _ = writeln!(
        out,
        "doctor: {what}, cluster id {}, as {}",
        report.cluster_id, report.caller
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{:<8} {:<17} {}",
            f.severity.label(),
            f.check.as_str(),
            f.summary
        );
        if !f.evidence.is_empty() {
            let ev: Vec<String> = f.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "{:27}evidence: {}", "", ev.join(" "));
        }
        if f.severity != Severity::Ok
            && let Some(fix) = &f.fix
        {
            let _ = writeln!(out, "{:27}fix: {fix}", "");
        }
        if let Some(reason) = f.reason {
            let _ = writeln!(out, "{:27}controller reason: {reason}", "");
        }
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} problem(s), {} warning(s), {} ok; exit {}",
        s.problem, s.warning, s.ok, report.exit_code
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::RoleRef;
    use crate::crd::{Condition, InstanceSelector};

    const CLUSTER: &str = "test";

    fn key() -> BindingKey {
        BindingKey {
            namespace: "team-a".into(),
            name: "web".into(),
        }
    }

    fn spec(role: &str, ids: &[&str]) -> InstanceProfileBindingSpec {
        InstanceProfileBindingSpec {
            role: role.into(),
            instance_profile: None,
            instances: InstanceSelector {
                ids: ids.iter().map(|s| (*s).to_string()).collect(),
                tags: BTreeMap::new(),
            },
            replace_foreign_associations: false,
            deletion_policy: crate::crd::DeletionPolicy::Delete,
        }
    }

    fn own_name() -> String {
        naming::profile_name(CLUSTER, &key())
    }

    fn profile(name: &str, id: &str, roles: &[&str], owned: bool) -> Profile {
        Profile {
            name: name.into(),
            path: "/ipb/test/".into(),
            arn: format!("arn:aws:iam::123456789012:instance-profile/ipb/test/{name}"),
            id: id.into(),
            roles: roles
                .iter()
                .map(|r| RoleRef {
                    name: (*r).into(),
                    arn: format!("arn:aws:iam::123456789012:role/{r}"),
                })
                .collect(),
            tags: Some(if owned {
                naming::ownership_tags(CLUSTER, &key(), None)
            } else {
                BTreeMap::new()
            }),
        }
    }

    fn role(name: &str, trusts_ec2: bool) -> RoleFacts {
        RoleFacts {
            wanted: name.into(),
            found: Read::Got(Some(RoleInfo {
                name: name.into(),
                arn: format!("arn:aws:iam::123456789012:role/{name}"),
                trusts_ec2,
            })),
            near: None,
        }
    }

    fn assoc(instance: &str, profile: &Profile, profile_id: &str) -> Association {
        Association {
            id: format!("iip-assoc-{instance}"),
            instance_id: instance.into(),
            profile_arn: profile.arn.clone(),
            profile_id: profile_id.into(),
            state: AssociationState::Associated,
        }
    }

    fn selected(id: &str, association: Option<Association>) -> InstanceFacts {
        InstanceFacts {
            id: id.into(),
            state: Some(RunState::Running),
            association,
            relation: Relation::Selected,
        }
    }

    fn denied(action: &'static str) -> AwsError {
        AwsError {
            kind: ErrorKind::AccessDenied,
            service: "iam",
            action,
            code: "AccessDenied".into(),
            message: format!("not authorized to perform iam:{action}"),
        }
    }

    fn decision(action: &str, allowed: bool) -> SimulatedDecision {
        SimulatedDecision {
            action: action.into(),
            resource: "*".into(),
            allowed,
            decision: if allowed { "allowed" } else { "implicitDeny" }.into(),
            denied_by_organizations: false,
            denied_by_boundary: false,
            missing_context: Vec::new(),
        }
    }

    /// A healthy binding: its profile, one role trusted by EC2, one instance on the current id.
    fn healthy() -> Facts {
        let p = profile(&own_name(), "AIPAOWN", &["web-app"], true);
        Facts {
            cluster_id: CLUSTER.into(),
            path_prefix: "/ipb/".into(),
            subject: Subject::Binding {
                key: key(),
                spec: Box::new(spec("web-app", &["i-0123456789abcdef0"])),
                cluster: None,
                source: "f.yaml#1".into(),
            },
            caller: CallerIdentity {
                account: "123456789012".into(),
                arn: "arn:aws:sts::123456789012:assumed-role/ipb-controller/s".into(),
            },
            profile_name: Some(own_name()),
            instances: Read::Got(vec![selected(
                "i-0123456789abcdef0",
                Some(assoc("i-0123456789abcdef0", &p, "AIPAOWN")),
            )]),
            profile: Read::Got(Some(p)),
            duplicates: Some(Read::Got(DuplicateScan::default())),
            role: Some(role("web-app", true)),
            permissions: PermissionFacts {
                principal: Ok("arn:aws:iam::123456789012:role/ipb-controller".into()),
                simulation: Some(Ok(vec![decision("iam:PassRole", true)])),
                not_simulated: BTreeMap::new(),
                denied_reads: Vec::new(),
            },
            session_duration: None,
        }
    }

    fn problems(findings: &[Finding]) -> Vec<&Finding> {
        findings
            .iter()
            .filter(|f| f.severity == Severity::Problem)
            .collect()
    }

    #[test]
    fn healthy_binding_passes_every_check() {
        let findings = run_checks(&healthy());
        assert!(problems(&findings).is_empty(), "{findings:#?}");
        assert_eq!(exit_code(&findings), 0);
        let checks: BTreeSet<Check> = findings.iter().map(|f| f.check).collect();
        for c in [
            Check::Profile,
            Check::ProfileRole,
            Check::Role,
            Check::TrustPolicy,
            Check::Association,
            Check::Permissions,
            Check::SessionDuration,
        ] {
            assert!(checks.contains(&c), "{c:?} missing: {findings:#?}");
        }
    }

    #[test]
    fn missing_profile_is_a_problem() {
        let mut f = healthy();
        f.profile = Read::Got(None);
        let out = check_profile(&f);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Problem);
        assert!(out[0].summary.contains("does not exist"), "{out:?}");
        assert_eq!(out[0].evidence["expectedPath"], "/ipb/test/");
    }

    #[test]
    fn profile_without_our_tags_is_foreign() {
        let mut f = healthy();
        let mut p = profile(&own_name(), "AIPAX", &["web-app"], false);
        p.tags = Some(naming::ownership_tags("other", &key(), None));
        f.profile = Read::Got(Some(p));
        let out = check_profile(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].reason, Some("ForeignProfileExists"));
        assert_eq!(out[0].evidence["tagClusterId"], "other");
        assert!(
            out[0]
                .fix
                .as_deref()
                .is_some_and(|x| x.contains("--cluster-id other")),
            "{out:?}"
        );
    }

    #[test]
    fn profile_at_another_path_is_a_warning() {
        let mut f = healthy();
        if let Read::Got(Some(p)) = &mut f.profile {
            p.path = "/elsewhere/".into();
        }
        let out = check_profile(&f);
        assert!(
            out.iter()
                .any(|x| x.severity == Severity::Warning && x.summary.contains("/elsewhere/")),
            "{out:?}"
        );
    }

    #[test]
    fn duplicates_of_a_binding_are_a_problem_and_a_partial_scan_says_so() {
        let mut f = healthy();
        f.duplicates = Some(Read::Got(DuplicateScan {
            owned: vec![profile("ipb-copy", "AIPACOPY", &[], true)],
            scanned: 100,
            candidates: 250,
        }));
        let out = check_profile(&f);
        let dup = out
            .iter()
            .find(|x| x.severity == Severity::Problem)
            .expect("duplicate problem");
        assert!(dup.summary.contains("ipb-copy"), "{dup:?}");
        assert_eq!(dup.evidence["duplicateIds"], "AIPACOPY");
        assert!(
            out.iter()
                .any(|x| x.severity == Severity::Warning && x.summary.contains("100 of the 250")),
            "{out:?}"
        );
    }

    #[test]
    fn named_profile_reports_its_owner_and_a_misnamed_copy() {
        let mut f = healthy();
        f.subject = Subject::Profile {
            name: "ipb-copy".into(),
        };
        f.profile_name = Some("ipb-copy".into());
        f.profile = Read::Got(Some(profile("ipb-copy", "AIPACOPY", &["web-app"], true)));
        let out = check_profile(&f);
        assert_eq!(out[0].severity, Severity::Ok);
        assert!(out[0].summary.contains("belongs to binding team-a/web"));
        assert_eq!(out[1].severity, Severity::Warning);
        assert_eq!(out[1].evidence["expectedName"], own_name());

        f.profile = Read::Got(Some(profile("ipb-copy", "AIPACOPY", &[], false)));
        let out = check_profile(&f);
        assert_eq!(out.len(), 1);
        assert!(out[0].summary.contains("not managed by this controller"));
    }

    #[test]
    fn profile_roles_none_other_and_many() {
        let mut f = healthy();
        f.profile = Read::Got(Some(profile(&own_name(), "AIPAOWN", &[], true)));
        let out = check_profile_role(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert!(
            out[0]
                .summary
                .contains("No roles attached to instance profile")
        );
        let fix = out[0].fix.clone().unwrap_or_default();
        assert!(
            fix.starts_with("add the role") && fix.contains("--role-name web-app"),
            "{fix}"
        );

        f.profile = Read::Got(Some(profile(&own_name(), "AIPAOWN", &["db-app"], true)));
        let out = check_profile_role(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].evidence["wantedRole"], "web-app");

        f.profile = Read::Got(Some(profile(&own_name(), "AIPAOWN", &["a", "b"], true)));
        assert_eq!(check_profile_role(&f)[0].evidence["roles"], "a,b");
    }

    #[test]
    fn missing_role_names_the_near_match() {
        let mut f = healthy();
        f.role = Some(RoleFacts {
            wanted: "web-app".into(),
            found: Read::Got(None),
            near: Some("Web-App".into()),
        });
        let out = check_role(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].reason, Some("RoleNotFound"));
        assert!(out[0].summary.contains("did you mean Web-App"));
        assert_eq!(out[0].fix.as_deref(), Some("set spec.role to Web-App"));
        assert!(
            check_trust_policy(&f).is_empty(),
            "no trust check without a role"
        );
    }

    #[test]
    fn role_arn_must_match_the_role_found() {
        let mut f = healthy();
        let mut r = role("web-app", true);
        r.wanted = "arn:aws:iam::123456789012:role/team/web-app".into();
        f.role = Some(r);
        let out = check_role(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert!(out[0].summary.contains("path or account differ"));
    }

    #[test]
    fn trust_policy_without_ec2_is_a_problem() {
        let mut f = healthy();
        f.role = Some(role("lambda-only", false));
        let out = check_trust_policy(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].reason, Some("TrustPolicyMissingEc2"));
        assert!(
            out[0]
                .fix
                .as_deref()
                .is_some_and(|x| x.contains("ec2.amazonaws.com"))
        );
    }

    #[test]
    fn instance_on_an_old_profile_id_needs_replacing() {
        let mut f = healthy();
        let p = profile(&own_name(), "AIPANEW", &["web-app"], true);
        f.instances = Read::Got(vec![selected(
            "i-0123456789abcdef0",
            Some(assoc("i-0123456789abcdef0", &p, "AIPAOLD")),
        )]);
        f.profile = Read::Got(Some(p));
        let out = check_associations(&f);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Problem);
        assert!(
            out[0]
                .fix
                .as_deref()
                .is_some_and(|x| x.starts_with("replace the association")),
            "{out:?}"
        );
        assert_eq!(out[0].evidence["heldProfileId"], "AIPAOLD");
        assert_eq!(out[0].evidence["currentProfileId"], "AIPANEW");
    }

    #[test]
    fn foreign_association_is_a_problem_unless_replacement_is_allowed() {
        let mut f = healthy();
        let other = profile("someone-elses", "AIPAOTHER", &[], false);
        f.instances = Read::Got(vec![selected(
            "i-0123456789abcdef0",
            Some(assoc("i-0123456789abcdef0", &other, "AIPAOTHER")),
        )]);
        let out = check_associations(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].reason, Some("ForeignAssociation"));
        if let Subject::Binding { spec, .. } = &mut f.subject {
            spec.replace_foreign_associations = true;
        }
        assert_eq!(check_associations(&f)[0].severity, Severity::Warning);
    }

    #[test]
    fn transitional_missing_and_unselected_associations() {
        let mut f = healthy();
        let p = profile(&own_name(), "AIPAOWN", &["web-app"], true);
        let mut stuck = assoc("i-0123456789abcdef0", &p, "AIPAOWN");
        stuck.state = AssociationState::Associating;
        f.instances = Read::Got(vec![
            selected("i-0123456789abcdef0", Some(stuck)),
            selected("i-00000000000000001", None),
            InstanceFacts {
                id: "i-00000000000000002".into(),
                state: Some(RunState::Running),
                association: Some(assoc("i-00000000000000002", &p, "AIPAOWN")),
                relation: Relation::Unselected { remembered: false },
            },
            InstanceFacts {
                id: "i-00000000000000003".into(),
                state: None,
                association: None,
                relation: Relation::Selected,
            },
        ]);
        let out = check_associations(&f);
        let sev: Vec<Severity> = out.iter().map(|x| x.severity).collect();
        assert_eq!(
            sev,
            vec![
                Severity::Warning,
                Severity::Problem,
                Severity::Warning,
                Severity::Warning
            ],
            "{out:#?}"
        );
        assert!(out[0].summary.contains("associating"));
        assert_eq!(out[2].reason, Some("DeletionBlocked"));
    }

    #[test]
    fn requested_instance_on_a_deleted_profile() {
        let mut f = healthy();
        let gone = profile("somebody", "AIPAGONE", &[], false);
        f.subject = Subject::Instance {
            id: "i-0123456789abcdef0".into(),
        };
        f.profile_name = Some("somebody".into());
        f.profile = Read::Got(None);
        f.instances = Read::Got(vec![InstanceFacts {
            relation: Relation::Requested,
            ..selected(
                "i-0123456789abcdef0",
                Some(assoc("i-0123456789abcdef0", &gone, "AIPAGONE")),
            )
        }]);
        assert!(
            check_profile(&f).is_empty(),
            "reported once, by the association"
        );
        let out = check_associations(&f);
        assert_eq!(out[0].severity, Severity::Problem);
        assert!(out[0].summary.contains("no longer exists"), "{out:?}");
    }

    #[test]
    fn denied_reads_are_warnings_where_they_block_a_check() {
        let mut f = healthy();
        f.profile = Read::Denied(denied("GetInstanceProfile"));
        let out = check_profile(&f);
        assert_eq!(out[0].severity, Severity::Warning);
        assert_eq!(out[0].evidence["awsError"], "AccessDenied");
    }

    #[test]
    fn simulated_denials_name_action_statement_and_condition() {
        let mut f = healthy();
        f.permissions.simulation = Some(Ok(vec![
            decision("iam:GetRole", true),
            decision("iam:PassRole", false),
        ]));
        let out = check_permissions(&f);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].severity, Severity::Problem);
        assert_eq!(out[0].evidence["statement"], "PassRolesToEc2");
        assert!(
            out[0]
                .fix
                .as_deref()
                .is_some_and(|x| x.contains("iam:PassedToService")),
            "{out:?}"
        );
    }

    #[test]
    fn no_simulation_is_a_warning_with_the_errors_seen_as_fallback() {
        let mut f = healthy();
        f.permissions.simulation = Some(Err(AwsError {
            kind: ErrorKind::Transient,
            service: "iam",
            action: "SimulatePrincipalPolicy",
            code: "Unknown".into(),
            message: String::new(),
        }));
        let out = check_permissions(&f);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Warning);
        assert!(out[0].summary.contains("could not simulate"));

        f.permissions.simulation = Some(Err(denied("SimulatePrincipalPolicy")));
        f.permissions.denied_reads = vec![denied("GetRole"), denied("GetRole")];
        if let Subject::Binding { cluster, .. } = &mut f.subject {
            *cluster = Some(Box::new(ClusterView {
                generation: Some(1),
                status: Some(InstanceProfileBindingStatus {
                    conditions: vec![Condition {
                        type_: "Ready".into(),
                        status: "False".into(),
                        reason: "AccessDenied".into(),
                        message: "access denied for ec2:AssociateIamInstanceProfile".into(),
                        last_transition_time: String::new(),
                        observed_generation: Some(1),
                    }],
                    ..InstanceProfileBindingStatus::default()
                }),
            }));
        }
        let out = check_permissions(&f);
        let sev: Vec<Severity> = out.iter().map(|x| x.severity).collect();
        assert_eq!(
            sev,
            vec![Severity::Warning, Severity::Problem, Severity::Problem],
            "{out:#?}"
        );
        assert!(out[0].summary.contains("iam:SimulatePrincipalPolicy"));
        assert!(out[1].summary.contains("AssociateIamInstanceProfile"));
        assert_eq!(out[2].evidence["statement"], "ListInstanceProfilesAndRoles");
    }

    #[test]
    fn unsupported_principal_is_a_warning() {
        let mut f = healthy();
        f.permissions.principal = Err("the root user".into());
        f.permissions.simulation = None;
        let out = check_permissions(&f);
        assert_eq!(out[0].severity, Severity::Warning);
        assert!(out[0].summary.contains("the root user"));
    }

    #[test]
    fn session_duration_is_capped_at_an_hour() {
        assert_eq!(check_session_duration(None).severity, Severity::Ok);
        assert_eq!(check_session_duration(Some("3600")).severity, Severity::Ok);
        // What `run` accepts, doctor accepts: the one rule in cli::session_seconds.
        for good in ["900s", "900", " 1800 "] {
            assert_eq!(
                check_session_duration(Some(good)).severity,
                Severity::Ok,
                "{good}"
            );
            assert!(crate::cli::session_seconds(good).is_ok(), "{good}");
        }
        for bad in ["3601", "43200", "600", "1h"] {
            assert!(crate::cli::session_seconds(bad).is_err(), "{bad}");
            let f = check_session_duration(Some(bad));
            assert_eq!(f.severity, Severity::Problem, "{bad}");
            assert!(
                f.fix
                    .as_deref()
                    .is_some_and(|x| x.contains(SESSION_DURATION_ENV))
            );
        }
    }

    #[test]
    fn the_shipped_policy_is_read_whole() {
        let actions = policy_actions(CONTROLLER_POLICY);
        let find = |a: &str| actions.iter().find(|x| x.action == a).cloned();
        assert_eq!(
            find("iam:PassRole").map(|a| (a.resource, a.sid)),
            Some((ResourceKind::Role, "PassRolesToEc2".to_string()))
        );
        assert_eq!(
            find("iam:CreateInstanceProfile").map(|a| a.resource),
            Some(ResourceKind::Profile)
        );
        assert_eq!(
            find("ec2:AssociateIamInstanceProfile").map(|a| a.resource),
            Some(ResourceKind::Instance)
        );
        assert_eq!(
            find("ec2:DescribeInstances").map(|a| a.resource),
            Some(ResourceKind::Any)
        );
        assert!(
            find("sts:AssumeRole").is_none(),
            "optional statements are skipped"
        );
        let unique: BTreeSet<&str> = actions.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(unique.len(), actions.len());
        assert!(actions.len() >= 15, "{actions:?}");
    }

    #[test]
    fn simulation_uses_the_bindings_resources() {
        let f = healthy();
        let r = simulation_resources(&f, "eu-west-1");
        assert_eq!(
            r.profile_arn,
            format!(
                "arn:aws:iam::123456789012:instance-profile/ipb/test/{}",
                own_name()
            )
        );
        assert_eq!(
            r.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/web-app")
        );
        assert_eq!(
            r.instance_arn,
            "arn:aws:ec2:eu-west-1:123456789012:instance/i-0123456789abcdef0"
        );
        let c = simulation_context(CLUSTER, &r.profile_arn);
        assert_eq!(c["iam:PassedToService"], "ec2.amazonaws.com");
        assert_eq!(c["aws:RequestTag/instanceprofile.dev/cluster-id"], CLUSTER);
    }

    #[test]
    fn binding_instances_cover_selected_missing_and_unselected_holders() {
        let p = profile(&own_name(), "AIPAOWN", &["web-app"], true);
        let mut p_mem = p.clone();
        if let Some(t) = &mut p_mem.tags {
            t.extend(naming::instances_to_tags(
                &["i-00000000000000002".to_string()].into_iter().collect(),
            ));
        }
        let live = vec![
            Instance {
                id: "i-00000000000000001".into(),
                state: RunState::Running,
                tags: BTreeMap::new(),
            },
            Instance {
                id: "i-00000000000000002".into(),
                state: RunState::Stopped,
                tags: BTreeMap::new(),
            },
        ];
        let assocs = vec![assoc("i-00000000000000002", &p, "AIPAOWN")];
        let s = spec("web-app", &["i-00000000000000001", "i-0000000000000000f"]);
        let out = binding_instances(&s, &own_name(), Some(&p_mem), &live, &assocs);
        let view: Vec<(&str, Relation, bool)> = out
            .iter()
            .map(|i| (i.id.as_str(), i.relation, i.state.is_some()))
            .collect();
        assert_eq!(
            view,
            vec![
                ("i-00000000000000001", Relation::Selected, true),
                (
                    "i-00000000000000002",
                    Relation::Unselected { remembered: true },
                    true
                ),
                ("i-0000000000000000f", Relation::Selected, false),
            ]
        );
    }

    #[test]
    fn live_association_prefers_the_one_not_leaving() {
        let p = profile("x", "AIPA", &[], false);
        let mut leaving = assoc("i-1", &p, "OLD");
        leaving.state = AssociationState::Disassociating;
        let new = assoc("i-1", &p, "NEW");
        assert_eq!(
            live_association(&[leaving.clone(), new], "i-1").map(|a| a.profile_id),
            Some("NEW".into())
        );
        assert_eq!(
            live_association(&[leaving], "i-1").map(|a| a.profile_id),
            Some("OLD".into())
        );
        assert!(live_association(&[], "i-1").is_none());
    }

    #[test]
    fn flag_values_are_checked() {
        use crate::cli::{parse_binding_ref, parse_instance_id, parse_profile_name};
        assert_eq!(parse_binding_ref("team-a/web"), Ok(key()));
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
    fn report_renders_and_counts() {
        let mut f = healthy();
        f.role = Some(role("web-app", false));
        let report = Report::new(&f, run_checks);
        assert_eq!(report.exit_code, 1);
        assert_eq!(report.summary.problem, 1);
        let text = render_text(&report);
        assert!(text.contains("PROBLEM  trust-policy"), "{text}");
        assert!(
            text.contains("controller reason: TrustPolicyMissingEc2"),
            "{text}"
        );
        assert!(text.ends_with("exit 1\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["exitCode"], 1);
        assert_eq!(json["target"]["kind"], "binding");
        assert!(
            json["findings"].as_array().is_some_and(|a| a
                .iter()
                .any(|x| x["check"] == "trust-policy"
                    && x["severity"] == "problem"
                    && x["reason"] == "TrustPolicyMissingEc2")),
            "{json}"
        );
    }
}
