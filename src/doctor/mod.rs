//! `doctor` (docs/design.md §7): AWS's troubleshooting checklist for one binding,
//! instance or instance profile. `gather` reads everything up front, with
//! read-only calls only, into `Facts`; each check is a pure function from
//! facts to `Finding`s; `render` prints the report as text or JSON. Exit 0
//! when no finding is a problem, 1 when one is, 2 when doctor itself could
//! not run.
//!
//! `run_checks` holds the checklist's order. Each check lives beside what it
//! examines: `profile` (1), `checks` (the binding's status, 2, 3, 4 and 7),
//! `associations` (5), `permissions` (6, with the simulation it needs),
//! `states` (the controller's rotation and the account's profile quota).

mod associations;
mod checks;
mod facts;
mod finding;
mod gather;
mod permissions;
mod profile;
mod render;
mod states;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use crate::cli::DoctorArgs;
use crate::filemode::Output;
use crate::metrics::Metrics;

use facts::{CouldNotRun, Facts, Target};
use finding::Finding;
use gather::{gather, resolve};
use render::{Report, render_text};

/// The whole `doctor` subcommand: prints the report and returns the exit code.
pub async fn command(args: &DoctorArgs) -> i32 {
    match diagnose(args).await {
        Ok(report) => {
            match args.output {
                Output::Text => print!("{}", render_text(&report)),
                Output::Json => match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("error: cannot render the report as JSON: {e}");
                        return 2;
                    }
                },
            }
            report.exit_code
        }
        Err(e) => {
            eprintln!("error: doctor could not run ({}): {e}", e.kind());
            if args.output == Output::Json {
                let body = serde_json::json!({
                    "error": {"kind": e.kind(), "message": e.to_string()},
                    "exitCode": 2,
                });
                println!("{body}");
            }
            2
        }
    }
}

async fn diagnose(args: &DoctorArgs) -> Result<Report, CouldNotRun> {
    let config = &args
        .engine_config()
        .map_err(|e| CouldNotRun::Input(e.to_string()))?;
    let target = Target::from_args(args).ok_or_else(|| {
        CouldNotRun::Input(
            "name one target: --binding, -f, --instance or --instance-profile".into(),
        )
    })?;
    let subject = resolve(&target, &args.kube).await?;
    let aws = args.aws.connect(Arc::new(Metrics::new())).await;
    aws.check_credentials().await.map_err(|e| {
        CouldNotRun::Credentials(format!(
            "{e}; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or run where IRSA/Pod Identity/an instance role provides them"
        ))
    })?;
    let session_duration = args.assume_role_duration_seconds.clone();
    let facts = gather(
        &aws,
        config,
        subject,
        args.principal_arn.as_deref(),
        session_duration,
    )
    .await;
    if args.verbose {
        eprintln!("{}", aws.calls.summary());
    }
    let mut facts = facts?;
    facts.owner = states::owner_binding(&facts, &args.kube).await;
    Ok(Report::new(&facts, run_checks))
}

/// The checklist: what the controller reports first, then AWS's
/// troubleshooting order from the profile to the session length.
#[must_use]
fn run_checks(facts: &Facts) -> Vec<Finding> {
    let mut out = Vec::new();
    out.extend(checks::check_status(facts));
    out.extend(profile::check_profile(facts));
    out.extend(checks::check_profile_role(facts));
    out.extend(states::check_rotation(facts));
    out.extend(states::check_node_selection(facts));
    out.extend(states::check_orphan(facts));
    out.extend(checks::check_role(facts));
    out.extend(checks::check_trust_policy(facts));
    out.extend(associations::check_associations(facts));
    out.extend(permissions::check_permissions(facts));
    out.push(checks::check_session_duration(
        facts.session_duration.as_deref(),
    ));
    out.push(states::check_profile_quota(facts));
    out
}
