//! `doctor` against a real moto server behind the fault proxy: one test per
//! check, each seeding the broken state it must find, and a healthy world
//! that passes. AWS state is seeded directly through the SDK; the proxy's call
//! log proves doctor only reads.

use crate::common;

use aws_sdk_iam::types::Tag;
use common::{Aws, binding, cli, cli_env, ids, path_str, profile_name, write_bindings};
use serde_json::Value;

const NS: &str = "team-a";

/// `doctor ARGS -o json`: the run and its parsed report.
fn doctor(aws: &Aws, args: &[&str]) -> (common::Run, Value) {
    doctor_env(aws, args, &[])
}

fn doctor_env(aws: &Aws, args: &[&str], env: &[(&str, &str)]) -> (common::Run, Value) {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let run = cli_env(&aws.endpoint(), &all, env, &[]);
    let report = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("doctor printed no JSON report ({e}): {run:?}"));
    (run, report)
}

fn findings<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .map(|a| a.iter().filter(|f| f["check"] == check).collect())
        .unwrap_or_default()
}

/// The one problem a check found.
fn problem<'a>(report: &'a Value, check: &str) -> &'a Value {
    let problems: Vec<&Value> = findings(report, check)
        .into_iter()
        .filter(|f| f["severity"] == "problem")
        .collect();
    assert_eq!(
        problems.len(),
        1,
        "one {check} problem expected: {report:#}"
    );
    problems[0]
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// Calls that are neither reads nor the policy simulator (which only reads policies).
fn non_reads(aws: &Aws) -> Vec<String> {
    aws.calls()
        .into_iter()
        .map(|c| c.0)
        .filter(|a| !(common::is_read(a) || a == "SimulatePrincipalPolicy"))
        .collect()
}

