//! The `InstanceProfileBinding` resource: spec, status and the admission rules
//! (CEL, evaluated by the API server and, in file mode, by us with the same rules).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Finalizer that holds a binding until its AWS resources are cleaned up.
pub const FINALIZER: &str = "iam.instanceprofile.dev/cleanup";
pub const GROUP: &str = "iam.instanceprofile.dev";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "iam.instanceprofile.dev/v1alpha1";

/// The condition a GitOps tool waits on.
pub const READY: &str = "Ready";
/// The profile exists and is this binding's.
pub const PROFILE_READY: &str = "ProfileReady";
/// The profile holds exactly the binding's role.
pub const ROLE_ATTACHED: &str = "RoleAttached";
/// Every selected instance is associated with the profile.
pub const ASSOCIATED: &str = "Associated";
/// kstatus's "in progress": the controller is converging or retrying by itself.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's "failed": the binding needs a person before retrying can help.
pub const STALLED: &str = "Stalled";

/// Desired state: one IAM role, wired through an instance profile owned by this
/// binding, to a set of EC2 instances.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "iam.instanceprofile.dev",
    version = "v1alpha1",
    kind = "InstanceProfileBinding",
    plural = "instanceprofilebindings",
    shortname = "ipb",
    namespaced,
    status = "InstanceProfileBindingStatus",
    cel,
    doc = "Binds one IAM role to EC2 instances through an instance profile this binding owns: the controller creates the profile (a distinct name per binding), attaches exactly this role, associates it with every selected instance, and on deletion disassociates and deletes it (deletionPolicy Retain leaves AWS as it is).",
    category = "aws",
    category = "iam",
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Profile","type":"string","jsonPath":".status.instanceProfile.name"}"#,
    printcolumn = r#"{"name":"Instances","type":"string","description":"associated/selected","jsonPath":".status.instanceSummary"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Profile-ARN","type":"string","priority":1,"jsonPath":".status.instanceProfile.arn"}"#,
    printcolumn = r#"{"name":"Account-Role","type":"string","priority":1,"description":"the role assumed to reach the account the resources live in; empty: the controller's own account","jsonPath":".status.assumeRoleArn"}"#,
    printcolumn = r#"{"name":"Since","type":"date","priority":1,"description":"when Ready last changed","jsonPath":".status.conditions[?(@.type==\"Ready\")].lastTransitionTime"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceProfileBindingSpec {
    /// IAM role to attach: a role name or a role ARN. Exactly one role; names are case-sensitive.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[A-Za-z0-9_+=,.@-]{1,64}$') || self.matches('^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::[0-9]{12}:role/([!-~]*/)?[A-Za-z0-9_+=,.@-]{1,64}$')"
    ).message("spec.role must be a role name (1-64 characters of letters, digits and _+=,.@-) or a role ARN of an AWS partition (arn:aws:iam::123456789012:role/NAME)"))]
    pub role: String,

    /// Settings of the instance profile the controller creates for this binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<InstanceProfileSettings>,

    /// Which EC2 instances get the profile: explicit ids and/or a tag selector.
    pub instances: InstanceSelector,

    /// Replace an instance's association with a profile this binding does not own.
    #[serde(default)]
    pub replace_foreign_associations: bool,

    /// What deleting the binding does in AWS: Delete (disassociate, remove the role,
    /// delete the profile) or Retain (leave AWS untouched).
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// What a change of `role` does to instances already associated: None
    /// (they pick up the new role's credentials when IMDS next refreshes
    /// them, up to about an hour) or Reassociate (moved to a fresh
    /// association in batches, so they get them now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotationSpec {
    /// None (default) or Reassociate.
    #[serde(default)]
    pub on_role_change: OnRoleChange,
    /// With Reassociate: how many instances may be between credentials at
    /// once, a count (3) or a share of the instances to move ("25%",
    /// rounded up). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    #[x_kube(validation = Rule::new(
        "string(self).matches('^([1-9][0-9]{0,3}|(100|[1-9][0-9]?)%)$')"
    ).message("spec.rotation.maxUnavailable must be a count from 1 to 9999 or a percentage from 1% to 100%"))]
    pub max_unavailable: Option<IntOrString>,
}

