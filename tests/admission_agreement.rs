//! File mode and a real API server agree on what is valid: every document of
//! the table goes to kube-apiserver (`kubectl apply --dry-run=server`, with
//! the CRDs as shipped) and to `plan -f`; both accept it or both refuse it,
//! and a refusal names the same field in both.

use crate::common;

const HEAD: &str = "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\nmetadata: {name: web, namespace: team-a}\n";
const POLICY_HEAD: &str = "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfilePolicy\nmetadata: {name: team-a}\n";

/// A binding with this `spec` body (YAML, indented by two).
fn binding(spec: &str) -> String {
    format!("{HEAD}spec:\n{spec}")
}

fn policy(spec: &str) -> String {
    format!("{POLICY_HEAD}spec:\n{spec}")
}

fn ids(n: usize) -> String {
    (0..n)
        .map(|i| format!("i-{i:017x}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// (what, document, `None` = valid, `Some(field)` = refused naming field).
fn table() -> Vec<(&'static str, String, Option<&'static str>)> {
    let ok_instances = "  instances: {ids: [i-0123456789abcdef0]}\n";
    vec![
        (
            "minimal binding",
            binding(&format!("  role: web-app\n{ok_instances}")),
            None,
        ),
        (
            "every field set",
            binding(
                "  role: arn:aws:iam::123456789012:role/team/web-app\n  instanceProfile: {path: /team-a/, tags: {cost-center: \"42\"}}\n  instances: {ids: [i-01234567], tags: {app: web}}\n  replaceForeignAssociations: true\n  deletionPolicy: Retain\n",
            ),
            None,
        ),
        (
            "500 ids, 17 and 8 hex digits",
            binding(&format!(
                "  role: web-app\n  instances: {{ids: [{}, i-0123abcd]}}\n",
                ids(499)
            )),
            None,
        ),
        (
            "role ARN in aws-cn",
            binding(&format!(
                "  role: arn:aws-cn:iam::123456789012:role/web\n{ok_instances}"
            )),
            None,
        ),
        (
            "empty role",
            binding(&format!("  role: \"\"\n{ok_instances}")),
            Some("spec.role"),
        ),
        (
            "65-character role name",
            binding(&format!("  role: {}\n{ok_instances}", "r".repeat(65))),
            Some("spec.role"),
        ),
        (
            "role ARN of a partition AWS does not have",
            binding(&format!(
                "  role: arn:awsx:iam::123456789012:role/web\n{ok_instances}"
            )),
            Some("spec.role"),
        ),
        (
            "role that is not a string",
            binding(&format!("  role: [web]\n{ok_instances}")),
            Some("spec.role"),
        ),
        (
            "malformed instance id",
            binding("  role: web-app\n  instances: {ids: [i-0123456789abcdef0, i-xyz]}\n"),
            Some("spec.instances.ids[1]"),
        ),
        (
            "1001 ids",
            binding(&format!(
                "  role: web-app\n  instances: {{ids: [{}]}}\n",
                ids(1001)
            )),
            Some("spec.instances.ids"),
        ),
        (
            "neither ids nor tags",
            binding("  role: web-app\n  instances: {}\n"),
            Some("spec.instances"),
        ),
        (
            "51 selector tags",
            binding(&format!(
                "  role: web-app\n  instances:\n    tags: {{{}}}\n",
                (0..51)
                    .map(|i| format!("k{i}: v"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some("spec.instances.tags"),
        ),
        (
            "aws: tag key",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{\"aws:owner\": x}}}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "AWS: tag key (reserved in any case)",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{\"AWS:owner\": x}}}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "profile tag key with a character IAM does not allow",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{\"team#1\": x}}}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "profile tag value with a character IAM does not allow",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{team: \"a&b\"}}}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "profile tags in any script, with spaces and every allowed sign",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{\"Kostenstelle Ä\": \"Ünï 42_.:/=+-@\", チーム: 開発}}}}\n{ok_instances}"
            )),
            None,
        ),
        (
            "profile tag keys equal but for case",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{Team: a, team: b}}}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "over-long tag value",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{tags: {{team: {}}}}}\n{ok_instances}",
                "v".repeat(257)
            )),
            Some("spec.instanceProfile.tags"),
        ),
        (
            "path without slashes",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{path: team}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.path"),
        ),
        (
            "path //",
            binding(&format!(
                "  role: web-app\n  instanceProfile: {{path: //}}\n{ok_instances}"
            )),
            Some("spec.instanceProfile.path"),
        ),
        (
            "unknown field in spec",
            binding(&format!("  role: web-app\n  rol: x\n{ok_instances}")),
            Some("spec.rol"),
        ),
        (
            "unknown field in metadata",
            format!(
                "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\nmetadata: {{name: web, namespace: team-a, nmespace: team-b}}\nspec:\n  role: web-app\n{ok_instances}"
            ),
            Some("metadata.nmespace"),
        ),
        (
            "instances by node labels only",
            binding(
                "  role: web-app\n  instances: {nodeSelector: {matchLabels: {role: web}, matchExpressions: [{key: zone, operator: In, values: [a, b]}]}}\n",
            ),
            None,
        ),
        (
            "node selector with an unknown operator",
            binding(
                "  role: web-app\n  instances: {nodeSelector: {matchExpressions: [{key: zone, operator: Near}]}}\n",
            ),
            Some("spec.instances.nodeSelector.matchExpressions[0].operator"),
        ),
        (
            "rotation of 3 at a time",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Reassociate, maxUnavailable: 3}}\n"
            )),
            None,
        ),
        (
            "rotation of a quarter at a time",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Reassociate, maxUnavailable: \"25%\"}}\n"
            )),
            None,
        ),
        (
            "rotation of none at a time",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Reassociate, maxUnavailable: 0}}\n"
            )),
            Some("spec.rotation.maxUnavailable"),
        ),
        (
            "rotation of 150%",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Reassociate, maxUnavailable: \"150%\"}}\n"
            )),
            Some("spec.rotation.maxUnavailable"),
        ),
        (
            "rotation of a boolean",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Reassociate, maxUnavailable: true}}\n"
            )),
            Some("spec.rotation.maxUnavailable"),
        ),
        (
            "unknown rotation policy",
            binding(&format!(
                "  role: web-app\n{ok_instances}  rotation: {{onRoleChange: Always}}\n"
            )),
            Some("spec.rotation.onRoleChange"),
        ),
        (
            "bad deletionPolicy",
            binding(&format!(
                "  role: web-app\n{ok_instances}  deletionPolicy: Keep\n"
            )),
            Some("spec.deletionPolicy"),
        ),
        (
            "minimal policy",
            policy("  namespaces: {names: [team-a]}\n  roles: [web-*]\n"),
            None,
        ),
        (
            "policy with an account and a 1224-character external id",
            policy(&format!(
                "  namespaces: {{names: [team-a]}}\n  roles: [web-*]\n  account: {{assumeRoleArn: arn:aws:iam::444455556666:role/ipb, externalId: {}}}\n",
                "e".repeat(1224)
            )),
            None,
        ),
        (
            "policy with a 1300-character external id",
            policy(&format!(
                "  namespaces: {{names: [team-a]}}\n  roles: [web-*]\n  account: {{assumeRoleArn: arn:aws:iam::444455556666:role/ipb, externalId: {}}}\n",
                "e".repeat(1300)
            )),
            Some("spec.account.externalId"),
        ),
        (
            "policy without roles",
            policy("  namespaces: {names: [team-a]}\n  roles: []\n"),
            Some("spec.roles"),
        ),
        (
            "policy role pattern with a space",
            policy("  namespaces: {names: [team-a]}\n  roles: [\"web app\"]\n"),
            Some("spec.roles[0]"),
        ),
        (
            "policy without namespaces",
            policy("  namespaces: {}\n  roles: [web-*]\n"),
            Some("spec.namespaces"),
        ),
    ]
}

