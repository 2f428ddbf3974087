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

use crate::common;

const CHART: &str = "charts/instance-profile-controller";
const ALL_OPTIONS: &str = "tests/fixtures/chart-all-options.yaml";
/// The ServiceMonitor relabelings, apart: the CRD stub tests/shipping.rs
/// dry-runs against does not declare them.
/// values.yaml of chart 0.1.0: what `helm upgrade --reuse-values` from a
/// 0.1.0 release feeds a newer chart.
const VALUES_0_1_0: &str = "tests/fixtures/chart-values-0.1.0.yaml";
const RELEASE: &str = "instance-profile-controller";
const NAMESPACE: &str = "instance-profile-controller";
const RENDERED: &str = "deploy/manifests.yaml";

/// Leaves of values.yaml that templates use only through the named parent
/// (`toYaml` of it, or a variable bound to it with a default, so that values
/// of an older chart without the parent still render), so `.Values.<leaf
/// path>` never appears literally.
const VIA_PARENT: &[&str] = &[
    "orphanSweep",
    "nodeSelection",
    "events",
    "podSecurityContext",
    "securityContext",
    "resources",
    "nodeSelector",
    "livenessProbe",
    "readinessProbe",
    "aws.endpoints",
    "aws.credentialsSecret",
];

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

/// The controller container's environment variable `name`; panics unless
/// exactly one has that name.
fn env<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    let found: Vec<&Value> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter(|e| e["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "env {name}: {found:?}");
    found[0]
}

fn env_names(deployment: &Value) -> Vec<&str> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect()
}

/// How many arguments set `--flag`: `--flag`, or `--flag=value`.
fn flag_count(args: &[&str], flag: &str) -> usize {
    args.iter()
        .filter(|a| **a == flag || a.starts_with(&format!("{flag}=")))
        .count()
}

/// A ClusterRole aggregated into the built-in view, edit or admin roles:
/// for people, not the controller.
fn aggregated(role: &Value) -> bool {
    role["metadata"]["labels"]
        .as_object()
        .is_some_and(|labels| {
            labels
                .keys()
                .any(|k| k.starts_with("rbac.authorization.k8s.io/aggregate-to-"))
        })
}

