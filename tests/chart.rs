//! Checks of the Helm chart and the deploy/ artifacts.
//!
//! The chart checks run `helm lint` and `helm template` and need the `helm`
//! binary: `$HELM`, else `.tools/bin/helm` (what `scripts/install-helm.sh`
//! installs), else `helm` on `PATH`. Without one they print a notice and pass.
//! The checks of files alone (CRD copy, IAM policy, Argo CD health check,
//! values documentation) always run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

const CHART: &str = "charts/instance-profile-controller";
const ALL_OPTIONS: &str = "tests/fixtures/chart-all-options.yaml";
const RELEASE: &str = "instance-profile-controller";
const NAMESPACE: &str = "instance-profile-controller";
const RENDERED: &str = "deploy/manifests.yaml";

/// Leaves of values.yaml that templates use only through `toYaml` of the
/// named parent, so `.Values.<leaf path>` never appears literally.
const TO_YAML_PARENTS: &[&str] = &["podSecurityContext", "securityContext", "resources"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The helm binary, or `None` after printing why the helm checks are skipped.
fn helm() -> Option<PathBuf> {
    let found = std::env::var_os("HELM")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| Some(root().join(".tools/bin/helm")).filter(|p| p.is_file()))
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|dir| dir.join("helm"))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        eprintln!("skipped: helm not installed (scripts/install-helm.sh installs it)");
    }
    found
}

/// Runs helm in the repository root; panics with its output unless it exits 0.
/// Helm 4 may warn on stderr; only the exit status counts.
fn run_helm(helm: &Path, args: &[&str]) -> String {
    let out = Command::new(helm)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", helm.display()));
    assert!(
        out.status.success(),
        "helm {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

fn template(helm: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
    args.extend_from_slice(extra);
    parse_documents(&run_helm(helm, &args))
}

fn parse_documents(yaml: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm renders valid YAML"))
        .filter(|doc| !doc.is_null())
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], wanted: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == wanted).collect()
}

fn only<'a>(docs: &'a [Value], wanted: &str) -> &'a Value {
    let found = of_kind(docs, wanted);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {wanted}, found {}",
        found.len()
    );
    found[0]
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn args(deployment: &Value) -> Vec<&str> {
    strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
}

fn rules_with_resource<'a>(docs: &'a [Value], resource: &str) -> Vec<(&'a Value, &'a Value)> {
    docs.iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role"))
        .flat_map(|d| {
            d["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |r| (d, r))
        })
        .filter(|(_, r)| strings(&r["resources"]).contains(&resource))
        .collect()
}

fn assert_secure_pod(deployment: &Value) {
    let pod = &deployment["spec"]["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true, "pod runAsNonRoot");
    assert_eq!(psc["runAsUser"], 65532, "pod runAsUser");
    assert_eq!(psc["fsGroup"], 65532, "pod fsGroup");
    assert_eq!(
        psc["seccompProfile"]["type"], "RuntimeDefault",
        "pod seccompProfile"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "the controller needs the API"
    );

    let container = &pod["containers"][0];
    let csc = &container["securityContext"];
    assert_eq!(
        csc["allowPrivilegeEscalation"], false,
        "allowPrivilegeEscalation"
    );
    assert_eq!(
        csc["readOnlyRootFilesystem"], true,
        "readOnlyRootFilesystem"
    );
    assert_eq!(
        strings(&csc["capabilities"]["drop"]),
        ["ALL"],
        "capabilities.drop"
    );

    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(
        container["livenessProbe"]["httpGet"]["port"],
        "http-metrics"
    );
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        container["readinessProbe"]["httpGet"]["port"],
        "http-metrics"
    );
    assert_eq!(container["ports"][0]["name"], "http-metrics");

    let env = container["env"].as_array().expect("env");
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let entry = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("env {var}"));
        assert_eq!(
            entry["valueFrom"]["fieldRef"]["fieldPath"], field,
            "env {var}"
        );
    }
    assert_eq!(
        args(deployment).first(),
        Some(&"run"),
        "the first argument is the subcommand"
    );
}

