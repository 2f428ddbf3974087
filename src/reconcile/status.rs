//! *Report*: the status, conditions and requeue policy of one reconcile.

use crate::aws::AssociationState;
use crate::crd::{
    ASSOCIATED, Condition, InstanceProfileBindingStatus, InstanceStatus, NodeSelectionStatus,
    PROFILE_READY, ProfileStatus, READY, RECONCILING, ROLE_ATTACHED, RoleStatus, RotationStatus,
    STALLED,
};

use std::time::Duration;

use super::model::{
    ActionRecord, BindingInput, Decision, Desired, EngineConfig, Next, Outcome, Problem,
};
use super::observe::Observed;
use super::reason::{BackoffClass, Failure, Reason};
use super::role::unresolved;

/// RFC 3339 in UTC, second precision (the `metav1.Time` format): how the
/// status writes every time.
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Now, in [`TIME_FORMAT`].
#[must_use]
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime(TIME_FORMAT).to_string()
}

struct Verdict {
    ready: bool,
    reason: Reason,
    message: String,
    needs_user: bool,
    next: Next,
}

fn verdict(
    nodes_unwatched: bool,
    decision: &Decision,
    observed: &Observed,
    failure: Option<&Failure>,
    records: &[ActionRecord],
    deleted: bool,
) -> Verdict {
    if let Some(f) = failure {
        let reason = f.reason();
        return Verdict {
            ready: false,
            reason,
            message: f.message(),
            needs_user: reason.needs_person(),
            next: Next::Backoff(reason.backoff()),
        };
    }
    if let Some(p) = decision.problems.first() {
        let (reason, message) = match p {
            Problem::ForeignProfile { name } => (
                Reason::ForeignProfileExists,
                format!(
                    "an instance profile named {name} exists and its tags do not prove this binding owns it; it is left untouched: delete or rename it, or change the cluster id"
                ),
            ),
            Problem::ForeignAssociation {
                instance_id,
                profile_arn,
            } => (
                Reason::ForeignAssociation,
                format!(
                    "instance {instance_id} is associated with instance profile {profile_arn}, which this binding does not own; set replaceForeignAssociations: true to replace it{}",
                    more(decision.problems.len())
                ),
            ),
            Problem::DeletionBlocked { instance_ids } => (
                Reason::DeletionBlocked,
                format!(
                    "instance profile still used by instances this binding does not manage: {}; disassociate them to let deletion finish",
                    instance_ids.join(", ")
                ),
            ),
        };
        return Verdict {
            ready: false,
            reason,
            message,
            needs_user: reason.needs_person(),
            next: Next::Backoff(reason.backoff()),
        };
    }
    if nodes_unwatched {
        return Verdict {
            ready: false,
            reason: Reason::NodesNotWatched,
            message: "spec.instances.nodeSelector needs the controller to watch Nodes: run with --watch-nodes (the chart's nodeSelection.enabled), which also grants it get/list/watch on nodes; plan and apply cannot resolve it".into(),
            needs_user: true,
            next: Next::Backoff(BackoffClass::Slow),
        };
    }
    if let Some(r) = observed.rotation.as_ref().filter(|r| !r.pending.is_empty()) {
        return Verdict {
            ready: false,
            reason: Reason::Rotating,
            message: format!(
                "moving instances to fresh associations for role {}: {} of {} done, at most {} at a time",
                r.role,
                r.total - r.pending.len(),
                r.total,
                r.max_unavailable
            ),
            needs_user: false,
            next: Next::Soon,
        };
    }
    if !decision.waiting.is_empty() {
        return Verdict {
            ready: false,
            reason: Reason::Reconciling,
            message: format!(
                "waiting for association changes on {}",
                decision.waiting.join(", ")
            ),
            needs_user: false,
            next: Next::Soon,
        };
    }
    if !observed.refused.is_empty() {
        let ids: Vec<&str> = observed
            .refused
            .iter()
            .map(|(s, _)| s.instance.id.as_str())
            .collect();
        return Verdict {
            ready: false,
            reason: Reason::PolicyDenied,
            message: format!(
                "instances refused by policy and left untouched: {} ({}); the others are reconciled",
                ids.join(", "),
                observed
                    .refused
                    .first()
                    .map(|r| r.1.as_str())
                    .unwrap_or_default()
            ),
            needs_user: true,
            next: Next::Backoff(BackoffClass::Slow),
        };
    }
    if let Some((first, others)) = observed.contested.first() {
        let ids: Vec<&str> = observed
            .contested
            .iter()
            .map(|(s, _)| s.instance.id.as_str())
            .collect();
        let names: Vec<String> = others.iter().map(ToString::to_string).collect();
        return Verdict {
            ready: false,
            reason: Reason::Conflict,
            message: format!(
                "instances also selected by other bindings are left as they are: {} ({} also selected by {}); an instance holds one instance profile: select each instance in one binding",
                ids.join(", "),
                first.instance.id,
                names.join(", ")
            ),
            needs_user: true,
            next: Next::Backoff(BackoffClass::Slow),
        };
    }
    if deleted {
        return Verdict {
            ready: false,
            reason: Reason::Deleted,
            message: "AWS resources cleaned up".into(),
            needs_user: false,
            next: Next::Resync,
        };
    }
    Verdict {
        ready: true,
        reason: Reason::Reconciled,
        message: "instance profile, role and associations match the spec".into(),
        needs_user: false,
        next: if records.is_empty() {
            Next::Resync
        } else {
            Next::Soon
        },
    }
}

