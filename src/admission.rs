//! The API server's structural schema check, for documents that never meet an
//! API server (`plan`, `apply`, `doctor -f`): types, required and unknown
//! fields, lengths, counts, enums and patterns, read from the very CRD schema
//! the cluster is given. Together with the CEL rules (`validate_cel`), file
//! mode refuses what `kubectl apply` would refuse, naming the same field.

use std::sync::LazyLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde_json::Value;

use crate::crd::{InstanceProfileBinding, InstanceProfilePolicy};

/// The fields of `metav1.ObjectMeta`: anything else under `metadata` is
/// refused, as the API server's strict field validation does.
const OBJECT_META_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

fn schema_of(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> JSONSchemaProps {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.clone())
        .unwrap_or_default()
}

static BINDING: LazyLock<JSONSchemaProps> =
    LazyLock::new(|| schema_of(&InstanceProfileBinding::crd()));
static POLICY: LazyLock<JSONSchemaProps> =
    LazyLock::new(|| schema_of(&InstanceProfilePolicy::crd()));

/// Checks an `InstanceProfileBinding` document against its CRD schema.
#[must_use]
pub fn check_binding(doc: &Value) -> Vec<String> {
    check_object(&BINDING, doc)
}

/// Checks an `InstanceProfilePolicy` document against its CRD schema.
#[must_use]
pub fn check_policy(doc: &Value) -> Vec<String> {
    check_object(&POLICY, doc)
}

/// A whole object: `apiVersion`, `kind` and `metadata` are the API server's,
/// the rest is the CRD's.
fn check_object(schema: &JSONSchemaProps, doc: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let Some(map) = doc.as_object() else {
        errors.push("expected a mapping with apiVersion and kind".into());
        return errors;
    };
    match map.get("metadata") {
        None | Some(Value::Null) => errors.push("field metadata: missing field `metadata`".into()),
        Some(Value::Object(meta)) => {
            for key in meta.keys() {
                if !OBJECT_META_FIELDS.contains(&key.as_str()) {
                    errors.push(format!("field metadata.{key}: unknown field `{key}`"));
                }
            }
            for key in ["labels", "annotations"] {
                match meta.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Object(m)) => {
                        for (k, v) in m {
                            if !v.is_string() {
                                errors.push(format!(
                                    "field metadata.{key}.{k}: expected a string, got {}",
                                    kind_of(v)
                                ));
                            }
                        }
                    }
                    Some(other) => errors.push(format!(
                        "field metadata.{key}: expected a mapping of strings, got {}",
                        kind_of(other)
                    )),
                }
            }
        }
        Some(other) => errors.push(format!(
            "field metadata: expected a mapping, got {}",
            kind_of(other)
        )),
    }
    let mut rest = map.clone();
    for key in ["apiVersion", "kind", "metadata"] {
        rest.remove(key);
    }
    check(schema, &Value::Object(rest), "", &mut errors);
    errors
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn located(path: &str, message: &str) -> String {
    if path.is_empty() {
        message.to_string()
    } else {
        format!("field {path}: {message}")
    }
}

