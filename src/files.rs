//! Reading bindings from YAML/JSON files and directories for `plan` and
//! `apply`, with the same checks the API server makes at admission (schema,
//! unknown fields, CEL rules). Every problem names file, document and field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::crd::{API_VERSION, InstanceProfileBinding, InstanceProfilePolicy};
use crate::naming::BindingKey;
use crate::reconcile::policy::PolicySet;

/// The namespace of a binding whose document names none, as with kubectl.
const DEFAULT_NAMESPACE: &str = "default";

/// A binding read from a file.
#[derive(Clone, Debug)]
pub struct FileBinding {
    /// `path#document`, for messages.
    pub source: String,
    pub binding: InstanceProfileBinding,
}

impl FileBinding {
    /// Its namespace (`default` when the document names none) and name.
    #[must_use]
    pub fn key(&self) -> BindingKey {
        let meta = &self.binding.metadata;
        BindingKey {
            namespace: meta
                .namespace
                .clone()
                .unwrap_or_else(|| DEFAULT_NAMESPACE.into()),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

/// Reads every binding under `paths` (files, directories searched for
/// `*.yaml`, `*.yml` and `*.json`, or `-` for standard input).
///
/// # Errors
/// Every problem found, one message each.
pub fn load(paths: &[PathBuf]) -> Result<Vec<FileBinding>, Vec<String>> {
    load_all(paths).map(|l| l.bindings)
}

/// Reads bindings, policies and namespaces under `paths`.
///
/// # Errors
/// Every problem found, one message each.
pub fn load_all(paths: &[PathBuf]) -> Result<Loaded, Vec<String>> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files, &mut errors);
    }
    if files.is_empty() && errors.is_empty() {
        errors.push(format!(
            "no YAML or JSON files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let mut out = Loaded::default();
    for file in files {
        let text = if file.as_os_str() == "-" {
            let mut s = String::new();
            match std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
                Ok(_) => s,
                Err(e) => {
                    errors.push(format!("-: cannot read standard input: {e}"));
                    continue;
                }
            }
        } else {
            match std::fs::read_to_string(&file) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("{}: cannot read: {e}", file.display()));
                    continue;
                }
            }
        };
        parse_all(&file.display().to_string(), &text, &mut out, &mut errors);
    }
    let mut seen = BTreeSet::new();
    for b in &out.bindings {
        let key = b.key();
        if !seen.insert(key.clone()) {
            errors.push(format!(
                "{}: binding {key} is defined more than once",
                b.source
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Adds the files `path` names to `files`: a file as it is, a directory's
/// `*.yaml`, `*.yml` and `*.json` files, recursively. Symlinks are followed,
/// but every directory is read once (by device and inode), so a symlink loop
/// or a second way into a directory neither hangs nor reads a file twice; a
/// skipped loop gets a one-line notice. A file already in `files` (the same
/// file by another path or a hard link) is not added again.
fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if path.as_os_str() == "-" {
        if !files.iter().any(|f| f.as_os_str() == "-") {
            files.push(path.to_path_buf());
        }
        return;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!("{}: cannot read: {e}", path.display()));
            return;
        }
    };
    // Files taken by earlier arguments, so `-f dir -f dir/x.yaml` reads x once.
    let mut walk = Walk {
        files: files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok().and_then(|m| file_id(&m)))
            .collect(),
        ..Walk::default()
    };
    if meta.is_dir() {
        walk_dir(path, &meta, &mut walk, files, errors);
    } else {
        walk.take(path, &meta, files);
    }
}

/// What one walk of a `-f` argument has seen, by (device, inode).
#[derive(Default)]
struct Walk {
    /// Every directory read, with the path it was first read by.
    dirs: HashMap<(u64, u64), PathBuf>,
    /// The directories from the argument down to the one being read.
    ancestors: Vec<(u64, u64)>,
    files: std::collections::HashSet<(u64, u64)>,
}

impl Walk {
    fn take(&mut self, path: &Path, meta: &std::fs::Metadata, files: &mut Vec<PathBuf>) {
        if file_id(meta).is_none_or(|id| self.files.insert(id)) {
            files.push(path.to_path_buf());
        }
    }
}