/// A binding applied by the controller: role `web-app`, one instance.
async fn applied_world(aws: &Aws) -> (Vec<String>, tempfile::TempDir, std::path::PathBuf) {
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (dir, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));
    let r = cli(
        &aws.endpoint(),
        &["apply", "-f", path_str(&file), "--timeout", "60s"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    aws.reset_calls();
    (inst, dir, file)
}

#[tokio::test]
async fn healthy_world_passes_every_check_and_doctor_only_reads() {
    require_moto!();
    let aws = Aws::start().await;
    let (inst, _dir, file) = applied_world(&aws).await;
    let name = profile_name(NS, "web");

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(report["exitCode"], 0);
    assert_eq!(report["summary"]["problem"], 0, "{report:#}");
    assert_eq!(report["target"]["kind"], "binding");
    assert_eq!(report["profile"], name.as_str());
    for check in [
        "profile",
        "profile-role",
        "role",
        "trust-policy",
        "association",
    ] {
        let found = findings(&report, check);
        assert!(
            !found.is_empty() && found.iter().all(|f| f["severity"] == "ok"),
            "{check}: {report:#}"
        );
    }
    let assoc = findings(&report, "association");
    assert_eq!(text(&assoc[0]["evidence"]["instance"]), inst[0]);
    assert_eq!(
        assoc[0]["evidence"]["heldProfileId"],
        findings(&report, "profile")[0]["evidence"]["profileId"]
    );
    // moto does not implement SimulatePrincipalPolicy: a warning, not a problem.
    let perms = findings(&report, "permissions");
    assert_eq!(perms.len(), 1, "{report:#}");
    assert_eq!(perms[0]["severity"], "warning");
    assert!(
        text(&perms[0]["summary"]).contains("could not simulate"),
        "{report:#}"
    );
    assert_eq!(findings(&report, "session-duration")[0]["severity"], "ok");
    assert!(
        aws.calls().iter().any(|c| c.0 == "SimulatePrincipalPolicy"),
        "{:?}",
        aws.calls()
    );
    assert!(
        non_reads(&aws).is_empty(),
        "doctor must not change anything: {:?}",
        aws.calls()
    );

    // The same world through the other targets, and as text.
    let (run, report) = doctor(&aws, &["--instance", &inst[0]]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        text(&findings(&report, "profile")[0]["summary"]).contains("belongs to binding team-a/web"),
        "{report:#}"
    );
    let (run, report) = doctor(&aws, &["--instance-profile", &name]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        text(&findings(&report, "association")[0]["evidence"]["instance"]),
        inst[0]
    );
    let run = cli(&aws.endpoint(), &["doctor", "-f", path_str(&file)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("ok       trust-policy") && run.stdout.ends_with("exit 0\n"),
        "{run:?}"
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

/// The controller's newer states: the account's quota headroom, read once,
/// and a role change that moves no instance without `Reassociate`.
#[tokio::test]
async fn quota_headroom_and_a_role_change_without_reassociate() {
    require_moto!();
    let aws = Aws::start().await;
    let (inst, _dir, file) = applied_world(&aws).await;

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 0, "{run:?}");
    let quota = findings(&report, "profile-quota");
    assert_eq!(quota.len(), 1, "{report:#}");
    assert_eq!(quota[0]["severity"], "ok", "{report:#}");
    // moto's quota; the applied binding's profile is in use.
    assert_eq!(quota[0]["evidence"]["quota"], "1000", "{report:#}");
    let used: u64 = text(&quota[0]["evidence"]["used"]).parse().unwrap_or(0);
    assert!(used >= 1, "{report:#}");
    assert!(
        findings(&report, "rotation").is_empty(),
        "nothing to say when the profile holds the binding's role: {report:#}"
    );
    assert_eq!(
        aws.calls()
            .iter()
            .filter(|c| c.0 == "GetAccountSummary")
            .count(),
        1,
        "read once: {:?}",
        aws.calls()
    );

    // The same binding now wants role B; the profile still holds web-app.
    aws.create_role("web-app-b", common::TRUST_EC2).await;
    let (_dir_b, file_b) = write_bindings(&binding(NS, "web", "web-app-b", &ids(&inst), ""));
    let (run, report) = doctor(&aws, &["-f", path_str(&file_b)]);
    assert_eq!(run.code, 1, "the role swap is check 2's problem: {run:?}");
    let note = findings(&report, "rotation");
    assert_eq!(note.len(), 1, "{report:#}");
    assert_eq!(note[0]["severity"], "warning");
    assert_eq!(note[0]["evidence"]["role"], "web-app");
    assert_eq!(note[0]["evidence"]["wantedRole"], "web-app-b");
    assert!(
        text(&note[0]["summary"]).contains("up to an hour"),
        "{report:#}"
    );
    assert!(
        text(&note[0]["fix"]).contains("onRoleChange: Reassociate"),
        "{report:#}"
    );

    // With Reassociate the controller moves the instances: no note.
    let (_dir_r, file_r) = write_bindings(&binding(
        NS,
        "web",
        "web-app-b",
        &ids(&inst),
        "  rotation: {onRoleChange: Reassociate}\n",
    ));
    let (_, report) = doctor(&aws, &["-f", path_str(&file_r)]);
    assert!(findings(&report, "rotation").is_empty(), "{report:#}");
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn profile_without_role_says_add_the_role() {
    require_moto!();
    let aws = Aws::start().await;
    let (_inst, _dir, file) = applied_world(&aws).await;
    let name = profile_name(NS, "web");
    aws.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("remove role");

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "profile-role");
    assert!(
        text(&p["summary"]).contains("No roles attached to instance profile"),
        "{p:#}"
    );
    assert_eq!(
        text(&p["fix"]),
        format!(
            "add the role: aws iam add-role-to-instance-profile --instance-profile-name {name} --role-name web-app (the controller re-adds it at its next resync)"
        )
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn two_profiles_for_one_binding_are_found() {
    require_moto!();
    let aws = Aws::start().await;
    let (_inst, _dir, file) = applied_world(&aws).await;
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().expect("tag");
    aws.iam
        .create_instance_profile()
        .instance_profile_name("ipb-team-a.web-copy")
        .path("/ipb/test/")
        .tags(tag("instanceprofile.dev/cluster-id", "test"))
        .tags(tag("instanceprofile.dev/namespace", NS))
        .tags(tag("instanceprofile.dev/name", "web"))
        .send()
        .await
        .expect("create the copy");
    // An unrelated profile under the same path is not a duplicate.
    aws.create_profile("ipb-team-b.db-0000", "/ipb/test/").await;

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "profile");
    assert_eq!(p["evidence"]["duplicates"], "ipb-team-a.web-copy", "{p:#}");
    assert!(
        text(&p["summary"]).contains(&format!(
            "the controller manages only {}",
            profile_name(NS, "web")
        )),
        "{p:#}"
    );
    assert!(
        text(&p["fix"]).starts_with("move any instance off ipb-team-a.web-copy and delete it"),
        "{p:#}"
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn role_without_ec2_in_its_trust_policy_is_found() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("lambda-only", common::TRUST_LAMBDA).await;
    let inst = aws.run_instances(1, &[]).await;
    let (_dir, file) = write_bindings(&binding(NS, "web", "lambda-only", &ids(&inst), ""));

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "trust-policy");
    assert_eq!(p["reason"], "TrustPolicyMissingEc2");
    assert_eq!(p["evidence"]["role"], "lambda-only");
    assert!(
        text(&p["fix"]).starts_with(
            r#"add {"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"} to the trust policy"#
        ),
        "{p:#}"
    );
    assert_eq!(findings(&report, "role")[0]["severity"], "ok");
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn role_name_in_the_wrong_case_names_the_near_match() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("Web-App", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (_dir, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "role");
    assert_eq!(p["reason"], "RoleNotFound");
    assert_eq!(p["evidence"]["nearMatch"], "Web-App");
    assert_eq!(p["evidence"]["awsError"], "NoSuchEntity");
    assert!(
        text(&p["summary"]).contains("did you mean Web-App? (role names are case-sensitive)"),
        "{p:#}"
    );
    assert_eq!(p["fix"], "set spec.role to Web-App");
    assert!(findings(&report, "trust-policy").is_empty(), "{report:#}");
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn profile_recreated_under_the_same_name_needs_the_association_replaced() {
    require_moto!();
    let aws = Aws::start().await;
    let (inst, _dir, file) = applied_world(&aws).await;
    let name = profile_name(NS, "web");
    let old_id = aws.profiles().await[&name].1.clone();
    aws.iam
        .remove_role_from_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("remove role");
    aws.iam
        .delete_instance_profile()
        .instance_profile_name(&name)
        .send()
        .await
        .expect("delete");
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().expect("tag");
    let out = aws
        .iam
        .create_instance_profile()
        .instance_profile_name(&name)
        .path("/ipb/test/")
        .tags(tag("instanceprofile.dev/cluster-id", "test"))
        .tags(tag("instanceprofile.dev/namespace", NS))
        .tags(tag("instanceprofile.dev/name", "web"))
        .send()
        .await
        .expect("recreate");
    let new = out.instance_profile().expect("profile");
    let (new_id, new_arn) = (new.instance_profile_id().to_string(), new.arn().to_string());
    assert_ne!(new_id, old_id);
    aws.iam
        .add_role_to_instance_profile()
        .instance_profile_name(&name)
        .role_name("web-app")
        .send()
        .await
        .expect("add role");
    let assoc_id = aws.associations().await[&inst[0]].0.clone();

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "association");
    assert_eq!(p["evidence"]["heldProfileId"], old_id.as_str());
    assert_eq!(p["evidence"]["currentProfileId"], new_id.as_str());
    assert_eq!(
        text(&p["fix"]),
        format!(
            "replace the association: aws ec2 replace-iam-instance-profile-association --association-id {assoc_id} --iam-instance-profile Arn={new_arn} (the controller does this for the instances it manages)"
        )
    );
    // Everything else about the profile is fine.
    assert_eq!(report["summary"]["problem"], 1, "{report:#}");

    // Asked about the instance itself, doctor sees the same.
    let (run, report) = doctor(&aws, &["--instance", &inst[0]]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "association");
    assert!(
        text(&p["fix"]).starts_with("replace the association"),
        "{p:#}"
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn foreign_association_is_a_problem_for_the_binding_and_fine_on_its_own() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_role("other-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (foreign_arn, foreign_id) = aws.create_profile("someone-elses", "/").await;
    aws.iam
        .add_role_to_instance_profile()
        .instance_profile_name("someone-elses")
        .role_name("other-app")
        .send()
        .await
        .expect("add role");
    aws.associate(&inst[0], "someone-elses").await;
    let (_dir, file) = write_bindings(&binding(NS, "web", "web-app", &ids(&inst), ""));

    let (run, report) = doctor(&aws, &["-f", path_str(&file)]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "association");
    assert_eq!(p["reason"], "ForeignAssociation");
    assert_eq!(p["evidence"]["heldProfileArn"], foreign_arn.as_str());
    assert_eq!(
        p["fix"],
        "set spec.replaceForeignAssociations: true, disassociate the other profile, or stop selecting the instance"
    );

    // The instance on its own: another team's profile, healthy.
    let (run, report) = doctor(&aws, &["--instance", &inst[0]]);
    assert_eq!(run.code, 0, "{run:?}");
    let profile = &findings(&report, "profile")[0];
    assert!(
        text(&profile["summary"]).contains("is not managed by this controller"),
        "{report:#}"
    );
    let assoc = &findings(&report, "association")[0];
    assert_eq!(assoc["severity"], "ok");
    assert_eq!(assoc["evidence"]["heldProfileId"], foreign_id.as_str());
    assert_eq!(
        findings(&report, "role")[0]["evidence"]["role"],
        "other-app"
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn missing_profile_and_long_chained_session_are_problems() {
    require_moto!();
    let aws = Aws::start().await;
    let (_inst, _dir, file) = applied_world(&aws).await;

    let (run, report) = doctor(&aws, &["--instance-profile", "no-such-profile"]);
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "profile");
    assert_eq!(p["evidence"]["awsError"], "NoSuchEntity");

    let (run, report) = doctor_env(
        &aws,
        &["-f", path_str(&file)],
        &[("IPB_ASSUME_ROLE_DURATION_SECONDS", "7200")],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let p = problem(&report, "session-duration");
    assert_eq!(
        p["fix"],
        "set IPB_ASSUME_ROLE_DURATION_SECONDS to between 900 and 3600 seconds"
    );
    let (run, _) = doctor_env(
        &aws,
        &["-f", path_str(&file)],
        &[("IPB_ASSUME_ROLE_DURATION_SECONDS", "3600")],
    );
    assert_eq!(run.code, 0, "{run:?}");
    // The flag, as run takes it: judged by the same rule (it used to be
    // ignored, and doctor refused "900s", which run accepts).
    let (run, report) = doctor(
        &aws,
        &[
            "-f",
            path_str(&file),
            "--assume-role-duration-seconds",
            "7200",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        problem(&report, "session-duration")["summary"]
            .as_str()
            .is_some_and(|s| s.contains("7200"))
    );
    let (run, _) = doctor(
        &aws,
        &[
            "-f",
            path_str(&file),
            "--assume-role-duration-seconds",
            "900s",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test]
async fn binding_is_read_from_the_cluster() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("Web-App", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let cluster = common::KubeEmulator::start();
    let client = cluster.client().await;
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).expect("ns");
    namespaces
        .create(&kube::api::PostParams::default(), &ns)
        .await
        .expect("namespace");
    let bindings: kube::Api<instance_profile_controller::crd::InstanceProfileBinding> =
        kube::Api::namespaced(client, NS);
    let web = serde_json::from_value(serde_json::json!({
        "apiVersion": "iam.instanceprofile.dev/v1alpha1",
        "kind": "InstanceProfileBinding",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {"role": "web-app", "instances": {"ids": inst}},
    }))
    .expect("binding");
    bindings
        .create(&kube::api::PostParams::default(), &web)
        .await
        .expect("create binding");
    let kubeconfig = cluster.kubeconfig.to_string_lossy().into_owned();

    let (run, report) = doctor_env(
        &aws,
        &["--binding", "team-a/web"],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(report["target"]["source"], "cluster");
    assert_eq!(problem(&report, "role")["evidence"]["nearMatch"], "Web-App");
    // No controller ran, so no status: said, as a warning.
    let status = findings(&report, "status");
    assert_eq!(status.len(), 1, "{report:#}");
    assert_eq!(status[0]["severity"], "warning");

    let (run, report) = doctor_env(
        &aws,
        &["--binding", "team-a/nope"],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(report["error"]["kind"], "input");
    assert!(
        text(&report["error"]["message"]).contains("binding team-a/nope not found"),
        "{report:#}"
    );
    assert!(non_reads(&aws).is_empty(), "{:?}", aws.calls());
}

#[tokio::test]
async fn doctor_says_when_it_cannot_run() {
    require_moto!();
    let aws = Aws::start().await;
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path().to_string_lossy().into_owned();

    // No kubeconfig for --binding.
    let run = cli_env(
        &aws.endpoint(),
        &["doctor", "--binding", "team-a/web"],
        &[("KUBECONFIG", "/nonexistent/kubeconfig"), ("HOME", &home)],
        &["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("doctor could not run (kubernetes)")
            && run.stderr.contains("kubeconfig"),
        "{run:?}"
    );

    // No credentials anywhere.
    let run = cli_env(
        &aws.endpoint(),
        &["doctor", "--instance", "i-0123456789abcdef0", "-o", "json"],
        &[
            ("HOME", &home),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/nonexistent/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ],
        &[
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    let report: Value = serde_json::from_str(&run.stdout).expect("json error report");
    assert_eq!(report["error"]["kind"], "credentials", "{run:?}");

    // Nothing listening at the endpoint.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let run = cli(
        &format!("http://127.0.0.1:{closed}"),
        &["doctor", "--instance", "i-0123456789abcdef0"],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("doctor could not run (network)"),
        "{run:?}"
    );

    // A file that is not one binding.
    let (_d, file) = write_bindings(&format!(
        "{}{}",
        binding(NS, "a", "web-app", "{ids: [i-0123456789abcdef0]}", ""),
        binding(NS, "b", "web-app", "{ids: [i-0123456789abcdef0]}", "")
    ));
    let run = cli(&aws.endpoint(), &["doctor", "-f", path_str(&file)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("holds 2 bindings"), "{run:?}");

    // Usage errors exit 2 ("doctor could not run"; 1 means a check found a
    // problem), before any AWS call.
    for args in [
        vec!["doctor"],
        vec![
            "doctor",
            "--instance",
            "i-0123456789abcdef0",
            "--instance-profile",
            "x",
        ],
        vec!["doctor", "--instance", "i-nothex"],
        vec!["doctor", "--binding", "no-slash"],
    ] {
        let run = cli(&aws.endpoint(), &args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
    assert!(aws.calls().is_empty(), "{:?}", aws.calls());
}

/// `--profile`, the old name of `--instance-profile`, still works for one
/// release, hidden: AWS users read `--profile` as a credentials profile.
#[tokio::test]
async fn the_old_profile_flag_still_works_but_is_not_shown() {
    require_moto!();
    let aws = Aws::start().await;
    let (old, old_report) = doctor(&aws, &["--profile", "no-such-profile"]);
    let (new, new_report) = doctor(&aws, &["--instance-profile", "no-such-profile"]);
    assert_eq!(old.code, 1, "{old:?}");
    assert_eq!(new.code, 1, "{new:?}");
    assert_eq!(
        problem(&old_report, "profile")["evidence"]["awsError"],
        "NoSuchEntity"
    );
    assert_eq!(old_report["findings"], new_report["findings"]);

    let help = cli(&aws.endpoint(), &["doctor", "--help"]);
    assert_eq!(help.code, 0, "{help:?}");
    assert!(
        help.stdout.contains("--instance-profile <NAME>"),
        "{help:?}"
    );
    assert!(!help.stdout.contains("--profile "), "{help:?}");
    assert!(!help.stdout.contains("--profile,"), "{help:?}");
    assert!(!help.stdout.contains("[aliases"), "{help:?}");
}
