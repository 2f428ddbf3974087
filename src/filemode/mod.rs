//! `plan` and `apply`: the reconcile pipeline driven from files instead of a
//! cluster. One bulk snapshot per round serves every binding. This file holds
//! what both share (the work list, one pass, the report); [`plan`] and
//! [`apply`] drive them, [`prune`] finds what `--prune` deletes, [`stop`]
//! bounds `apply` by its timeout and by signals.

mod apply;
mod plan;
mod prune;
mod stop;

pub use apply::apply;
pub use plan::plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::crd::InstanceProfileBindingStatus;
use crate::files::FileBinding;
use crate::reconcile::rivals::Rivals;
use crate::reconcile::{ActionRecord, BindingInput, Engine, Outcome, Snapshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub struct FileModeOptions {
    pub prune: bool,
    pub timeout: Duration,
    pub output: Output,
    pub concurrency: usize,
    pub verbose: bool,
    /// The policy gate, when the files hold at least one policy.
    pub policies: Option<std::sync::Arc<crate::reconcile::policy::PolicySet>>,
}

/// What one binding came to, for the report.
#[derive(Serialize)]
struct Report<'a> {
    namespace: &'a str,
    name: &'a str,
    status: &'a InstanceProfileBindingStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<&'a [ActionRecord]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pruned: bool,
}

#[derive(Clone)]
struct Work {
    input: BindingInput,
    prune: bool,
}

/// The work of the files' bindings, taking them (nothing else keeps them).
fn inputs(bindings: Vec<FileBinding>, opts: &FileModeOptions) -> Vec<Work> {
    bindings
        .into_iter()
        .map(|fb| {
            let key = fb.key();
            let spec = fb.binding.spec;
            // Nodes live in a cluster: file mode cannot resolve them.
            let nodes = spec.instances.node_selector.as_ref().map(|_| {
                crate::reconcile::nodes::NodeSelection {
                    unwatched: true,
                    ..Default::default()
                }
            });
            Work {
                input: BindingInput {
                    key,
                    uid: None,
                    generation: None,
                    spec,
                    previous: None,
                    policies: opts.policies.clone(),
                    nodes,
                },
                prune: false,
            }
        })
        .collect()
}

async fn run_one(engine: &Engine, w: &Work, snapshot: &Snapshot, dry_run: bool) -> Outcome {
    if w.prune {
        engine.cleanup(&w.input, snapshot, dry_run).await
    } else {
        engine.reconcile(&w.input, snapshot, dry_run).await
    }
}

/// How soon `apply` looks again at a binding in transition.
const LOOK_AGAIN: Duration = Duration::from_millis(750);

/// Which bindings of the files select which instances (pruned ones left out).
fn rivals(work: &[Work]) -> std::sync::Arc<Rivals> {
    std::sync::Arc::new(Rivals::of_specs(
        work.iter()
            .filter(|w| !w.prune)
            .map(|w| (w.input.key.clone(), &w.input.spec)),
    ))
}

fn take_paths(engine: &Engine, work: &[Work]) -> BTreeSet<String> {
    engine.snapshot_paths(work.iter().map(|w| &w.input.spec))
}

/// The changes this run sent to AWS, per action, for the summary of a run
/// that stopped early (a pass cut short has not reported its own).
fn changes_sent(engine: &Engine) -> String {
    let parts: Vec<String> = engine
        .aws
        .calls
        .snapshot()
        .into_iter()
        .filter(|(action, (ok, _))| crate::aws::is_mutating(action) && *ok > 0)
        .map(|(action, (ok, _))| format!("{action}={ok}"))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" ")
    }
}

fn w_key(w: &Work) -> String {
    format!("{}{}", if w.prune { "prune:" } else { "" }, w.input.key)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Writes a report as it is made, one binding at a time, so a run over many
/// bindings holds none of their outcomes: text as it comes; JSON as the
/// elements of one pretty-printed array (what `serde_json` prints for the
/// whole array, element by element).
struct ReportWriter {
    output: Output,
    out: std::io::BufWriter<std::io::Stdout>,
    elements: usize,
    failed: bool,
}

impl ReportWriter {
    fn new(output: Output) -> Self {
        Self {
            output,
            out: std::io::BufWriter::new(std::io::stdout()),
            elements: 0,
            failed: false,
        }
    }

    fn write(&mut self, s: &str) {
        use std::io::Write as _;
        if !self.failed && self.out.write_all(s.as_bytes()).is_err() {
            // stdout closed (a pipe's reader left): the exit code still says how it went.
            self.failed = true;
        }
    }

    /// Text output's lines (ignored for JSON).
    fn text(&mut self, text: &str) {
        if self.output == Output::Text {
            self.write(text);
        }
    }

    /// One binding's element of the JSON array (ignored for text).
    fn binding(&mut self, w: &Work, o: &Outcome, with_changes: bool) {
        if self.output != Output::Json {
            return;
        }
        let report = Report {
            namespace: &w.input.key.namespace,
            name: &w.input.key.name,
            status: &o.status,
            changes: with_changes.then_some(o.actions.as_slice()),
            pruned: w.prune,
        };
        match serde_json::to_string_pretty(&report) {
            Ok(json) => {
                let mut element = String::from(if self.elements == 0 { "[\n" } else { ",\n" });
                for (n, line) in json.lines().enumerate() {
                    if n > 0 {
                        element.push('\n');
                    }
                    element.push_str("  ");
                    element.push_str(line);
                }
                self.write(&element);
                self.elements += 1;
            }
            Err(e) => eprintln!("error: cannot encode the report of {}: {e}", w.input.key),
        }
    }

    fn finish(mut self) {
        use std::io::Write as _;
        if self.output == Output::Json {
            let end = if self.elements == 0 { "[]\n" } else { "\n]\n" };
            self.write(end);
        }
        if !self.failed {
            let _ = self.out.flush();
        }
    }
}

fn finish_calls(engine: &Engine, verbose: bool) {
    let summary = engine.aws.calls.summary();
    if verbose {
        eprintln!("{summary}");
    }
    tracing::debug!(calls = ?engine.aws.calls.snapshot().into_iter().collect::<BTreeMap<_, _>>(), "{summary}");
}
