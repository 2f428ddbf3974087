//! One classification of AWS errors: the failure catalogue of SPEC §5.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What an AWS error means for the reconcile pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `AccessDenied` / `UnauthorizedOperation`: permissions, boundaries, SCPs, `iam:PassRole`.
    AccessDenied,
    /// `Throttling` / `RequestLimitExceeded`: slow down.
    Throttled,
    /// EC2 does not know a profile IAM just created (propagation delay).
    PropagationPending,
    /// `NoSuchEntity`: the IAM entity is not there.
    NotFound,
    /// `EntityAlreadyExists` on create.
    AlreadyExists,
    /// `LimitExceeded` on `AddRoleToInstanceProfile`: the profile already holds a role.
    RoleSlotTaken,
    /// `LimitExceeded` on create: the account's profile quota.
    QuotaExceeded,
    /// `DeleteConflict`: the profile still holds a role.
    DeleteConflict,
    /// `IncorrectState` / `InvalidAssociationID.NotFound`: the association changed under us.
    IncorrectState,
    /// `InvalidInstanceID.NotFound`: the instance is gone (terminated).
    InstanceGone,
    /// 5xx, timeouts, dropped connections: retry.
    Transient,
    /// Anything else: a bad request we cannot fix by retrying soon.
    Other,
}

impl ErrorKind {
    /// The condition/event/metric reason for this kind.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::AccessDenied => "AccessDenied",
            Self::Throttled => "Throttled",
            Self::PropagationPending | Self::NotFound => "PropagationPending",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::AlreadyExists => "ForeignProfileExists",
            Self::RoleSlotTaken | Self::DeleteConflict | Self::IncorrectState => "Conflict",
            Self::InstanceGone => "InstanceNotFound",
            Self::Transient => "AwsUnavailable",
            Self::Other => "AwsError",
        }
    }
}

/// An AWS call that failed, classified.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{service}:{action} failed: {code}: {message}")]
pub struct AwsError {
    pub kind: ErrorKind,
    pub service: &'static str,
    pub action: &'static str,
    pub code: String,
    pub message: String,
}

impl AwsError {
    #[must_use]
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == kind
    }
}

/// The table of SPEC §5: (service, action, error code, message, HTTP status) → kind.
#[must_use]
pub fn classify(action: &str, code: &str, message: &str, status: Option<u16>) -> ErrorKind {
    let associating = matches!(
        action,
        "AssociateIamInstanceProfile" | "ReplaceIamInstanceProfileAssociation"
    );
    match code {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnauthorizedAccess"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException" => ErrorKind::AccessDenied,
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException"
        | "SlowDown" => ErrorKind::Throttled,
        "InvalidParameterValue"
            if associating && message.contains("Invalid IAM Instance Profile") =>
        {
            ErrorKind::PropagationPending
        }
        "InstanceIdentityProfileNotFound" | "InvalidIamInstanceProfile.NotFound" => {
            ErrorKind::PropagationPending
        }
        // moto (and IAM reads right after a create) answer an unknown profile this way.
        "NoSuchEntity" | "NoSuchEntityException" if associating => ErrorKind::PropagationPending,
        "NoSuchEntity" | "NoSuchEntityException" => ErrorKind::NotFound,
        "EntityAlreadyExists" | "EntityAlreadyExistsException" => ErrorKind::AlreadyExists,
        "LimitExceeded" | "LimitExceededException" if action == "AddRoleToInstanceProfile" => {
            ErrorKind::RoleSlotTaken
        }
        "LimitExceeded" | "LimitExceededException" => ErrorKind::QuotaExceeded,
        "DeleteConflict" | "DeleteConflictException" => ErrorKind::DeleteConflict,
        "IncorrectState" | "IncorrectInstanceState" | "InvalidAssociationID.NotFound" => {
            ErrorKind::IncorrectState
        }
        "InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed" => ErrorKind::InstanceGone,
        "ServiceFailure"
        | "ServiceFailureException"
        | "InternalError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "RequestTimeout"
        | "RequestExpired" => ErrorKind::Transient,
        _ => match status {
            Some(s) if s >= 500 => ErrorKind::Transient,
            Some(429) => ErrorKind::Throttled,
            _ => ErrorKind::Other,
        },
    }
}

