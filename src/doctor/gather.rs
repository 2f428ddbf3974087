//! Reading the facts: the binding from the cluster or a file, then AWS, with
//! read-only calls only, in a fixed order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tokio::time::Instant;

use super::facts::{
    ClusterView, CouldNotRun, DuplicateScan, Facts, InstanceFacts, PermissionFacts, Read, Relation,
    RoleFacts, Subject, Target,
};
use super::permissions::gather_permissions;
use crate::aws::{Association, Aws, AwsError, ErrorKind, Instance, Profile};
use crate::cli::KubeArgs;
use crate::crd::{InstanceProfileBinding, InstanceProfileBindingSpec};
use crate::naming::{self, BindingKey};
use crate::reconcile::observe::{Observed, Snapshot, holders, live_associations};
use crate::reconcile::quota::Usage;
use crate::reconcile::role::{near_match, role_name};
use crate::reconcile::{EngineConfig, selector_of};

/// Other profiles whose tags are read when looking for a binding's duplicates.
const DUPLICATE_SCAN_LIMIT: usize = 100;

/// Reads the target's binding (from the cluster or a file); instances and
/// profiles need nothing yet.
pub(super) async fn resolve(target: &Target, cluster: &KubeArgs) -> Result<Subject, CouldNotRun> {
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
                key: fb.key(),
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

/// Reads every fact the checks need. Read-only: List, Get, Describe,
/// GetCallerIdentity, GetAccountSummary and SimulatePrincipalPolicy calls,
/// nothing else.
///
/// # Errors
/// When AWS cannot be reached or rejects the credentials.
pub(super) async fn gather(
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
    let seen = match &subject {
        Subject::Binding { key, spec, .. } => {
            read_binding(aws, config, key, spec, &mut denied).await?
        }
        Subject::Instance { id } => read_instance(aws, id, &mut denied).await?,
        Subject::Profile { name } => read_profile(aws, name, &mut denied).await?,
    };
    let role = match seen.wanted_role {
        Some(wanted) => Some(role_facts(aws, wanted, &mut denied).await?),
        None => None,
    };
    let profile_usage = read_usage(aws, &mut denied).await;
    let mut facts = Facts {
        cluster_id: config.cluster_id.clone(),
        path_prefix: config.path_prefix.clone(),
        subject,
        caller,
        profile_name: seen.profile_name,
        profile: seen.profile,
        duplicates: seen.duplicates,
        role,
        instances: seen.instances,
        permissions: PermissionFacts {
            principal: Err(String::new()),
            simulation: None,
            not_simulated: BTreeMap::new(),
            denied_reads: Vec::new(),
        },
        session_duration,
        profile_usage,
        owner: None,
    };
    facts.permissions = gather_permissions(aws, &facts, principal_override, denied).await;
    Ok(facts)
}

/// The account's profile usage, read once. Unlike the other reads, any
/// failure is only a finding: the quota is advice, not the checklist; an
/// `AccessDenied` also counts among doctor's denied reads.
async fn read_usage(aws: &Aws, denied: &mut Vec<AwsError>) -> Result<Usage, AwsError> {
    let read = aws.profile_usage().await;
    if let Err(e) = &read
        && e.is(ErrorKind::AccessDenied)
    {
        denied.push(e.clone());
    }
    read.map(|(used, quota)| Usage { used, quota })
}

/// What the reads of one subject found: all the facts but the role's and
/// the permissions'.
struct Seen {
    profile_name: Option<String>,
    profile: Read<Option<Profile>>,
    duplicates: Option<Read<DuplicateScan>>,
    /// The role to look up: the binding's, or the one the profile holds.
    wanted_role: Option<String>,
    instances: Read<Vec<InstanceFacts>>,
}

/// A binding: its profile by the deterministic name, duplicates of it, the
/// instances it selects and those holding its profile.
async fn read_binding(
    aws: &Aws,
    config: &EngineConfig,
    key: &BindingKey,
    spec: &InstanceProfileBindingSpec,
    denied: &mut Vec<AwsError>,
) -> Result<Seen, CouldNotRun> {
    let cluster_id = &config.cluster_id;
    let name = config.profile_name(key);
    let profile = soft(aws.get_profile(&name).await, denied)?;
    let paths = config.snapshot_paths([spec]);
    let scan = scan_duplicates(aws, cluster_id, key, &name, &paths).await;
    let duplicates = soft(scan, denied)?;
    let instances = read_listings(aws, denied)
        .await?
        .map(|(live, assocs)| binding_instances(spec, &name, profile.found(), &live, &assocs));
    Ok(Seen {
        profile_name: Some(name),
        profile,
        duplicates: Some(duplicates),
        wanted_role: Some(spec.role.clone()),
        instances,
    })
}

/// An instance: its state, its live association, and the profile that names.
async fn read_instance(
    aws: &Aws,
    id: &str,
    denied: &mut Vec<AwsError>,
) -> Result<Seen, CouldNotRun> {
    let instance = soft(aws.describe_instance(id).await, denied)?;
    let assocs = soft(aws.describe_associations().await, denied)?;
    let association = assocs
        .got()
        .and_then(|a| live_associations(a.clone()).remove(id));
    let name = association.as_ref().map(|a| a.profile_name().to_string());
    let profile = match &name {
        Some(n) => soft(aws.get_profile(n).await, denied)?,
        None => Read::Got(None),
    };
    let instances = instance.and(assocs).map(|(instance, _)| {
        vec![InstanceFacts {
            id: id.to_string(),
            state: instance.map(|i| i.state),
            association,
            relation: Relation::Requested,
        }]
    });
    Ok(Seen {
        wanted_role: single_role(&profile),
        profile_name: name,
        profile,
        duplicates: None,
        instances,
    })
}

/// A profile by name, and the instances holding it.
async fn read_profile(
    aws: &Aws,
    name: &str,
    denied: &mut Vec<AwsError>,
) -> Result<Seen, CouldNotRun> {
    let profile = soft(aws.get_profile(name).await, denied)?;
    let instances = read_listings(aws, denied)
        .await?
        .map(|(live, assocs)| profile_holders(name, profile.found(), &live, &assocs));
    Ok(Seen {
        profile_name: Some(name.to_string()),
        wanted_role: single_role(&profile),
        profile,
        duplicates: None,
        instances,
    })
}

/// Every live instance and every live association (observe's two bulk
/// listings), or the first refusal.
async fn read_listings(
    aws: &Aws,
    denied: &mut Vec<AwsError>,
) -> Result<Read<(Vec<Instance>, Vec<Association>)>, CouldNotRun> {
    let live = soft(aws.describe_instances().await, denied)?;
    let assocs = soft(aws.describe_associations().await, denied)?;
    Ok(live.and(assocs))
}

/// The role of a profile that holds exactly one (several are check 2's problem).
fn single_role(profile: &Read<Option<Profile>>) -> Option<String> {
    let p = profile.found()?;
    p.roles.first().map(|r| r.name.clone())
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
    let readable = naming::readable_prefix(key);
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

/// The instances a binding selects, sliced from the listings as the
/// controller's observe step slices them, and those holding its profile
/// unselected.
pub(super) fn binding_instances(
    spec: &InstanceProfileBindingSpec,
    profile_name: &str,
    profile: Option<&Profile>,
    live: &[Instance],
    assocs: &[Association],
) -> Vec<InstanceFacts> {
    let snapshot = listings(live, assocs);
    let observed = Observed::from_snapshot(&snapshot, profile_name, &selector_of(spec));
    let selected = observed.selected.into_iter().map(|s| InstanceFacts {
        id: s.instance.id,
        state: Some(s.instance.state),
        association: s.association,
        relation: Relation::Selected,
    });
    let missing = observed.missing.into_iter().map(|id| InstanceFacts {
        id,
        state: None,
        association: None,
        relation: Relation::Selected,
    });
    let mut out: Vec<InstanceFacts> = selected.chain(missing).collect();
    let memory = profile
        .and_then(|p| p.tags.as_ref())
        .map(naming::instances_from_tags)
        .unwrap_or_default();
    let selected: BTreeSet<String> = out.iter().map(|i| i.id.clone()).collect();
    for id in holder_ids(assocs, profile_name, profile) {
        if !selected.contains(id) {
            let remembered = memory.contains(id);
            out.push(as_seen(&snapshot, id, Relation::Unselected { remembered }));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The instances holding the profile.
fn profile_holders(
    profile_name: &str,
    profile: Option<&Profile>,
    live: &[Instance],
    assocs: &[Association],
) -> Vec<InstanceFacts> {
    let snapshot = listings(live, assocs);
    holder_ids(assocs, profile_name, profile)
        .into_iter()
        .map(|id| as_seen(&snapshot, id, Relation::Holder))
        .collect()
}

/// The two listings as observe holds them (doctor reads the one profile it
/// examines itself).
fn listings(live: &[Instance], assocs: &[Association]) -> Snapshot {
    Snapshot::from_parts(
        Instant::now(),
        HashMap::new(),
        assocs.to_vec(),
        live.to_vec(),
    )
}

/// The instances any of whose associations holds the profile, a leaving one
/// too: doctor reports an instance on its way off the profile.
fn holder_ids<'a>(
    assocs: &'a [Association],
    profile_name: &str,
    profile: Option<&Profile>,
) -> BTreeSet<&'a str> {
    holders(assocs, profile_name, profile)
        .map(|a| a.instance_id.as_str())
        .collect()
}

/// An instance as the listings show it: its state (`None`: not live) and its
/// live association.
fn as_seen(snapshot: &Snapshot, id: &str, relation: Relation) -> InstanceFacts {
    InstanceFacts {
        id: id.to_string(),
        state: snapshot.instance(id).map(|i| i.state),
        association: snapshot.association(id),
        relation,
    }
}