fn more(n: usize) -> String {
    if n > 1 {
        format!(" ({} more instances are held by foreign profiles)", n - 1)
    } else {
        String::new()
    }
}

/// What one pass found and did: everything a status is built from, filled
/// in as the pass goes. [`outcome`] is the one place a status is built.
pub(crate) struct Report<'a> {
    pub b: &'a BindingInput,
    pub desired: Desired,
    pub observed: Observed,
    pub decision: Decision,
    /// What this pass changed (or, for `plan`, would change), in order.
    pub records: Vec<ActionRecord>,
    pub failure: Option<Failure>,
    /// Deletion finished.
    pub deleted: bool,
    /// The AssumeRole ARN of the account the resources are in; `None`: home.
    pub account: Option<String>,
    /// What leaving the previous account did: listed before `records`.
    pub moved: Vec<ActionRecord>,
    /// A known wait that replaces the reason's backoff (propagation pacing).
    pub wait: Option<Duration>,
    pub note: Option<Note>,
    /// Warnings beside the verdict, passed on to the outcome.
    pub notices: Vec<(Reason, String)>,
}

/// A message that replaces or prefixes the verdict's.
pub(crate) enum Note {
    /// Deletion with `deletionPolicy: Retain` (the outcome's message only).
    Retained,
    /// Still removing the resources from the account named (Ready's message too).
    MovingTo(String),
}

impl<'a> Report<'a> {
    /// A report of nothing seen yet: the role only named, the spec's names.
    pub fn new(config: &EngineConfig, b: &'a BindingInput) -> Self {
        Self {
            b,
            desired: Desired::new(config, b, unresolved(&b.spec.role)),
            observed: Observed::default(),
            decision: Decision::default(),
            records: Vec::new(),
            failure: None,
            deleted: false,
            account: None,
            moved: Vec::new(),
            wait: None,
            note: None,
            notices: Vec::new(),
        }
    }
}

