//! The role (docs/design.md §3 step 3): resolve a name or ARN, say which near match
//! exists when it does not, and refuse a role EC2 cannot assume.

use crate::aws::{Aws, AwsError, RoleCache, RoleInfo};

use super::reason::Failure;

/// The role name inside a role ARN (`arn:aws:iam::123:role/path/name`), or the name itself.
#[must_use]
pub fn role_name(spec_role: &str) -> &str {
    if spec_role.starts_with("arn:") {
        spec_role.rsplit('/').next().unwrap_or(spec_role)
    } else {
        spec_role
    }
}

/// The role a spec names, before (or instead of) looking it up: what a
/// status shows when the pass stopped earlier.
#[must_use]
pub fn unresolved(spec_role: &str) -> RoleInfo {
    RoleInfo {
        name: role_name(spec_role).into(),
        arn: String::new(),
        trusts_ec2: false,
    }
}

/// A role whose name differs only in case (IAM names are case-sensitive, people are not).
#[must_use]
pub fn near_match<'a>(wanted: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .find(|n| n.as_str() != wanted && n.eq_ignore_ascii_case(wanted))
        .map(String::as_str)
}

/// Looks the role up (through the cache) and checks it can serve EC2.
pub(crate) async fn resolve_role(
    aws: &Aws,
    cache: &RoleCache,
    spec_role: &str,
) -> Result<RoleInfo, Failure> {
    let name = role_name(spec_role);
    let _guard = match cache.get(name) {
        Some(_) => None,
        None => Some(cache.lookup.lock().await),
    };
    let found = match cache.get(name) {
        Some(cached) => cached,
        None => {
            let looked_up: Result<Option<RoleInfo>, AwsError> = aws.get_role(name).await;
            let value = match looked_up {
                Ok(Some(role)) => Ok(role),
                Ok(None) => Err(None),
                Err(e) => Err(Some(e)),
            };
            match value {
                Ok(role) => {
                    cache.put(name, Ok(role.clone()));
                    Ok(role)
                }
                Err(Some(e)) => return Err(Failure::Aws(e)),
                Err(None) => {
                    let near = aws
                        .list_role_names()
                        .await
                        .ok()
                        .and_then(|names| near_match(name, &names).map(str::to_string));
                    return Err(Failure::RoleNotFound {
                        role: spec_role.to_string(),
                        near,
                    });
                }
            }
        }
    };
    let role = found.map_err(Failure::Aws)?;
    if spec_role.starts_with("arn:") && role.arn != spec_role {
        return Err(Failure::RoleNotFound {
            role: spec_role.to_string(),
            near: Some(role.arn),
        });
    }
    if !role.trusts_ec2 {
        return Err(Failure::TrustPolicyMissingEc2 { role: role.name });
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_arns() {
        assert_eq!(role_name("web-app"), "web-app");
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/web-app"),
            "web-app"
        );
        assert_eq!(
            role_name("arn:aws:iam::123456789012:role/team/a/web-app"),
            "web-app"
        );
    }

    #[test]
    fn near_match_is_case_insensitive_only() {
        let names = vec!["Web-App".to_string(), "other".to_string()];
        assert_eq!(near_match("web-app", &names), Some("Web-App"));
        assert_eq!(near_match("web-ap", &names), None);
        assert_eq!(near_match("Web-App", &names), None);
    }
}
