//! `plan`: one dry-run pass over every binding of the files.

use futures::StreamExt;

use crate::files::FileBinding;
use crate::reconcile::{Engine, Outcome, Snapshot};

use super::prune::prune_targets;
use super::{
    FileModeOptions, finish_calls, inputs, plural, print_report, rivals, run_one, take_paths,
};

/// `plan`: what reconciling the files would change. Exit 0 no changes, 2 changes, 1 errors.
///
/// # Errors
/// AWS errors while reading the snapshot.
pub async fn plan(
    engine: &Engine,
    bindings: &[FileBinding],
    opts: &FileModeOptions,
) -> Result<i32, crate::Error> {
    let mut work = inputs(bindings, opts);
    let paths = take_paths(engine, &work);
    let mut snapshot = Snapshot::take(&engine.aws, &paths).await?;
    if opts.prune {
        work.extend(prune_targets(engine, &work, opts.policies.as_ref()).await?);
        // Profiles to prune at a path no file names: read there too.
        if take_paths(engine, &work) != paths {
            snapshot = Snapshot::take(&engine.aws, &take_paths(engine, &work)).await?;
        }
    }
    snapshot.rivals = rivals(&work);
    let outcomes: Vec<Outcome> = futures::stream::iter(work.iter())
        .map(|w| run_one(engine, w, &snapshot, true))
        .buffered(opts.concurrency.max(1))
        .collect()
        .await;
    let mut errors = 0;
    let mut changes = 0;
    let mut text = String::new();
    for (w, o) in work.iter().zip(&outcomes) {
        let failed = o.needs_user || (!o.ready() && !o.deleted && o.actions.is_empty() && !w.prune);
        if failed {
            errors += 1;
        }
        changes += o.actions.len();
        let verb = if w.prune { "prune " } else { "" };
        if failed {
            text.push_str(&format!(
                "{verb}{}: error: {}: {}\n",
                w.input.key, o.reason, o.message
            ));
        } else if o.actions.is_empty() {
            text.push_str(&format!("{verb}{}: no changes\n", w.input.key));
        } else {
            text.push_str(&format!(
                "{verb}{}: {} change{}\n",
                w.input.key,
                o.actions.len(),
                plural(o.actions.len())
            ));
        }
        for a in &o.actions {
            text.push_str(&format!("  + {}\n", a.message));
        }
    }
    let with_changes = outcomes.iter().filter(|o| !o.actions.is_empty()).count();
    text.push_str(&format!(
        "Plan: {changes} change{} for {with_changes} of {} binding{}{}.\n",
        plural(changes),
        work.len(),
        plural(work.len()),
        if errors > 0 {
            format!(", {errors} with errors")
        } else {
            String::new()
        }
    ));
    print_report(opts.output, &text, &work, &outcomes, true);
    finish_calls(engine, opts.verbose);
    Ok(if errors > 0 {
        1
    } else if changes > 0 {
        2
    } else {
        0
    })
}