/// (device, inode): what makes two paths the same file or directory.
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn walk_dir(
    dir: &Path,
    meta: &std::fs::Metadata,
    walk: &mut Walk,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<String>,
) {
    let id = file_id(meta);
    if let Some(id) = id {
        if let Some(first) = walk.dirs.get(&id) {
            if walk.ancestors.contains(&id) {
                eprintln!(
                    "notice: {}: a symlink loop back to {}, which is being read; not following it",
                    dir.display(),
                    first.display()
                );
            } else {
                eprintln!(
                    "notice: {}: the same directory as {}, already read; not reading it again",
                    dir.display(),
                    first.display()
                );
            }
            return;
        }
        walk.dirs.insert(id, dir.to_path_buf());
        walk.ancestors.push(id);
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut children: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            children.sort();
            for child in children {
                let wanted = child
                    .extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
                match std::fs::metadata(&child) {
                    Ok(m) if m.is_dir() => walk_dir(&child, &m, walk, files, errors),
                    Ok(m) if wanted => walk.take(&child, &m, files),
                    Ok(_) => {}
                    // A dangling symlink or one we may not follow, named like a binding file.
                    Err(e) if wanted => {
                        errors.push(format!("{}: cannot read: {e}", child.display()));
                    }
                    Err(_) => {}
                }
            }
        }
        Err(e) => errors.push(format!("{}: cannot list directory: {e}", dir.display())),
    }
    if id.is_some() {
        walk.ancestors.pop();
    }
}

#[cfg(all(test, unix))]
mod collect_tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    fn binding(name: &str) -> String {
        format!(
            "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\nmetadata: {{name: {name}, namespace: team-a}}\nspec:\n  role: web-app\n  instances: {{ids: [i-0123456789abcdef0]}}\n"
        )
    }

    /// Runs `load_all` on another thread: a walk that does not end within 10 s fails the test.
    fn load_within(paths: Vec<PathBuf>) -> Result<Loaded, Vec<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load_all(&paths));
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("reading the files did not finish within 10 s")
    }

    fn names(loaded: &Loaded) -> Vec<String> {
        let mut names: Vec<String> = loaded
            .bindings
            .iter()
            .map(|b| b.binding.metadata.name.clone().unwrap_or_default())
            .collect();
        names.sort();
        names
    }

    /// `a/loop -> ..`: the loop is not followed, each file read once (before:
    /// the walk went round until the path was too long, each binding reported
    /// "defined more than once" some 40 times).
    #[test]
    fn a_symlink_loop_is_walked_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir(root.join("a")).expect("mkdir");
        std::fs::write(root.join("top.yaml"), binding("top")).expect("write");
        std::fs::write(root.join("a/web.yaml"), binding("web")).expect("write");
        symlink("..", root.join("a/loop")).expect("symlink");
        let mut files = Vec::new();
        let mut errors = Vec::new();
        collect_files(root, &mut files, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(files, [root.join("a/web.yaml"), root.join("top.yaml")]);
        let loaded = load_within(vec![root.to_path_buf()]).expect("loads");
        assert_eq!(names(&loaded), ["top", "web"]);
    }

    /// Two loops into each other and back to the top (before: the paths grew
    /// exponentially, 100 % CPU and no output), a symlinked directory that is
    /// also reachable directly, a symlink to a file, a hard link, and the
    /// same file named twice on the command line: every file once, quickly.
    #[test]
    fn mutual_loops_and_second_paths_read_each_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["a", "b", "c"] {
            std::fs::create_dir(root.join(d)).expect("mkdir");
        }
        std::fs::write(root.join("a/one.yaml"), binding("one")).expect("write");
        std::fs::write(root.join("b/two.yml"), binding("two")).expect("write");
        std::fs::write(root.join("c/three.json"), binding("three")).expect("write");
        symlink("../b", root.join("a/to-b")).expect("symlink");
        symlink("../a", root.join("b/to-a")).expect("symlink");
        symlink("..", root.join("a/up")).expect("symlink");
        symlink("..", root.join("b/up")).expect("symlink");
        symlink("../c", root.join("a/c-again")).expect("symlink");
        symlink("../a/one.yaml", root.join("b/one-link.yaml")).expect("symlink");
        std::fs::hard_link(root.join("c/three.json"), root.join("c/three-hard.yaml"))
            .expect("hard link");
        let loaded = load_within(vec![root.to_path_buf(), root.join("a/one.yaml")]).expect("loads");
        assert_eq!(names(&loaded), ["one", "three", "two"]);

        let mut files = Vec::new();
        let mut errors = Vec::new();
        collect_files(root, &mut files, &mut errors);
        collect_files(&root.join("b"), &mut files, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(files.len(), 3, "{files:?}");
    }
}

