//! IAM operations: instance profiles, roles, and the policy simulator
//! (`doctor`'s permissions check).

use std::collections::BTreeMap;

use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType, Tag};

use super::errors::from_sdk;
use super::ratelimit::Family;
use super::{Aws, AwsError, ErrorKind, Profile, RoleInfo, RoleRef};

const IAM: &str = "iam";
const PAGE: i32 = 1000;

fn profile_from(p: &aws_sdk_iam::types::InstanceProfile, with_tags: bool) -> Profile {
    Profile {
        name: p.instance_profile_name().to_string(),
        path: p.path().to_string(),
        arn: p.arn().to_string(),
        id: p.instance_profile_id().to_string(),
        roles: p
            .roles()
            .iter()
            .map(|r| RoleRef {
                name: r.role_name().to_string(),
                arn: r.arn().to_string(),
            })
            .collect(),
        tags: with_tags.then(|| {
            p.tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect()
        }),
    }
}

fn tags_to_sdk(tags: &BTreeMap<String, String>) -> Result<Vec<Tag>, AwsError> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| AwsError {
                    kind: ErrorKind::Other,
                    service: IAM,
                    action: "TagInstanceProfile",
                    code: "InvalidTag".into(),
                    message: e.to_string(),
                })
        })
        .collect()
}

/// What the simulator can evaluate for a caller ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SimulationPrincipal {
    /// An IAM user or role ARN, usable as is.
    Arn(String),
    /// An assumed-role session: the simulator needs the role's ARN, whose path
    /// the session ARN does not carry, so the role is looked up by name.
    AssumedRole { role_name: String, guess: String },
    /// The simulator cannot evaluate this kind of principal.
    Unsupported(String),
}

/// Maps a caller ARN to what the simulator takes.
#[must_use]
fn simulation_principal(caller_arn: &str) -> SimulationPrincipal {
    let parts: Vec<&str> = caller_arn.splitn(6, ':').collect();
    let [_, partition, service, _, account, resource] = parts.as_slice() else {
        return SimulationPrincipal::Unsupported(format!("{caller_arn:?} is not an ARN"));
    };
    match (*service, resource.split_once('/')) {
        ("sts", Some(("assumed-role", rest))) => {
            let role_name = rest.split('/').next().unwrap_or_default().to_string();
            if role_name.is_empty() {
                return SimulationPrincipal::Unsupported(format!("{caller_arn} names no role"));
            }
            let guess = format!("arn:{partition}:iam::{account}:role/{role_name}");
            SimulationPrincipal::AssumedRole { role_name, guess }
        }
        ("sts", Some(("federated-user", _))) => SimulationPrincipal::Unsupported(format!(
            "{caller_arn} is a federated-user session, which the policy simulator cannot evaluate"
        )),
        ("iam", _) if *resource == "root" => SimulationPrincipal::Unsupported(format!(
            "{caller_arn} is the account root user, which the policy simulator cannot evaluate"
        )),
        _ => SimulationPrincipal::Arn(caller_arn.to_string()),
    }
}

/// The simulator's verdict on one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedDecision {
    pub action: String,
    pub resource: String,
    pub allowed: bool,
    /// `allowed`, `implicitDeny` or `explicitDeny`.
    pub decision: String,
    /// An organization SCP denies it.
    pub denied_by_organizations: bool,
    /// A permissions boundary denies it.
    pub denied_by_boundary: bool,
    /// Condition keys the simulator needed and was not given.
    pub missing_context: Vec<String>,
}