/// `IntOrString`'s schema, as Kubernetes writes it (k8s-openapi has none).
fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnRoleChange {
    #[default]
    None,
    Reassociate,
}

impl RotationSpec {
    /// How many of `total` instances may be moved at once (at least 1).
    #[must_use]
    pub fn max_unavailable_of(&self, total: usize) -> usize {
        let n = match &self.max_unavailable {
            None => 1,
            Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(1),
            Some(IntOrString::String(s)) => match s.strip_suffix('%').map(str::parse::<usize>) {
                Some(Ok(pct)) => (total * pct).div_ceil(100),
                _ => s.parse().unwrap_or(1),
            },
        };
        n.max(1)
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceProfileSettings {
    /// IAM path of the profile, '/' or '/a/b/'. Defaults to the controller's path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = Rule::new(
        "self == '/' || self.matches('^/[!-~]+/$')"
    ).message("spec.instanceProfile.path must be '/' or start and end with '/' around at least one character, with at most 512 printable ASCII characters (IAM's rule)"))]
    pub path: Option<String>,

    /// Extra tags for the profile; ownership tags are always added.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 40, "additionalProperties" = {"type": "string", "maxLength": 256}))]
    #[x_kube(validation = Rule::new("size(self) <= 40").message("spec.instanceProfile.tags may hold at most 40 tags (IAM allows 50 per profile; the controller reserves 10)"))]
    #[x_kube(validation = Rule::new("self.all(k, !k.startsWith('instanceprofile.dev/') && !k.lowerAscii().startsWith('aws:'))").message("spec.instanceProfile.tags keys must not start with 'instanceprofile.dev/' (reserved for ownership tags) or 'aws:' in any case (reserved by AWS)"))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) >= 1 && size(k) <= 128 && size(self[k]) <= 256)").message("spec.instanceProfile.tags keys must be 1-128 characters and values at most 256"))]
    #[x_kube(validation = Rule::new(r"self.all(k, k.matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]*$') && self[k].matches('^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]*$'))").message("spec.instanceProfile.tags keys and values may hold only letters, digits, spaces and _.:/=+-@ (IAM's rule)"))]
    #[x_kube(validation = Rule::new("self.all(k, self.all(j, j == k || j.lowerAscii() != k.lowerAscii()))").message("spec.instanceProfile.tags keys must differ in more than case (IAM treats keys that differ only in case as the same tag)"))]
    pub tags: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.ids) && size(self.ids) > 0) || (has(self.tags) && size(self.tags) > 0) || has(self.nodeSelector)").message("spec.instances needs at least one of ids, tags or nodeSelector"))]
pub struct InstanceSelector {
    /// Explicit instance ids, each 'i-' followed by 8 or 17 lowercase
    /// hexadecimal digits. With `tags`, the binding selects the union: an
    /// instance listed here or matching the tags. Ids that do not exist are
    /// reported and skipped.
    // A schema pattern rather than a CEL rule: the API server names the
    // offending item (`ids[3]`) and its value, and RE2 patterns carry no CEL cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 500),
        inner(length(min = 10, max = 19), pattern(r"^i-([0-9a-f]{8}|[0-9a-f]{17})$"))
    )]
    pub ids: Vec<String>,

    /// Every instance whose tags match all of these pairs (exact keys and
    /// values), including instances launched later. With `ids`: the union.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    #[x_kube(validation = Rule::new("size(self) <= 50").message("spec.instances.tags may hold at most 50 tags"))]
    #[x_kube(validation = Rule::new("self.all(k, size(k) >= 1 && size(k) <= 128 && size(self[k]) <= 256)").message("spec.instances.tags keys must be 1-128 characters and values at most 256"))]
    pub tags: BTreeMap<String, String>,

    /// The EC2 instances behind the Kubernetes Nodes these labels select
    /// (`run` with --watch-nodes; the instance id comes from
    /// `spec.providerID`). Nodes that are not EC2 instances (Fargate, hybrid
    /// nodes, other clouds) are skipped; nodes a node manager owns
    /// (Karpenter, managed node groups, EKS Auto Mode) are left out unless a
    /// policy sets allowManagedNodes. With ids/tags: the union.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

