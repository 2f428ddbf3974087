//! What an adversarial pass found (the hardening issue), each as a test that
//! failed before its fix: destructive prune inputs, extreme flag values,
//! spec fields the API server would refuse.

mod common;

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
