//! The policy gate (docs/design.md §3 step 2): before any role lookup or AWS
//! mutation, the `InstanceProfilePolicy` objects covering a binding's
//! namespace must allow its role, its foreign replacement and each instance.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::Store;

use crate::aws::Instance;
use crate::aws::assume::AssumeTarget;
use crate::crd::{
    InstanceProfileBindingSpec, InstanceProfilePolicy, InstanceProfilePolicySpec, LabelSelector,
    PolicyAccount, SelectorOperator,
};

/// The policies in force and what is known of namespaces' labels.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    /// (policy name, spec)
    pub policies: Vec<(String, InstanceProfilePolicySpec)>,
    /// Namespace labels (cluster: every namespace; files: `Namespace` documents).
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
}

/// What the gate says of a binding before AWS is touched.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Allowed; instances must satisfy one of these required-tag sets (empty: no constraint).
    Allowed {
        policies: Vec<Allowing>,
        account: Option<PolicyAccount>,
    },
    Denied(String),
}

/// The role a policy's `spec.account` says to assume, and how.
impl From<&PolicyAccount> for AssumeTarget {
    fn from(a: &PolicyAccount) -> Self {
        Self {
            role_arn: a.assume_role_arn.clone(),
            external_id: a.external_id.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Allowing {
    pub name: String,
    pub required_tags: BTreeMap<String, String>,
}

/// `*` matches any run of characters; everything else literally (case-sensitive).
#[must_use]
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || value.len() < first.len() + last.len() || !value.ends_with(last)
    {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Whether a role pattern allows the role a spec names: a pattern with `arn:`
/// matches the ARN (known only when the spec gives one), any other the name.
#[must_use]
pub fn role_allowed(pattern: &str, spec_role: &str) -> bool {
    let name = super::role::role_name(spec_role);
    if pattern.starts_with("arn:") {
        spec_role.starts_with("arn:") && pattern_matches(pattern, spec_role)
    } else {
        pattern_matches(pattern, name)
    }
}

#[must_use]
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().all(|r| match r.operator {
            SelectorOperator::In => labels.get(&r.key).is_some_and(|v| r.values.contains(v)),
            SelectorOperator::NotIn => labels.get(&r.key).is_none_or(|v| !r.values.contains(v)),
            SelectorOperator::Exists => labels.contains_key(&r.key),
            SelectorOperator::DoesNotExist => !labels.contains_key(&r.key),
        })
}

impl PolicySet {
    /// The policies and namespace labels the controller's caches hold now.
    #[must_use]
    pub fn from_stores(
        policies: &Store<InstanceProfilePolicy>,
        namespaces: &Store<Namespace>,
    ) -> Self {
        Self {
            policies: policies
                .state()
                .iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.spec.clone()))
                .collect(),
            namespace_labels: namespaces
                .state()
                .iter()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        n.metadata.labels.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// Whether a policy covering `namespace` lets its bindings select nodes
    /// a node manager owns.
    #[must_use]
    pub fn allows_managed_nodes(&self, namespace: &str) -> bool {
        self.policies
            .iter()
            .any(|(_, p)| p.allow_managed_nodes && self.covers(p, namespace))
    }

    fn covers(&self, policy: &InstanceProfilePolicySpec, namespace: &str) -> bool {
        policy.namespaces.names.iter().any(|n| n == namespace)
            || policy.namespaces.selector.as_ref().is_some_and(|s| {
                let empty = BTreeMap::new();
                let labels = self.namespace_labels.get(namespace).unwrap_or(&empty);
                selector_matches(s, labels)
            })
    }

    /// The gate's verdict on a binding's namespace, role and foreign replacement.
    #[must_use]
    pub fn admit(&self, namespace: &str, spec: &InstanceProfileBindingSpec) -> Admission {
        let covering: Vec<&(String, InstanceProfilePolicySpec)> = self
            .policies
            .iter()
            .filter(|(_, p)| self.covers(p, namespace))
            .collect();
        if covering.is_empty() {
            return Admission::Denied(format!(
                "no InstanceProfilePolicy covers namespace {namespace}"
            ));
        }
        let names = |v: &[&(String, InstanceProfilePolicySpec)]| {
            v.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let role_ok: Vec<&(String, InstanceProfilePolicySpec)> = covering
            .iter()
            .copied()
            .filter(|(_, p)| p.roles.iter().any(|r| role_allowed(r, &spec.role)))
            .collect();
        if role_ok.is_empty() {
            return Admission::Denied(format!(
                "role {} is not in spec.roles of any InstanceProfilePolicy covering namespace {namespace} ({})",
                spec.role,
                names(&covering)
            ));
        }
        let allowing: Vec<&(String, InstanceProfilePolicySpec)> =
            if spec.replace_foreign_associations {
                role_ok
                    .iter()
                    .copied()
                    .filter(|(_, p)| p.allow_replace_foreign_associations)
                    .collect()
            } else {
                role_ok
            };
        if allowing.is_empty() {
            return Admission::Denied(format!(
                "replaceForeignAssociations: true needs allowReplaceForeignAssociations in a policy covering namespace {namespace} that allows role {}",
                spec.role
            ));
        }
        let mut accounts: Vec<&PolicyAccount> = allowing
            .iter()
            .filter_map(|(_, p)| p.account.as_ref())
            .collect();
        accounts.sort_by(|a, b| {
            (&a.assume_role_arn, &a.external_id).cmp(&(&b.assume_role_arn, &b.external_id))
        });
        accounts.dedup();
        if accounts.len() > 1
            || (accounts.len() == 1 && allowing.iter().any(|(_, p)| p.account.is_none()))
        {
            return Admission::Denied(format!(
                "policies {} give namespace {namespace} different AWS accounts; make them agree",
                names(&allowing)
            ));
        }
        Admission::Allowed {
            policies: allowing
                .iter()
                .map(|(n, p)| Allowing {
                    name: n.clone(),
                    required_tags: p.instances.required_tags.clone(),
                })
                .collect(),
            account: accounts.first().map(|a| (*a).clone()),
        }
    }
}

/// Instances none of the allowing policies' required tags admit, with why.
#[must_use]
pub fn refused_instances(allowing: &[Allowing], instances: &[&Instance]) -> Vec<(String, String)> {
    instances
        .iter()
        .filter(|i| {
            !allowing.iter().any(|a| {
                a.required_tags
                    .iter()
                    .all(|(k, v)| i.tags.get(k) == Some(v))
            })
        })
        .map(|i| {
            let want: Vec<String> = allowing
                .iter()
                .map(|a| {
                    a.required_tags
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            (
                i.id.clone(),
                format!("lacks the tags required by policy ({})", want.join(" or ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::RunState;
    use crate::crd::{
        InstanceSelector, LabelSelectorRequirement, PolicyInstances, PolicyNamespaces,
    };

    fn policy(names: &[&str], roles: &[&str]) -> InstanceProfilePolicySpec {
        InstanceProfilePolicySpec {
            namespaces: PolicyNamespaces {
                names: names.iter().map(|s| (*s).into()).collect(),
                selector: None,
            },
            roles: roles.iter().map(|s| (*s).into()).collect(),
            instances: PolicyInstances::default(),
            allow_replace_foreign_associations: false,
            account: None,
            allow_managed_nodes: false,
        }
    }

    fn spec(role: &str, replace: bool) -> InstanceProfileBindingSpec {
        InstanceProfileBindingSpec {
            role: role.into(),
            instance_profile: None,
            instances: InstanceSelector {
                ids: vec!["i-01234567".into()],
                ..InstanceSelector::default()
            },
            replace_foreign_associations: replace,
            deletion_policy: crate::crd::DeletionPolicy::Delete,
            rotation: None,
        }
    }

    fn set(policies: Vec<InstanceProfilePolicySpec>) -> PolicySet {
        PolicySet {
            policies: policies
                .into_iter()
                .enumerate()
                .map(|(i, p)| (format!("p{i}"), p))
                .collect(),
            namespace_labels: HashMap::from([(
                "team-b".to_string(),
                BTreeMap::from([("tenant".to_string(), "b".to_string())]),
            )]),
        }
    }

    #[test]
    fn from_the_controllers_caches() {
        use kube::runtime::{reflector, watcher};
        let (policies, mut policy_writer) = reflector::store::<InstanceProfilePolicy>();
        let (namespaces, mut namespace_writer) = reflector::store::<Namespace>();
        let p = InstanceProfilePolicy::new("p0", policy(&["team-a"], &["web"]));
        policy_writer.apply_watcher_event(&watcher::Event::Apply(p));
        let mut ns = Namespace::default();
        ns.metadata.name = Some("team-b".into());
        ns.metadata.labels = Some(BTreeMap::from([("tenant".into(), "b".into())]));
        namespace_writer.apply_watcher_event(&watcher::Event::Apply(ns));
        let from = PolicySet::from_stores(&policies, &namespaces);
        let want = set(vec![policy(&["team-a"], &["web"])]);
        assert_eq!(from.policies, want.policies);
        assert_eq!(from.namespace_labels, want.namespace_labels);
    }

    #[test]
    fn an_accounts_assume_target() {
        let a = PolicyAccount {
            assume_role_arn: "arn:aws:iam::444455556666:role/ipb".into(),
            external_id: Some("xid".into()),
        };
        assert_eq!(
            AssumeTarget::from(&a),
            AssumeTarget {
                role_arn: a.assume_role_arn.clone(),
                external_id: a.external_id.clone(),
            }
        );
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("team-a-*", "team-a-web"));
        assert!(!pattern_matches("team-a-*", "Team-a-web"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXcYYb"));
        assert!(pattern_matches("web", "web"));
        assert!(!pattern_matches("web", "web2"));
        assert!(!pattern_matches("ab*ba", "aba"));
    }

    #[test]
    fn role_patterns_by_name_and_arn() {
        let arn = "arn:aws:iam::111122223333:role/shared/reader";
        assert!(
            role_allowed("reader", arn),
            "a name pattern matches the ARN's name"
        );
        assert!(role_allowed("arn:aws:iam::111122223333:role/shared/*", arn));
        assert!(!role_allowed("arn:aws:iam::444455556666:role/*", arn));
        assert!(
            !role_allowed("arn:aws:iam::111122223333:role/*", "reader"),
            "an ARN pattern needs an ARN"
        );
        assert!(!role_allowed("Reader", arn), "case-sensitive");
    }

    #[test]
    fn gate_table() {
        let a = policy(&["team-a"], &["team-a-*"]);
        let mut replace = policy(&["team-a"], &["shared"]);
        replace.allow_replace_foreign_associations = true;
        let mut by_label = policy(&[], &["b-*"]);
        by_label.namespaces.selector = Some(LabelSelector {
            match_labels: BTreeMap::from([("tenant".into(), "b".into())]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "frozen".into(),
                operator: SelectorOperator::DoesNotExist,
                values: vec![],
            }],
        });
        let s = set(vec![a.clone(), replace.clone(), by_label]);
        let allowed = |ns: &str, role: &str, repl: bool| {
            matches!(s.admit(ns, &spec(role, repl)), Admission::Allowed { .. })
        };
        assert!(allowed("team-a", "team-a-web", false), "role pattern hit");
        assert!(!allowed("team-a", "team-b-web", false), "role pattern miss");
        assert!(
            allowed("team-a", "shared", true),
            "union: the second policy allows replacement"
        );
        assert!(
            !allowed("team-a", "team-a-web", true),
            "replacement needs a policy that allows both"
        );
        assert!(allowed("team-b", "b-app", false), "label selector");
        assert!(!allowed("team-c", "team-a-web", false), "no policy");
        match s.admit("team-c", &spec("x", false)) {
            Admission::Denied(m) => {
                assert_eq!(m, "no InstanceProfilePolicy covers namespace team-c")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_accounts_are_ambiguous() {
        let mut one = policy(&["team-a"], &["*"]);
        one.account = Some(PolicyAccount {
            assume_role_arn: "arn:aws:iam::111111111111:role/x".into(),
            external_id: None,
        });
        let mut two = policy(&["team-a"], &["*"]);
        two.account = Some(PolicyAccount {
            assume_role_arn: "arn:aws:iam::222222222222:role/x".into(),
            external_id: None,
        });
        match set(vec![one.clone(), two]).admit("team-a", &spec("r", false)) {
            Admission::Denied(m) => assert!(m.contains("different AWS accounts"), "{m}"),
            other => panic!("{other:?}"),
        }
        match set(vec![one.clone(), one]).admit("team-a", &spec("r", false)) {
            Admission::Allowed {
                account: Some(a), ..
            } => assert!(a.assume_role_arn.contains("111111111111")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_tags_per_instance() {
        let allowing = vec![
            Allowing {
                name: "a".into(),
                required_tags: BTreeMap::from([("team".into(), "a".into())]),
            },
            Allowing {
                name: "b".into(),
                required_tags: BTreeMap::from([("team".into(), "shared".into())]),
            },
        ];
        let tagged = |id: &str, team: &str| Instance {
            id: id.into(),
            state: RunState::Running,
            tags: BTreeMap::from([("team".to_string(), team.to_string())]),
        };
        let (x, y, z) = (
            tagged("i-1", "a"),
            tagged("i-2", "shared"),
            tagged("i-3", "c"),
        );
        let refused = refused_instances(&allowing, &[&x, &y, &z]);
        assert_eq!(
            refused.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
            vec!["i-3"]
        );
        assert!(
            refused_instances(
                &[Allowing {
                    name: "open".into(),
                    required_tags: BTreeMap::new()
                }],
                &[&z]
            )
            .is_empty()
        );
    }
}