/// Observed state, written by server-side apply with one field manager.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProfileBindingStatus {
    /// The `metadata.generation` this status describes; below the current
    /// generation, the controller has not reconciled the latest spec yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The binding's instance profile in AWS, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<ProfileStatus>,
    /// The IAM role resolved from `spec.role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<RoleStatus>,
    /// Every instance the binding selects (and any it refused or shares with
    /// another binding), with its association state.
    #[serde(default)]
    pub instances: Vec<InstanceStatus>,
    /// "associated/selected", for the printer column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_summary: Option<String>,
    /// Ready, ProfileReady, RoleAttached, Associated, and Stalled or
    /// Reconciling while not Ready (kstatus); one per type. Wait on Ready.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The role assumed to reach the AWS account this binding's resources live
    /// in (from its InstanceProfilePolicy's `spec.account`); absent: the
    /// controller's own account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assume_role_arn: Option<String>,
    /// What `spec.instances.nodeSelector` selected: EC2 nodes, nodes skipped
    /// (not EC2 instances) and nodes left out (a node manager owns them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodeSelectionStatus>,
    /// A role change moving instances to fresh associations
    /// (`spec.rotation.onRoleChange: Reassociate`); absent when none is in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationStatus>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectionStatus {
    /// Selected nodes that are EC2 instances (their instances are listed in `instances`).
    pub selected: u32,
    /// Selected nodes that are not EC2 instances (Fargate, hybrid nodes, other clouds).
    pub skipped: u32,
    /// Selected nodes left out, each with why ("node-1: owned by Karpenter; an InstanceProfilePolicy with allowManagedNodes: true lets it be selected").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationStatus {
    /// The role the instances are being moved to.
    pub role: String,
    /// Instances moved so far.
    pub done: u32,
    /// Instances to move in all.
    pub total: u32,
    /// The instances still to move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProfileStatus {
    /// The profile's name: `ipb-<namespace>.<name>-<hash>`, the same in
    /// `run`, `plan` and `apply`.
    pub name: String,
    /// The profile's ARN, path included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// The profile's unique id (`AIPA…`); a profile deleted and recreated
    /// under the same name gets a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleStatus {
    /// The role's name.
    pub name: String,
    /// The role's ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    /// The EC2 instance id.
    pub id: String,
    /// The id (`iip-assoc-…`) of the association with this binding's profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association_id: Option<String>,
    /// associated, associating, disassociating, pending, foreign, refused or conflict (another binding selects the instance too).
    pub state: String,
    /// Why the instance is not associated: the profile holding it, the
    /// policy that refused it, or the binding that selects it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, ProfileReady, RoleAttached, Associated, Stalled or Reconciling.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// One CamelCase word: Reconciled when Ready, else the cause
    /// (PropagationPending, RoleNotFound, PolicyDenied, Conflict, …; see the
    /// troubleshooting guide).
    pub reason: String,
    /// What happened and, when a person has to act, what to do.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl InstanceProfileBindingStatus {
    #[must_use]
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.condition("Ready").is_some_and(|c| c.status == "True")
    }

    /// Replaces the Ready condition's message.
    pub fn set_ready_message(&mut self, message: &str) {
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == "Ready") {
            c.message = message.to_string();
        }
    }
}

