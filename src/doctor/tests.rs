//! Doctor's unit tests: each check on facts built by hand.

use std::collections::{BTreeMap, BTreeSet};

use super::associations::check_associations;
use super::checks::{
    SESSION_DURATION_ENV, check_profile_role, check_role, check_session_duration,
    check_trust_policy,
};
use super::facts::{
    ClusterView, DuplicateScan, Facts, InstanceFacts, PermissionFacts, Read, Relation, RoleFacts,
    Subject,
};
use super::finding::{Check, Finding, Severity};
use super::gather::binding_instances;
use super::permissions::{
    CONTROLLER_POLICY, ResourceKind, check_permissions, policy_actions, simulation_context,
    simulation_resources,
};
use super::profile::check_profile;
use super::render::{Report, exit_code, render_text};
use super::run_checks;
use super::states::{check_node_selection, check_orphan, check_profile_quota, check_rotation};
use crate::aws::assume::CallerIdentity;
use crate::aws::iam::SimulatedDecision;
use crate::aws::{
    Association, AssociationState, AwsError, ErrorKind, Instance, Profile, RoleInfo, RunState,
};
use crate::crd::{
    Condition, InstanceProfileBindingSpec, InstanceProfileBindingStatus, InstanceSelector,
};
use crate::crd::{NodeSelectionStatus, OnRoleChange, RotationSpec, RotationStatus};
use crate::naming::{self, BindingKey};
use crate::reconcile::quota::Usage;

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
            node_selector: None,
        },
        replace_foreign_associations: false,
        deletion_policy: crate::crd::DeletionPolicy::Delete,
        rotation: None,
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
        roles: crate::reconcile::decide::tests::role_refs(roles),
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
        profile_usage: Ok(Usage {
            used: 10,
            quota: 1000,
        }),
        owner: None,
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
        Check::ProfileQuota,
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
        json["findings"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["check"] == "trust-policy"
                && x["severity"] == "problem"
                && x["reason"] == "TrustPolicyMissingEc2")),
        "{json}"
    );
}

#[test]
fn rotation_in_progress_is_a_warning_naming_role_progress_and_pending() {
    let mut f = healthy();
    assert!(check_rotation(&f).is_empty(), "nothing to say when settled");
    if let Subject::Binding { cluster, .. } = &mut f.subject {
        *cluster = Some(Box::new(ClusterView {
            generation: Some(2),
            status: Some(InstanceProfileBindingStatus {
                rotation: Some(RotationStatus {
                    role: "web-app".into(),
                    done: 1,
                    total: 3,
                    pending: vec!["i-0b".into(), "i-0c".into()],
                }),
                ..InstanceProfileBindingStatus::default()
            }),
        }));
    }
    let out = check_rotation(&f);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].check, Check::Rotation);
    assert_eq!(out[0].severity, Severity::Warning);
    assert_eq!(out[0].reason, Some("Rotating"));
    for (k, v) in [
        ("role", "web-app"),
        ("done", "1"),
        ("total", "3"),
        ("pending", "i-0b,i-0c"),
    ] {
        assert_eq!(out[0].evidence[k], v, "{out:#?}");
    }
    assert!(out[0].summary.contains("1 of 3"), "{out:#?}");
    assert!(out[0].summary.contains("i-0b, i-0c"), "{out:#?}");
    assert_eq!(exit_code(&run_checks(&f)), 0, "a rotation is no problem");
}

#[test]
fn role_change_without_reassociate_notes_the_old_credentials() {
    let mut f = healthy();
    f.profile = Read::Got(Some(profile(&own_name(), "AIPAOWN", &["old-app"], true)));
    let out = check_rotation(&f);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].severity, Severity::Warning);
    assert_eq!(out[0].evidence["role"], "old-app");
    assert_eq!(out[0].evidence["wantedRole"], "web-app");
    assert_eq!(out[0].evidence["onRoleChange"], "None");
    assert!(out[0].summary.contains("up to an hour"), "{out:#?}");
    assert!(
        out[0]
            .fix
            .as_deref()
            .is_some_and(|s| s.contains("onRoleChange: Reassociate")),
        "{out:#?}"
    );
    // With Reassociate the controller moves them: no note.
    if let Subject::Binding { spec, .. } = &mut f.subject {
        spec.rotation = Some(RotationSpec {
            on_role_change: OnRoleChange::Reassociate,
            max_unavailable: None,
        });
    }
    assert!(check_rotation(&f).is_empty());
    // Not for instances or profiles: they name no wanted role.
    f.subject = Subject::Instance { id: "i-0a".into() };
    assert!(check_rotation(&f).is_empty());
}

