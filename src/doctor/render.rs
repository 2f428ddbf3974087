//! The report: what was examined, the findings and the exit code, as text for
//! people or as JSON.

use serde::Serialize;

use super::facts::{Facts, Subject};
use super::finding::{Finding, Severity};

/// What the report is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(super) enum TargetView {
    Binding {
        namespace: String,
        name: String,
        source: String,
    },
    Instance {
        id: String,
    },
    Profile {
        name: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(super) struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub problem: usize,
}

/// The report, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Report {
    pub target: TargetView,
    pub cluster_id: String,
    /// The identity doctor ran as.
    pub caller: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    pub exit_code: i32,
}

impl Report {
    #[must_use]
    pub fn new(facts: &Facts, checks: fn(&Facts) -> Vec<Finding>) -> Self {
        let findings = checks(facts);
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        let summary = Summary {
            ok: count(Severity::Ok),
            warning: count(Severity::Warning),
            problem: count(Severity::Problem),
        };
        let target = match &facts.subject {
            Subject::Binding { key, source, .. } => TargetView::Binding {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                source: source.clone(),
            },
            Subject::Instance { id } => TargetView::Instance { id: id.clone() },
            Subject::Profile { name } => TargetView::Profile { name: name.clone() },
        };
        Self {
            target,
            cluster_id: facts.cluster_id.clone(),
            caller: facts.caller.arn.clone(),
            profile: facts.profile_name.clone(),
            exit_code: exit_code(&findings),
            findings,
            summary,
        }
    }
}

/// 1 when any finding is a problem, else 0 (warnings pass).
#[must_use]
pub(super) fn exit_code(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.severity == Severity::Problem))
}

/// The report for people: one block per finding, problems stand out.
#[must_use]
pub(super) fn render_text(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let what = match &report.target {
        TargetView::Binding {
            namespace,
            name,
            source,
        } => format!("binding {namespace}/{name} (from {source})"),
        TargetView::Instance { id } => format!("instance {id}"),
        TargetView::Profile { name } => format!("instance profile {name}"),
    };
    let _ = writeln!(
        out,
        "doctor: {what}, cluster id {}, as {}",
        report.cluster_id, report.caller
    );
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{:<8} {:<17} {}",
            f.severity.label(),
            f.check.as_str(),
            f.summary
        );
        if !f.evidence.is_empty() {
            let ev: Vec<String> = f.evidence.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "{:27}evidence: {}", "", ev.join(" "));
        }
        if f.severity != Severity::Ok
            && let Some(fix) = &f.fix
        {
            let _ = writeln!(out, "{:27}fix: {fix}", "");
        }
        if let Some(reason) = f.reason {
            let _ = writeln!(out, "{:27}controller reason: {reason}", "");
        }
    }
    let s = &report.summary;
    let _ = writeln!(
        out,
        "{} problem(s), {} warning(s), {} ok; exit {}",
        s.problem, s.warning, s.ok, report.exit_code
    );
    out
}
