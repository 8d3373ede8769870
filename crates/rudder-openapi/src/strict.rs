//! Strict field validation (`fieldValidation=Strict`, kubectl's default): every field of an
//! object must be declared by its schema.

use serde_json::Value;

use crate::definitions;

fn resolve(schema: &Value) -> Option<&'static Value> {
    let reference = schema
        .get("$ref")
        .or_else(|| schema.get("allOf")?.as_array()?.first()?.get("$ref"))?
        .as_str()?;
    definitions().get(reference.strip_prefix("#/components/schemas/")?)
}

/// Where a value sits in the object, rendered only when an error needs it (building a
/// string per field of every object written was most of this module's cost).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// Upstream's form: `spec.template.spec.containers[0].foo`.
    fn render(&self) -> String {
        match self {
            Path::Root => String::new(),
            Path::Field(Path::Root, k) => (*k).to_owned(),
            Path::Field(parent, k) => format!("{}.{k}", parent.render()),
            Path::Index(parent, i) => format!("{}[{i}]", parent.render()),
        }
    }
}

fn walk(schema: &Value, value: &Value, path: Path<'_>, unknown: &mut Vec<String>) {
    let schema = resolve(schema).unwrap_or(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    let child = Path::Field(&path, k);
                    match props.get(k) {
                        Some(s) => walk(s, v, child, unknown),
                        None => unknown.push(child.render()),
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, v) in map {
                    walk(additional, v, Path::Field(&path, k), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, Path::Index(&path, i), unknown);
                }
            }
        }
        _ => {}
    }
}

/// A value of the wrong JSON type (what Go's decoder refuses before anything else).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeError {
    /// Dotted path, e.g. `spec.replicas`.
    pub path: String,
    /// The JSON type found: `string`, `number`, `bool`, `object`, `array`.
    pub found: &'static str,
    /// The Go type expected, in Go's words: `string`, `int32`, `bool`, `map[string]string`, ...
    pub expected: String,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Null => "null",
    }
}

fn go_type(schema: &Value) -> String {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => {
            schema.get("format").and_then(Value::as_str).unwrap_or("int64").to_owned()
        }
        Some("number") => "float64".into(),
        Some("boolean") => "bool".into(),
        Some("array") => "array".into(),
        Some("object") if schema.get("additionalProperties").is_some() => "map".into(),
        Some("object") => "struct".into(),
        Some(other) => other.to_owned(),
        None => "value".into(),
    }
}

/// The first value in `value` whose JSON type the schema `definition` does not allow.
pub fn first_type_error(definition: &str, value: &Value) -> Option<TypeError> {
    fn check(schema: &Value, value: &Value, path: Path<'_>) -> Option<TypeError> {
        let resolved = resolve(schema);
        let name = schema
            .get("$ref")
            .or_else(|| schema.get("allOf")?.as_array()?.first()?.get("$ref"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let schema = resolved.unwrap_or(schema);
        if value.is_null()
            || schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        {
            return None;
        }
        if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || name.ends_with(".api.resource.Quantity")
        {
            return match value {
                Value::String(_) | Value::Number(_) => None,
                other => Some(TypeError {
                    path: path.render(),
                    found: json_type(other),
                    expected: "string".into(),
                }),
            };
        }
        let ok = match (schema.get("type").and_then(Value::as_str), value) {
            (None, _) => true,
            (Some("string"), Value::String(_)) => true,
            (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
            (Some("number"), Value::Number(_)) => true,
            (Some("boolean"), Value::Bool(_)) => true,
            (Some("array"), Value::Array(_)) => true,
            (Some("object"), Value::Object(_)) => true,
            _ => false,
        };
        if !ok {
            return Some(TypeError {
                path: path.render(),
                found: json_type(value),
                expected: go_type(schema),
            });
        }
        match value {
            Value::Object(map) => {
                if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                    map.iter().find_map(|(k, v)| check(props.get(k)?, v, Path::Field(&path, k)))
                } else if let Some(additional) =
                    schema.get("additionalProperties").filter(|a| a.is_object())
                {
                    map.iter().find_map(|(k, v)| check(additional, v, Path::Field(&path, k)))
                } else {
                    None
                }
            }
            Value::Array(items) => {
                let item_schema = schema.get("items")?;
                items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| check(item_schema, v, Path::Index(&path, i)))
            }
            _ => None,
        }
    }
    check(definitions().get(definition)?, value, Path::Root)
}

/// The paths of fields `value` has that the schema `definition` does not declare, in
/// upstream's form (`spec.template.spec.containers[0].foo`).
pub fn validate_fields(definition: &str, value: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(schema) = definitions().get(definition) {
        walk(schema, value, Path::Root, &mut unknown);
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_values_of_the_wrong_type() {
        let cm = json!({"metadata": {"name": "x"}, "data": {"a": 1}});
        let e = first_type_error("io.k8s.api.core.v1.ConfigMap", &cm).unwrap();
        assert_eq!((e.path.as_str(), e.found, e.expected.as_str()), ("data.a", "number", "string"));
        let d = json!({"spec": {"replicas": "3", "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1}}}]}}}});
        let e = first_type_error("io.k8s.api.apps.v1.Deployment", &d).unwrap();
        assert_eq!((e.path.as_str(), e.expected.as_str()), ("spec.replicas", "int32"));
        let ok = json!({"spec": {"replicas": 3, "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {"spec": {"containers": [{"name": "c", "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}});
        assert_eq!(first_type_error("io.k8s.api.apps.v1.Deployment", &ok), None);
    }

    #[test]
    fn finds_unknown_fields_at_any_depth() {
        let d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "thing"}, "bogus": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always", "foo": true}]}}}
        });
        let unknown = validate_fields("io.k8s.api.apps.v1.Deployment", &d);
        assert_eq!(unknown, vec!["metadata.bogus", "spec.template.spec.containers[0].foo"]);
        let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"k": "v"}});
        assert!(validate_fields("io.k8s.api.core.v1.ConfigMap", &ok).is_empty());
    }
}