/// Admin-owned, cluster-scoped: which namespaces may bind which roles to which
/// instances. A binding is allowed when any policy covering its namespace allows it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "iam.instanceprofile.dev",
    version = "v1alpha1",
    kind = "InstanceProfilePolicy",
    plural = "instanceprofilepolicies",
    shortname = "ipp",
    cel,
    doc = "Admin-owned and cluster-scoped: which namespaces may bind which IAM roles to which EC2 instances. A binding is allowed when any policy covering its namespace allows it; without one it is refused (PolicyDenied) while the controller requires policies.",
    category = "aws",
    category = "iam",
    printcolumn = r#"{"name":"Namespaces","type":"string","jsonPath":".spec.namespaces.names"}"#,
    printcolumn = r#"{"name":"Selector","type":"string","description":"namespaces selected by label","jsonPath":".spec.namespaces.selector"}"#,
    printcolumn = r#"{"name":"Roles","type":"string","jsonPath":".spec.roles"}"#,
    printcolumn = r#"{"name":"Replace-Foreign","type":"boolean","jsonPath":".spec.allowReplaceForeignAssociations"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceProfilePolicySpec {
    /// The namespaces this policy governs: names and/or a label selector.
    pub namespaces: PolicyNamespaces,
    /// Role names or ARNs bindings may use; `*` matches any run of characters.
    /// A pattern starting with `arn:` matches the role ARN, any other the role name.
    /// Each entry is 1-2048 printable ASCII characters without spaces.
    #[schemars(
        length(min = 1, max = 100),
        inner(length(min = 1, max = 2048), pattern(r"^[!-~]+$"))
    )]
    pub roles: Vec<String>,
    /// Constraints on the instances a governed binding may touch.
    #[serde(default)]
    pub instances: PolicyInstances,
    /// Whether governed bindings may set replaceForeignAssociations: true.
    #[serde(default)]
    pub allow_replace_foreign_associations: bool,
    /// Reconcile the governed bindings in another AWS account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<PolicyAccount>,
    /// Whether governed bindings' nodeSelector may select nodes a node
    /// manager owns (Karpenter, EKS managed node groups, EKS Auto Mode).
    /// Replacing their profile can take them NotReady (the node role must be
    /// mapped for the cluster), so they are left out by default.
    #[serde(default)]
    pub allow_managed_nodes: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(has(self.names) && size(self.names) > 0) || has(self.selector)").message("spec.namespaces needs names and/or a selector"))]
pub struct PolicyNamespaces {
    /// Namespaces by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub names: Vec<String>,
    /// Namespaces by label (a namespace matching either this or `names` is governed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// `metav1.LabelSelector`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Labels a namespace must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Label requirements a namespace must meet, all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// In, NotIn, Exists or DoesNotExist.
    pub operator: SelectorOperator,
    /// The values for In and NotIn; empty for Exists and DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyInstances {
    /// Every instance a governed binding touches must carry all of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 50))]
    #[x_kube(validation = Rule::new("size(self) <= 50").message("spec.instances.requiredTags may hold at most 50 tags"))]
    pub required_tags: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAccount {
    /// The role the controller assumes to reach the other account (its trust
    /// policy must allow the controller's own role); session 3600 s at most.
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^arn:(aws|aws-cn|aws-us-gov|aws-iso|aws-iso-b|aws-iso-e|aws-iso-f|aws-eusc):iam::[0-9]{12}:role/([!-~]*/)?[A-Za-z0-9_+=,.@-]{1,64}$')").message("spec.account.assumeRoleArn must be a role ARN of an AWS partition"))]
    pub assume_role_arn: String,
    /// The external id that role's trust policy requires, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // RE2 refuses repeat counts over 1000, so the length is the schema's, not the regex's.
    #[schemars(length(min = 2, max = 1224))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z0-9_+=,.@:/-]+$')").message("spec.account.externalId must be 2-1224 characters of letters, digits and _+=,.@:/-"))]
    pub external_id: Option<String>,
}

/// Every CRD this controller owns, as one YAML stream (`---` separated).
///
/// # Errors
/// Only if YAML serialization fails, which it does not for these types.
pub fn crds_yaml() -> Result<String, serde_norway::Error> {
    let docs = [
        serde_norway::to_string(&InstanceProfileBinding::crd())?,
        serde_norway::to_string(&InstanceProfilePolicy::crd())?,
    ];
    Ok(docs.join("---\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_the_generated_one() {
        let binding = serde_norway::to_string(&InstanceProfileBinding::crd()).unwrap_or_default();
        let policy = serde_norway::to_string(&InstanceProfilePolicy::crd()).unwrap_or_default();
        assert!(
            include_str!("../crds/instanceprofilebinding.yaml") == binding
                && include_str!("../crds/instanceprofilepolicy.yaml") == policy,
            "crds/ is stale: run `bash scripts/generate.sh`"
        );
    }

    #[test]
    fn crd_has_the_spec_shape() {
        let crd = InstanceProfileBinding::crd();
        assert_eq!(crd.spec.group, GROUP);
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["ipb".to_string()][..])
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, VERSION);
        assert!(v.subresources.as_ref().is_some_and(|s| s.status.is_some()));
        let cols: Vec<&str> = v
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.unwrap_or(0) == 0)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            ["Role", "Profile", "Instances", "Ready", "Reason", "Age"]
        );
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["aws".to_string(), "iam".to_string()][..])
        );
    }
}
