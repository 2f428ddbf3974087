//! What an adversarial pass found (the hardening issue), each as a test that
//! failed before its fix: destructive prune inputs, extreme flag values,
//! spec fields the API server would refuse.

use crate::common;

use common::{Aws, binding, profile_name, write_bindings};

const NS: &str = "team-a";

/// `apply --prune` from an input that holds no binding would delete every
/// profile this cluster id owns: refused with the reason, AWS untouched;
/// `--prune-all` says that is really meant.
#[tokio::test]
async fn prune_from_an_input_without_bindings_is_refused() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let (_d, file) = write_bindings(&binding(
        NS,
        "web",
        "web-app",
        &format!("{{ids: [{}]}}", inst[0]),
        "",
    ));
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "web");
    assert!(aws.profiles().await.contains_key(&name));

    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = [
        ("empty.yaml", ""),
        ("comments.yaml", "# nothing here\n---\n---\n"),
        (
            "policy-only.yaml",
            "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfilePolicy\nmetadata: {name: p}\nspec: {namespaces: {names: [team-a]}, roles: ['*']}\n",
        ),
        (
            "namespace-only.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n",
        ),
    ];
    aws.reset_calls();
    for (file, text) in inputs {
        let path = dir.path().join(file);
        std::fs::write(&path, text).expect("write");
        for cmd in ["apply", "plan"] {
            let r = common::cli(
                &aws.endpoint(),
                &[cmd, "--prune", "-f", common::path_str(&path)],
            );
            assert_eq!(r.code, 1, "{cmd} --prune -f {file}: {r:?}");
            assert!(
                r.stderr.contains("no InstanceProfileBinding") && r.stderr.contains("--prune-all"),
                "{cmd} --prune -f {file}: {r:?}"
            );
        }
    }
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    assert!(
        aws.profiles().await.contains_key(&name),
        "a refused prune deleted the profile"
    );

    // Asked for explicitly: every profile this cluster id owns goes, safely.
    let empty = dir.path().join("empty.yaml");
    let r = common::cli(
        &aws.endpoint(),
        &["apply", "--prune-all", "-f", common::path_str(&empty)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!aws.profiles().await.contains_key(&name));
    assert!(aws.associations().await.is_empty());
}

/// Values at the edge of the types exit 1 with the range, never a panic (101)
/// or an endless wait.
#[test]
fn extreme_flag_values_are_refused_with_the_range() {
    let cases: [&[&str]; 5] = [
        &["apply", "-f", "-", "--timeout", "18446744073709551615"],
        &[
            "apply",
            "-f",
            "-",
            "--timeout",
            "10000000000000000000s10000000000000000000s",
        ],
        &["plan", "-f", "-", "--rate-limit-ec2-read", "1e-300:1"],
        &["plan", "-f", "-", "--rate-limit-ec2-read", "1e-9:1"],
        &["run", "--resync-interval", "99999999h"],
    ];
    for args in cases {
        let r = common::cli("http://127.0.0.1:9", args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("out of range"), "{args:?}: {r:?}");
    }
}

/// Fields the API server would refuse are refused in file mode too, before
/// any AWS call: a misspelt metadata field must not silently move a binding
/// to `default`, and a key given twice is an error, not "last wins".
#[test]
fn documents_the_api_server_would_refuse_never_reach_aws() {
    let head = "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\n";
    let cases = [
        (
            format!(
                "{head}metadata: {{name: web, nmespace: team-a}}\nspec: {{role: web-app, instances: {{ids: [i-01234567]}}}}\n"
            ),
            "metadata.nmespace",
        ),
        (
            format!(
                "{head}metadata: {{name: web, namespace: team-a}}\nspec:\n  role: web-app\n  role: db-app\n  instances: {{ids: [i-01234567]}}\n"
            ),
            "uplicate",
        ),
        (
            format!(
                "{head}metadata: {{name: web, namespace: team-a}}\nspec: {{role: web-app, instances: {{ids: [i-01234567]}}}}\nstatus2: {{}}\n"
            ),
            "status2",
        ),
    ];
    for (text, want) in cases {
        let (_d, file) = write_bindings(&text);
        // Nothing listens on port 9: an AWS call would fail differently.
        let r = common::cli(
            "http://127.0.0.1:9",
            &["plan", "-f", common::path_str(&file)],
        );
        assert_eq!(r.code, 1, "{text}: {r:?}");
        assert!(
            r.stderr.contains("document 1:") && r.stderr.contains(want),
            "{text}: {r:?}"
        );
    }
}

