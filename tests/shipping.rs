//! What ships is accepted, unchanged, by a real kube-apiserver (v1.28.7 from
//! ../shared/kube; tests/common/kube.rs): the CRDs (both copies and the `crd`
//! subcommand's output), deploy/manifests.yaml, the Helm chart rendered with
//! default values and with every option set, and every file in examples/.
//!
//! Each check fails on a rejection and on any warning kubectl prints (unknown
//! or duplicate fields, deprecated APIs, …): the API server compiles the CEL
//! rules, estimates their cost and parses patterns with RE2, which neither
//! the API emulator nor `helm lint` does.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::kube::{Ran, RealCluster};
use common::repo;

const CHART: &str = "charts/instance-profile-controller";
const RELEASE: &str = "instance-profile-controller";
const NAMESPACE: &str = "instance-profile-controller";

/// Panics unless kubectl succeeded without printing a warning.
fn accepted(what: &str, out: &Ran) {
    assert!(
        out.ok && !out.stderr.contains("Warning"),
        "the real API server did not accept {what} cleanly:\n{out:?}"
    );
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

fn display(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `kubectl apply --server-side -f FILE`, then waits until every CRD in it
/// is Established (its schema compiled and served).
fn apply_crd_file(cluster: &RealCluster, file: &Path) {
    let name = display(file);
    let out = cluster.kubectl(&["apply", "--server-side", "-f", common::path_str(file)]);
    accepted(&format!("kubectl apply --server-side -f {name}"), &out);
    let out = cluster.kubectl(&[
        "wait",
        "--for",
        "condition=Established",
        "--timeout",
        "30s",
        "-f",
        common::path_str(file),
    ]);
    accepted(&format!("the CRDs of {name} becoming Established"), &out);
}

fn create_namespace(cluster: &RealCluster, ns: &str) {
    let out = cluster.kubectl(&["create", "namespace", ns]);
    assert!(out.ok, "kubectl create namespace {ns}: {out:?}");
}

/// `helm template` of the chart (release namespace [`NAMESPACE`]), or `None`
/// after skipping (failing under CI) when helm is not installed.
fn helm_template(extra: &[&str]) -> Option<String> {
    let Some(helm) = common::kube::helm() else {
        common::kube::skip_or_fail("helm not installed (scripts/install-helm.sh installs it)");
        return None;
    };
    let out: Ran = Command::new(helm)
        .args(["template", RELEASE, CHART, "--namespace", NAMESPACE])
        .args(extra)
        .current_dir(repo())
        .output()
        .expect("run helm")
        .into();
    assert!(out.ok, "helm template {extra:?}: {out:?}");
    Some(out.stdout)
}

/// The chart's rendered objects, dry-run on the server after the CRDs.
fn dry_run_chart(cluster: &RealCluster, rendered: &str, what: &str) {
    let out = cluster.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], rendered);
    accepted(&format!("{what} (kubectl apply --dry-run=server)"), &out);
    let objects =
        rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: "));
    let created = out.stdout.matches("(server dry run)").count();
    assert_eq!(
        created, objects,
        "{what}: {objects} objects rendered, {created} dry-run on the server:\n{}",
        out.stdout
    );
}

#[test]
fn crds_in_crds_dir_apply_server_side() {
    let cluster = require_real_kube!();
    for file in yaml_files("crds") {
        apply_crd_file(&cluster, &file);
    }
}

#[test]
fn crds_in_the_chart_apply_server_side() {
    let cluster = require_real_kube!();
    for file in yaml_files(&format!("{CHART}/crds")) {
        apply_crd_file(&cluster, &file);
    }
}

