//! The events on the queue, as EventBridge delivers them to SQS (the message
//! body is the event itself): EC2 instance state changes, and the CloudTrail
//! records of the EC2 and IAM calls that change what a binding holds.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

pub const STATE_CHANGE: &str = "EC2 Instance State-change Notification";
pub const API_CALL: &str = "AWS API Call via CloudTrail";

/// One event the controller can use.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub id: String,
    pub account: String,
    pub region: String,
    pub time: jiff::Timestamp,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// `aws.ec2` state change of one instance.
    StateChange { instance_id: String, state: String },
    /// An EC2 association call (Associate, Replace, Disassociate): the
    /// instances and associations it names.
    Ec2Call {
        name: String,
        caller: Caller,
        instance_ids: BTreeSet<String>,
        association_ids: BTreeSet<String>,
    },
    /// An IAM call on an instance profile (its role, or the profile itself).
    IamCall {
        name: String,
        caller: Caller,
        profile: String,
    },
}

impl Event {
    /// The detail-type, as a metric label.
    #[must_use]
    pub fn detail_type(&self) -> &'static str {
        match self.what {
            What::StateChange { .. } => STATE_CHANGE,
            What::Ec2Call { .. } | What::IamCall { .. } => API_CALL,
        }
    }

    /// Who made the call (`None` for a state change).
    #[must_use]
    pub fn caller(&self) -> Option<&Caller> {
        match &self.what {
            What::StateChange { .. } => None,
            What::Ec2Call { caller, .. } | What::IamCall { caller, .. } => Some(caller),
        }
    }
}

/// CloudTrail's `userIdentity`: the caller's ARN and, for an assumed role,
/// the role's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    pub arn: Option<String>,
    /// `sessionContext.sessionIssuer.arn`: the role of an assumed-role session.
    pub issuer_arn: Option<String>,
}

/// Why a message cannot be used; it is deleted and counted all the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Not JSON, or not an EventBridge event.
    Malformed(String),
    /// An event, but not one the controller acts on (detail-type, call or
    /// state it does not handle, or a call that failed).
    Unknown { detail_type: String, what: String },
}

impl Rejected {
    /// The detail-type label and the reason label of the ignored counter.
    #[must_use]
    pub fn labels(&self) -> (&str, &'static str) {
        match self {
            Self::Malformed(_) => ("other", "malformed"),
            Self::Unknown { detail_type, .. } => {
                let label = match detail_type.as_str() {
                    STATE_CHANGE => STATE_CHANGE,
                    API_CALL => API_CALL,
                    _ => "other",
                };
                (label, "unknown")
            }
        }
    }
}

/// The calls whose CloudTrail record is a hint to re-read an instance's association.
pub const EC2_CALLS: [&str; 3] = [
    "AssociateIamInstanceProfile",
    "ReplaceIamInstanceProfileAssociation",
    "DisassociateIamInstanceProfile",
];
/// The calls whose CloudTrail record is a hint to re-read a profile.
pub const IAM_CALLS: [&str; 3] = [
    "RemoveRoleFromInstanceProfile",
    "AddRoleToInstanceProfile",
    "DeleteInstanceProfile",
];
/// The states the EventBridge rule forwards.
pub const STATES: [&str; 4] = ["pending", "running", "stopped", "terminated"];

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    account: String,
    time: String,
    region: String,
    detail: Value,
}

/// Reads one message body.
///
/// # Errors
/// What makes it unusable.
pub fn parse(body: &str) -> Result<Event, Rejected> {
    let env: Envelope = serde_json::from_str(body)
        .map_err(|e| Rejected::Malformed(format!("not an event: {e}")))?;
    let time: jiff::Timestamp = env
        .time
        .parse()
        .map_err(|e| Rejected::Malformed(format!("time {:?}: {e}", env.time)))?;
    let unknown = |what: String| Rejected::Unknown {
        detail_type: env.detail_type.clone(),
        what,
    };
    let what = match (env.detail_type.as_str(), env.source.as_str()) {
        (STATE_CHANGE, "aws.ec2") => {
            let field = |k: &str| {
                env.detail
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| Rejected::Malformed(format!("{STATE_CHANGE} without {k}")))
            };
            let instance_id = field("instance-id")?;
            let state = field("state")?;
            if !STATES.contains(&state.as_str()) {
                return Err(unknown(format!("state {state}")));
            }
            What::StateChange { instance_id, state }
        }
        (API_CALL, "aws.ec2" | "aws.iam") => api_call(&env.detail).map_err(|e| match e {
            CallError::Malformed(m) => Rejected::Malformed(m),
            CallError::Unknown(w) => unknown(w),
        })?,
        (other, source) => return Err(unknown(format!("{other} from {source}"))),
    };
    Ok(Event {
        id: env.id,
        account: env.account,
        region: env.region,
        time,
        what,
    })
}