/// A binding that put its profile at a custom `instanceProfile.path` and is
/// then removed from the files is found by prune (it used to be orphaned).
#[tokio::test]
async fn prune_finds_profiles_at_a_custom_path() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    let custom = binding(
        NS,
        "custom",
        "web-app",
        &format!("{{ids: [{}]}}", inst[0]),
        "  instanceProfile: {path: /teams/a/}\n",
    );
    let web = binding(NS, "web", "web-app", &format!("{{ids: [{}]}}", inst[1]), "");
    let (_d, both) = write_bindings(&format!("{custom}{web}"));
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&both)]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "custom");
    assert_eq!(aws.profiles().await[&name].0, "/teams/a/");

    let (_e, only_web) = write_bindings(&web);
    let r = common::cli(
        &aws.endpoint(),
        &["plan", "--prune", "-f", common::path_str(&only_web)],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("custom"), "{r:?}");
    let r = common::cli(
        &aws.endpoint(),
        &["apply", "--prune", "-f", common::path_str(&only_web)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let profiles = aws.profiles().await;
    assert!(
        !profiles.contains_key(&name),
        "the custom-path profile was orphaned"
    );
    assert!(profiles.contains_key(&profile_name(NS, "web")));
    let assoc = aws.associations().await;
    assert!(
        !assoc.contains_key(&inst[0]) && assoc.contains_key(&inst[1]),
        "{assoc:?}"
    );
}

/// More instances than the record of "ours" can hold (40 user tags leave it
/// 4 keys, 84 ids): every selected instance is associated, and once an
/// instance is not selected only the recorded ones lose the profile. Before,
/// the record became "*" above 72 and a hand-made association with the
/// profile on an instance the binding never selected was removed.
#[tokio::test]
async fn a_full_record_never_claims_a_hand_made_association() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let big = aws.run_instances(90, &[("fleet", "big")]).await;
    let stranger = aws.run_instances(1, &[]).await;
    let user_tags: Vec<String> = (0..40).map(|n| format!("t{n}: v{n}")).collect();
    let extra = format!(
        "  instanceProfile: {{tags: {{{}}}}}\n",
        user_tags.join(", ")
    );
    let (_d, file) = write_bindings(&binding(
        NS,
        "big",
        "web-app",
        "{tags: {fleet: big}}",
        &extra,
    ));
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    let name = profile_name(NS, "big");
    let ours = |assoc: &std::collections::BTreeMap<String, (String, String, String)>| {
        assoc
            .iter()
            .filter(|(_, (_, arn, _))| arn.ends_with(&format!("/{name}")))
            .map(|(i, _)| i.clone())
            .collect::<std::collections::BTreeSet<String>>()
    };
    assert_eq!(ours(&aws.associations().await).len(), 90);

    // A person associates the profile with an instance the binding does not select.
    aws.associate(&stranger[0], &name).await;
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&file)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ours(&aws.associations().await).contains(&stranger[0]));

    // The binding narrows to one instance: the recorded ones lose the
    // profile, the hand-made association keeps it.
    let (_e, narrow) = write_bindings(&binding(
        NS,
        "big",
        "web-app",
        &common::ids(&big[..1]),
        &extra,
    ));
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&narrow)]);
    assert_eq!(r.code, 0, "{r:?}");
    let left = ours(&aws.associations().await);
    assert!(
        left.contains(&stranger[0]),
        "the hand-made association was removed"
    );
    assert!(left.contains(&big[0]));
    // At most the 6 beyond the record keep it (left alone, as unprovable).
    assert!(left.len() <= 2 + 6, "{} still hold the profile", left.len());
}

