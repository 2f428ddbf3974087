//! Check 6: the controller's own permissions. The actions of the shipped IAM
//! policy, simulated for the controller's principal on the resources it would
//! touch; without the simulator, the `AccessDenied` answers seen.

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Facts, PermissionFacts, Read, Subject};
use super::finding::{Check, Finding};
use crate::aws::iam::{SimulatedDecision, policy_strings};
use crate::aws::{Aws, AwsError, ErrorKind};
use crate::naming;
use crate::reconcile::Reason;
use crate::reconcile::model::path_of;

/// The controller's IAM policy, as shipped: check 6 simulates every action in it.
pub(super) const CONTROLLER_POLICY: &str = include_str!("../../deploy/iam-policy.json");

/// Statements whose `Sid` starts with this grant what only optional features use.
const OPTIONAL_SID_PREFIX: &str = "Optional";

/// An instance id to simulate EC2 actions on when no instance is known.
const EXAMPLE_INSTANCE: &str = "i-0123456789abcdef0";

/// Where in AWS the controller's permissions are simulated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SimulationResources {
    pub(super) profile_arn: String,
    pub(super) role_arn: Option<String>,
    pub(super) instance_arn: String,
}

pub(super) fn simulation_resources(facts: &Facts, region: &str) -> SimulationResources {
    let partition = facts.caller.partition();
    let account = &facts.caller.account;
    let cluster_path = facts.cluster_path();
    let profile_arn = match (&facts.subject, facts.current_profile()) {
        (Subject::Binding { .. }, Some(p)) => p.arn.clone(),
        (_, Some(p)) if p.path.starts_with(&cluster_path) => p.arn.clone(),
        (Subject::Binding { spec, .. }, None) => format!(
            "arn:{partition}:iam::{account}:instance-profile{}{}",
            path_of(spec, &facts.path_prefix, &facts.cluster_id),
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
pub(super) enum ResourceKind {
    Any,
    Profile,
    Role,
    Instance,
}

/// One action of the controller's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PolicyAction {
    pub(super) sid: String,
    pub(super) action: String,
    pub(super) resource: ResourceKind,
}

/// Every action of the shipped policy but the optional ones, once each.
pub(super) fn policy_actions(policy: &str) -> Vec<PolicyAction> {
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(policy) else {
        return Vec::new();
    };
    let mut out: Vec<PolicyAction> = Vec::new();
    for st in doc["Statement"].as_array().into_iter().flatten() {
        let sid = st["Sid"].as_str().unwrap_or_default();
        if sid.starts_with(OPTIONAL_SID_PREFIX) || st["Effect"] != "Allow" {
            continue;
        }
        let resource = policy_strings(st.get("Resource"))
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
        for action in policy_strings(st.get("Action")) {
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
pub(super) fn simulation_context(cluster_id: &str, profile_arn: &str) -> BTreeMap<String, String> {
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

pub(super) async fn gather_permissions(
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

/// Check 6: the controller's own permissions, by simulation where it works,
/// else from the `AccessDenied` answers seen.
#[must_use]
pub(super) fn check_permissions(facts: &Facts) -> Vec<Finding> {
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