/// Least-privilege RBAC: no wildcards, no secrets, leases only in a Role of
/// the release namespace.
fn assert_least_privilege(docs: &[Value]) {
    for role in docs
        .iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role"))
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                assert!(
                    !strings(&rule[field]).iter().any(|s| s.contains('*')),
                    "{} {}: wildcard in {field}: {rule}",
                    kind(role),
                    name(role)
                );
            }
            assert!(
                !strings(&rule["resources"])
                    .iter()
                    .any(|r| r.split('/').next() == Some("secrets")),
                "{} {} touches secrets: {rule}",
                kind(role),
                name(role)
            );
        }
    }
    for (role, rule) in rules_with_resource(docs, "leases") {
        assert_eq!(
            kind(role),
            "Role",
            "leases only in a namespaced Role, not {}",
            name(role)
        );
        assert_eq!(
            role["metadata"]["namespace"], NAMESPACE,
            "the Lease Role lives in the release namespace"
        );
        assert_eq!(strings(&rule["apiGroups"]), ["coordination.k8s.io"]);
    }
    for (role, rule) in rules_with_resource(docs, "customresourcedefinitions") {
        assert_eq!(kind(role), "ClusterRole");
        assert_eq!(
            strings(&rule["resourceNames"]),
            [
                "instanceprofilebindings.iam.instanceprofile.dev",
                "instanceprofilepolicies.iam.instanceprofile.dev"
            ],
            "CRD reads are limited to ours"
        );
    }
    for group in ["", "events.k8s.io"] {
        assert!(
            rules_with_resource(docs, "events")
                .iter()
                .any(|(_, r)| strings(&r["apiGroups"]) == [group]
                    && strings(&r["verbs"]) == ["create", "patch"]),
            "events create/patch in API group {group:?}"
        );
    }
}

#[test]
fn chart_lints_with_default_and_all_options() {
    let Some(helm) = helm() else { return };
    run_helm(&helm, &["lint", "--strict", CHART]);
    run_helm(&helm, &["lint", "--strict", CHART, "--values", ALL_OPTIONS]);
}

#[test]
fn default_render_is_secure_and_least_privilege() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &[]);
    let deployment = only(&docs, "Deployment");
    assert_secure_pod(deployment);
    assert_least_privilege(&docs);

    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = args(deployment);
    for expected in [
        "--cluster-id=default",
        "--profile-path-prefix=/ipb/",
        "--metrics-addr=0.0.0.0:8080",
        "--lease-name=instance-profile-controller",
        &format!("--lease-namespace={NAMESPACE}"),
        "--lease-duration=15s",
    ] {
        assert!(args.contains(&expected), "missing {expected} in {args:?}");
    }
    for absent in [
        "--no-leader-election",
        "--namespace",
        "--region",
        "--aws-endpoint-url",
    ] {
        assert!(
            !args.iter().any(|a| a.starts_with(absent)),
            "{absent} is off by default: {args:?}"
        );
    }
    assert!(
        args.contains(&"--require-policy=true"),
        "the policy gate is on by default: {args:?}"
    );
    let anti = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
    assert!(
        anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"]
            == "kubernetes.io/hostname",
        "default soft anti-affinity across nodes"
    );

    // Bindings are watched cluster-wide, so their rules are in the ClusterRole.
    let bindings = rules_with_resource(&docs, "instanceprofilebindings");
    assert_eq!(bindings.len(), 1);
    assert_eq!(kind(bindings[0].0), "ClusterRole");

    assert_eq!(
        only(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"],
        1
    );
    assert_eq!(
        only(&docs, "Service")["spec"]["ports"][0]["name"],
        "http-metrics"
    );
    for off in ["ServiceMonitor", "NetworkPolicy", "InstanceProfilePolicy"] {
        assert!(of_kind(&docs, off).is_empty(), "{off} is off by default");
    }
}

