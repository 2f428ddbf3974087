//! What a check says: a [`Finding`] of one [`Check`], its [`Severity`], the
//! evidence and the fix.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::AwsError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Severity {
    Ok,
    Warning,
    Problem,
}

impl Severity {
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "WARNING",
            Self::Problem => "PROBLEM",
        }
    }
}

/// The checks, in the order they run (issue #8's numbering after `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Check {
    /// What the controller itself reports in the binding's status (`--binding`).
    Status,
    /// 1. The profile exists; its path and ownership tags; duplicates.
    Profile,
    /// 2. It holds exactly one role, and which.
    ProfileRole,
    /// A role rotation in progress, or a role change that moves no instance.
    Rotation,
    /// 3. The role exists; a case-insensitive near match when it does not.
    Role,
    /// 4. The role's trust policy lets EC2 assume it.
    TrustPolicy,
    /// 5. Each instance's association, its state and profile id.
    Association,
    /// 6. The controller's own permissions, by the policy simulator.
    Permissions,
    /// 7. A chained role session asks for at most 3600 s.
    SessionDuration,
    /// The account's instance profiles against its quota.
    ProfileQuota,
    /// What a nodeSelector selected, as the controller reports it.
    NodeSelection,
    /// A profile of this cluster id whose binding is gone.
    Orphan,
}

impl Check {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Profile => "profile",
            Self::ProfileRole => "profile-role",
            Self::Rotation => "rotation",
            Self::Role => "role",
            Self::TrustPolicy => "trust-policy",
            Self::Association => "association",
            Self::Permissions => "permissions",
            Self::SessionDuration => "session-duration",
            Self::ProfileQuota => "profile-quota",
            Self::NodeSelection => "node-selection",
            Self::Orphan => "orphan",
        }
    }
}

/// One result of one check: what was found, the evidence, and the fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(super) struct Finding {
    pub check: Check,
    pub severity: Severity,
    pub summary: String,
    /// Ids, names and AWS error codes the summary rests on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, String>,
    /// What to do, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The condition reason the controller reports for the same state
    /// (docs/troubleshooting.md).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl Finding {
    fn new(check: Check, severity: Severity, summary: impl Into<String>) -> Self {
        Self {
            check,
            severity,
            summary: summary.into(),
            evidence: BTreeMap::new(),
            fix: None,
            reason: None,
        }
    }

    pub(super) fn ok(check: Check, summary: impl Into<String>) -> Self {
        Self::new(check, Severity::Ok, summary)
    }

    pub(super) fn warning(
        check: Check,
        summary: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, Severity::Warning, summary).fix(fix)
    }

    pub(super) fn problem(
        check: Check,
        summary: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, Severity::Problem, summary).fix(fix)
    }

    fn fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }

    pub(super) fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.evidence.insert(key.to_string(), value.into());
        self
    }

    pub(super) fn reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub(super) fn aws_error(self, e: &AwsError) -> Self {
        let f = self
            .with("awsError", &e.code)
            .with("awsAction", format!("{}:{}", e.service, e.action));
        if e.message.is_empty() {
            f
        } else {
            f.with("awsMessage", shorten(&e.message))
        }
    }
}

pub(super) fn shorten(s: &str) -> String {
    const MAX: usize = 240;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    }
}

pub(super) fn could_not_read(check: Check, what: &str, e: &AwsError) -> Finding {
    Finding::warning(
        check,
        format!("could not read {what}: {} denied it", e.code),
        format!(
            "run doctor with credentials that may call {}:{} (the controller's policy grants it)",
            e.service, e.action
        ),
    )
    .aws_error(e)
}
