//! Check 1: the profile exists, where, and whose; duplicates of a binding's profile.

use std::collections::BTreeMap;

use super::facts::{DuplicateScan, Facts, Read, Subject};
use super::finding::{Check, Finding, could_not_read};
use crate::aws::Profile;
use crate::crd::InstanceProfileBindingSpec;
use crate::naming::{self, BindingKey};
use crate::reconcile::Reason;
use crate::reconcile::model::path_of;

/// Check 1: the profile exists, where, whose; duplicates of a binding's profile.
#[must_use]
pub(super) fn check_profile(facts: &Facts) -> Vec<Finding> {
    let Some(name) = &facts.profile_name else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match (&facts.profile, &facts.subject) {
        (Read::Denied(e), _) => out.push(could_not_read(
            Check::Profile,
            &format!("instance profile {name}"),
            e,
        )),
        (Read::Got(None), Subject::Binding { key, spec, .. }) => out.push(
            Finding::problem(
                Check::Profile,
                format!("instance profile {name} of binding {key} does not exist"),
                "let the controller create it: check that it runs and read the binding's Ready condition, or run `apply -f` with the binding",
            )
            .with("profile", name)
            .with(
                "expectedPath",
                path_of(spec, &facts.path_prefix, &facts.cluster_id),
            ),
        ),
        (Read::Got(None), Subject::Profile { .. }) => out.push(
            Finding::problem(
                Check::Profile,
                format!("instance profile {name} does not exist"),
                "check the name: instance profile names are case-sensitive",
            )
            .with("profile", name)
            .with("awsError", "NoSuchEntity"),
        ),
        // The association check reports an instance left on a deleted profile.
        (Read::Got(None), Subject::Instance { .. }) => {}
        (Read::Got(Some(p)), Subject::Binding { key, spec, .. }) => {
            out.extend(binding_profile_findings(facts, key, spec, p));
        }
        (Read::Got(Some(p)), _) => out.extend(named_profile_findings(facts, p)),
    }
    match &facts.duplicates {
        Some(Read::Denied(e)) => out.push(could_not_read(
            Check::Profile,
            "the other instance profiles under the binding's path",
            e,
        )),
        Some(Read::Got(scan)) => out.extend(duplicate_findings(facts, name, scan)),
        None => {}
    }
    out
}

fn profile_evidence(f: Finding, p: &Profile) -> Finding {
    f.with("profile", &p.name)
        .with("profileId", &p.id)
        .with("profileArn", &p.arn)
        .with("path", &p.path)
}

/// A binding's profile: whether its tags prove the binding owns it, and its path.
fn binding_profile_findings(
    facts: &Facts,
    key: &BindingKey,
    spec: &InstanceProfileBindingSpec,
    p: &Profile,
) -> Vec<Finding> {
    let tags = p.tags.clone().unwrap_or_default();
    let cluster = &facts.cluster_id;
    if !naming::tags_prove_ownership(&tags, cluster, key) {
        let fix = match tags.get(naming::TAG_CLUSTER_ID) {
            Some(other) if other != cluster => format!(
                "its tags name cluster id {other}: if that is the controller's --cluster-id, run doctor with --cluster-id {other}; otherwise delete or rename the profile"
            ),
            _ => "delete or rename that profile (the controller never touches a profile it cannot prove it owns), or rename the binding".to_string(),
        };
        return vec![
            profile_evidence(
                Finding::problem(
                    Check::Profile,
                    format!(
                        "an instance profile named {} exists but its tags do not prove binding {key} of cluster {cluster} owns it",
                        p.name
                    ),
                    fix,
                ),
                p,
            )
            .with("tagClusterId", tag(&tags, naming::TAG_CLUSTER_ID))
            .with("tagNamespace", tag(&tags, naming::TAG_NAMESPACE))
            .with("tagName", tag(&tags, naming::TAG_NAME))
            .reason(Reason::ForeignProfileExists.as_str()),
        ];
    }
    let mut out = vec![profile_evidence(
        Finding::ok(
            Check::Profile,
            format!(
                "instance profile {} exists and its ownership tags name binding {key} of cluster {cluster}",
                p.name
            ),
        ),
        p,
    )];
    let expected = path_of(spec, &facts.path_prefix, cluster);
    if p.path != expected {
        out.push(
            profile_evidence(
                Finding::warning(
                    Check::Profile,
                    format!(
                        "instance profile {} is at path {}, not {expected}: the controller's bulk listing and its path-scoped IAM policy miss it",
                        p.name, p.path
                    ),
                    "IAM cannot move a profile: delete it (after disassociating its instances) and let the controller recreate it at the right path",
                ),
                p,
            )
            .with("expectedPath", expected),
        );
    }
    out
}