/// Builds the outcome of a reconcile: its status, events and requeue.
pub(crate) fn outcome(report: Report<'_>) -> Outcome {
    let Report {
        b,
        desired,
        observed,
        decision,
        records: actions,
        failure,
        deleted,
        account,
        moved,
        wait,
        note,
        notices,
    } = report;
    let waits_for_propagation = matches!(&failure, Some(Failure::Aws(e)) if e.kind == crate::aws::ErrorKind::PropagationPending)
        && account.is_none();
    let kept = observed;
    let observed = &kept;
    let (desired, decision) = (&desired, &decision);
    let unwatched = b.nodes.as_ref().is_some_and(|n| n.unwatched);
    let v = verdict(
        unwatched,
        decision,
        observed,
        failure.as_ref(),
        &actions,
        deleted,
    );
    let profile = observed.profile.as_ref();
    let foreign_held: Vec<&str> = decision
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::ForeignAssociation { instance_id, .. } => Some(instance_id.as_str()),
            _ => None,
        })
        .collect();
    let mut instances: Vec<InstanceStatus> = observed
        .selected
        .iter()
        .map(|s| {
            let ours = s
                .association
                .as_ref()
                .filter(|a| profile.is_some_and(|p| p.id == a.profile_id));
            let (state, message) = match ours {
                Some(a) => (a.state.as_str().to_string(), None),
                None if foreign_held.contains(&s.instance.id.as_str()) => (
                    "foreign".to_string(),
                    s.association
                        .as_ref()
                        .map(|a| format!("held by {}", a.profile_arn)),
                ),
                None => ("pending".to_string(), None),
            };
            InstanceStatus {
                id: s.instance.id.clone(),
                association_id: ours.map(|a| a.id.clone()),
                state,
                message,
            }
        })
        .collect();
    instances.extend(observed.refused.iter().map(|(s, why)| InstanceStatus {
        id: s.instance.id.clone(),
        association_id: None,
        state: "refused".into(),
        message: Some(why.clone()),
    }));
    instances.extend(observed.contested.iter().map(|(s, others)| {
        let ours = s
            .association
            .as_ref()
            .filter(|a| profile.is_some_and(|p| p.id == a.profile_id));
        InstanceStatus {
            id: s.instance.id.clone(),
            association_id: ours.map(|a| a.id.clone()),
            state: "conflict".into(),
            message: Some(format!(
                "also selected by {}",
                others
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }));
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    let associated = instances
        .iter()
        .filter(|i| i.state == AssociationState::Associated.as_str())
        .count();
    let role_attached = profile
        .is_some_and(|p| p.roles.len() == 1 && p.roles.iter().any(|r| r.name == desired.role.name));
    let profile_ok = profile.is_some()
        && !decision
            .problems
            .iter()
            .any(|p| matches!(p, Problem::ForeignProfile { .. }));
    let previous = b.previous.as_ref();
    let cond = |type_: &str, ok: bool, reason_ok: Reason, reason_bad: Reason, message: String| {
        condition(
            previous,
            b.generation,
            type_,
            ok,
            if ok { reason_ok } else { reason_bad },
            message,
        )
    };
    let bad_reason = |fallback: Reason| if v.ready { fallback } else { v.reason };
    let mut conditions = vec![
        cond(READY, v.ready, v.reason, v.reason, v.message.clone()),
        cond(
            PROFILE_READY,
            profile_ok,
            Reason::ProfileReady,
            bad_reason(Reason::ProfileMissing),
            profile.map_or_else(
                || {
                    format!(
                        "instance profile {} does not exist yet",
                        desired.profile_name
                    )
                },
                |p| format!("instance profile {} ({})", p.name, p.id),
            ),
        ),
        cond(
            ROLE_ATTACHED,
            role_attached,
            Reason::RoleAttached,
            bad_reason(Reason::RoleMissing),
            format!("role {}", desired.role.name),
        ),
        cond(
            ASSOCIATED,
            associated == instances.len(),
            Reason::Associated,
            bad_reason(Reason::AssociationPending),
            format!(
                "{associated}/{} selected instances associated",
                instances.len()
            ),
        ),
    ];
    // kstatus (Flux, kpt, Helm's watcher) ignores Ready: it reads the
    // abnormal-true conditions. Stalled when a person has to act, Reconciling
    // while the controller gets there by itself; absent when Ready.
    if !v.ready && !deleted {
        let type_ = if v.needs_user { STALLED } else { RECONCILING };
        conditions.push(condition(
            previous,
            b.generation,
            type_,
            true,
            v.reason,
            v.message.clone(),
        ));
    }
    let mut status = InstanceProfileBindingStatus {
        assume_role_arn: account,
        nodes: b.nodes.as_ref().map(|n| NodeSelectionStatus {
            selected: count(n.ids.len()),
            skipped: count(n.skipped.len()),
            excluded: n
                .excluded
                .iter()
                .map(|(node, who)| {
                    format!(
                        "{node}: managed by {who}; an InstanceProfilePolicy with allowManagedNodes: true lets it be selected"
                    )
                })
                .collect(),
        }),
        rotation: observed
            .rotation
            .as_ref()
            .filter(|r| !r.pending.is_empty())
            .map(|r| RotationStatus {
                role: r.role.clone(),
                done: count(r.total - r.pending.len()),
                total: count(r.total),
                pending: r.pending.iter().cloned().collect(),
            }),
        observed_generation: b.generation,
        instance_profile: profile
            .map(|p| ProfileStatus {
                name: p.name.clone(),
                arn: Some(p.arn.clone()),
                id: Some(p.id.clone()),
            })
            .or_else(|| {
                Some(ProfileStatus {
                    name: desired.profile_name.clone(),
                    arn: None,
                    id: None,
                })
            }),
        role: Some(RoleStatus {
            name: desired.role.name.clone(),
            arn: (!desired.role.arn.is_empty()).then(|| desired.role.arn.clone()),
        }),
        instance_summary: Some(format!("{associated}/{}", instances.len())),
        instances,
        conditions,
    };
    let next = wait.map_or(v.next, Next::After);
    let message = match note {
        None => v.message,
        Some(Note::Retained) => "deletionPolicy Retain: AWS resources left in place".into(),
        Some(Note::MovingTo(to)) => {
            let message = format!(
                "moving to {to}: removing this binding's resources from where they are first: {}",
                v.message
            );
            status.set_ready_message(&message);
            message
        }
    };
    let mut all = moved;
    all.extend(actions);
    Outcome {
        status,
        actions: all,
        next,
        reason: v.reason,
        message,
        needs_user: v.needs_user,
        deleted,
        notices,
        observed: waits_for_propagation.then(|| Box::new(kept)),
    }
}

/// A status for a binding whose AWS state could not be read at all: Ready
/// says why, and everything else stays as `previous` recorded it, since
/// nothing newer is known.
pub(crate) fn keep_recorded(
    status: &mut InstanceProfileBindingStatus,
    previous: &InstanceProfileBindingStatus,
) {
    status
        .instance_profile
        .clone_from(&previous.instance_profile);
    status.role.clone_from(&previous.role);
    status.instances.clone_from(&previous.instances);
    status
        .instance_summary
        .clone_from(&previous.instance_summary);
    status.assume_role_arn.clone_from(&previous.assume_role_arn);
    for c in &mut status.conditions {
        if let Some(kept) = previous
            .condition(&c.type_)
            .filter(|_| [PROFILE_READY, ROLE_ATTACHED, ASSOCIATED].contains(&c.type_.as_str()))
        {
            *c = kept.clone();
        }
    }
}

/// A count as the status's `u32` fields hold it.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A condition that keeps its `lastTransitionTime` while its status holds.
fn condition(
    previous: Option<&InstanceProfileBindingStatus>,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: Reason,
    message: String,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .and_then(|p| p.condition(type_))
        .filter(|c| c.status == status)
        .map_or_else(now_rfc3339, |c| c.last_transition_time.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.as_str().into(),
        message,
        last_transition_time,
        observed_generation: generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{AssociationState, ErrorKind, RunState};
    use crate::crd::{InstanceProfileBindingSpec, InstanceSelector};
    use crate::reconcile::decide::tests::{assoc, desired, profile, selected};

    /// The report of a pass that ended with these, built into its outcome.
    fn outcome(
        b: &BindingInput,
        desired: &Desired,
        observed: &Observed,
        decision: &Decision,
        records: Vec<ActionRecord>,
        failure: Option<Failure>,
        deleted: bool,
    ) -> Outcome {
        super::outcome(Report {
            b,
            desired: desired.clone(),
            observed: observed.clone(),
            decision: decision.clone(),
            records,
            failure,
            deleted,
            account: None,
            moved: Vec::new(),
            wait: None,
            note: None,
            notices: Vec::new(),
        })
    }

    fn input(previous: Option<InstanceProfileBindingStatus>) -> BindingInput {
        BindingInput {
            key: desired().key,
            uid: None,
            generation: Some(3),
            spec: InstanceProfileBindingSpec {
                role: "web-app".into(),
                instance_profile: None,
                instances: InstanceSelector {
                    ids: vec!["i-1".into()],
                    ..InstanceSelector::default()
                },
                replace_foreign_associations: false,
                deletion_policy: crate::crd::DeletionPolicy::Delete,
                rotation: None,
            },
            previous,
            policies: None,
            nodes: None,
        }
    }

    #[test]
    fn converged_binding_is_ready_and_transition_times_are_stable() {
        let d = desired();
        let p = profile(&d, &["web-app"], None);
        let a = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let o = Observed {
            profile: Some(p),
            selected: vec![selected("i-1", RunState::Running, Some(a))],
            ..Observed::default()
        };
        let mut previous = outcome(
            &input(None),
            &d,
            &o,
            &Decision::default(),
            vec![],
            None,
            false,
        )
        .status;
        assert!(previous.is_ready());
        assert_eq!(previous.observed_generation, Some(3));
        assert_eq!(previous.instance_summary.as_deref(), Some("1/1"));
        for c in &mut previous.conditions {
            c.last_transition_time = "2020-01-01T00:00:00Z".into();
        }
        let again = outcome(
            &input(Some(previous)),
            &d,
            &o,
            &Decision::default(),
            vec![],
            None,
            false,
        );
        assert!(
            again
                .status
                .conditions
                .iter()
                .all(|c| c.last_transition_time == "2020-01-01T00:00:00Z")
        );
        assert_eq!(again.next, Next::Resync);
    }

    #[test]
    fn propagation_is_pending_not_failed() {
        let d = desired();
        let e = crate::aws::AwsError {
            kind: ErrorKind::PropagationPending,
            service: "ec2",
            action: "AssociateIamInstanceProfile",
            code: "InvalidParameterValue".into(),
            message: "Invalid IAM Instance Profile name".into(),
        };
        let o = Observed {
            profile: Some(profile(&d, &["web-app"], None)),
            ..Observed::default()
        };
        let out = outcome(
            &input(None),
            &d,
            &o,
            &Decision::default(),
            vec![],
            Some(Failure::Aws(e)),
            false,
        );
        assert!(!out.ready());
        assert_eq!(out.reason, "PropagationPending");
        assert!(!out.needs_user);
        assert_eq!(out.next, Next::Backoff(BackoffClass::Propagation));
        assert_eq!(
            out.status.condition("Ready").map(|c| c.reason.as_str()),
            Some("PropagationPending")
        );
    }

    /// kstatus's rules for a resource without a built-in reader (sigs.k8s.io/
    /// cli-utils `pkg/kstatus/status`: generic properties, then Reconciling,
    /// then Stalled, else Current).
    fn kstatus(generation: Option<i64>, s: &InstanceProfileBindingStatus) -> &'static str {
        if s.observed_generation.is_some() && s.observed_generation != generation {
            return "InProgress";
        }
        let is_true = |t: &str| s.condition(t).is_some_and(|c| c.status == "True");
        if is_true(RECONCILING) {
            "InProgress"
        } else if is_true(STALLED) {
            "Failed"
        } else {
            "Current"
        }
    }

    fn aws_failure(kind: ErrorKind, action: &'static str) -> Failure {
        Failure::Aws(crate::aws::AwsError {
            kind,
            service: "iam",
            action,
            code: "Code".into(),
            message: "message".into(),
        })
    }

    #[test]
    fn kstatus_never_reads_current_unless_ready() {
        let d = desired();
        let p = profile(&d, &["web-app"], None);
        let ours = assoc("i-1", &p.arn, &p.id, AssociationState::Associated);
        let converged = Observed {
            profile: Some(p.clone()),
            selected: vec![selected("i-1", RunState::Running, Some(ours))],
            ..Observed::default()
        };
        let bare = Observed {
            profile: Some(p),
            ..Observed::default()
        };
        let waiting = Decision {
            waiting: vec!["i-1".into()],
            ..Decision::default()
        };
        let foreign = Decision {
            problems: vec![Problem::ForeignAssociation {
                instance_id: "i-1".into(),
                profile_arn: "arn:aws:iam::1:instance-profile/other".into(),
            }],
            ..Decision::default()
        };
        let none = Decision::default();
        let cases: Vec<(&str, &Observed, &Decision, Option<Failure>, &str)> = vec![
            ("ready", &converged, &none, None, "Current"),
            ("association in flight", &bare, &waiting, None, "InProgress"),
            ("foreign association", &bare, &foreign, None, "Failed"),
            (
                "propagation",
                &bare,
                &none,
                Some(aws_failure(
                    ErrorKind::PropagationPending,
                    "AssociateIamInstanceProfile",
                )),
                "InProgress",
            ),
            (
                "throttled",
                &bare,
                &none,
                Some(aws_failure(ErrorKind::Throttled, "ListInstanceProfiles")),
                "InProgress",
            ),
            (
                "AWS unavailable",
                &bare,
                &none,
                Some(aws_failure(ErrorKind::Transient, "ListInstanceProfiles")),
                "InProgress",
            ),
            (
                "access denied",
                &bare,
                &none,
                Some(aws_failure(
                    ErrorKind::AccessDenied,
                    "CreateInstanceProfile",
                )),
                "Failed",
            ),
            (
                "name taken by a foreign profile",
                &bare,
                &none,
                Some(aws_failure(
                    ErrorKind::AlreadyExists,
                    "CreateInstanceProfile",
                )),
                "Failed",
            ),
            (
                "role not found",
                &bare,
                &none,
                Some(Failure::RoleNotFound {
                    role: "web-app".into(),
                    near: None,
                }),
                "Failed",
            ),
            (
                "policy denied",
                &bare,
                &none,
                Some(Failure::PolicyDenied {
                    message: "no policy".into(),
                }),
                "Failed",
            ),
        ];
        for (what, observed, decision, failure, want) in cases {
            let out = outcome(&input(None), &d, observed, decision, vec![], failure, false);
            assert_eq!(
                kstatus(Some(3), &out.status),
                want,
                "{what}: {:?}",
                out.status
            );
            let abnormal: Vec<&str> = out
                .status
                .conditions
                .iter()
                .filter(|c| c.type_ == STALLED || c.type_ == RECONCILING)
                .map(|c| c.reason.as_str())
                .collect();
            if out.ready() {
                assert!(abnormal.is_empty(), "{what}: {abnormal:?}");
            } else {
                assert_eq!(abnormal, [out.reason.as_str()], "{what}");
            }
            // A status of an older generation is never Current.
            assert_eq!(kstatus(Some(4), &out.status), "InProgress", "{what}");
        }
    }
}
