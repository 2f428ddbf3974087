//! One classification of AWS errors: the failure catalogue of docs/design.md §5.

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

/// The table of docs/design.md §5: (service, action, error code, message, HTTP status) → kind.
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
            let raw = ctx.raw();
            let status = raw.status().as_u16();
            let Some(code) = ctx.err().code() else {
                // No error code: the body was not an AWS error response, e.g.
                // the HTML page of a proxy or load balancer in the way.
                let message = not_aws_message(
                    status,
                    raw.headers().get("content-type"),
                    raw.body().bytes(),
                );
                return AwsError {
                    kind: classify(action, NOT_AWS, &message, Some(status)),
                    service,
                    action,
                    code: NOT_AWS.into(),
                    message,
                };
            };
            let code = code.to_string();
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

/// The code of an error whose response carried no AWS error code.
pub const NOT_AWS: &str = "NonAwsResponse";

/// What to say about an error response that is not AWS's: its HTTP status,
/// and the page's title (or its first words) to tell who answered.
fn not_aws_message(status: u16, content_type: Option<&str>, body: Option<&[u8]>) -> String {
    let mut out = format!(
        "HTTP {status} from the endpoint, not an AWS error response (a proxy or load balancer answered?)"
    );
    let text = body.map(String::from_utf8_lossy).unwrap_or_default();
    let lower = text.to_ascii_lowercase();
    let title = lower
        .find("<title>")
        .map(|start| start + "<title>".len())
        .and_then(|start| {
            lower[start..]
                .find("</title>")
                .map(|len| &text[start..start + len])
        });
    let shown = match title {
        Some(t) => one_line(t),
        None if text.trim_start().starts_with('<') => String::new(),
        None => one_line(&text),
    };
    if !shown.is_empty() {
        const MAX: usize = 120;
        let cut: String = shown.chars().take(MAX).collect();
        let more = if shown.chars().count() > MAX {
            "…"
        } else {
            ""
        };
        out.push_str(&format!(": {cut}{more}"));
    }
    if let Some(ct) = content_type.filter(|ct| !ct.is_empty()) {
        out.push_str(&format!(" [{}]", one_line(ct)));
    }
    out
}

/// Whitespace collapsed, control characters dropped: safe on one log line.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
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

    /// One row per failure the catalogue (docs/design.md §5) knows.
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

    /// A proxy's HTML 502 page (no AWS error code in it) is named for what it
    /// is, with its status and title, and stays retryable; a 403 page is not
    /// retried. Before: `failed: Unknown: `.
    #[test]
    fn an_error_page_that_is_not_aws_says_so() {
        use aws_smithy_runtime_api::http::StatusCode;
        use aws_smithy_types::body::SdkBody;
        use aws_smithy_types::error::ErrorMetadata;

        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body></html>";
        let sdk = |status: u16, content_type: &str, body: &'static str| {
            let mut raw = HttpResponse::new(
                StatusCode::try_from(status).expect("status"),
                SdkBody::from(body),
            );
            raw.headers_mut()
                .insert("content-type", content_type.to_string());
            let err = aws_sdk_iam::operation::list_roles::ListRolesError::generic(
                ErrorMetadata::builder().build(),
            );
            SdkError::service_error(err, raw)
        };
        let e = from_sdk("iam", "ListRoles", &sdk(502, "text/html", page));
        assert_eq!(e.kind, ErrorKind::Transient);
        assert_eq!(e.code, NOT_AWS);
        assert_eq!(
            e.to_string(),
            "iam:ListRoles failed: NonAwsResponse: HTTP 502 from the endpoint, not an AWS error response (a proxy or load balancer answered?): 502 Bad Gateway [text/html]"
        );
        for status in [503, 504] {
            let e = from_sdk("ec2", "DescribeInstances", &sdk(status, "text/html", page));
            assert_eq!(e.kind, ErrorKind::Transient, "{status}");
            assert!(
                e.message
                    .starts_with(&format!("HTTP {status} from the endpoint")),
                "{e}"
            );
        }
        let e = from_sdk(
            "ec2",
            "DescribeInstances",
            &sdk(403, "text/plain", "Forbidden by\n policy\u{7}"),
        );
        assert_eq!(e.kind, ErrorKind::Other);
        assert!(
            e.message.ends_with(": Forbidden by policy [text/plain]"),
            "{e}"
        );
        let e = from_sdk("ec2", "DescribeInstances", &sdk(429, "", ""));
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert!(
            e.message
                .starts_with("HTTP 429 from the endpoint, not an AWS error response"),
            "{e}"
        );
        // An AWS error keeps its code and message.
        let mut raw = HttpResponse::new(
            StatusCode::try_from(503).expect("status"),
            SdkBody::from(""),
        );
        raw.headers_mut().insert("content-type", "text/xml");
        let err = aws_sdk_iam::operation::list_roles::ListRolesError::generic(
            ErrorMetadata::builder()
                .code("ServiceUnavailable")
                .message("busy")
                .build(),
        );
        let e = from_sdk("iam", "ListRoles", &SdkError::service_error(err, raw));
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ServiceUnavailable", "busy")
        );
    }
}