#[test]
fn crd_subcommand_output_applies_server_side() {
    let cluster = require_real_kube!();
    let out: Ran = Command::new(common::bin())
        .arg("crd")
        .output()
        .expect("run the crd subcommand")
        .into();
    assert!(out.ok, "instance-profile-controller crd: {out:?}");
    let file = cluster.dir().join("crd-output.yaml");
    std::fs::write(&file, &out.stdout).expect("write the crd output");
    apply_crd_file(&cluster, &file);
    let established = cluster.kubectl(&["get", "crd", "-o", "name"]);
    for crd in [
        "instanceprofilebindings.iam.instanceprofile.dev",
        "instanceprofilepolicies.iam.instanceprofile.dev",
    ] {
        assert!(
            established.stdout.contains(crd),
            "`crd` did not print {crd}: {established:?}"
        );
    }
}

/// deploy/manifests.yaml (the chart rendered with defaults, CRDs included),
/// applied as docs/install.md says: the namespace, then the file.
#[test]
fn deploy_manifests_apply() {
    let cluster = require_real_kube!();
    create_namespace(&cluster, NAMESPACE);
    let file = repo().join("deploy/manifests.yaml");
    let out = cluster.kubectl(&["apply", "--server-side", "-f", common::path_str(&file)]);
    accepted("kubectl apply --server-side -f deploy/manifests.yaml", &out);
    // Applying the same file again changes nothing and still warns of nothing.
    let again = cluster.kubectl(&["apply", "--server-side", "-f", common::path_str(&file)]);
    accepted("deploy/manifests.yaml applied a second time", &again);
    let deployments = cluster.kubectl(&["get", "deployment", "-n", NAMESPACE, "-o", "name"]);
    assert_eq!(
        deployments.stdout.trim(),
        "deployment.apps/instance-profile-controller",
        "{deployments:?}"
    );
}

#[test]
fn chart_with_default_values_applies_with_server_dry_run() {
    let cluster = require_real_kube!();
    let Some(rendered) = helm_template(&[]) else {
        return;
    };
    for file in yaml_files(&format!("{CHART}/crds")) {
        apply_crd_file(&cluster, &file);
    }
    create_namespace(&cluster, NAMESPACE);
    dry_run_chart(&cluster, &rendered, "the chart with default values");
}

#[test]
fn chart_with_every_option_applies_with_server_dry_run() {
    let cluster = require_real_kube!();
    let Some(rendered) = helm_template(&["-f", "tests/fixtures/chart-all-options.yaml"]) else {
        return;
    };
    for file in yaml_files(&format!("{CHART}/crds")) {
        apply_crd_file(&cluster, &file);
    }
    // The ServiceMonitor needs prometheus-operator's CRD: a minimal stub.
    assert!(
        rendered.contains("kind: ServiceMonitor"),
        "the all-options render has a ServiceMonitor"
    );
    apply_crd_file(
        &cluster,
        &repo().join("tests/fixtures/servicemonitor-crd-stub.yaml"),
    );
    create_namespace(&cluster, NAMESPACE);
    // watchNamespace: team-a puts the binding Role there.
    create_namespace(&cluster, "team-a");
    dry_run_chart(
        &cluster,
        &rendered,
        "the chart with tests/fixtures/chart-all-options.yaml",
    );
}

/// Every file in examples/ applies as it is, in namespace `demo` (each file
/// starts with the cluster-scoped policy that allows its binding).
#[test]
fn examples_apply() {
    let cluster = require_real_kube!();
    for file in yaml_files("crds") {
        apply_crd_file(&cluster, &file);
    }
    create_namespace(&cluster, "demo");
    for file in yaml_files("examples") {
        let out = cluster.kubectl(&["apply", "-f", common::path_str(&file)]);
        accepted(&format!("kubectl apply -f {}", display(&file)), &out);
        assert!(
            out.stdout
                .contains("instanceprofilebinding.iam.instanceprofile.dev/"),
            "{} holds no binding: {out:?}",
            display(&file)
        );
    }
    let bindings = cluster.kubectl(&["get", "ipb", "-n", "demo", "-o", "name"]);
    assert_eq!(
        bindings.stdout.lines().count(),
        yaml_files("examples").len(),
        "{bindings:?}"
    );
}
