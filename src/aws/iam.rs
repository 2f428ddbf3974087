//! IAM operations: instance profiles and roles.

use std::collections::BTreeMap;

use aws_sdk_iam::types::Tag;

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
    let as_list = |v: Option<&serde_json::Value>| -> Vec<String> {
        match v {
            Some(serde_json::Value::String(s)) => vec![s.clone()],
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    statements.iter().any(|s| {
        let allow = s.get("Effect").and_then(|e| e.as_str()) == Some("Allow");
        let action = as_list(s.get("Action"))
            .iter()
            .any(|a| a == "sts:AssumeRole" || a == "sts:*" || a == "*");
        let principal = s.get("Principal");
        let ec2 = principal.is_some_and(|p| {
            p.as_str() == Some("*")
                || as_list(p.get("Service"))
                    .iter()
                    .any(|svc| svc == "ec2.amazonaws.com" || svc == "ec2.amazonaws.com.cn")
        });
        allow && action && ec2
    })
}

#[cfg(test)]
mod tests {
    use super::trust_allows_ec2;

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
}