/// A profile met through an instance or by name: which binding of this
/// cluster owns it, if any, and whether it bears that binding's name.
fn named_profile_findings(facts: &Facts, p: &Profile) -> Vec<Finding> {
    let tags = p.tags.clone().unwrap_or_default();
    let cluster = &facts.cluster_id;
    let Some(owner) = naming::owner_from_tags(&tags, cluster) else {
        return vec![
            profile_evidence(
                Finding::ok(
                    Check::Profile,
                    format!(
                        "instance profile {} exists and is not managed by this controller (no ownership tags of cluster {cluster})",
                        p.name
                    ),
                ),
                p,
            )
            .with("tagClusterId", tag(&tags, naming::TAG_CLUSTER_ID)),
        ];
    };
    let mut out = vec![profile_evidence(
        Finding::ok(
            Check::Profile,
            format!(
                "instance profile {} exists and belongs to binding {owner} of cluster {cluster}",
                p.name
            ),
        ),
        p,
    )];
    let expected = naming::profile_name(cluster, &owner);
    if p.name != expected {
        out.push(
            profile_evidence(
                Finding::warning(
                    Check::Profile,
                    format!(
                        "instance profile {} carries the ownership tags of binding {owner} but is not its name {expected}: a copy or a leftover the controller does not manage",
                        p.name
                    ),
                    format!("move its instances to {expected} and delete it"),
                ),
                p,
            )
            .with("expectedName", expected),
        );
    }
    out
}

/// A tag's value as evidence.
fn tag(tags: &BTreeMap<String, String>, key: &str) -> String {
    tags.get(key).cloned().unwrap_or_else(|| "(none)".into())
}

fn duplicate_findings(facts: &Facts, name: &str, scan: &DuplicateScan) -> Vec<Finding> {
    let Subject::Binding { key, .. } = &facts.subject else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if !scan.owned.is_empty() {
        let names: Vec<&str> = scan.owned.iter().map(|p| p.name.as_str()).collect();
        let ids: Vec<&str> = scan.owned.iter().map(|p| p.id.as_str()).collect();
        out.push(
            Finding::problem(
                Check::Profile,
                format!(
                    "binding {key} has {} more instance profile(s) carrying its ownership tags: {}; the controller manages only {name}",
                    scan.owned.len(),
                    names.join(", ")
                ),
                format!(
                    "move any instance off {} and delete it (remove its role first)",
                    names.join(" and ")
                ),
            )
            .with("duplicates", names.join(","))
            .with("duplicateIds", ids.join(","))
            .with("profile", name),
        );
    }
    if scan.scanned < scan.candidates {
        out.push(
            Finding::warning(
                Check::Profile,
                format!(
                    "looked for duplicates of {name} among {} of the {} other profiles under the path",
                    scan.scanned, scan.candidates
                ),
                "list the rest with aws iam list-instance-profiles --path-prefix and compare their tags",
            )
            .with("scanned", scan.scanned.to_string())
            .with("candidates", scan.candidates.to_string()),
        );
    }
    out
}
