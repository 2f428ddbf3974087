//! Kubernetes Nodes as an instance selection (`spec.instances.nodeSelector`):
//! the EC2 instance id comes from `Node.spec.providerID`
//! (`aws:///<az>/<instance-id>`). Nodes that are not EC2 instances are
//! skipped; nodes a node manager owns are left out unless a policy allows
//! them, since replacing their profile can take them NotReady.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::LabelSelector;

use super::policy::selector_matches;

/// What the selection needs of one Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub provider_id: Option<String>,
}

/// The nodes a binding's nodeSelector selected, as instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSelection {
    /// Instance ids of the selected EC2 nodes.
    pub ids: BTreeSet<String>,
    /// Selected nodes that are not EC2 instances (Fargate, hybrid, other clouds).
    pub skipped: Vec<String>,
    /// Selected nodes left out, with why (a node manager owns them).
    pub excluded: Vec<(String, &'static str)>,
    /// Nodes are not watched (`run` without --watch-nodes, or file mode):
    /// nothing could be selected.
    pub unwatched: bool,
}

/// Labels that say a node manager owns the node, and which one.
const MANAGED: &[(&str, Option<&str>, &str)] = &[
    ("karpenter.sh/nodepool", None, "Karpenter"),
    ("karpenter.sh/provisioner-name", None, "Karpenter"),
    (
        "eks.amazonaws.com/nodegroup",
        None,
        "an EKS managed node group",
    ),
    (
        "eks.amazonaws.com/compute-type",
        Some("auto"),
        "EKS Auto Mode",
    ),
];

/// The EC2 instance id of an AWS providerID, `None` for anything else
/// (Fargate's `…/fargate-ip-…`, hybrid nodes, other clouds).
#[must_use]
pub fn instance_id(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws://")?;
    let id = rest.rsplit('/').next()?;
    let hex = id.strip_prefix("i-")?;
    ((hex.len() == 8 || hex.len() == 17) && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(id)
}

/// Who manages a node, when a node manager's label says so.
#[must_use]
pub fn manager(labels: &BTreeMap<String, String>) -> Option<&'static str> {
    MANAGED
        .iter()
        .find(|(key, value, _)| {
            labels
                .get(*key)
                .is_some_and(|v| value.is_none_or(|want| v == want))
        })
        .map(|(_, _, who)| *who)
}

/// The instances behind the nodes `selector` selects.
#[must_use]
pub fn select(selector: &LabelSelector, nodes: &[NodeInfo], allow_managed: bool) -> NodeSelection {
    let mut out = NodeSelection::default();
    for node in nodes
        .iter()
        .filter(|n| selector_matches(selector, &n.labels))
    {
        let Some(id) = node.provider_id.as_deref().and_then(instance_id) else {
            out.skipped.push(node.name.clone());
            continue;
        };
        if !allow_managed && let Some(who) = manager(&node.labels) {
            out.excluded.push((node.name.clone(), who));
            continue;
        }
        out.ids.insert(id.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: &[(&str, &str)], provider: Option<&str>) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            provider_id: provider.map(Into::into),
        }
    }

    #[test]
    fn provider_ids() {
        assert_eq!(
            instance_id("aws:///us-east-1a/i-0123456789abcdef0"),
            Some("i-0123456789abcdef0")
        );
        assert_eq!(
            instance_id("aws:///us-east-1a/i-01234567"),
            Some("i-01234567")
        );
        assert_eq!(
            instance_id("aws:///us-east-1a/fargate-ip-10-0-1-2.ec2.internal"),
            None
        );
        assert_eq!(
            instance_id("eks-hybrid:///us-west-2/my-cluster/mi-0123"),
            None
        );
        assert_eq!(instance_id("gce://project/zone/name"), None);
        assert_eq!(instance_id(""), None);
    }

    #[test]
    fn fargate_skipped_managed_excluded_unless_allowed() {
        let selector = LabelSelector {
            match_labels: [("role".to_string(), "web".to_string())].into(),
            ..LabelSelector::default()
        };
        let nodes = [
            node(
                "a",
                &[("role", "web")],
                Some("aws:///us-east-1a/i-0000000000000000a"),
            ),
            node(
                "f",
                &[("role", "web")],
                Some("aws:///us-east-1a/fargate-ip-1"),
            ),
            node(
                "m",
                &[("role", "web"), ("eks.amazonaws.com/nodegroup", "ng-1")],
                Some("aws:///us-east-1a/i-0000000000000000b"),
            ),
            node(
                "x",
                &[("role", "db")],
                Some("aws:///us-east-1a/i-0000000000000000c"),
            ),
        ];
        let s = select(&selector, &nodes, false);
        assert_eq!(s.ids, BTreeSet::from(["i-0000000000000000a".to_string()]));
        assert_eq!(s.skipped, vec!["f".to_string()]);
        assert_eq!(
            s.excluded,
            vec![("m".to_string(), "an EKS managed node group")]
        );
        let allowed = select(&selector, &nodes, true);
        assert_eq!(allowed.ids.len(), 2);
        assert!(allowed.excluded.is_empty());
        let auto = node("auto", &[("eks.amazonaws.com/compute-type", "auto")], None);
        assert_eq!(manager(&auto.labels), Some("EKS Auto Mode"));
        let ec2 = node("ec2", &[("eks.amazonaws.com/compute-type", "ec2")], None);
        assert_eq!(manager(&ec2.labels), None);
    }
}