/// Everything file mode reads from the files.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub bindings: Vec<FileBinding>,
    /// `InstanceProfilePolicy` documents: with at least one, the policy gate applies.
    pub policies: Vec<InstanceProfilePolicy>,
    /// Labels of the `Namespace` documents, for policies' namespace selectors.
    pub namespaces: HashMap<String, BTreeMap<String, String>>,
}

impl Loaded {
    /// The policy gate the files' policies make; `None` without a policy
    /// (file mode then runs ungated, with the user's own credentials).
    #[must_use]
    pub fn policy_set(&self) -> Option<PolicySet> {
        (!self.policies.is_empty()).then(|| PolicySet {
            policies: self
                .policies
                .iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p.spec.clone()))
                .collect(),
            namespace_labels: self.namespaces.clone(),
        })
    }
}

enum Document {
    Binding(Box<InstanceProfileBinding>),
    Policy(Box<InstanceProfilePolicy>),
    Namespace(String, BTreeMap<String, String>),
}

/// Parses a YAML stream (JSON is YAML) into bindings; other kinds are skipped.
pub fn parse_documents(
    file: &str,
    text: &str,
    out: &mut Vec<FileBinding>,
    errors: &mut Vec<String>,
) {
    let mut loaded = Loaded::default();
    parse_all(file, text, &mut loaded, errors);
    out.extend(loaded.bindings);
}

/// Parses a YAML stream into bindings, policies and namespaces.
///
/// The parser is the hardened one kube itself uses (serde-saphyr), with a
/// budget per document: duplicate keys are an error (not "last wins"), alias
/// expansion and nesting are bounded while parsing, so a small hostile file
/// is refused in linear time instead of expanding into gigabytes.
pub fn parse_all(file: &str, text: &str, out: &mut Loaded, errors: &mut Vec<String>) {
    let mut reader = std::io::Cursor::new(text.as_bytes());
    let documents =
        serde_saphyr::read_with_options::<_, serde_json::Value>(&mut reader, yaml_options());
    for (index, doc) in documents.enumerate() {
        let n = index + 1;
        let value = match doc {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!(
                    "{file}: document {n}: not valid YAML: {}",
                    one_line(&e.to_string())
                ));
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        match parse_document(&value) {
            Ok(Document::Binding(binding)) => out.bindings.push(FileBinding {
                source: format!("{file}#{n}"),
                binding: *binding,
            }),
            Ok(Document::Policy(policy)) => out.policies.push(*policy),
            Ok(Document::Namespace(name, labels)) => {
                out.namespaces.insert(name, labels);
            }
            Err(msg) => errors.push(format!("{file}: document {n}: {msg}")),
        }
    }
}

/// Limits far above any real binding or policy (500 ids, 50 tags) and far
/// below what hurts: a document of at most 100,000 nodes, 64 levels, and
/// aliases that replay at most 100,000 events in the whole stream.
fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 100_000;
    budget.max_depth = 64;
    budget.max_total_scalar_bytes = 16 * 1024 * 1024;
    options.budget = Some(budget);
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.alias_limits.max_total_replayed_events = 100_000;
    options.with_snippet = false;
    options
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn typed<T: serde::de::DeserializeOwned>(value: &serde_json::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            inner
        } else {
            format!("field {path}: {inner}")
        }
    })
}

