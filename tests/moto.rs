//! File mode (`plan`/`apply`) against a real moto server behind the fault
//! proxy, driven through the release binary, with AWS state checked directly
//! through the SDK.

use crate::common;

use common::{Aws, binding, cli, ids, path_str, profile_name, write_bindings};

const NS: &str = "team-a";

fn apply(aws: &Aws, file: &std::path::Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["apply", "-f", path_str(file), "--timeout", "60s"];
    args.extend_from_slice(extra);
    cli(&aws.endpoint(), &args)
}

fn plan(aws: &Aws, file: &std::path::Path) -> common::Run {
    cli(&aws.endpoint(), &["plan", "-f", path_str(file)])
}

#[tokio::test]
async fn create_then_converged_apply_makes_no_writes_and_plan_is_clean() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let tagged = aws.run_instances(2, &[("app", "web")]).await;
    let explicit = aws.run_instances(1, &[]).await;
    let (_d, file) = write_bindings(&binding(
        NS,
        "web",
        "web-app",
        &format!("{{ids: [{}], tags: {{app: web}}}}", explicit[0]),
        "",
    ));

    let p = plan(&aws, &file);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(p.stdout.contains("create instance profile"), "{p:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "plan must not write: {:?}",
        aws.mutating_calls()
    );

    let r = apply(&aws, &file, &["-v"]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "web");
    let profiles = aws.profiles().await;
    let (path, id, roles) = profiles.get(&name).expect("profile created");
    assert_eq!(path, "/ipb/test/");
    assert_eq!(roles, &vec!["web-app".to_string()]);
    let assoc = aws.associations().await;
    for i in tagged.iter().chain(&explicit) {
        let (_, _, pid) = assoc
            .get(i)
            .unwrap_or_else(|| panic!("{i} not associated: {assoc:?}"));
        assert_eq!(pid, id, "{i} must hold the current profile id");
    }
    // Only the writes the budget allows: create, add role, one associate per instance.
    let writes = aws.mutating_calls();
    assert_eq!(
        writes
            .iter()
            .filter(|a| *a == "CreateInstanceProfile")
            .count(),
        1,
        "{writes:?}"
    );
    assert_eq!(
        writes
            .iter()
            .filter(|a| *a == "AddRoleToInstanceProfile")
            .count(),
        1,
        "{writes:?}"
    );
    assert_eq!(
        writes
            .iter()
            .filter(|a| *a == "AssociateIamInstanceProfile")
            .count(),
        3,
        "{writes:?}"
    );
    assert_eq!(writes.len(), 5, "{writes:?}");
    assert!(
        r.stderr.contains("AWS calls:"),
        "verbose prints per-action call counts: {r:?}"
    );

    aws.reset_calls();
    let again = apply(&aws, &file, &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "second apply wrote: {:?}",
        aws.mutating_calls()
    );
    let p = plan(&aws, &file);
    assert_eq!(p.code, 0, "{p:?}");
}

#[tokio::test]
async fn role_removed_out_of_band_is_re_added() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    let name = profile_name(NS, "web");
    aws.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("remove");
    let p = plan(&aws, &file);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(p.stdout.contains("attach role web-app"), "{p:?}");
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(aws.profiles().await[&name].2, vec!["web-app".to_string()]);
}

#[tokio::test]
async fn other_role_is_swapped_for_ours() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_role("db-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    let (_d2, file2) = write_bindings(&binding(NS, "web", "db-app", &ids(&inst), ""));
    let r = apply(&aws, &file2, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        aws.profiles().await[&profile_name(NS, "web")].2,
        vec!["db-app".to_string()]
    );
}

