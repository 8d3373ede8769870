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

fn walk(schema: &Value, value: &Value, path: &str, unknown: &mut Vec<String>) {
    let schema = resolve(schema).unwrap_or(schema);
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    match props.get(k) {
                        Some(s) => walk(s, v, &child, unknown),
                        None => unknown.push(child),
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for (k, v) in map {
                    let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    walk(additional, v, &child, unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    walk(item_schema, v, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// The paths of fields `value` has that the schema `definition` does not declare, in
/// upstream's form (`spec.template.spec.containers[0].foo`).
pub fn validate_fields(definition: &str, value: &Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(schema) = definitions().get(definition) {
        walk(schema, value, "", &mut unknown);
    }
    unknown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