/// Rules of the controller's own (not aggregated) Roles and ClusterRoles
/// that name `resource`.
fn rules_with_resource<'a>(docs: &'a [Value], resource: &str) -> Vec<(&'a Value, &'a Value)> {
    docs.iter()
        .filter(|d| matches!(kind(d), "ClusterRole" | "Role") && !aggregated(d))
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
        "--event-queue",
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

    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"],
        serde_json::json!({"kubernetes.io/os": "linux"}),
        "the image is Linux only"
    );
    assert!(pod["hostNetwork"].is_null(), "no host network by default");
    assert_eq!(
        env_names(deployment),
        ["POD_NAME", "POD_NAMESPACE"],
        "no endpoint or credential variables by default"
    );
    assert_eq!(
        pod["containers"][0]["image"],
        "ghcr.io/instanceprofile-dev/instance-profile-controller:0.1.0",
        "the tag defaults to appVersion"
    );
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
        "--aws-endpoint-url=https://aws.example.internal",
        "--require-policy=true",
        "--metrics-addr=0.0.0.0:9090",
        "--some-future-flag=value",
        "--event-queue=https://sqs.eu-west-1.amazonaws.com/111122223333/ipb-events-prod-eu-1",
    ] {
        assert!(args.contains(&expected), "missing {expected} in {args:?}");
    }
    assert_eq!(
        env(deployment, "AWS_ENDPOINT_URL_SQS")["value"],
        "https://sqs.eu-west-1.example.internal",
        "aws.endpoints.sqs"
    );

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

    // The options of the Deployment and its pod.
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        "registry.example.com/platform/instance-profile-controller@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "image.digest replaces the tag"
    );
    assert_eq!(
        deployment["metadata"]["annotations"]["example.com/team"],
        "platform"
    );
    assert_eq!(
        spec["template"]["metadata"]["annotations"]["example.com/scrape"],
        "true"
    );
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(spec["revisionHistoryLimit"], 3);
    assert_eq!(pod["terminationGracePeriodSeconds"], 45);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "topology.kubernetes.io/zone"
    );
    assert_eq!(pod["nodeSelector"]["kubernetes.io/arch"], "arm64");
    assert_eq!(pod["volumes"][0]["name"], "tmp");
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/tmp");
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"],
        "ipc-extra-env"
    );
    let liveness = &container["livenessProbe"];
    assert_eq!(liveness["httpGet"]["path"], "/healthz");
    assert_eq!(
        (
            &liveness["initialDelaySeconds"],
            &liveness["periodSeconds"],
            &liveness["timeoutSeconds"],
            &liveness["failureThreshold"]
        ),
        (&10.into(), &20.into(), &3.into(), &5.into())
    );
    let readiness = &container["readinessProbe"];
    assert_eq!(readiness["httpGet"]["path"], "/readyz");
    assert_eq!(readiness["periodSeconds"], 10);
    assert_eq!(readiness["failureThreshold"], 2);

    // AWS: per-service endpoints and credentials from a Secret.
    for (var, url) in [
        ("AWS_ENDPOINT_URL_IAM", "https://iam.example.internal"),
        (
            "AWS_ENDPOINT_URL_EC2",
            "https://ec2.eu-west-1.example.internal",
        ),
        (
            "AWS_ENDPOINT_URL_STS",
            "https://sts.eu-west-1.example.internal",
        ),
    ] {
        assert_eq!(env(deployment, var)["value"], url, "{var}");
    }
    for (var, key) in [
        ("AWS_ACCESS_KEY_ID", "access-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "secret-access-key"),
        ("AWS_SESSION_TOKEN", "session-token"),
    ] {
        let from = &env(deployment, var)["valueFrom"]["secretKeyRef"];
        assert_eq!(from["name"], "ipc-aws-credentials", "{var}");
        assert_eq!(from["key"], key, "{var}");
    }
    assert_eq!(
        env(deployment, "AWS_STS_REGIONAL_ENDPOINTS")["value"],
        "regional"
    );

    // commonLabels on every object the chart renders; the ConfigMap of
    // extraObjects is rendered as written, the Secret includes the labels.
    for doc in &docs {
        if name(doc) == "ipc-extra-env" {
            continue;
        }
        assert_eq!(
            doc["metadata"]["labels"]["example.com/cost-center"],
            "platform",
            "commonLabels on {} {}",
            kind(doc),
            name(doc)
        );
    }

    // extraObjects: a map and a string, both through tpl.
    let config_map = only(&docs, "ConfigMap");
    assert_eq!(config_map["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        config_map["metadata"]["labels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    let secret = only(&docs, "Secret");
    assert_eq!(secret["metadata"]["name"], "ipc-aws-credentials");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/name"],
        "instance-profile-controller"
    );

    // The IRSA role in roleArn and, the same, in the annotations: once.
    assert_eq!(
        sa["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
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
            let via_parent = VIA_PARENT
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
        "iam:GetAccountSummary",
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
/// Runs helm with `HELM_*_HOME` in `home` (no user repositories or cache),
/// in `dir`; the output, or a panic with it unless helm exits 0.
fn run_helm_in(helm: &Path, home: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(helm)
        .args(args)
        .current_dir(dir)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
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

/// helm's stderr; panics if it succeeded.
fn helm_fails(helm: &Path, args: &[&str]) -> String {
    let out = Command::new(helm)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", helm.display()));
    assert!(
        !out.status.success(),
        "helm {args:?} should fail:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        }
    }
}

/// `required` anywhere but in the item schema of a list would make Helm
/// refuse values that lack the key, which `--reuse-values` produces (see
/// `upgrade_with_reuse_values_from_0_1_0_renders`); and a parent chart passes
/// `global` to this one.
#[test]
fn schema_requires_no_value_and_allows_global() {
    let schema: Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json")))
        .expect("values.schema.json is JSON");
    assert_eq!(
        schema["additionalProperties"], false,
        "typos are still caught"
    );
    assert_eq!(schema["properties"]["global"]["type"], "object");

    fn walk(node: &Value, path: &str, in_items: bool, found: &mut Vec<String>) {
        match node {
            Value::Object(map) => {
                if map.contains_key("required") && !in_items {
                    found.push(path.to_owned());
                }
                for (key, child) in map {
                    let child_path = format!("{path}/{key}");
                    if key == "items" {
                        walk(child, &child_path, true, found);
                    } else if key == "properties" {
                        for (property, schema) in child.as_object().into_iter().flatten() {
                            walk(schema, &format!("{child_path}/{property}"), false, found);
                        }
                    } else {
                        walk(child, &child_path, in_items, found);
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, path, in_items, found);
                }
            }
            _ => {}
        }
    }
    let mut required = Vec::new();
    walk(&schema, "", false, &mut required);
    assert!(
        required.is_empty(),
        "values.schema.json requires keys at {required:?}: defaults come from values.yaml"
    );
}

/// The chart as a dependency of an umbrella chart, with `global` values set:
/// Helm passes `global` to every subchart, and a schema that forbids unknown
/// keys must allow it ("additional properties 'global' not allowed").
#[test]
fn chart_works_as_a_subchart_with_global_values() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let umbrella = dir.path().join("platform");
    std::fs::create_dir_all(umbrella.join("templates")).expect("umbrella");
    let chart_yaml: Value =
        serde_norway::from_str(&read(&format!("{CHART}/Chart.yaml"))).expect("Chart.yaml");
    std::fs::write(
        umbrella.join("Chart.yaml"),
        format!(
            "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n  - name: instance-profile-controller\n    version: {}\n    repository: file://{}\n",
            chart_yaml["version"].as_str().expect("version"),
            root().join(CHART).display()
        ),
    )
    .expect("Chart.yaml");
    std::fs::write(
        umbrella.join("values.yaml"),
        "global:\n  imageRegistry: registry.example.com\ninstance-profile-controller:\n  clusterId: umbrella\n",
    )
    .expect("values.yaml");
    std::fs::write(
        umbrella.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-platform\ndata:\n  registry: {{ .Values.global.imageRegistry | quote }}\n",
    )
    .expect("template");
    let home = dir.path().join("helm");
    run_helm_in(
        &helm,
        &home,
        dir.path(),
        &["dependency", "build", "platform"],
    );
    let global = ["--set", "global.environment=prod"];
    let mut lint = vec!["lint", "--strict", "platform"];
    lint.extend_from_slice(&global);
    run_helm_in(&helm, &home, dir.path(), &lint);
    let mut template = vec!["template", "p", "platform", "--namespace", NAMESPACE];
    template.extend_from_slice(&global);
    let docs = parse_documents(&run_helm_in(&helm, &home, dir.path(), &template));
    let deployment = only(&docs, "Deployment");
    assert!(
        args(deployment).contains(&"--cluster-id=umbrella"),
        "the parent's values reach the subchart: {:?}",
        args(deployment)
    );
    assert_eq!(
        only(&docs, "ConfigMap")["data"]["registry"],
        "registry.example.com"
    );
}

/// Renders the chart as `helm upgrade --reuse-values` does from a 0.1.0
/// release. Helm then does not merge the user's values over the new chart's
/// values.yaml: it replaces the new chart's defaults with the old release's
/// (the 0.1.0 values.yaml, merged with what the user set), and validates
/// those against the new values.schema.json. So every value added since
/// 0.1.0 is missing. `helm template -f old-values.yaml` would not show it
/// (the new defaults would fill the gaps), so this renders a copy of the chart
/// whose values.yaml is the 0.1.0 one: the schema must not require the new
/// keys, and the templates must not dereference them (a nil map is an error
/// in a template). `upgrade_with_reuse_values_on_a_real_api_server` runs the
/// real upgrade.
#[test]
fn upgrade_with_reuse_values_from_0_1_0_renders() {
    let Some(helm) = helm() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let chart = dir.path().join("instance-profile-controller");
    copy_dir(&root().join(CHART), &chart);
    std::fs::copy(root().join(VALUES_0_1_0), chart.join("values.yaml")).expect("old values");
    let old: Value = serde_norway::from_str(&read(VALUES_0_1_0)).expect("0.1.0 values");
    let new: Value =
        serde_norway::from_str(&read(&format!("{CHART}/values.yaml"))).expect("values.yaml");
    let (mut old_leaves, mut new_leaves) = (Vec::new(), Vec::new());
    leaf_paths(&old, "", &mut old_leaves);
    leaf_paths(&new, "", &mut new_leaves);
    assert!(
        new_leaves.iter().any(|leaf| !old_leaves.contains(leaf)),
        "values.yaml has no value 0.1.0 lacks: nothing to check"
    );

    run_helm(&helm, &["lint", "--strict", common::path_str(&chart)]);
    // A value added since, set on the command line as `--reuse-values --set`
    // would: it works without the rest of its new siblings.
    let rendered = run_helm(
        &helm,
        &[
            "template",
            RELEASE,
            common::path_str(&chart),
            "--namespace",
            NAMESPACE,
            "--set",
            "aws.endpoints.sts=https://sts.eu-west-1.amazonaws.com",
            "--set",
            "commonLabels.team=platform",
        ],
    );
    let docs = parse_documents(&rendered);
    let deployment = only(&docs, "Deployment");
    assert_secure_pod(deployment);
    assert_least_privilege(&docs);
    assert!(args(deployment).contains(&"--cluster-id=default"));
    assert_eq!(
        env_names(deployment),
        ["POD_NAME", "POD_NAMESPACE", "AWS_ENDPOINT_URL_STS"]
    );
    assert!(
        docs.iter()
            .all(|d| d["metadata"]["labels"]["team"] == "platform"),
        "commonLabels"
    );
    assert!(
        !docs.iter().any(aggregated),
        "a value 0.1.0 lacks is off, not at its new default"
    );
}

/// The real thing on a real API server: install a release whose chart has
/// the 0.1.0 values.yaml, then `helm upgrade --reuse-values` to this chart,
/// turning on a value added since.
#[test]
fn upgrade_with_reuse_values_on_a_real_api_server() {
    let Some(helm) = helm() else { return };
    let cluster = require_real_kube!();
    let work = cluster.dir().join("reuse-values");
    let old = work.join("instance-profile-controller-0.1.0");
    copy_dir(&root().join(CHART), &old);
    std::fs::copy(root().join(VALUES_0_1_0), old.join("values.yaml")).expect("old values");
    let kube = [
        "--kubeconfig",
        common::path_str(&cluster.kubeconfig),
        "--namespace",
        NAMESPACE,
    ];
    let home = work.join("helm");
    let mut install = vec![
        "install",
        RELEASE,
        common::path_str(&old),
        "--create-namespace",
    ];
    install.extend_from_slice(&kube);
    run_helm_in(&helm, &home, &root(), &install);

    let mut upgrade = vec![
        "upgrade",
        RELEASE,
        CHART,
        "--reuse-values",
        "--set",
        "rbac.aggregateToDefaultRoles=true",
    ];
    upgrade.extend_from_slice(&kube);
    run_helm_in(&helm, &home, &root(), &upgrade);

    let roles = cluster.kubectl(&["get", "clusterrole", "-o", "name"]);
    assert!(roles.ok, "{roles:?}");
    for role in ["view", "edit"] {
        assert!(
            roles.stdout.contains(&format!(
                "clusterrole.rbac.authorization.k8s.io/{RELEASE}-{role}"
            )),
            "{RELEASE}-{role} after the upgrade: {roles:?}"
        );
    }
}

/// The controller refuses a flag given twice (clap), so a flag in extraArgs
/// replaces the chart's own instead of repeating it.
#[test]
fn extra_args_replace_the_flags_the_chart_sets() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &[]);
    let default_args = args(only(&docs, "Deployment"));
    for flag in ["--cluster-id", "--metrics-addr", "--resync-interval"] {
        assert_eq!(
            flag_count(&default_args, flag),
            1,
            "{flag} once: {default_args:?}"
        );
    }

    let docs = template(
        &helm,
        &[
            "--set-json",
            r#"extraArgs=["--cluster-id=from-extra-args","--metrics-addr=0.0.0.0:9999","--resync-interval","1m","--some-future-flag"]"#,
        ],
    );
    let args = args(only(&docs, "Deployment"));
    assert_eq!(args.first(), Some(&"run"), "{args:?}");
    for flag in [
        "--cluster-id",
        "--metrics-addr",
        "--resync-interval",
        "--some-future-flag",
        "--profile-path-prefix",
    ] {
        assert_eq!(flag_count(&args, flag), 1, "{flag} once: {args:?}");
    }
    assert!(args.contains(&"--cluster-id=from-extra-args"), "{args:?}");
    assert!(args.contains(&"--metrics-addr=0.0.0.0:9999"), "{args:?}");
    let at = args
        .iter()
        .position(|a| *a == "--resync-interval")
        .expect("--resync-interval");
    assert_eq!(
        args[at + 1],
        "1m",
        "a flag's value in the next item stays with it"
    );
}

#[test]
fn extra_env_replaces_the_variables_the_chart_sets() {
    let Some(helm) = helm() else { return };
    let docs = template(
        &helm,
        &[
            "--set",
            "aws.endpoints.iam=https://iam.example.internal",
            "--set-json",
            r#"extraEnv=[{"name":"AWS_ENDPOINT_URL_IAM","value":"https://iam.other.internal"}]"#,
        ],
    );
    let deployment = only(&docs, "Deployment");
    assert_eq!(
        env(deployment, "AWS_ENDPOINT_URL_IAM")["value"],
        "https://iam.other.internal"
    );
}

#[test]
fn credentials_secret_without_session_token() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--set", "aws.credentialsSecret.name=aws-keys"]);
    let deployment = only(&docs, "Deployment");
    for (var, key) in [
        ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ] {
        let from = &env(deployment, var)["valueFrom"]["secretKeyRef"];
        assert_eq!(
            (&from["name"], &from["key"]),
            (&"aws-keys".into(), &key.into())
        );
    }
    assert!(
        !env_names(deployment).contains(&"AWS_SESSION_TOKEN"),
        "no session token unless its key is named"
    );
}

/// One rule for the IRSA role given twice: in serviceAccount.roleArn and as
/// the eks.amazonaws.com/role-arn annotation. The same ARN renders once,
/// different ARNs fail the render.
#[test]
fn irsa_role_given_twice_must_be_the_same() {
    let Some(helm) = helm() else { return };
    let a = "arn:aws:iam::123456789012:role/a";
    let b = "arn:aws:iam::123456789012:role/b";
    let role_arn = |arn: &str| format!("serviceAccount.roleArn={arn}");
    let annotation =
        |arn: &str| format!("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn={arn}");

    for (set_value, set_annotation) in [(Some(a), Some(a)), (Some(a), None), (None, Some(a))] {
        let mut extra = Vec::new();
        for set in [set_value.map(role_arn), set_annotation.map(annotation)]
            .into_iter()
            .flatten()
        {
            extra.push("--set".to_owned());
            extra.push(set);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let mut args = vec!["template", RELEASE, CHART, "--namespace", NAMESPACE];
        args.extend_from_slice(&extra);
        let rendered = run_helm(&helm, &args);
        assert_eq!(
            rendered.matches("eks.amazonaws.com/role-arn:").count(),
            1,
            "{extra:?}"
        );
        let docs = parse_documents(&rendered);
        assert_eq!(
            only(&docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
            a
        );
    }

    for create in ["true", "false"] {
        let err = helm_fails(
            &helm,
            &[
                "template",
                RELEASE,
                CHART,
                "--set",
                &role_arn(a),
                "--set",
                &annotation(b),
                "--set",
                &format!("serviceAccount.create={create}"),
                "--set",
                "serviceAccount.name=controller",
            ],
        );
        assert!(
            err.contains("name different IAM roles") && err.contains(a) && err.contains(b),
            "a clear message: {err}"
        );
    }
}

/// `<release>-view` and `<release>-edit` let namespace users read and write
/// bindings through the built-in view, edit and admin roles; policies stay
/// read-only for them.
#[test]
fn aggregated_roles_let_namespace_users_work_with_bindings() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &[]);
    let role = |suffix: &str| -> &Value {
        docs.iter()
            .find(|d| kind(d) == "ClusterRole" && name(d) == format!("{RELEASE}-{suffix}"))
            .unwrap_or_else(|| panic!("ClusterRole {RELEASE}-{suffix}"))
    };
    let labels = |role: &Value| -> Vec<String> {
        role["metadata"]["labels"]
            .as_object()
            .expect("labels")
            .iter()
            .filter(|(k, _)| k.starts_with("rbac.authorization.k8s.io/"))
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect()
    };
    // verbs by resource, over every rule of the role
    let verbs = |role: &Value, resource: &str| -> BTreeSet<String> {
        role["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| strings(&r["resources"]).contains(&resource))
            .inspect(|r| assert_eq!(strings(&r["apiGroups"]), ["iam.instanceprofile.dev"]))
            .flat_map(|r| strings(&r["verbs"]))
            .map(str::to_owned)
            .collect()
    };
    let set =
        |items: &[&str]| -> BTreeSet<String> { items.iter().map(|s| (*s).to_owned()).collect() };
    let read = ["get", "list", "watch"];

    let view = role("view");
    assert_eq!(
        labels(view),
        ["rbac.authorization.k8s.io/aggregate-to-view=true"]
    );
    assert_eq!(verbs(view, "instanceprofilebindings"), set(&read));
    assert_eq!(verbs(view, "instanceprofilepolicies"), set(&read));

    let edit = role("edit");
    let mut edit_labels = labels(edit);
    edit_labels.sort();
    assert_eq!(
        edit_labels,
        [
            "rbac.authorization.k8s.io/aggregate-to-admin=true",
            "rbac.authorization.k8s.io/aggregate-to-edit=true"
        ]
    );
    assert_eq!(
        verbs(edit, "instanceprofilebindings"),
        set(&[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
            "deletecollection"
        ])
    );
    for rule in edit["rules"].as_array().expect("rules") {
        assert_eq!(
            strings(&rule["resources"]),
            ["instanceprofilebindings"],
            "edit covers bindings only, never policies or status: {rule}"
        );
    }
    for role in [view, edit] {
        assert!(role["aggregationRule"].is_null());
        assert!(
            of_kind(&docs, "ClusterRoleBinding")
                .iter()
                .all(|b| b["roleRef"]["name"] != role["metadata"]["name"]),
            "aggregated roles are bound by whoever binds view, edit or admin"
        );
    }

    for off in ["rbac.aggregateToDefaultRoles=false", "rbac.create=false"] {
        let docs = template(&helm, &["--set", off]);
        assert!(!docs.iter().any(aggregated), "{off}");
    }
    let err = helm_fails(
        &helm,
        &[
            "template",
            RELEASE,
            CHART,
            "--set",
            "commonLabels.rbac\\.authorization\\.k8s\\.io/aggregate-to-admin=true",
        ],
    );
    assert!(
        err.contains("aggregate-to-admin"),
        "commonLabels must not aggregate the controller's own roles: {err}"
    );
}

#[test]
fn common_labels_never_replace_the_selector_labels() {
    let Some(helm) = helm() else { return };
    let docs = template(
        &helm,
        &[
            "--set",
            "commonLabels.app\\.kubernetes\\.io/name=other",
            "--set",
            "podLabels.app\\.kubernetes\\.io/instance=other",
        ],
    );
    let deployment = only(&docs, "Deployment");
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels["app.kubernetes.io/name"],
        "instance-profile-controller"
    );
    assert_eq!(labels["app.kubernetes.io/instance"], RELEASE);
    for doc in &docs {
        assert_eq!(
            doc["metadata"]["labels"]["app.kubernetes.io/name"],
            "instance-profile-controller"
        );
    }
}

#[test]
fn node_selector_default_can_be_dropped() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--set", "nodeSelector.kubernetes\\.io/os=null"]);
    assert!(only(&docs, "Deployment")["spec"]["template"]["spec"]["nodeSelector"].is_null());
}