#[test]
fn all_options_render() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--values", ALL_OPTIONS]);
    let deployment = only(&docs, "Deployment");
    assert_secure_pod(deployment);
    assert_least_privilege(&docs);

    let args = args(deployment);
    for expected in [
        "--namespace=team-a",
        "--region=eu-west-1",
        "--aws-endpoint-url=https://iam.example.internal",
        "--require-policy=true",
        "--metrics-addr=0.0.0.0:9090",
        "--some-future-flag=value",
    ] {
        assert!(args.contains(&expected), "missing {expected} in {args:?}");
    }

    // One watched namespace: binding permissions move to a Role there, the
    // cluster-wide reads stay in the ClusterRole.
    let bindings = rules_with_resource(&docs, "instanceprofilebindings");
    assert_eq!(bindings.len(), 1);
    assert_eq!(kind(bindings[0].0), "Role");
    assert_eq!(bindings[0].0["metadata"]["namespace"], "team-a");
    for cluster_wide in [
        "instanceprofilepolicies",
        "namespaces",
        "customresourcedefinitions",
    ] {
        let found = rules_with_resource(&docs, cluster_wide);
        assert!(
            !found.is_empty() && found.iter().all(|(r, _)| kind(r) == "ClusterRole"),
            "{cluster_wide}"
        );
    }
    let binding = of_kind(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["metadata"]["namespace"] == "team-a")
        .expect("RoleBinding in the watched namespace");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);

    let sa = only(&docs, "ServiceAccount");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/ipb-controller"
    );

    let netpol = only(&docs, "NetworkPolicy");
    assert_eq!(
        netpol["spec"]["ingress"].as_array().map(Vec::len),
        Some(1),
        "one ingress rule"
    );
    assert_eq!(
        netpol["spec"]["ingress"][0]["ports"][0]["port"],
        "http-metrics"
    );
    assert!(netpol["spec"]["ingress"][0]["from"].is_array());

    assert_eq!(
        only(&docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"],
        "http-metrics"
    );
    let policy = only(&docs, "InstanceProfilePolicy");
    assert!(
        policy["metadata"]["namespace"].is_null(),
        "InstanceProfilePolicy is cluster-scoped"
    );
    assert_eq!(only(&docs, "Deployment")["spec"]["replicas"], 3);
    assert!(!of_kind(&docs, "PodDisruptionBudget").is_empty());
}

#[test]
fn without_leader_election_one_replica_runs() {
    let Some(helm) = helm() else { return };
    let docs = template(
        &helm,
        &[
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "replicas=3",
        ],
    );
    let deployment = only(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let args = args(deployment);
    assert!(args.contains(&"--no-leader-election"));
    assert!(!args.iter().any(|a| a.starts_with("--lease-")), "{args:?}");
    assert!(
        rules_with_resource(&docs, "leases").is_empty(),
        "no Lease permissions without leader election"
    );
    assert!(
        of_kind(&docs, "PodDisruptionBudget").is_empty(),
        "no PDB for a single replica"
    );
}

#[test]
fn network_policy_egress_is_open_by_default() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--set", "networkPolicy.enabled=true"]);
    let netpol = only(&docs, "NetworkPolicy");
    assert_eq!(
        netpol["spec"]["egress"],
        serde_json::json!([{}]),
        "AWS endpoints and the API server need egress"
    );
    assert!(
        netpol["spec"]["ingress"][0]["from"].is_null(),
        "metrics reachable from anywhere unless `from` is set"
    );
}

#[test]
fn rendered_manifests_are_current() {
    let Some(helm) = helm() else { return };
    let args = [
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--include-crds",
    ];
    let fresh = run_helm(&helm, &args);
    assert!(
        fresh == read(RENDERED),
        "{RENDERED} is stale; regenerate it with:\n  helm {} > {RENDERED}",
        args.join(" ")
    );
    let docs = parse_documents(&fresh);
    assert_eq!(
        of_kind(&docs, "CustomResourceDefinition").len(),
        2,
        "--include-crds"
    );
}