#[tokio::test]
async fn profile_deleted_out_of_band_is_recreated_and_instances_repointed() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[("app", "web")]).await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", "{tags: {app: web}}", ""));
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    let name = profile_name(NS, "web");
    let old_id = aws.profiles().await[&name].1.clone();
    aws.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("remove");
    aws.iam
        .delete_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect("delete");
    // Recreated by hand elsewhere? No: gone, while instances still point at the dead id.
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let new_id = aws.profiles().await[&name].1.clone();
    assert_ne!(new_id, old_id);
    let assoc = aws.associations().await;
    for i in &inst {
        assert_eq!(
            assoc[i].2, new_id,
            "{i} still on the dead profile id: {assoc:?}"
        );
    }
    assert!(
        aws.mutating_calls()
            .contains(&"ReplaceIamInstanceProfileAssociation".to_string()),
        "{:?}",
        aws.calls()
    );
}

#[tokio::test]
async fn foreign_association_is_kept_unless_replacement_is_allowed() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (foreign_arn, _) = aws.create_profile("someone-elses", "/").await;
    aws.associate(&inst[0], "someone-elses").await;

    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    let r = apply(&aws, &file, &["-o", "json"]);
    assert_eq!(r.code, 1, "{r:?}");
    let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("json report");
    let ready = report[0]["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned();
    assert_eq!(
        ready.as_ref().map(|c| c["reason"].clone()),
        Some(serde_json::json!("ForeignAssociation")),
        "{report}"
    );
    assert_eq!(report[0]["namespace"], NS);
    assert_eq!(
        aws.associations().await[&inst[0]].1,
        foreign_arn,
        "the foreign association must be untouched"
    );
    assert!(
        !aws.mutating_calls().iter().any(|a| a.contains("Associat")),
        "{:?}",
        aws.mutating_calls()
    );

    let (_d2, file2) = write_bindings(&binding(
        NS,
        "web",
        "web-app",
        &ids(&inst),
        "  replaceForeignAssociations: true\n",
    ));
    let r = apply(&aws, &file2, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let id = aws.profiles().await[&profile_name(NS, "web")].1.clone();
    assert_eq!(aws.associations().await[&inst[0]].2, id);
}

#[tokio::test]
async fn stopped_instance_is_disassociated_then_associated() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    aws.create_profile("someone-elses", "/").await;
    aws.associate(&inst[0], "someone-elses").await;
    aws.stop_instance(&inst[0]).await;
    assert_eq!(aws.instance_state(&inst[0]).await, "stopped");
    let (_d, file) = write_bindings(&binding(
        NS,
        "web",
        "web-app",
        &ids(&inst),
        "  replaceForeignAssociations: true\n",
    ));
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let writes = aws.mutating_calls();
    assert!(
        !writes.contains(&"ReplaceIamInstanceProfileAssociation".to_string()),
        "{writes:?}"
    );
    let dis = writes
        .iter()
        .position(|a| a == "DisassociateIamInstanceProfile")
        .expect("disassociated");
    let assoc = writes
        .iter()
        .rposition(|a| a == "AssociateIamInstanceProfile")
        .expect("associated");
    assert!(dis < assoc, "{writes:?}");
    let id = aws.profiles().await[&profile_name(NS, "web")].1.clone();
    assert_eq!(aws.associations().await[&inst[0]].2, id);
}