fn cel_errors(errors: &kube::core::cel::ValidationErrors) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field_path.is_empty() {
                e.message.clone()
            } else {
                format!("field {}: {}", e.field_path, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_document(value: &serde_json::Value) -> Result<Document, String> {
    let Some(obj) = value.as_object() else {
        return Err("expected a mapping with apiVersion and kind".into());
    };
    let kind = obj.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
    let api_version = obj
        .get("apiVersion")
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    match kind {
        "InstanceProfileBinding" | "InstanceProfilePolicy" => {}
        "Namespace" if api_version == "v1" => {
            let ns: k8s_openapi::api::core::v1::Namespace = typed(value)?;
            let name = ns.metadata.name.unwrap_or_default();
            if !is_dns_label(&name) {
                return Err(format!(
                    "field metadata.name: namespace {name:?} must be a lowercase DNS label"
                ));
            }
            return Ok(Document::Namespace(
                name,
                ns.metadata.labels.unwrap_or_default(),
            ));
        }
        "" => return Err("field kind: missing; expected kind: InstanceProfileBinding".into()),
        other => {
            return Err(format!(
                "field kind: {other:?} is not supported here; expected InstanceProfileBinding, InstanceProfilePolicy or Namespace"
            ));
        }
    }
    if api_version != API_VERSION {
        return Err(format!(
            "field apiVersion: {api_version:?}; expected {API_VERSION}"
        ));
    }
    // Like the API server: the structural schema, then the CEL rules, every
    // refusal reported (a typed value is needed for CEL; a schema that already
    // failed on a type may leave none).
    let mut errors = if kind == "InstanceProfilePolicy" {
        crate::admission::check_policy(value)
    } else {
        crate::admission::check_binding(value)
    };
    let refused = |mut errors: Vec<String>, more: Option<String>| {
        errors.extend(more);
        Err(errors.join("; "))
    };
    if kind == "InstanceProfilePolicy" {
        let policy: InstanceProfilePolicy = match typed(value) {
            Ok(p) => p,
            Err(e) if errors.is_empty() => return Err(e),
            Err(_) => return refused(errors, None),
        };
        let name = policy.metadata.name.clone().unwrap_or_default();
        if !is_dns_subdomain(&name) {
            errors.push(format!(
                "field metadata.name: {name:?} must be a lowercase DNS subdomain"
            ));
        }
        let cel = policy
            .validate_cel()
            .err()
            .map(|e| format!("policy {name}: {}", cel_errors(&e)));
        if !errors.is_empty() || cel.is_some() {
            return refused(errors, cel);
        }
        return Ok(Document::Policy(Box::new(policy)));
    }
    let mut binding: InstanceProfileBinding = match typed(value) {
        Ok(b) => b,
        Err(e) if errors.is_empty() => return Err(e),
        Err(_) => return refused(errors, None),
    };
    let name = binding.metadata.name.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        errors.push(format!(
            "field metadata.name: {name:?} must be a lowercase DNS subdomain (letters, digits, '-' and '.'; at most 253)"
        ));
    }
    let namespace = binding
        .metadata
        .namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.into())
        .clone();
    if !is_dns_label(&namespace) {
        errors.push(format!(
            "field metadata.namespace: {namespace:?} must be a lowercase DNS label (at most 63)"
        ));
    }
    let cel = binding
        .validate_cel()
        .err()
        .map(|e| format!("binding {namespace}/{name}: {}", cel_errors(&e)));
    if !errors.is_empty() || cel.is_some() {
        return refused(errors, cel);
    }
    Ok(Document::Binding(Box::new(binding)))
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<FileBinding>, Vec<String>) {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        parse_documents("f.yaml", text, &mut out, &mut errors);
        (out, errors)
    }

    const GOOD: &str = r"
apiVersion: iam.instanceprofile.dev/v1alpha1
kind: InstanceProfileBinding
metadata: {name: web, namespace: team-a}
spec:
  role: web-app
  instances: {ids: [i-0123456789abcdef0], tags: {app: web}}