#[test]
fn profile_quota_ok_warning_problem_and_unreadable() {
    let at = |used, quota| {
        let mut f = healthy();
        f.profile_usage = Ok(Usage { used, quota });
        check_profile_quota(&f)
    };
    let ok = at(899, 1000);
    assert_eq!(ok.check, Check::ProfileQuota);
    assert_eq!(ok.severity, Severity::Ok);
    assert_eq!(ok.evidence["used"], "899");
    assert_eq!(ok.evidence["quota"], "1000");
    let near = at(900, 1000);
    assert_eq!(near.severity, Severity::Warning);
    assert_eq!(near.reason, Some("QuotaNearlyFull"));
    assert_eq!(at(999, 1000).severity, Severity::Warning);
    let full = at(1000, 1000);
    assert_eq!(full.severity, Severity::Problem);
    assert_eq!(full.reason, Some("QuotaExceeded"));
    assert_eq!(full.evidence["used"], "1000");
    assert_eq!(at(1001, 1000).severity, Severity::Problem);

    let mut f = healthy();
    f.profile_usage = Err(denied("GetAccountSummary"));
    let out = check_profile_quota(&f);
    assert_eq!(out.severity, Severity::Warning);
    assert!(out.summary.contains("could not read"), "{out:?}");
    assert_eq!(out.evidence["awsError"], "AccessDenied");
    assert_eq!(out.evidence["awsAction"], "iam:GetAccountSummary");
    f.profile_usage = Err(AwsError {
        kind: ErrorKind::Transient,
        service: "iam",
        action: "GetAccountSummary",
        code: "IncompleteSummary".into(),
        message: "the account summary lacks InstanceProfiles".into(),
    });
    let out = check_profile_quota(&f);
    assert_eq!(out.severity, Severity::Warning);
    assert!(out.summary.contains("could not read"), "{out:?}");
    assert_eq!(out.evidence["awsError"], "IncompleteSummary");
    assert_eq!(exit_code(&run_checks(&f)), 0);
}

#[test]
fn node_selection_reports_what_the_controller_selected_and_left_out() {
    let mut f = healthy();
    assert!(
        check_node_selection(&f).is_empty(),
        "no nodeSelector, nothing to say"
    );
    let set_status = |f: &mut Facts, nodes: Option<NodeSelectionStatus>| {
        if let Subject::Binding { spec, cluster, .. } = &mut f.subject {
            spec.instances.node_selector = Some(crate::crd::LabelSelector::default());
            *cluster = Some(Box::new(ClusterView {
                generation: Some(1),
                status: Some(InstanceProfileBindingStatus {
                    nodes,
                    ..InstanceProfileBindingStatus::default()
                }),
            }));
        }
    };
    set_status(
        &mut f,
        Some(NodeSelectionStatus {
            selected: 2,
            skipped: 1,
            excluded: Vec::new(),
        }),
    );
    let out = check_node_selection(&f);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].check, Check::NodeSelection);
    assert_eq!(out[0].severity, Severity::Ok, "{out:#?}");
    assert_eq!(out[0].evidence["selected"], "2");
    assert_eq!(out[0].evidence["skipped"], "1");

    set_status(
        &mut f,
        Some(NodeSelectionStatus {
            selected: 1,
            skipped: 0,
            excluded: vec!["nm: managed by Karpenter".into()],
        }),
    );
    let out = check_node_selection(&f);
    assert_eq!(out[0].severity, Severity::Warning, "{out:#?}");
    assert!(
        out[0].summary.contains("nm: managed by Karpenter"),
        "{out:#?}"
    );
    assert!(
        out[0]
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("allowManagedNodes"))
    );

    set_status(&mut f, None);
    let out = check_node_selection(&f);
    assert_eq!(out[0].severity, Severity::Warning, "{out:#?}");
    assert_eq!(out[0].reason, Some("NodesNotWatched"));

    // From a file: only the controller resolves it.
    if let Subject::Binding { cluster, .. } = &mut f.subject {
        *cluster = None;
    }
    let out = check_node_selection(&f);
    assert_eq!(out[0].severity, Severity::Warning, "{out:#?}");
    assert!(
        out[0].summary.contains("only the controller resolves"),
        "{out:#?}"
    );
    assert_eq!(exit_code(&run_checks(&f)), 0, "no problem by itself");
}

#[test]
fn a_profile_whose_binding_is_gone_is_an_orphan_and_only_then() {
    let mut f = healthy();
    assert!(check_orphan(&f).is_empty(), "no owner looked up");
    f.owner = Some((key(), Some(true)));
    assert!(check_orphan(&f).is_empty(), "the binding exists");
    f.owner = Some((key(), None));
    assert!(
        check_orphan(&f).is_empty(),
        "the cluster could not be asked"
    );
    f.owner = Some((key(), Some(false)));
    let out = check_orphan(&f);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].check, Check::Orphan);
    assert_eq!(out[0].severity, Severity::Warning);
    assert_eq!(out[0].evidence["binding"], key().to_string());
    assert!(
        out[0]
            .fix
            .as_deref()
            .is_some_and(|x| x.contains("--orphan-sweep=delete"))
    );
}
