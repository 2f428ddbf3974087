//! Reads only `doctor` needs: who the caller is (STS), the IAM policy
//! simulator, and one instance by id. All read-only, all through [`Aws::call`].

use std::collections::BTreeMap;

use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};

use super::errors::from_sdk;
use super::ratelimit::Family;
use super::{Aws, AwsError, ErrorKind, Instance, RunState};

const IAM: &str = "iam";
const STS: &str = "sts";
const EC2: &str = "ec2";
const PAGE: i32 = 1000;

/// The identity behind the credentials in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerIdentity {
    pub account: String,
    /// As STS reports it: an assumed-role session ARN for IRSA, Pod Identity
    /// and instance roles.
    pub arn: String,
}

impl CallerIdentity {
    /// The partition (`aws`, `aws-cn`, `aws-us-gov`) of the caller's ARN.
    #[must_use]
    pub fn partition(&self) -> &str {
        self.arn.split(':').nth(1).unwrap_or("aws")
    }
}

/// What the simulator can evaluate for a caller ARN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimulationPrincipal {
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
pub fn simulation_principal(caller_arn: &str) -> SimulationPrincipal {
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
    /// `sts:GetCallerIdentity`: needs no permission, so an error here means
    /// the credentials or the network, never a policy.
    pub async fn caller_identity(&self) -> Result<CallerIdentity, AwsError> {
        let out = self
            .call(Family::IamRead, STS, "GetCallerIdentity", || async {
                self.sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| from_sdk(STS, "GetCallerIdentity", &e))
            })
            .await?;
        Ok(CallerIdentity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        })
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

    /// One instance in any state, terminated included; `None` when EC2 does not know it.
    pub async fn describe_instance(&self, id: &str) -> Result<Option<Instance>, AwsError> {
        let res = self
            .call(Family::Ec2Read, EC2, "DescribeInstances", || async {
                self.ec2
                    .describe_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(|e| from_sdk(EC2, "DescribeInstances", &e))
            })
            .await;
        let out = match res {
            Ok(out) => out,
            Err(e) if e.is(ErrorKind::InstanceGone) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .map(|i| Instance {
                id: id.to_string(),
                state: RunState::parse(
                    i.state()
                        .and_then(|s| s.name())
                        .map_or("running", |n| n.as_str()),
                ),
                tags: i
                    .tags()
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t.key()?.to_string(),
                            t.value().unwrap_or_default().to_string(),
                        ))
                    })
                    .collect(),
            }))
    }

    /// The region EC2 calls go to.
    #[must_use]
    pub fn region(&self) -> String {
        self.ec2
            .config()
            .region()
            .map_or_else(|| "us-east-1".to_string(), ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn partition_comes_from_the_arn() {
        let id = CallerIdentity {
            account: "1".into(),
            arn: "arn:aws-us-gov:sts::1:assumed-role/r/s".into(),
        };
        assert_eq!(id.partition(), "aws-us-gov");
    }
}