";

    #[test]
    fn good_binding_parses_with_defaults() {
        let (out, errors) = parse(GOOD);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].source, "f.yaml#1");
        let spec = &out[0].binding.spec;
        assert_eq!(spec.deletion_policy, crate::crd::DeletionPolicy::Delete);
        assert!(!spec.replace_foreign_associations);
    }

    #[test]
    fn a_binding_without_a_namespace_is_in_default_once() {
        let doc = "apiVersion: iam.instanceprofile.dev/v1alpha1\nkind: InstanceProfileBinding\nmetadata: {name: web}\nspec:\n  role: web-app\n  instances: {ids: [i-0123456789abcdef0]}\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("web.yaml");
        std::fs::write(&file, doc).expect("write");
        let loaded = load(std::slice::from_ref(&file)).expect("loads");
        let key = BindingKey {
            namespace: "default".into(),
            name: "web".into(),
        };
        assert_eq!(loaded[0].key(), key);
        std::fs::write(&file, format!("{doc}---\n{doc}")).expect("write");
        let errors = load(std::slice::from_ref(&file)).expect_err("twice");
        assert_eq!(
            errors,
            [format!(
                "{}#2: binding default/web is defined more than once",
                file.display()
            )]
        );
    }

    #[test]
    fn bad_documents_name_file_document_and_field() {
        let cases = [
            (
                GOOD.replace("ids:", "idz:"),
                "field spec.instances.idz: unknown field `idz`",
            ),
            (
                GOOD.replace("i-0123456789abcdef0", "i-xyz"),
                "field spec.instances.ids",
            ),
            (
                GOOD.replace("role: web-app", "role: 'bad role!'"),
                "spec.role must be a role name",
            ),
            (
                GOOD.replace(
                    "  instances: {ids: [i-0123456789abcdef0], tags: {app: web}}",
                    "  instances: {}",
                ),
                "at least one of ids, tags or nodeSelector",
            ),
            (
                GOOD.replace("  role: web-app\n", ""),
                "missing field `role`",
            ),
            (
                GOOD.replace("name: web,", "name: Web_1,"),
                "field metadata.name",
            ),
            (
                GOOD.replace("kind: InstanceProfileBinding", "kind: Pod"),
                "field kind",
            ),
            (GOOD.replace("v1alpha1", "v1"), "field apiVersion"),
            (
                format!("{GOOD}  deletionPolicy: Keep\n"),
                "field spec.deletionPolicy",
            ),
            (
                format!("{GOOD}  instanceProfile: {{path: nope}}\n"),
                "spec.instanceProfile.path must be",
            ),
        ];
        for (text, want) in cases {
            let (out, errors) = parse(&format!("---\n{GOOD}\n---\n{text}"));
            assert_eq!(out.len(), 1, "{text}");
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert!(
                errors[0].starts_with("f.yaml: document 2: "),
                "{}",
                errors[0]
            );
            assert!(errors[0].contains(want), "want {want:?} in {}", errors[0]);
        }
    }

    #[test]
    fn too_many_tags_are_rejected() {
        let tags: Vec<String> = (0..51).map(|i| format!("k{i}: v")).collect();
        let text = GOOD.replace(
            "tags: {app: web}",
            &format!("tags: {{{}}}", tags.join(", ")),
        );
        let (_, errors) = parse(&text);
        assert!(
            errors.iter().any(|e| e.contains("at most 50 tags")),
            "{errors:?}"
        );
    }

    #[test]
    fn duplicate_keys_are_an_error_not_last_wins() {
        let text = GOOD.replace("  role: web-app\n", "  role: web-app\n  role: db-app\n");
        let (out, errors) = parse(&text);
        assert!(out.is_empty(), "{errors:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("f.yaml: document 1: not valid YAML"),
            "{errors:?}"
        );
        assert!(errors[0].to_lowercase().contains("duplicate"), "{errors:?}");
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_while_parsing() {
        // 10^9 nodes once expanded, in under 1 KB.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            let refs = vec![format!("*{prev}"); 10].join(", ");
            bomb.push_str(&format!("b{i}: &b{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let (out, errors) = parse(&bomb);
        assert!(out.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("f.yaml: document 1: not valid YAML"),
            "{errors:?}"
        );
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let (out, errors) = parse(&deep);
        assert!(out.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Linear: both refusals together take well under a second in a debug
        // build (the old parser took minutes on the nesting alone).
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn yaml_syntax_errors_are_reported() {
        let (_, errors) = parse("apiVersion: [unclosed");
        assert!(errors[0].contains("not valid YAML"), "{errors:?}");
    }
}