#[tokio::test]
async fn file_mode_and_the_api_server_agree_on_what_is_valid() {
    require_moto!();
    let cluster = require_real_kube!();
    cluster.install_crds();
    let out = cluster.kubectl(&["create", "namespace", "team-a"]);
    assert!(out.ok, "{out:?}");

    let aws = common::Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut disagreements = Vec::new();
    let cases = table();
    assert!(cases.len() >= 20);
    for (i, (what, doc, want)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("doc{i}.yaml"));
        std::fs::write(&file, &doc).expect("write");
        let server = cluster.kubectl(&["apply", "--dry-run=server", "-f", common::path_str(&file)]);
        let server_err = &server.stderr;
        let plan = common::cli(&aws.endpoint(), &["plan", "-f", common::path_str(&file)]);
        let plan_refused = plan.code == 1 && plan.stderr.contains("document 1:");
        let verdict = match want {
            None => {
                if !server.ok {
                    Some(format!("the API server refused it: {server_err}"))
                } else if plan_refused {
                    Some(format!("plan refused it: {}", plan.stderr))
                } else {
                    None
                }
            }
            Some(field) => {
                if server.ok {
                    Some("the API server accepted it".to_string())
                } else if !plan_refused {
                    Some(format!(
                        "plan accepted it (exit {:?}): {}",
                        plan.code, plan.stderr
                    ))
                } else if !server_err.contains(field) {
                    Some(format!(
                        "the API server's refusal does not name {field}: {server_err}"
                    ))
                } else if !plan.stderr.contains(field) {
                    Some(format!(
                        "plan's refusal does not name {field}: {}",
                        plan.stderr
                    ))
                } else {
                    None
                }
            }
        };
        if let Some(v) = verdict {
            disagreements.push(format!("{what}: {v}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "file mode and the API server disagree:\n{}",
        disagreements.join("\n")
    );
}