enum CallError {
    Malformed(String),
    Unknown(String),
}

fn api_call(detail: &Value) -> Result<What, CallError> {
    let text = |k: &str| detail.get(k).and_then(Value::as_str);
    let (Some(source), Some(name)) = (text("eventSource"), text("eventName")) else {
        return Err(CallError::Malformed(format!(
            "{API_CALL} without eventSource or eventName"
        )));
    };
    if let Some(code) = text("errorCode") {
        // A call that failed changed nothing.
        return Err(CallError::Unknown(format!("{name} failed: {code}")));
    }
    let identity = detail.get("userIdentity");
    let caller = Caller {
        arn: identity
            .and_then(|u| u.get("arn"))
            .and_then(Value::as_str)
            .map(str::to_string),
        issuer_arn: identity
            .and_then(|u| u.pointer("/sessionContext/sessionIssuer/arn"))
            .and_then(Value::as_str)
            .map(str::to_string),
    };
    let params = [
        detail.get("requestParameters"),
        detail.get("responseElements"),
    ];
    match source {
        "ec2.amazonaws.com" if EC2_CALLS.contains(&name) => {
            let mut instance_ids = BTreeSet::new();
            let mut association_ids = BTreeSet::new();
            for v in params.into_iter().flatten() {
                strings_under(v, &["instanceId", "InstanceId"], &mut instance_ids);
                strings_under(v, &["associationId", "AssociationId"], &mut association_ids);
            }
            instance_ids.retain(|i| i.starts_with("i-"));
            if instance_ids.is_empty() && association_ids.is_empty() {
                return Err(CallError::Malformed(format!(
                    "{name} names no instance or association"
                )));
            }
            Ok(What::Ec2Call {
                name: name.to_string(),
                caller,
                instance_ids,
                association_ids,
            })
        }
        "iam.amazonaws.com" if IAM_CALLS.contains(&name) => {
            let mut profiles = BTreeSet::new();
            for v in params.into_iter().flatten() {
                strings_under(
                    v,
                    &["instanceProfileName", "InstanceProfileName"],
                    &mut profiles,
                );
            }
            let Some(profile) = profiles.into_iter().next() else {
                return Err(CallError::Malformed(format!(
                    "{name} names no instance profile"
                )));
            };
            Ok(What::IamCall {
                name: name.to_string(),
                caller,
                profile,
            })
        }
        _ => Err(CallError::Unknown(format!("{source} {name}"))),
    }
}

/// Every string under one of `keys`, at any depth: CloudTrail nests EC2's
/// parameters under the request's and response's names
/// (`AssociateIamInstanceProfileRequest.InstanceId`,
/// `…Response.iamInstanceProfileAssociation.instanceId`).
fn strings_under(v: &Value, keys: &[&str], out: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                match child {
                    Value::String(s) if keys.contains(&k.as_str()) => {
                        out.insert(s.clone());
                    }
                    _ => strings_under(child, keys, out),
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                strings_under(child, keys, out);
            }
        }
        _ => {}
    }
}

/// Who "the controller itself" is in CloudTrail: its own identity (from
/// `sts:GetCallerIdentity`) and the roles it assumes in other accounts.
/// Events of those callers are its own writes and are not acted on again.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    arns: BTreeSet<String>,
    /// (account, role name): a session of one of these roles is ours.
    roles: BTreeSet<(String, String)>,
}