/// Two bindings select the same instance, both allowed to replace foreign
/// associations: before, they took it from each other on every pass while
/// both said Ready. Now neither touches it and both report `Conflict`,
/// naming the other; the association already there stays.
#[tokio::test]
async fn two_bindings_on_one_instance_both_report_conflict_and_stop_replacing() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    let replace = "  replaceForeignAssociations: true\n";
    let first = binding(NS, "first", "web-app", &common::ids(&inst[..1]), replace);
    let (_d, only_first) = write_bindings(&first);
    let r = common::cli(
        &aws.endpoint(),
        &["apply", "-f", common::path_str(&only_first)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let held = aws.associations().await[&inst[0]].clone();
    assert!(held.1.ends_with(&profile_name(NS, "first")), "{held:?}");

    // The second selects the same instance and one of its own.
    let second = binding(NS, "second", "web-app", &common::ids(&inst), replace);
    let (_e, both) = write_bindings(&format!("{first}{second}"));
    for _ in 0..2 {
        let r = common::cli(
            &aws.endpoint(),
            &[
                "apply",
                "-o",
                "json",
                "--timeout",
                "20s",
                "-f",
                common::path_str(&both),
            ],
        );
        assert_eq!(r.code, 1, "{r:?}");
        let report: serde_json::Value = serde_json::from_str(&r.stdout).expect("json report");
        for (me, other) in [("first", "second"), ("second", "first")] {
            let entry = report
                .as_array()
                .and_then(|a| a.iter().find(|e| e["name"] == me))
                .unwrap_or_else(|| panic!("{me} in {report}"));
            let ready = entry["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned()
                .unwrap_or_default();
            assert_eq!(ready["status"], "False", "{me}: {entry}");
            assert_eq!(ready["reason"], "Conflict", "{me}: {entry}");
            let message = ready["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(&format!("{NS}/{other}")),
                "{me}: {message}"
            );
            assert!(message.contains(&inst[0]), "{me}: {message}");
        }
        // The association that was there stays; the uncontested instance is
        // the second binding's.
        let assoc = aws.associations().await;
        assert_eq!(assoc[&inst[0]].0, held.0, "the instance changed hands");
        assert!(assoc[&inst[1]].1.ends_with(&profile_name(NS, "second")));
    }
    assert!(
        !aws.mutating_calls()
            .iter()
            .any(|c| c.contains("ReplaceIamInstanceProfileAssociation")),
        "{:?}",
        aws.mutating_calls()
    );
}

fn user_tags(tags: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    tags.iter()
        .filter(|(k, _)| !k.starts_with("instanceprofile.dev/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// `spec.instanceProfile.tags` changes reach AWS: added, changed and removed
/// (only the ones the controller wrote: a tag a person put on the profile
/// stays). Before, `plan` said no changes and the tag was never written.
#[tokio::test]
async fn profile_tag_changes_reach_aws_and_foreign_tags_stay() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(1, &[]).await;
    let name = profile_name(NS, "web");
    let with = |tags: &str| {
        write_bindings(&binding(
            NS,
            "web",
            "web-app",
            &common::ids(&inst),
            &format!("  instanceProfile: {{tags: {{{tags}}}}}\n"),
        ))
    };
    let (_a, first) = with("cost-center: '42', team: a");
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&first)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        user_tags(&aws.profile_tags(&name).await),
        pairs(&[("cost-center", "42"), ("team", "a")])
    );
    aws.tag_profile(&name, "finance", "by-hand").await;

    // Changed and dropped.
    let (_b, second) = with("cost-center: '43'");
    let r = common::cli(&aws.endpoint(), &["plan", "-f", common::path_str(&second)]);
    assert_eq!(r.code, 2, "plan must see the tag change: {r:?}");
    assert!(r.stdout.contains("cost-center=43"), "{r:?}");
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&second)]);
    assert_eq!(r.code, 0, "{r:?}");
    let tags = aws.profile_tags(&name).await;
    assert_eq!(
        user_tags(&tags),
        pairs(&[("cost-center", "43"), ("finance", "by-hand")]),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("instanceprofile.dev/namespace")
            .map(String::as_str),
        Some(NS)
    );
    // Converged: a second apply writes nothing.
    aws.reset_calls();
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&second)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
    // The instance kept its profile throughout.
    assert!(aws.associations().await[&inst[0]].1.ends_with(&name));
}