#[tokio::test]
async fn prune_disassociates_ours_blocks_on_strangers_then_deletes_in_order() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let ours = aws.run_instances(1, &[]).await;
    let stranger = aws.run_instances(1, &[]).await;
    let keep = aws.run_instances(1, &[]).await;
    let both = format!(
        "{}{}",
        binding(NS, "old", "web-app", &ids(&ours), ""),
        binding(NS, "keep", "web-app", &ids(&keep), "")
    );
    let (_d, file) = write_bindings(&both);
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    let old = profile_name(NS, "old");
    let stranger_assoc = aws.associate(&stranger[0], &old).await;

    let (_d2, only_keep) = write_bindings(&binding(NS, "keep", "web-app", &ids(&keep), ""));
    aws.reset_calls();
    let r = apply(&aws, &only_keep, &["--prune"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("DeletionBlocked") && r.stdout.contains(&stranger[0]),
        "{r:?}"
    );
    let assoc = aws.associations().await;
    assert!(
        !assoc.contains_key(&ours[0]),
        "ours must be disassociated: {assoc:?}"
    );
    assert!(
        assoc.contains_key(&stranger[0]),
        "the stranger's association must stay"
    );
    assert!(
        aws.profiles().await.contains_key(&old),
        "a profile still in use must not be deleted"
    );
    assert!(
        assoc.contains_key(&keep[0]),
        "the kept binding is untouched"
    );

    aws.disassociate(&stranger_assoc).await;
    aws.reset_calls();
    let r = apply(&aws, &only_keep, &["--prune"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!aws.profiles().await.contains_key(&old));
    let writes = aws.mutating_calls();
    let remove = writes
        .iter()
        .position(|a| a == "RemoveRoleFromInstanceProfile")
        .expect("role removed");
    let delete = writes
        .iter()
        .position(|a| a == "DeleteInstanceProfile")
        .expect("profile deleted");
    assert!(remove < delete, "{writes:?}");
    assert!(aws.profiles().await.contains_key(&profile_name(NS, "keep")));
}

#[tokio::test]
async fn deselected_instance_loses_our_association_only() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    let stranger = aws.run_instances(1, &[]).await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    aws.associate(&stranger[0], &profile_name(NS, "web")).await;
    let (_d2, file2) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst[..1]), ""));
    let r = apply(&aws, &file2, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let assoc = aws.associations().await;
    assert!(assoc.contains_key(&inst[0]));
    assert!(
        !assoc.contains_key(&inst[1]),
        "deselected instance keeps our profile: {assoc:?}"
    );
    assert!(
        assoc.contains_key(&stranger[0]),
        "an instance we never managed must not be touched"
    );
}

#[tokio::test]
async fn apply_rides_out_five_seconds_of_propagation_delay() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    aws.fault_config(r#"{"propagation_seconds": 5}"#);
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    let start = std::time::Instant::now();
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(start.elapsed() >= std::time::Duration::from_secs(5));
    let calls = aws.calls();
    assert!(
        calls.iter().any(|c| c.2.as_deref() == Some("propagation")),
        "the delay was injected: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.0 == "AssociateIamInstanceProfile" && c.1 == 200)
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.0 == "CreateInstanceProfile")
            .count(),
        1,
        "no duplicate profile"
    );
}

#[tokio::test]
async fn role_problems_are_reported_without_writes() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("Web-App", common::TRUST_EC2).await;
    aws.create_role("lambda-only", common::TRUST_LAMBDA).await;
    let inst = aws.run_instances(1, &[]).await;
    let docs = format!(
        "{}{}",
        binding(NS, "a", "web-app", &ids(&inst), ""),
        binding(NS, "b", "lambda-only", &ids(&inst), "")
    );
    let (_d, file) = write_bindings(&docs);
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("RoleNotFound") && r.stdout.contains("did you mean Web-App"),
        "{r:?}"
    );
    assert!(r.stdout.contains("TrustPolicyMissingEc2"), "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    let p = plan(&aws, &file);
    assert_eq!(p.code, 1, "{p:?}");
}

#[tokio::test]
async fn profile_with_our_name_but_not_our_tags_is_never_touched() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let name = profile_name(NS, "web");
    aws.create_profile(&name, "/elsewhere/").await;
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("ForeignProfileExists"), "{r:?}");
    let writes = aws.mutating_calls();
    assert_eq!(
        writes,
        vec!["CreateInstanceProfile".to_string()],
        "only the create attempt: {writes:?}"
    );
    assert!(
        aws.profiles().await[&name].2.is_empty(),
        "no role was added to the foreign profile"
    );
    assert!(aws.associations().await.is_empty());
}