/// Converts an SDK error into our classified error.
pub fn from_sdk<E>(
    service: &'static str,
    action: &'static str,
    err: &SdkError<E, HttpResponse>,
) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("Unknown").to_string();
            let message = ctx.err().message().unwrap_or_default().to_string();
            AwsError {
                kind: classify(action, &code, &message, Some(status)),
                service,
                action,
                code,
                message,
            }
        }
        SdkError::ConstructionFailure(_) => AwsError {
            kind: ErrorKind::Other,
            service,
            action,
            code: "ConstructionFailure".into(),
            message: error_chain(err),
        },
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            AwsError {
                kind: ErrorKind::Transient,
                service,
                action,
                code: "Unreachable".into(),
                message: error_chain(err),
            }
        }
        _ => AwsError {
            kind: ErrorKind::Transient,
            service,
            action,
            code: "Unknown".into(),
            message: error_chain(err),
        },
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One row per line of SPEC §5.
    #[test]
    fn failure_catalogue() {
        let rows: &[(&str, &str, &str, Option<u16>, ErrorKind)] = &[
            (
                "CreateInstanceProfile",
                "AccessDenied",
                "User is not authorized to perform iam:CreateInstanceProfile",
                Some(403),
                ErrorKind::AccessDenied,
            ),
            (
                "AssociateIamInstanceProfile",
                "UnauthorizedOperation",
                "You are not authorized to perform this operation.",
                Some(403),
                ErrorKind::AccessDenied,
            ),
            (
                "AssociateIamInstanceProfile",
                "AccessDenied",
                "not authorized to perform: iam:PassRole",
                Some(403),
                ErrorKind::AccessDenied,
            ),
            (
                "DeleteInstanceProfile",
                "DeleteConflict",
                "Cannot delete entity, must remove roles from instance profile first.",
                Some(409),
                ErrorKind::DeleteConflict,
            ),
            (
                "AssociateIamInstanceProfile",
                "IncorrectState",
                "There is an existing association for instance i-0123456789abcdef0",
                Some(400),
                ErrorKind::IncorrectState,
            ),
            (
                "ReplaceIamInstanceProfileAssociation",
                "IncorrectState",
                "Association 'iip-assoc-1' is not the active association",
                Some(400),
                ErrorKind::IncorrectState,
            ),
            (
                "CreateInstanceProfile",
                "EntityAlreadyExists",
                "Instance Profile x already exists.",
                Some(409),
                ErrorKind::AlreadyExists,
            ),
            (
                "AddRoleToInstanceProfile",
                "LimitExceeded",
                "Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1",
                Some(409),
                ErrorKind::RoleSlotTaken,
            ),
            (
                "CreateInstanceProfile",
                "LimitExceeded",
                "Cannot exceed quota for InstanceProfilesPerAccount: 1000",
                Some(409),
                ErrorKind::QuotaExceeded,
            ),
            (
                "AssociateIamInstanceProfile",
                "InvalidParameterValue",
                "Value (ipb-x) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
                Some(400),
                ErrorKind::PropagationPending,
            ),
            (
                "ReplaceIamInstanceProfileAssociation",
                "InvalidParameterValue",
                "Value (arn) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN",
                Some(400),
                ErrorKind::PropagationPending,
            ),
            (
                "AssociateIamInstanceProfile",
                "InstanceIdentityProfileNotFound",
                "",
                Some(400),
                ErrorKind::PropagationPending,
            ),
            (
                "AssociateIamInstanceProfile",
                "NoSuchEntity",
                "Instance profile ipb-x not found",
                Some(404),
                ErrorKind::PropagationPending,
            ),
            (
                "GetInstanceProfile",
                "NoSuchEntity",
                "Instance Profile ipb-x cannot be found.",
                Some(404),
                ErrorKind::NotFound,
            ),
            (
                "GetRole",
                "Throttling",
                "Rate exceeded",
                Some(400),
                ErrorKind::Throttled,
            ),
            (
                "DescribeInstances",
                "RequestLimitExceeded",
                "Request limit exceeded.",
                Some(503),
                ErrorKind::Throttled,
            ),
            (
                "ListInstanceProfiles",
                "ServiceFailure",
                "",
                Some(500),
                ErrorKind::Transient,
            ),
            (
                "DescribeInstances",
                "Unavailable",
                "",
                Some(503),
                ErrorKind::Transient,
            ),
            (
                "DescribeInstances",
                "Whatever",
                "",
                Some(502),
                ErrorKind::Transient,
            ),
            (
                "AssociateIamInstanceProfile",
                "InvalidInstanceID.NotFound",
                "The instance ID 'i-0123' does not exist",
                Some(400),
                ErrorKind::InstanceGone,
            ),
            (
                "AssociateIamInstanceProfile",
                "InvalidParameterValue",
                "Value (x) for parameter instanceId is invalid",
                Some(400),
                ErrorKind::Other,
            ),
        ];
        for (action, code, message, status, want) in rows {
            assert_eq!(
                classify(action, code, message, *status),
                *want,
                "{action} {code} {message}"
            );
        }
    }

    #[test]
    fn reasons_are_catalogue_names() {
        assert_eq!(ErrorKind::AccessDenied.reason(), "AccessDenied");
        assert_eq!(ErrorKind::Throttled.reason(), "Throttled");
        assert_eq!(ErrorKind::PropagationPending.reason(), "PropagationPending");
        assert_eq!(ErrorKind::QuotaExceeded.reason(), "QuotaExceeded");
    }
}
