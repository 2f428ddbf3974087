//! Reading bindings from YAML/JSON files and directories for `plan` and
//! `apply`, with the same checks the API server makes at admission (schema,
//! unknown fields, CEL rules). Every problem names file, document and field.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::crd::{API_VERSION, InstanceProfileBinding, InstanceProfilePolicy};

/// A binding read from a file.
#[derive(Clone, Debug)]
pub struct FileBinding {
    /// `path#document`, for messages.
    pub source: String,
    pub binding: InstanceProfileBinding,
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
        let key = (
            b.binding.metadata.namespace.clone().unwrap_or_default(),
            b.binding.metadata.name.clone().unwrap_or_default(),
        );
        if !seen.insert(key.clone()) {
            errors.push(format!(
                "{}: binding {}/{} is defined more than once",
                b.source, key.0, key.1
            ));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn collect_files(path: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    if path.as_os_str() == "-" {
        files.push(path.to_path_buf());
        return;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(format!("{}: cannot read: {e}", path.display()));
            return;
        }
    };
    if meta.is_file() {
        files.push(path.to_path_buf());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: cannot list directory: {e}", path.display()));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_files(&child, files, errors);
        } else if child
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            files.push(child);
        }
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

enum Document {
    Binding(InstanceProfileBinding),
    Policy(InstanceProfilePolicy),
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
pub fn parse_all(file: &str, text: &str, out: &mut Loaded, errors: &mut Vec<String>) {
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let n = index + 1;
        let value = match serde_json::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{file}: document {n}: not valid YAML: {e}"));
                // The stream cannot continue past a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match parse_document(&value) {
            Ok(Document::Binding(binding)) => out.bindings.push(FileBinding {
                source: format!("{file}#{n}"),
                binding,
            }),
            Ok(Document::Policy(policy)) => out.policies.push(policy),
            Ok(Document::Namespace(name, labels)) => {
                out.namespaces.insert(name, labels);
            }
            Err(msg) => errors.push(format!("{file}: document {n}: {msg}")),
        }
    }
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
    if kind == "InstanceProfilePolicy" {
        let policy: InstanceProfilePolicy = typed(value)?;
        let name = policy.metadata.name.clone().unwrap_or_default();
        if !is_dns_subdomain(&name) {
            return Err(format!(
                "field metadata.name: {name:?} must be a lowercase DNS subdomain"
            ));
        }
        if let Err(errors) = policy.validate_cel() {
            return Err(format!("policy {name}: {}", cel_errors(&errors)));
        }
        return Ok(Document::Policy(policy));
    }
    let mut binding: InstanceProfileBinding = typed(value)?;
    let name = binding.metadata.name.clone().unwrap_or_default();
    if !is_dns_subdomain(&name) {
        return Err(format!(
            "field metadata.name: {name:?} must be a lowercase DNS subdomain (letters, digits, '-' and '.'; at most 253)"
        ));
    }
    let namespace = binding
        .metadata
        .namespace
        .get_or_insert_with(|| "default".into())
        .clone();
    if !is_dns_label(&namespace) {
        return Err(format!(
            "field metadata.namespace: {namespace:?} must be a lowercase DNS label (at most 63)"
        ));
    }
    if let Err(errors) = binding.validate_cel() {
        return Err(format!(
            "binding {namespace}/{name}: {}",
            cel_errors(&errors)
        ));
    }
    Ok(Document::Binding(binding))
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
                "at least one of ids or tags",
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
    fn yaml_syntax_errors_are_reported() {
        let (_, errors) = parse("apiVersion: [unclosed");
        assert!(errors[0].contains("not valid YAML"), "{errors:?}");
    }
}