#[tokio::test]
async fn lost_responses_and_throttling_do_not_duplicate_or_fail() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    // The first create and the first associate reach moto but their responses are lost;
    // then IAM and EC2 throttle once each.
    aws.fault_config(
        r#"{"scripted_faults": [
            {"kind": "reset_after", "action": "CreateInstanceProfile"},
            {"kind": "reset_after", "action": "AssociateIamInstanceProfile"},
            {"kind": "throttle", "action": "AddRoleToInstanceProfile"},
            {"kind": "throttle", "action": "DescribeInstances"},
            {"kind": "503", "action": "ListInstanceProfiles"}
        ]}"#,
    );
    let (_d, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "web");
    let profiles = aws.profiles().await;
    assert_eq!(
        profiles.keys().filter(|k| k.starts_with("ipb-")).count(),
        1,
        "{profiles:?}"
    );
    assert_eq!(profiles[&name].2, vec!["web-app".to_string()]);
    let assoc = aws.associations().await;
    assert!(
        inst.iter()
            .all(|i| assoc.get(i).is_some_and(|a| a.2 == profiles[&name].1)),
        "{assoc:?}"
    );
}

#[tokio::test]
async fn every_list_is_read_to_its_last_page() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let mut inst = Vec::new();
    for _ in 0..5 {
        // one reservation each: DescribeInstances pages over reservations
        inst.extend(aws.run_instances(1, &[("app", "web")]).await);
    }
    // Profiles outside our path must not count, and must not hide ours.
    for i in 0..3 {
        aws.create_profile(&format!("unrelated-{i}"), "/").await;
    }
    let docs: String = (0..5)
        .map(|i| binding(NS, &format!("b{i}"), "web-app", &ids(&inst[i..=i]), ""))
        .collect();
    let (_d, file) = write_bindings(&docs);
    aws.fault_config(r#"{"page_size": 2}"#);
    assert_eq!(apply(&aws, &file, &[]).code, 0);
    aws.reset_calls();
    aws.fault_config(r#"{"page_size": 2}"#);
    let r = apply(&aws, &file, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "a loop stopped at the first page: {:?}",
        aws.mutating_calls()
    );
    let calls = aws.calls();
    assert!(
        calls.iter().filter(|c| c.0 == "DescribeInstances").count() >= 3,
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.0 == "ListInstanceProfiles")
            .count()
            >= 3,
        "{calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.0 == "DescribeIamInstanceProfileAssociations")
            .count()
            >= 3,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| c.0 == "GetRole").count(),
        1,
        "one GetRole per distinct role: {calls:?}"
    );
}

#[tokio::test]
async fn bad_input_is_rejected_before_any_aws_call() {
    require_moto!();
    let aws = Aws::start().await;
    let bad = binding(NS, "web", "web-app", "{ids: [i-nothex]}", "");
    let (_d, file) = write_bindings(&bad);
    for cmd in ["plan", "apply"] {
        let r = cli(&aws.endpoint(), &[cmd, "-f", path_str(&file)]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.contains("bindings.yaml: document 1")
                && r.stderr.contains("spec.instances.ids"),
            "{r:?}"
        );
        assert!(!r.stderr.contains("panicked"), "{r:?}");
    }
    let r = cli(&aws.endpoint(), &["plan", "-f", "/does/not/exist.yaml"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("/does/not/exist.yaml"), "{r:?}");
    let r = cli(&aws.endpoint(), &["plan", "--no-such-flag"]);
    assert_eq!(
        r.code, 1,
        "a usage error must not look like 'changes' (2): {r:?}"
    );
    assert!(
        aws.calls().is_empty(),
        "bad input made AWS calls: {:?}",
        aws.calls()
    );
}

#[tokio::test]
async fn examples_apply_as_they_are() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_role("batch-worker", common::TRUST_EC2).await;
    for tags in [
        ("app", "web"),
        ("app", "batch"),
        ("env", "staging"),
        ("team", "reports"),
    ] {
        aws.run_instances(1, &[tags, ("demo", "true")]).await;
    }
    // Outside the policy's requiredTags: refused, never touched.
    let untagged = aws.run_instances(1, &[("app", "web")]).await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", examples, "--timeout", "60s"],
    );
    assert_eq!(r.code, 1, "web refuses one instance: {r:?}");
    assert!(r.stdout.contains("Apply: 3 of 4 bindings done"), "{r:?}");
    assert!(
        r.stdout.contains("PolicyDenied") && r.stdout.contains(&untagged[0]),
        "{r:?}"
    );
    let assoc = aws.associations().await;
    assert_eq!(assoc.len(), 4, "{assoc:?}");
    assert!(
        !assoc.contains_key(&untagged[0]),
        "a refused instance was associated"
    );
    // Tag it as the policy requires: now everything converges.
    aws.ec2
        .create_tags()
        .resources(&untagged[0])
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("demo")
                .value("true")
                .build(),
        )
        .send()
        .await
        .expect("tag");
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", examples, "--timeout", "60s"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Apply: 4 of 4 bindings done."), "{r:?}");
    let p = cli(&aws.endpoint(), &["plan", "-f", examples]);
    assert_eq!(p.code, 0, "{p:?}");
    assert_eq!(aws.associations().await.len(), 5);
}