/// One value against one schema node; every problem is pushed, located.
fn check(schema: &JSONSchemaProps, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.x_kubernetes_preserve_unknown_fields == Some(true)
        || schema.x_kubernetes_int_or_string == Some(true)
    {
        return;
    }
    let want = schema.type_.as_deref().unwrap_or_default();
    let type_ok = match (want, value) {
        ("", _)
        | ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !type_ok {
        let want = match want {
            "object" => "a mapping",
            "array" => "a list",
            "string" => "a string",
            "boolean" => "a boolean",
            "integer" => "an integer",
            _ => "a number",
        };
        errors.push(located(
            path,
            &format!("expected {want}, got {}", kind_of(value)),
        ));
        return;
    }
    if let Some(allowed) = &schema.enum_
        && !allowed.iter().any(|a| a.0 == *value)
    {
        let names: Vec<String> = allowed.iter().map(|a| a.0.to_string()).collect();
        errors.push(located(
            path,
            &format!("{value} is not one of {}", names.join(", ")),
        ));
    }
    match value {
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Array(items) => check_array(schema, items, path, errors),
        Value::Object(map) => check_map(schema, map, path, errors),
        _ => {}
    }
}

fn check_string(schema: &JSONSchemaProps, s: &str, path: &str, errors: &mut Vec<String>) {
    // The API server counts characters (runes), not bytes.
    let len = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    if let Some(min) = schema.min_length
        && len < min
    {
        errors.push(located(
            path,
            &format!("must be at least {min} characters long"),
        ));
    }
    if let Some(max) = schema.max_length
        && len > max
    {
        errors.push(located(
            path,
            &format!("must be at most {max} characters long, got {len}"),
        ));
    }
    if let Some(pattern) = &schema.pattern
        && !pattern_matches(pattern, s)
    {
        errors.push(located(path, &format!("{s:?} should match '{pattern}'")));
    }
}

/// The CRD's patterns are few and fixed: compile each once.
fn pattern_matches(pattern: &str, s: &str) -> bool {
    static CACHE: LazyLock<std::sync::Mutex<std::collections::HashMap<String, regex::Regex>>> =
        LazyLock::new(Default::default);
    let Ok(mut cache) = CACHE.lock() else {
        return true;
    };
    if !cache.contains_key(pattern) {
        match regex::Regex::new(pattern) {
            Ok(re) => {
                cache.insert(pattern.to_string(), re);
            }
            // A pattern the API server compiled but we cannot: the server judges it.
            Err(_) => return true,
        }
    }
    cache.get(pattern).is_none_or(|re| re.is_match(s))
}

fn check_array(schema: &JSONSchemaProps, items: &[Value], path: &str, errors: &mut Vec<String>) {
    let n = i64::try_from(items.len()).unwrap_or(i64::MAX);
    if let Some(min) = schema.min_items
        && n < min
    {
        errors.push(located(path, &format!("must have at least {min} items")));
    }
    if let Some(max) = schema.max_items
        && n > max
    {
        errors.push(located(
            path,
            &format!("must have at most {max} items, got {n}"),
        ));
        // Checking thousands of items past the limit adds only noise.
        return;
    }
    if let Some(JSONSchemaPropsOrArray::Schema(item)) = &schema.items {
        for (i, v) in items.iter().enumerate() {
            check(item, v, &format!("{path}[{i}]"), errors);
        }
    }
}

fn check_map(
    schema: &JSONSchemaProps,
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Vec<String>,
) {
    let n = i64::try_from(map.len()).unwrap_or(i64::MAX);
    if let Some(max) = schema.max_properties
        && n > max
    {
        errors.push(located(
            path,
            &format!("must have at most {max} entries, got {n}"),
        ));
    }
    if let Some(min) = schema.min_properties
        && n < min
    {
        errors.push(located(path, &format!("must have at least {min} entries")));
    }
    let properties = schema.properties.as_ref();
    for key in schema.required.iter().flatten() {
        if map.get(key).is_none_or(Value::is_null) {
            errors.push(located(&join(path, key), &format!("missing field `{key}`")));
        }
    }
    for (key, v) in map {
        // A null is what the API server prunes before it validates.
        if v.is_null() {
            continue;
        }
        let field = join(path, key);
        match properties.and_then(|p| p.get(key)) {
            Some(s) => check(s, v, &field, errors),
            None => match &schema.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(s)) => check(s, v, &field, errors),
                Some(JSONSchemaPropsOrBool::Bool(true)) => {}
                _ if properties.is_none() && schema.type_.is_none() => {}
                _ => errors.push(located(&field, &format!("unknown field `{key}`"))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn binding(spec: Value) -> Value {
        json!({
            "apiVersion": "iam.instanceprofile.dev/v1alpha1",
            "kind": "InstanceProfileBinding",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": spec,
        })
    }

    #[test]
    fn a_good_binding_passes() {
        let doc = binding(json!({"role": "web", "instances": {"ids": ["i-0123456789abcdef0"]}}));
        assert_eq!(check_binding(&doc), Vec::<String>::new());
    }

    #[test]
    fn each_schema_rule_names_its_field() {
        let cases = [
            (
                json!({"role": "web", "instances": {"ids": ["i-0123456789abcdef0", "i-xyz"]}}),
                "field spec.instances.ids[1]: \"i-xyz\" should match",
            ),
            (
                json!({"role": "web", "instances": {"ids": ["i-01234567"]}, "extra": 1}),
                "field spec.extra: unknown field `extra`",
            ),
            (
                json!({"role": 5, "instances": {"ids": ["i-01234567"]}}),
                "field spec.role: expected a string, got an integer",
            ),
            (
                json!({"instances": {"ids": ["i-01234567"]}}),
                "field spec.role: missing field `role`",
            ),
            (
                json!({"role": "web", "instances": {"ids": ["i-01234567"]}, "deletionPolicy": "Keep"}),
                "field spec.deletionPolicy: \"Keep\" is not one of \"Delete\", \"Retain\"",
            ),
            (
                json!({"role": "x".repeat(2049), "instances": {"ids": ["i-01234567"]}}),
                "field spec.role: must be at most 2048 characters long",
            ),
            (
                json!({"role": "web", "instances": {"ids": vec!["i-01234567"; 501]}}),
                "field spec.instances.ids: must have at most 500 items, got 501",
            ),
        ];
        for (spec, want) in cases {
            let errors = check_binding(&binding(spec.clone()));
            assert!(
                errors.iter().any(|e| e.starts_with(want)),
                "{spec}: want {want:?} in {errors:?}"
            );
        }
    }

    #[test]
    fn unknown_metadata_fields_are_refused() {
        let mut doc = binding(json!({"role": "web", "instances": {"ids": ["i-01234567"]}}));
        doc["metadata"]["nmespace"] = json!("team-a");
        assert_eq!(
            check_binding(&doc),
            vec!["field metadata.nmespace: unknown field `nmespace`".to_string()]
        );
    }
}
