//! The checks that look at one thing each: what the controller reports in the
//! binding's status, the profile's one role (2), the role (3), its trust
//! policy (4) and the chained session's length (7).

use super::facts::{Facts, Read, RoleFacts, Subject};
use super::finding::{Check, Finding, could_not_read};
use crate::aws::assume::{MAX_CHAINED_SESSION_SECONDS, MIN_SESSION_SECONDS};
use crate::cli::{SessionError, session_seconds};
use crate::reconcile::Reason;
use crate::reconcile::role::role_name;

/// Environment variable naming the session length of a chained AssumeRole.
pub(super) const SESSION_DURATION_ENV: &str = "IPB_ASSUME_ROLE_DURATION_SECONDS";

/// What the controller reports in the binding's status.
#[must_use]
pub(super) fn check_status(facts: &Facts) -> Vec<Finding> {
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

/// Check 2: the profile holds exactly one role, the one wanted.
#[must_use]
pub(super) fn check_profile_role(facts: &Facts) -> Vec<Finding> {
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
pub(super) fn check_role(facts: &Facts) -> Vec<Finding> {
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
pub(super) fn check_trust_policy(facts: &Facts) -> Vec<Finding> {
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

/// Check 7: a role session chained through AssumeRole lasts at most 3600 s.
/// `IPB_ASSUME_ROLE_DURATION_SECONDS` (`--assume-role-duration-seconds`) is
/// what the controller requests when a policy's `spec.account` sends a
/// binding to another account; `run`, `plan` and `apply` refuse to start with
/// a value STS would reject, and doctor says why.
#[must_use]
pub(super) fn check_session_duration(value: Option<&str>) -> Finding {
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
    let f = match session_seconds(raw) {
        Err(SessionError::NotSeconds) => Finding::problem(
            Check::SessionDuration,
            format!("{SESSION_DURATION_ENV}={raw:?} is not a number of seconds"),
            fix,
        ),
        Err(SessionError::OverChainLimit(s)) => Finding::problem(
            Check::SessionDuration,
            format!(
                "a chained role session asks for {s} s; role chaining caps sessions at {MAX_CHAINED_SESSION_SECONDS} s and STS rejects more (ValidationError: DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining)"
            ),
            fix,
        )
        .with("awsError", "ValidationError"),
        Err(SessionError::BelowMinimum(s)) => Finding::problem(
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