fn policy(roles: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfilePolicy\nmetadata: {{name: team-a}}\nspec:\n  namespaces: {{names: [{NS}]}}\n  roles: {roles}\n{extra}"
    )
}

#[tokio::test]
async fn policy_gate_in_file_mode_denies_without_writes_then_allows() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let b = binding(NS, "web", "web-app", &ids(&inst), "");

    // Without any policy in the files the gate is off, and says so.
    let (_d0, plain) = write_bindings(&b);
    let p = plan(&aws, &plain);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(p.stderr.contains("policy gate is off"), "{p:?}");
    aws.reset_calls();

    // A policy that does not allow the role: PolicyDenied, no role lookup, no writes.
    let (_d, denied) = write_bindings(&format!("{}{b}", policy("[db-*]", "")));
    let r = apply(&aws, &denied, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("PolicyDenied") && r.stdout.contains("not in spec.roles"),
        "{r:?}"
    );
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    assert!(
        !aws.calls().iter().any(|c| c.0 == "GetRole"),
        "the gate comes before the role lookup"
    );
    let p = plan(&aws, &denied);
    assert_eq!(p.code, 1, "{p:?}");

    // replaceForeignAssociations needs the policy's permission.
    let replace = binding(
        NS,
        "web",
        "web-app",
        &ids(&inst),
        "  replaceForeignAssociations: true\n",
    );
    let (_d2, no_replace) = write_bindings(&format!("{}{replace}", policy("[web-*]", "")));
    let r = apply(&aws, &no_replace, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("allowReplaceForeignAssociations"),
        "{r:?}"
    );

    // Allowed: converges.
    let (_d3, allowed) = write_bindings(&format!("{}{b}", policy("[web-*]", "")));
    let r = apply(&aws, &allowed, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(aws.associations().await.len(), 1);

    // Narrowed: denied again, and nothing is torn down.
    aws.reset_calls();
    let r = apply(&aws, &denied, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    assert_eq!(aws.associations().await.len(), 1);
    assert!(aws.profiles().await.contains_key(&profile_name(NS, "web")));
}

const OTHER_ROLE: &str = "arn:aws:iam::444455556666:role/ipb-controller";

#[tokio::test]
async fn cross_account_binding_lands_in_the_policys_account() {
    require_moto!();
    let aws = Aws::start().await;
    let other = aws.in_account(OTHER_ROLE).await;
    other.create_role("web-app", common::TRUST_EC2).await;
    let inst = other.run_instances(2, &[("team", "a")]).await;
    // moto checks no trust policy: the proxy demands the external id, as the
    // target role's trust policy would.
    aws.fault_config(&format!(
        r#"{{"assume_role_external_ids": {{"{OTHER_ROLE}": "ext-123"}}}}"#
    ));
    let b = binding(NS, "web", "web-app", "{tags: {team: a}}", "");
    let account = |external_id: &str| {
        policy(
            "[web-*]",
            &format!(
                "  instances: {{requiredTags: {{team: a}}}}\n  account: {{assumeRoleArn: \"{OTHER_ROLE}\", externalId: {external_id}}}\n"
            ),
        )
    };

    // A session longer than role chaining allows is refused before any AWS call.
    let (_d0, good) = write_bindings(&format!("{}{b}", account("ext-123")));
    let r = common::cli_env(
        &aws.endpoint(),
        &["apply", "-f", path_str(&good), "--timeout", "60s"],
        &[("IPB_ASSUME_ROLE_DURATION_SECONDS", "7200")],
        &[],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("role chaining"), "{r:?}");
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());

    // The wrong external id: AccessDenied naming AssumeRole, nothing changed anywhere.
    let (_d1, wrong) = write_bindings(&format!("{}{b}", account("nope-000")));
    let r = apply(&aws, &wrong, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains("AccessDenied") && r.stdout.contains("AssumeRole"),
        "{r:?}"
    );
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    aws.reset_calls();
    aws.fault_config(&format!(
        r#"{{"assume_role_external_ids": {{"{OTHER_ROLE}": "ext-123"}}, "propagation_seconds": 2}}"#
    ));

    // Allowed: the profile and associations land in the other account only.
    let r = apply(&aws, &good, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "web");
    let theirs = other.profiles().await;
    assert_eq!(
        theirs.get(&name).map(|p| p.2.clone()),
        Some(vec!["web-app".to_string()]),
        "{theirs:?}"
    );
    assert!(!aws.profiles().await.contains_key(&name), "nothing at home");
    let assoc = other.associations().await;
    for id in &inst {
        let (_, arn, _) = assoc.get(id).expect("associated");
        assert!(arn.starts_with("arn:aws:iam::444455556666:"), "{arn}");
    }
    let assumed = aws.assume_role_calls();
    assert!(!assumed.is_empty());
    for p in &assumed {
        let seconds: u32 = p["DurationSeconds"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("DurationSeconds sent");
        assert!((900..=3600).contains(&seconds), "{p}");
        assert_eq!(p["ExternalId"], "ext-123", "{p}");
        assert_eq!(p["RoleArn"], OTHER_ROLE, "{p}");
    }
    assert!(
        assumed.iter().any(|p| {
            p["RoleSessionName"].as_str().is_some_and(|s| {
                s.contains("instance-profile-controller") && s.contains("team-a.web")
            })
        }),
        "a session names the controller and the binding: {assumed:?}"
    );

    // Converged: nothing to change, in either account, and only the
    // account's own session is assumed (a binding's session is assumed when
    // it has something to change).
    aws.reset_calls();
    aws.fault_config(&format!(
        r#"{{"assume_role_external_ids": {{"{OTHER_ROLE}": "ext-123"}}}}"#
    ));
    let p = plan(&aws, &good);
    assert_eq!(p.code, 0, "{p:?}");
    let assumed = aws.assume_role_calls();
    assert_eq!(assumed.len(), 1, "{assumed:?}");
    assert_eq!(
        assumed[0]["RoleSessionName"], "instance-profile-controller.test",
        "{assumed:?}"
    );

    // Gone from the files: prune finds it in the policy's account and removes
    // it. The files hold only the policy now, so pruning must be asked for
    // explicitly (`--prune` alone refuses an input without bindings).
    aws.reset_calls();
    aws.fault_config(&format!(
        r#"{{"assume_role_external_ids": {{"{OTHER_ROLE}": "ext-123"}}}}"#
    ));
    let (_d2, only_policy) = write_bindings(&account("ext-123"));
    let r = apply(&aws, &only_policy, &["--prune"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(other.profiles().await.contains_key(&name), "refused, kept");
    let r = apply(&aws, &only_policy, &["--prune-all"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!other.profiles().await.contains_key(&name), "pruned");
    assert!(other.associations().await.is_empty());
}
