//! Golden output of `plan`, `apply` and `doctor`, text and JSON, against moto.
//!
//! These pin what a user reads byte for byte (after ids that moto makes up
//! anew each run are replaced by stable placeholders), so moving code around
//! (#16) is proven not to change it. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo nextest run -E 'test(/^golden::/)'` and review the
//! diff of `tests/golden/`.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::common::{self, Aws, binding, cli, ids, path_str, write_bindings};

const NS: &str = "team-a";

/// Replaces the tokens moto invents per run (instance, association, profile
/// and role ids, request ids, timestamps) with `<kind-N>`, numbered by first
/// appearance, so the same world prints the same text every run.
struct Normalizer {
    seen: HashMap<String, String>,
    counts: HashMap<&'static str, usize>,
}

impl Normalizer {
    fn new() -> Self {
        Self {
            seen: HashMap::new(),
            counts: HashMap::new(),
        }
    }

    fn apply(&mut self, text: &str) -> String {
        let patterns: [(&'static str, &str); 8] = [
            ("tmp", r"/tmp/\.tmp[0-9A-Za-z]+"),
            ("instance", r"i-[0-9a-f]{8,17}"),
            ("association", r"iip-assoc-[0-9a-f]+"),
            ("profile-id", r"AIPA[0-9A-Z]{10,}"),
            ("role-id", r"AROA[0-9A-Z]{10,}"),
            ("moto-id", r"\b[0-9a-z]{20,21}\b"),
            (
                "time",
                r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            ),
            ("elapsed", r"\b\d+(\.\d+)?(ms|s)\b"),
        ];
        let mut out = text.to_string();
        for (kind, pattern) in patterns {
            let re = regex::Regex::new(pattern).expect("pattern");
            let mut replaced = String::with_capacity(out.len());
            let mut last = 0;
            for m in re.find_iter(&out) {
                replaced.push_str(&out[last..m.start()]);
                let token = m.as_str().to_string();
                if kind == "time" {
                    // Times differ run to run and order concurrent log lines
                    // differently: one placeholder for all.
                    replaced.push_str("<time>");
                    last = m.end();
                    continue;
                }
                let next = self.counts.get(kind).copied().unwrap_or(0);
                let name = self
                    .seen
                    .entry(token)
                    .or_insert_with(|| format!("<{kind}-{next}>"))
                    .clone();
                if name == format!("<{kind}-{next}>") {
                    self.counts.insert(kind, next + 1);
                }
                replaced.push_str(&name);
                last = m.end();
            }
            replaced.push_str(&out[last..]);
            out = replaced;
        }
        out
    }
}

fn golden_dir() -> PathBuf {
    common::repo().join("tests/golden")
}

/// Compares `actual` with `tests/golden/<name>`, or writes it under
/// `UPDATE_GOLDEN=1`. Collects mismatches so one run shows all of them.
fn check(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("create tests/golden");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        mismatches.push(format!(
            "{name} differs:\n--- expected\n{expected}\n--- actual\n{actual}"
        ));
    }
}

fn both(r: &common::Run) -> String {
    format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        r.code, r.stdout, r.stderr
    )
}

/// One world with something in every state a user meets: a binding to apply,
/// one whose role is missing, one in the wrong case, an instance held by a
/// foreign profile, a stopped instance.
#[tokio::test]
async fn plan_apply_and_doctor_print_what_they_printed_before() {
    require_moto!();
    let aws = Aws::start().await;
    aws.create_role("web-app", common::TRUST_EC2).await;
    aws.create_role("Batch", common::TRUST_EC2).await;
    let web = aws.run_instances(2, &[]).await;
    let foreign = aws.run_instances(1, &[]).await;
    let stopped = aws.run_instances(1, &[]).await;
    aws.stop_instance(&stopped[0]).await;
    aws.create_profile("someone-elses", "/").await;
    aws.associate(&foreign[0], "someone-elses").await;

    // One instance a binding: lists of several instances follow the ids'
    // order, which moto draws at random.
    let bindings = [
        ("web", binding(NS, "web", "web-app", &ids(&web[..1]), "")),
        (
            "stopped",
            binding(
                NS,
                "stopped",
                "web-app",
                &ids(&stopped),
                "  deletionPolicy: Retain\n",
            ),
        ),
        (
            "missing-role",
            binding(
                NS,
                "missing-role",
                "no-such-role",
                "{tags: {app: none}}",
                "",
            ),
        ),
        (
            "wrong-case",
            binding(NS, "wrong-case", "batch", &ids(&web[1..]), ""),
        ),
        (
            "foreign",
            binding(
                NS,
                "foreign",
                "web-app",
                &ids(&foreign),
                "  instanceProfile: {tags: {cost-center: \"42\"}}\n",
            ),
        ),
    ];
    let all: String = bindings.iter().map(|(_, doc)| doc.as_str()).collect();
    let (_dir, file) = write_bindings(&all);
    let f = path_str(&file);
    let ep = aws.endpoint();

    let mut n = Normalizer::new();
    let mut mismatches = Vec::new();
    // Numbers the ids in a fixed order first, so the placeholders do not
    // depend on which output happens to mention an instance first.
    n.apply(&format!("{web:?} {foreign:?} {stopped:?}"));

    let plan = cli(&ep, &["plan", "-f", f]);
    check("plan.txt", &n.apply(&both(&plan)), &mut mismatches);
    let plan_json = cli(&ep, &["plan", "-f", f, "-o", "json"]);
    check("plan.json", &n.apply(&both(&plan_json)), &mut mismatches);

    let apply = cli(&ep, &["apply", "-f", f, "--timeout", "60s"]);
    // Bindings are applied concurrently: their log lines interleave in any
    // order, so compare them sorted (stdout is grouped per binding).
    let normalized = n.apply(&both(&apply));
    let (head, log) = normalized
        .split_once("--- stderr\n")
        .expect("both() writes a stderr header");
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort_unstable();
    let sorted = format!("{head}--- stderr\n{}\n", lines.join("\n"));
    check("apply.txt", &sorted, &mut mismatches);
    let replan = cli(&ep, &["plan", "-f", f, "-o", "json"]);
    check("replan.json", &n.apply(&both(&replan)), &mut mismatches);

    let mut files = Vec::new();
    for (name, doc) in &bindings {
        let (dir, one) = write_bindings(doc);
        files.push((format!("doctor-{name}"), one.clone(), dir));
    }
    let mut runs: Vec<(String, Vec<String>)> = files
        .iter()
        .map(|(name, one, _)| {
            (
                name.clone(),
                vec!["doctor".into(), "-f".into(), path_str(one).into()],
            )
        })
        .collect();
    runs.push((
        "doctor-instance".into(),
        vec!["doctor".into(), "--instance".into(), foreign[0].clone()],
    ));
    runs.push((
        "doctor-profile".into(),
        vec![
            "doctor".into(),
            "--instance-profile".into(),
            "someone-elses".into(),
        ],
    ));
    for (name, args) in runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let text = cli(&ep, &args);
        check(
            &format!("{name}.txt"),
            &n.apply(&both(&text)),
            &mut mismatches,
        );
        let mut json_args = args.clone();
        json_args.extend(["-o", "json"]);
        let json = cli(&ep, &json_args);
        check(
            &format!("{name}.json"),
            &n.apply(&both(&json)),
            &mut mismatches,
        );
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