#[test]
fn service_monitor_relabelings_render() {
    let Some(helm) = helm() else { return };
    let docs = template(&helm, &["--values", ALL_OPTIONS]);
    let endpoint = &only(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert_eq!(endpoint["relabelings"][0]["targetLabel"], "node");
    assert_eq!(endpoint["metricRelabelings"][0]["action"], "drop");
    let docs = template(&helm, &["--set", "serviceMonitor.enabled=true"]);
    let endpoint = &only(&docs, "ServiceMonitor")["spec"]["endpoints"][0];
    assert!(endpoint["relabelings"].is_null() && endpoint["metricRelabelings"].is_null());
}

/// The values table in the chart's README is generated from values.yaml's
/// comments; regenerate it with `python3 scripts/generate-chart-readme.py`.
#[test]
fn chart_readme_values_table_is_current() {
    let out = Command::new(common::python())
        .arg(root().join("scripts/generate-chart-readme.py"))
        .arg("--check")
        .current_dir(root())
        .output()
        .expect("run scripts/generate-chart-readme.py");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let readme = read(&format!("{CHART}/README.md"));
    for needed in [
        "kubectl apply --server-side --force-conflicts -f",
        "helm upgrade",
        "helm uninstall",
        "| `extraArgs` |",
    ] {
        assert!(readme.contains(needed), "the chart README lacks {needed:?}");
    }
}