impl Aws {
    /// Every profile whose path starts with `path_prefix`, all pages. The prefix
    /// is applied again here: some IAM implementations ignore `PathPrefix`.
    pub async fn list_profiles(&self, path_prefix: &str) -> Result<Vec<Profile>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(Family::IamRead, IAM, "ListInstanceProfiles", || async {
                    self.iam
                        .list_instance_profiles()
                        .path_prefix(path_prefix)
                        .max_items(PAGE)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| from_sdk(IAM, "ListInstanceProfiles", &e))
                })
                .await?;
            out.extend(
                page.instance_profiles()
                    .iter()
                    .filter(|p| p.path().starts_with(path_prefix))
                    .map(|p| profile_from(p, false)),
            );
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// One profile with its tags and roles; `None` when it does not exist.
    pub async fn get_profile(&self, name: &str) -> Result<Option<Profile>, AwsError> {
        let res = self
            .call(Family::IamRead, IAM, "GetInstanceProfile", || async {
                self.iam
                    .get_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "GetInstanceProfile", &e))
            })
            .await;
        match res {
            Ok(out) => Ok(out.instance_profile().map(|p| profile_from(p, true))),
            Err(e) if e.is(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The account's instance profiles and their quota, from
    /// `GetAccountSummary` (`InstanceProfiles`, `InstanceProfilesQuota`).
    pub async fn profile_usage(&self) -> Result<(u64, u64), AwsError> {
        let out = self
            .call(Family::IamRead, IAM, "GetAccountSummary", || async {
                self.iam
                    .get_account_summary()
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "GetAccountSummary", &e))
            })
            .await?;
        let map = out.summary_map();
        let get = |key: &str| {
            map.and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.as_str() == key)
                    .map(|(_, v)| u64::try_from(*v).unwrap_or(0))
            })
        };
        match (get("InstanceProfiles"), get("InstanceProfilesQuota")) {
            (Some(used), Some(quota)) => Ok((used, quota)),
            _ => Err(AwsError {
                kind: ErrorKind::Transient,
                service: IAM,
                action: "GetAccountSummary",
                code: "IncompleteSummary".into(),
                message: "the account summary lacks InstanceProfiles or InstanceProfilesQuota"
                    .into(),
            }),
        }
    }

    /// Creates a profile with its tags in the same call.
    pub async fn create_profile(
        &self,
        name: &str,
        path: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<Profile, AwsError> {
        let sdk_tags = tags_to_sdk(tags)?;
        let out = self
            .call(Family::IamWrite, IAM, "CreateInstanceProfile", || async {
                self.iam
                    .create_instance_profile()
                    .instance_profile_name(name)
                    .path(path)
                    .set_tags(Some(sdk_tags))
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "CreateInstanceProfile", &e))
            })
            .await?;
        let mut profile = out
            .instance_profile()
            .map(|p| profile_from(p, false))
            .ok_or_else(|| AwsError {
                kind: ErrorKind::Transient,
                service: IAM,
                action: "CreateInstanceProfile",
                code: "EmptyResponse".into(),
                message: "CreateInstanceProfile returned no profile".into(),
            })?;
        // The tags went on with the create; record what we sent.
        profile.tags = Some(tags.clone());
        Ok(profile)
    }

    pub async fn tag_profile(
        &self,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        let sdk_tags = tags_to_sdk(tags)?;
        self.call(Family::IamWrite, IAM, "TagInstanceProfile", || async {
            self.iam
                .tag_instance_profile()
                .instance_profile_name(name)
                .set_tags(Some(sdk_tags))
                .send()
                .await
                .map_err(|e| from_sdk(IAM, "TagInstanceProfile", &e))
        })
        .await
        .map(|_| ())
    }

    pub async fn untag_profile(&self, name: &str, keys: &[String]) -> Result<(), AwsError> {
        self.call(Family::IamWrite, IAM, "UntagInstanceProfile", || async {
            self.iam
                .untag_instance_profile()
                .instance_profile_name(name)
                .set_tag_keys(Some(keys.to_vec()))
                .send()
                .await
                .map_err(|e| from_sdk(IAM, "UntagInstanceProfile", &e))
        })
        .await
        .map(|_| ())
    }

    pub async fn add_role(&self, profile: &str, role: &str) -> Result<(), AwsError> {
        self.call(
            Family::IamWrite,
            IAM,
            "AddRoleToInstanceProfile",
            || async {
                self.iam
                    .add_role_to_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(role)
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "AddRoleToInstanceProfile", &e))
            },
        )
        .await
        .map(|_| ())
    }

    /// Removes a role; a role that is not attached counts as removed.
    pub async fn remove_role(&self, profile: &str, role: &str) -> Result<(), AwsError> {
        let res = self
            .call(
                Family::IamWrite,
                IAM,
                "RemoveRoleFromInstanceProfile",
                || async {
                    self.iam
                        .remove_role_from_instance_profile()
                        .instance_profile_name(profile)
                        .role_name(role)
                        .send()
                        .await
                        .map_err(|e| from_sdk(IAM, "RemoveRoleFromInstanceProfile", &e))
                },
            )
            .await;
        match res {
            Err(e) if e.is(ErrorKind::NotFound) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Deletes a profile; one that is already gone counts as deleted.
    pub async fn delete_profile(&self, name: &str) -> Result<(), AwsError> {
        let res = self
            .call(Family::IamWrite, IAM, "DeleteInstanceProfile", || async {
                self.iam
                    .delete_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "DeleteInstanceProfile", &e))
            })
            .await;
        match res {
            Err(e) if e.is(ErrorKind::NotFound) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// A role and whether EC2 may assume it; `None` when it does not exist.
    pub async fn get_role(&self, name: &str) -> Result<Option<RoleInfo>, AwsError> {
        let res = self
            .call(Family::IamRead, IAM, "GetRole", || async {
                self.iam
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| from_sdk(IAM, "GetRole", &e))
            })
            .await;
        match res {
            Ok(out) => Ok(out.role().map(|r| RoleInfo {
                name: r.role_name().to_string(),
                arn: r.arn().to_string(),
                trusts_ec2: r
                    .assume_role_policy_document()
                    .is_some_and(trust_allows_ec2),
            })),
            Err(e) if e.is(ErrorKind::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every role name in the account (for the near-match hint of `RoleNotFound`).
    pub async fn list_role_names(&self) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(Family::IamRead, IAM, "ListRoles", || async {
                    self.iam
                        .list_roles()
                        .max_items(PAGE)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| from_sdk(IAM, "ListRoles", &e))
                })
                .await?;
            out.extend(page.roles().iter().map(|r| r.role_name().to_string()));
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// The ARN to simulate for a caller ARN: an assumed-role session becomes
    /// its role's ARN (path included, via `GetRole`; without the path when the
    /// role cannot be read).
    ///
    /// # Errors
    /// Why the simulator cannot evaluate this principal.
    pub async fn simulation_principal_arn(&self, caller_arn: &str) -> Result<String, String> {
        match simulation_principal(caller_arn) {
            SimulationPrincipal::Arn(arn) => Ok(arn),
            SimulationPrincipal::Unsupported(why) => Err(why),
            SimulationPrincipal::AssumedRole { role_name, guess } => {
                match self.get_role(&role_name).await {
                    Ok(Some(role)) => Ok(role.arn),
                    Ok(None) | Err(_) => Ok(guess),
                }
            }
        }
    }

    /// `iam:SimulatePrincipalPolicy` for `actions` on one resource (`None`: `*`)
    /// with string context keys, all pages.
    pub async fn simulate_principal_policy(
        &self,
        principal_arn: &str,
        actions: &[String],
        resource_arn: Option<&str>,
        context: &BTreeMap<String, String>,
    ) -> Result<Vec<SimulatedDecision>, AwsError> {
        let entries: Vec<ContextEntry> = context
            .iter()
            .map(|(k, v)| {
                ContextEntry::builder()
                    .context_key_name(k)
                    .context_key_values(v)
                    .context_key_type(ContextKeyTypeEnum::String)
                    .build()
            })
            .collect();
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call(Family::IamRead, IAM, "SimulatePrincipalPolicy", || async {
                    self.iam
                        .simulate_principal_policy()
                        .policy_source_arn(principal_arn)
                        .set_action_names(Some(actions.to_vec()))
                        .set_resource_arns(resource_arn.map(|r| vec![r.to_string()]))
                        .set_context_entries(Some(entries.clone()))
                        .max_items(PAGE)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| from_sdk(IAM, "SimulatePrincipalPolicy", &e))
                })
                .await?;
            out.extend(page.evaluation_results().iter().map(|r| {
                let decision = r.eval_decision();
                SimulatedDecision {
                    action: r.eval_action_name().to_string(),
                    resource: r
                        .eval_resource_name()
                        .or(resource_arn)
                        .unwrap_or("*")
                        .to_string(),
                    allowed: *decision == PolicyEvaluationDecisionType::Allowed,
                    decision: decision.as_str().to_string(),
                    denied_by_organizations: r
                        .organizations_decision_detail()
                        .is_some_and(|d| !d.allowed_by_organizations()),
                    denied_by_boundary: r
                        .permissions_boundary_decision_detail()
                        .is_some_and(|d| !d.allowed_by_permissions_boundary()),
                    missing_context: r.missing_context_values().to_vec(),
                }
            }));
            match page.marker() {
                Some(m) if page.is_truncated() && !m.is_empty() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// A policy element that IAM takes as one string or a list of them (`Action`,
/// `Resource`, a principal's `Service`), as a list; anything else as none.
#[must_use]
pub fn policy_strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether a trust policy (JSON, possibly URL-encoded as IAM returns it) lets
/// `ec2.amazonaws.com` call `sts:AssumeRole`.
#[must_use]
pub fn trust_allows_ec2(document: &str) -> bool {
    let decoded;
    let text = if document.trim_start().starts_with('{') {
        document
    } else {
        decoded = percent_encoding::percent_decode_str(document)
            .decode_utf8_lossy()
            .into_owned();
        &decoded
    };
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(s @ serde_json::Value::Object(_)) => vec![s.clone()],
        _ => return false,
    };
    statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(|e| e.as_str()) == Some("Allow");
        let action = policy_strings(s.get("Action"))
            .iter()
            .any(|a| a == "sts:AssumeRole" || a == "sts:*" || a == "*");
        let principal = s.get("Principal");
        let ec2 = principal.is_some_and(|p| {
            p.as_str() == Some("*")
                || policy_strings(p.get("Service"))
                    .iter()
                    .any(|svc| svc == "ec2.amazonaws.com" || svc == "ec2.amazonaws.com.cn")
        });
        allow && action && ec2
    })
}

#[cfg(test)]
mod tests {
    use super::{SimulationPrincipal, simulation_principal, trust_allows_ec2};

    #[test]
    fn trust_policy_must_let_ec2_assume_the_role() {
        let ok = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert!(trust_allows_ec2(ok));
        let encoded: String =
            percent_encoding::utf8_percent_encode(ok, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert!(trust_allows_ec2(&encoded));
        let list = r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","ec2.amazonaws.com"]},"Action":["sts:AssumeRole","sts:TagSession"]}}"#;
        assert!(trust_allows_ec2(list));
        let lambda = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trust_allows_ec2(lambda));
        let deny = r#"{"Statement":[{"Effect":"Deny","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        assert!(!trust_allows_ec2(deny));
        let web_identity = r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRoleWithWebIdentity"}]}"#;
        assert!(!trust_allows_ec2(web_identity));
        assert!(!trust_allows_ec2("not json"));
    }

    #[test]
    fn assumed_role_sessions_become_role_arns() {
        assert_eq!(
            simulation_principal(
                "arn:aws:sts::111122223333:assumed-role/ipb-controller/botocore-session-1"
            ),
            SimulationPrincipal::AssumedRole {
                role_name: "ipb-controller".into(),
                guess: "arn:aws:iam::111122223333:role/ipb-controller".into(),
            }
        );
        assert_eq!(
            simulation_principal("arn:aws-cn:sts::111122223333:assumed-role/r/s"),
            SimulationPrincipal::AssumedRole {
                role_name: "r".into(),
                guess: "arn:aws-cn:iam::111122223333:role/r".into(),
            }
        );
    }

    #[test]
    fn users_and_roles_pass_through_root_and_federation_do_not() {
        let user = "arn:aws:iam::111122223333:user/team/alice";
        assert_eq!(
            simulation_principal(user),
            SimulationPrincipal::Arn(user.into())
        );
        let role = "arn:aws:iam::111122223333:role/path/ipb-controller";
        assert_eq!(
            simulation_principal(role),
            SimulationPrincipal::Arn(role.into())
        );
        for bad in [
            "arn:aws:iam::111122223333:root",
            "arn:aws:sts::111122223333:federated-user/bob",
            "arn:aws:sts::111122223333:assumed-role/",
            "not-an-arn",
        ] {
            assert!(
                matches!(
                    simulation_principal(bad),
                    SimulationPrincipal::Unsupported(_)
                ),
                "{bad}"
            );
        }
    }
}
