//! The `scale` subresource (deployments, replicasets, statefulsets, replicationcontrollers):
//! an `autoscaling/v1` `Scale` view of `spec.replicas`, what `kubectl scale` reads and patches.

use serde_json::{Value, json};

use crate::object;

/// The Scale of `obj`.
pub fn scale_of(obj: &Value) -> Value {
    let meta = object::meta(obj).cloned().unwrap_or_default();
    let mut scale_meta = serde_json::Map::new();
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(v) = meta.get(field) {
            scale_meta.insert(field.into(), v.clone());
        }
    }
    let selector = match object::path(obj, "spec.selector") {
        // apps/v1 kinds have a LabelSelector; ReplicationController a plain map.
        Some(Value::Object(m)) => {
            let labels = m.get("matchLabels").and_then(Value::as_object).unwrap_or(m);
            let mut parts: Vec<String> =
                labels.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect();
            parts.sort();
            parts.join(",")
        }
        _ => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": scale_meta,
        "spec": { "replicas": object::path(obj, "spec.replicas").and_then(Value::as_i64).unwrap_or(1) },
        "status": {
            "replicas": object::path(obj, "status.replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

/// `obj` with the replicas of `scale`.
pub fn apply_scale(obj: &Value, scale: &Value) -> Result<Value, String> {
    let replicas = match object::path(scale, "spec.replicas") {
        None => 0,
        Some(v) => {
            v.as_i64().ok_or_else(|| format!("spec.replicas must be an integer, got {v}"))?
        }
    };
    let mut out = obj.clone();
    out["spec"]["replicas"] = json!(replicas);
    Ok(out)
}
