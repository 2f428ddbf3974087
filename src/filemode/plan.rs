//! `plan`: one dry-run pass over every binding of the files.

use futures::StreamExt;

use crate::files::FileBinding;
use crate::reconcile::{Engine, Snapshot};

use super::prune::prune_targets;
use super::{
    FileModeOptions, ReportWriter, finish_calls, inputs, plural, rivals, run_one, take_paths,
};

/// `plan`: what reconciling the files would change. Exit 0 no changes, 2 changes, 1 errors.
///
/// # Errors
/// AWS errors while reading the snapshot.
pub async fn plan(
    engine: &Engine,
    bindings: Vec<FileBinding>,
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
    // Each binding's report is written as its pass ends (in the files'
    // order): only the totals are kept.
    let snapshot = &snapshot;
    let mut passes = futures::stream::iter(work.iter())
        .map(|w| async move { (w, run_one(engine, w, snapshot, true).await) })
        .buffered(opts.concurrency.max(1));
    let mut out = ReportWriter::new(opts.output);
    let (mut errors, mut changes, mut with_changes) = (0, 0, 0);
    while let Some((w, o)) = passes.next().await {
        let failed = o.needs_user || (!o.ready() && !o.deleted && o.actions.is_empty() && !w.prune);
        if failed {
            errors += 1;
        }
        changes += o.actions.len();
        if !o.actions.is_empty() {
            with_changes += 1;
        }
        let verb = if w.prune { "prune " } else { "" };
        let mut text = if failed {
            format!(
                "{verb}{}: error: {}: {}\n",
                w.input.key, o.reason, o.message
            )
        } else if o.actions.is_empty() {
            format!("{verb}{}: no changes\n", w.input.key)
        } else {
            format!(
                "{verb}{}: {} change{}\n",
                w.input.key,
                o.actions.len(),
                plural(o.actions.len())
            )
        };
        for a in &o.actions {
            text.push_str(&format!("  + {}\n", a.message));
        }
        out.text(&text);
        out.binding(w, &o, true);
    }
    out.text(&format!(
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
    out.finish();
    finish_calls(engine, opts.verbose);
    Ok(if errors > 0 {
        1
    } else if changes > 0 {
        2
    } else {
        0
    })
}