impl Identity {
    /// `caller_arn` from GetCallerIdentity (a user, or an assumed-role
    /// session: then every session of that role is ours, the other replicas'
    /// included), and the ARNs of the roles assumed for other accounts.
    #[must_use]
    pub fn new<'a>(caller_arn: &'a str, assumed: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for arn in std::iter::once(caller_arn).chain(assumed) {
            match role_of(arn) {
                Some(role) => {
                    out.roles.insert(role);
                }
                None if !arn.is_empty() => {
                    out.arns.insert(arn.to_string());
                }
                None => {}
            }
        }
        out
    }

    /// Whether `caller` is the controller.
    #[must_use]
    pub fn is_own(&self, caller: &Caller) -> bool {
        [caller.arn.as_deref(), caller.issuer_arn.as_deref()]
            .into_iter()
            .flatten()
            .any(|arn| {
                self.arns.contains(arn) || role_of(arn).is_some_and(|r| self.roles.contains(&r))
            })
    }
}

/// (account, role name) of a role ARN (`arn:aws:iam::A:role/path/NAME`) or a
/// session of it (`arn:aws:sts::A:assumed-role/NAME/SESSION`).
fn role_of(arn: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _, service, _, account, resource] = parts.as_slice() else {
        return None;
    };
    let name = match *service {
        "iam" => resource.strip_prefix("role/")?.rsplit('/').next()?,
        "sts" => resource.strip_prefix("assumed-role/")?.split('/').next()?,
        _ => return None,
    };
    (!name.is_empty()).then(|| ((*account).to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example of the state-change event.
    const STATE_CHANGE_EXAMPLE: &str = r#"{
      "version": "0",
      "id": "7bf73129-1428-4cd3-a780-95db273d1602",
      "detail-type": "EC2 Instance State-change Notification",
      "source": "aws.ec2",
      "account": "123456789012",
      "time": "2015-11-11T21:29:54Z",
      "region": "us-east-1",
      "resources": ["arn:aws:ec2:us-east-1:123456789012:instance/i-abcd1111"],
      "detail": {"instance-id": "i-abcd1111", "state": "pending"}
    }"#;

    fn cloudtrail(source: &str, name: &str, request: &Value, response: &Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "36eb8523-97d0-4518-b33d-ee3579ff19f0",
            "detail-type": "AWS API Call via CloudTrail",
            "source": if source == "ec2.amazonaws.com" { "aws.ec2" } else { "aws.iam" },
            "account": "123456789012",
            "time": "2026-01-02T03:04:05Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "userIdentity": {
                    "type": "AssumedRole",
                    "principalId": "AROAEXAMPLE:alice",
                    "arn": "arn:aws:sts::123456789012:assumed-role/Admin/alice",
                    "accountId": "123456789012",
                    "sessionContext": {"sessionIssuer": {
                        "type": "Role",
                        "arn": "arn:aws:iam::123456789012:role/Admin",
                        "accountId": "123456789012",
                        "userName": "Admin"
                    }}
                },
                "eventTime": "2026-01-02T03:04:05Z",
                "eventSource": source,
                "eventName": name,
                "awsRegion": "us-east-1",
                "requestParameters": request,
                "responseElements": response,
                "eventType": "AwsApiCall"
            }
        })
        .to_string()
    }

    #[test]
    fn reads_the_documented_state_change() {
        let e = parse(STATE_CHANGE_EXAMPLE).expect("an event");
        assert_eq!(e.account, "123456789012");
        assert_eq!(e.region, "us-east-1");
        assert_eq!(e.time.to_string(), "2015-11-11T21:29:54Z");
        assert_eq!(e.detail_type(), STATE_CHANGE);
        assert_eq!(
            e.what,
            What::StateChange {
                instance_id: "i-abcd1111".into(),
                state: "pending".into()
            }
        );
    }

    #[test]
    fn reads_ec2_association_calls_from_request_and_response() {
        let body = cloudtrail(
            "ec2.amazonaws.com",
            "ReplaceIamInstanceProfileAssociation",
            &serde_json::json!({"ReplaceIamInstanceProfileAssociationRequest": {
                "AssociationId": "iip-assoc-1", "IamInstanceProfile": {"Name": "other"}}}),
            &serde_json::json!({"ReplaceIamInstanceProfileAssociationResponse": {
                "requestId": "r", "iamInstanceProfileAssociation": {
                    "associationId": "iip-assoc-2", "instanceId": "i-0123456789abcdef0",
                    "iamInstanceProfile": {"arn": "arn:aws:iam::123456789012:instance-profile/other", "id": "AIPA"},
                    "state": "associating"}}}),
        );
        let e = parse(&body).expect("an event");
        let What::Ec2Call {
            name,
            caller,
            instance_ids,
            association_ids,
        } = e.what
        else {
            panic!("not an EC2 call: {e:?}");
        };
        assert_eq!(name, "ReplaceIamInstanceProfileAssociation");
        assert_eq!(
            caller.issuer_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/Admin")
        );
        assert_eq!(
            instance_ids.into_iter().collect::<Vec<_>>(),
            ["i-0123456789abcdef0"]
        );
        assert_eq!(
            association_ids.into_iter().collect::<Vec<_>>(),
            ["iip-assoc-1", "iip-assoc-2"]
        );
    }

    #[test]
    fn reads_iam_profile_calls() {
        let body = cloudtrail(
            "iam.amazonaws.com",
            "RemoveRoleFromInstanceProfile",
            &serde_json::json!({"instanceProfileName": "ipb-web", "roleName": "web-app"}),
            &Value::Null,
        );
        let e = parse(&body).expect("an event");
        assert!(
            matches!(&e.what, What::IamCall { name, profile, .. } if name == "RemoveRoleFromInstanceProfile" && profile == "ipb-web"),
            "{e:?}"
        );
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let malformed = |body: &str| matches!(parse(body), Err(Rejected::Malformed(_)));
        let unknown = |body: &str| matches!(parse(body), Err(Rejected::Unknown { .. }));
        assert!(malformed("not json"));
        assert!(malformed("{}"));
        assert!(malformed(
            &STATE_CHANGE_EXAMPLE.replace("2015-11-11T21:29:54Z", "yesterday")
        ));
        assert!(malformed(
            &STATE_CHANGE_EXAMPLE.replace("instance-id", "instance")
        ));
        assert!(unknown(&STATE_CHANGE_EXAMPLE.replace(
            "EC2 Instance State-change Notification",
            "EC2 Spot Instance Interruption Warning"
        )));
        assert!(unknown(
            &STATE_CHANGE_EXAMPLE.replace("\"pending\"", "\"stopping\"")
        ));
        assert!(unknown(&cloudtrail(
            "ec2.amazonaws.com",
            "RunInstances",
            &serde_json::json!({"instancesSet": {}}),
            &Value::Null
        )));
        let failed = cloudtrail(
            "iam.amazonaws.com",
            "DeleteInstanceProfile",
            &serde_json::json!({"instanceProfileName": "p"}),
            &Value::Null,
        )
        .replace(
            "\"eventType\"",
            "\"errorCode\":\"AccessDenied\",\"eventType\"",
        );
        assert!(unknown(&failed));
        assert!(malformed(&cloudtrail(
            "iam.amazonaws.com",
            "DeleteInstanceProfile",
            &serde_json::json!({}),
            &Value::Null
        )));
        let rejected = parse("[]").expect_err("rejected");
        assert_eq!(rejected.labels(), ("other", "malformed"));
    }

    #[test]
    fn the_controller_is_its_role_its_sessions_and_the_roles_it_assumes() {
        let me = Identity::new(
            "arn:aws:sts::111111111111:assumed-role/ipb-controller/botocore-session-1",
            ["arn:aws:iam::222222222222:role/team/ipb-access"],
        );
        let caller = |arn: &str, issuer: Option<&str>| Caller {
            arn: Some(arn.into()),
            issuer_arn: issuer.map(Into::into),
        };
        // Another replica's session of the same role.
        assert!(me.is_own(&caller(
            "arn:aws:sts::111111111111:assumed-role/ipb-controller/other-session",
            Some("arn:aws:iam::111111111111:role/system/ipb-controller")
        )));
        // The cross-account session.
        assert!(me.is_own(&caller(
            "arn:aws:sts::222222222222:assumed-role/ipb-access/ipb.team-a.web",
            None
        )));
        // A person, or the same role name in another account.
        assert!(!me.is_own(&caller(
            "arn:aws:sts::111111111111:assumed-role/Admin/alice",
            Some("arn:aws:iam::111111111111:role/Admin")
        )));
        assert!(!me.is_own(&caller(
            "arn:aws:sts::333333333333:assumed-role/ipb-controller/x",
            None
        )));
        assert!(!me.is_own(&Caller::default()));
        let user = Identity::new("arn:aws:iam::123456789012:user/moto", []);
        assert!(user.is_own(&caller("arn:aws:iam::123456789012:user/moto", None)));
        assert!(!user.is_own(&caller("arn:aws:iam::123456789012:user/alice", None)));
    }
}