#[test]
fn chart_crds_equal_the_generated_crds() {
    let files = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| {
                e.expect("directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    let generated = files("crds");
    let in_chart = files(&format!("{CHART}/crds"));
    assert_eq!(
        generated, in_chart,
        "the chart ships exactly the CRDs in crds/"
    );
    for file in &generated {
        let chart_copy = format!("{CHART}/crds/{file}");
        assert!(
            std::fs::read(root().join("crds").join(file)).expect("crd")
                == std::fs::read(root().join(&chart_copy)).expect("crd"),
            "{chart_copy} differs from crds/{file}; copy it: cp crds/{file} {chart_copy}"
        );
    }
}

fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(child, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// `.Values.<path>` occurs, not as the start of a longer key.
fn references(text: &str, path: &str) -> bool {
    let needle = format!(".Values.{path}");
    text.match_indices(&needle).any(|(at, _)| {
        text[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[test]
fn every_value_is_used_by_a_template() {
    let templates_dir = root().join(CHART).join("templates");
    let mut text = String::new();
    for entry in std::fs::read_dir(&templates_dir).expect("templates/") {
        let path = entry.expect("directory entry").path();
        text.push_str(
            &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        );
    }
    let values: Value =
        serde_norway::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values.yaml");
    let mut leaves = Vec::new();
    leaf_paths(&values, "", &mut leaves);
    assert!(leaves.len() > 40, "values.yaml has {} leaves", leaves.len());

    let unused: Vec<&String> = leaves
        .iter()
        .filter(|leaf| {
            let via_parent = TO_YAML_PARENTS
                .iter()
                .any(|parent| leaf.starts_with(&format!("{parent}.")) && references(&text, parent));
            !via_parent && !references(&text, leaf)
        })
        .collect();
    assert!(
        unused.is_empty(),
        "values.yaml keys no template uses: {unused:?}"
    );
}

#[test]
fn iam_policy_is_least_privilege() {
    let policy: Value = serde_json::from_str(&read("deploy/iam-policy.json"))
        .expect("deploy/iam-policy.json is JSON");
    assert_eq!(policy["Version"], "2012-10-17");
    let statements = policy["Statement"].as_array().expect("Statement list");
    let mut sids = BTreeSet::new();
    let mut actions = BTreeSet::new();
    for statement in statements {
        let sid = statement["Sid"]
            .as_str()
            .expect("every statement has a Sid");
        assert!(sids.insert(sid), "duplicate Sid {sid}");
        assert_eq!(statement["Effect"], "Allow", "{sid}");
        assert!(
            statement.get("NotAction").is_none() && statement.get("NotResource").is_none(),
            "{sid}"
        );
        let resources = strings(&statement["Resource"]);
        assert!(!resources.is_empty(), "{sid} names its resources");
        for action in strings(&statement["Action"]) {
            assert!(!action.contains('*'), "{sid}: wildcard action {action}");
            actions.insert(action);
            let Some(iam_action) = action.strip_prefix("iam:") else {
                continue;
            };
            let read_only = ["Get", "List", "Simulate"]
                .iter()
                .any(|p| iam_action.starts_with(p));
            assert!(
                read_only || !resources.contains(&"*"),
                "{sid}: mutating {action} on Resource \"*\""
            );
            if action == "iam:PassRole" {
                let passed_to =
                    strings(&statement["Condition"]["StringEquals"]["iam:PassedToService"]);
                assert!(
                    passed_to.contains(&"ec2.amazonaws.com"),
                    "{sid}: iam:PassRole without iam:PassedToService"
                );
            }
        }
    }
    for needed in [
        "iam:CreateInstanceProfile",
        "iam:TagInstanceProfile",
        "iam:UntagInstanceProfile",
        "iam:DeleteInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:GetInstanceProfile",
        "iam:ListInstanceProfiles",
        "iam:ListRoles",
        "iam:GetRole",
        "iam:PassRole",
        "ec2:AssociateIamInstanceProfile",
        "ec2:ReplaceIamInstanceProfileAssociation",
        "ec2:DisassociateIamInstanceProfile",
        "ec2:DescribeInstances",
        "ec2:DescribeIamInstanceProfileAssociations",
        "iam:SimulatePrincipalPolicy",
    ] {
        assert!(actions.contains(needed), "the policy lacks {needed}");
    }
    let creates = statements
        .iter()
        .find(|s| strings(&s["Action"]).contains(&"iam:CreateInstanceProfile"))
        .expect("a statement allows iam:CreateInstanceProfile");
    assert_eq!(
        creates["Condition"]["Null"]["aws:RequestTag/instanceprofile.dev/cluster-id"], "false",
        "profiles are created only with the ownership tag"
    );
}

#[test]
fn argocd_cm_patch_embeds_the_health_check() {
    let lua = read("deploy/argocd-health.lua");
    let patch: Value =
        serde_norway::from_str(&read("deploy/argocd-cm-patch.yaml")).expect("argocd-cm-patch.yaml");
    assert_eq!(patch["metadata"]["name"], "argocd-cm");
    assert_eq!(
        patch["data"]["resource.customizations.health.iam.instanceprofile.dev_InstanceProfileBinding"].as_str(),
        Some(lua.as_str()),
        "deploy/argocd-cm-patch.yaml must embed deploy/argocd-health.lua unchanged"
    );
}