/// A changed `instanceProfile.path` recreates the profile there, in the safe
/// order (ours disassociated, role removed, deleted, created, associated).
#[tokio::test]
async fn a_path_change_recreates_the_profile_under_the_new_path() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(2, &[]).await;
    let name = profile_name(NS, "web");
    let at =
        |extra: &str| write_bindings(&binding(NS, "web", "web-app", &common::ids(&inst), extra));
    let (_a, default_path) = at("");
    let (_b, custom) = at("  instanceProfile: {path: /teams/a/}\n");
    for (file, path) in [
        (&default_path, "/ipb/test/"),
        (&custom, "/teams/a/"),
        (&default_path, "/ipb/test/"),
    ] {
        let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(file)]);
        assert_eq!(r.code, 0, "{r:?}");
        let profiles = aws.profiles().await;
        let (got, id, roles) = &profiles[&name];
        assert_eq!(got, path, "{r:?}");
        assert_eq!(roles, &vec!["web-app".to_string()]);
        let assoc = aws.associations().await;
        for i in &inst {
            assert_eq!(&assoc[i].2, id, "{i} holds the profile at {path}: {r:?}");
        }
        assert_eq!(profiles.keys().filter(|k| k.starts_with("ipb-")).count(), 1);
    }
}

/// `apply --prune` honours `deletionPolicy: Retain` after the binding is gone:
/// the policy is recorded on the profile as a tag (also when a binding
/// switches to Retain later). Before, a Retain binding removed from the files
/// was disassociated and deleted.
#[tokio::test]
async fn prune_keeps_the_profile_of_a_retain_binding() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let inst = aws.run_instances(3, &[]).await;
    let keep = |name: &str, i: usize, extra: &str| {
        binding(NS, name, "web-app", &common::ids(&inst[i..=i]), extra)
    };
    let retain = "  deletionPolicy: Retain\n";
    // `later` is created with Delete and switches to Retain.
    let (_a, all) = write_bindings(&format!(
        "{}{}{}",
        keep("kept", 0, retain),
        keep("later", 1, ""),
        keep("web", 2, "")
    ));
    let r = common::cli(&aws.endpoint(), &["apply", "-f", common::path_str(&all)]);
    assert_eq!(r.code, 0, "{r:?}");
    let (_b, switched) = write_bindings(&format!(
        "{}{}{}",
        keep("kept", 0, retain),
        keep("later", 1, retain),
        keep("web", 2, "")
    ));
    let r = common::cli(
        &aws.endpoint(),
        &["apply", "-f", common::path_str(&switched)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        aws.profile_tags(&profile_name(NS, "later"))
            .await
            .get("instanceprofile.dev/deletion-policy")
            .map(String::as_str),
        Some("Retain")
    );

    let (_c, only_web) = write_bindings(&keep("web", 2, ""));
    let r = common::cli(
        &aws.endpoint(),
        &["apply", "--prune", "-f", common::path_str(&only_web)],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("deletionPolicy Retain"), "{r:?}");
    let profiles = aws.profiles().await;
    let assoc = aws.associations().await;
    for (name, i) in [("kept", 0), ("later", 1)] {
        let p = profile_name(NS, name);
        assert!(profiles.contains_key(&p), "{name}'s profile was pruned");
        assert!(assoc[&inst[i]].1.ends_with(&p), "{name}'s instance lost it");
    }
}

/// A foreign, untagged profile with the binding's name, path and role, and a
/// binding that selects no instance: before, `apply` called it the binding's
/// own and said Ready without reading its tags. Ownership is proven by tags
/// before any Ready.
#[tokio::test]
async fn an_untagged_look_alike_is_never_ready_even_when_nothing_is_selected() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let name = profile_name(NS, "web");
    aws.create_profile(&name, "/ipb/test/").await;
    aws.add_role(&name, "web-app").await;
    aws.reset_calls();
    let (_d, file) = write_bindings(&binding(
        NS,
        "web",
        "web-app",
        "{tags: {fleet: none-such}}",
        "",
    ));
    for cmd in ["plan", "apply"] {
        let r = common::cli(
            &aws.endpoint(),
            &[cmd, "-o", "json", "-f", common::path_str(&file)],
        );
        assert_eq!(r.code, 1, "{cmd}: {r:?}");
        assert!(r.stdout.contains("ForeignProfileExists"), "{cmd}: {r:?}");
    }
    assert!(
        aws.mutating_calls().is_empty(),
        "{:?}",
        aws.mutating_calls()
    );
}
