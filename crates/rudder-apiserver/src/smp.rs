//! Strategic merge patch: maps merge recursively (`null` deletes a key); lists with a merge
//! key (containers by `name`, ports by `containerPort` or `port`, conditions by `type`, ...)
//! merge item by item; other lists are replaced. Directives kubectl sends: `$patch`
//! (`replace`, `delete`, `merge`), `$retainKeys`, `$setElementOrder/<field>` and
//! `$deleteFromPrimitiveList/<field>`.

use serde_json::{Map, Value};

/// The merge key of a list field, judged by its name and (for `ports`) its items.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "readinessGates" => {
            if field == "readinessGates" {
                "conditionType"
            } else {
                "name"
            }
        }
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists whose patch strategy is merge (set union) rather than replace.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

pub fn merge(original: &Value, patch: &Value, _field: &str) -> Value {
    let Some(patch_map) = patch.as_object() else { return patch.clone() };
    match patch_map.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch_map.clone();
            replaced.remove("$patch");
            return Value::Object(replaced);
        }
        Some("delete") => return Value::Null,
        _ => {}
    }
    let mut result: Map<String, Value> = original.as_object().cloned().unwrap_or_default();
    for (k, v) in patch_map {
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                result.remove(k);
            }
            Value::Object(_) => {
                let merged = merge(result.get(k).unwrap_or(&Value::Null), v, k);
                if merged.is_null() {
                    result.remove(k);
                } else {
                    result.insert(k.clone(), merged);
                }
            }
            Value::Array(items) => {
                let merged = merge_list(result.get(k), items, k);
                result.insert(k.clone(), merged);
            }
            _ => {
                result.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in patch_map {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/")
            && let (Some(Value::Array(list)), Some(remove)) = (result.get_mut(field), v.as_array())
        {
            list.retain(|item| !remove.contains(item));
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let Some(order) = v.as_array()
        {
            reorder(&mut result, field, order);
        }
    }
    if let Some(Value::Array(keep)) = patch_map.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        result.retain(|k, _| keep.contains(&k.as_str()));
    }
    Value::Object(result)
}

fn merge_list(original: Option<&Value>, patch: &[Value], field: &str) -> Value {
    let original: Vec<Value> = original.and_then(Value::as_array).cloned().unwrap_or_default();
    if patch.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
        return Value::Array(patch.iter().filter(|i| i.get("$patch").is_none()).cloned().collect());
    }
    if patch.iter().all(|i| !i.is_object()) {
        if merges_primitives(field) {
            let mut out = original;
            for item in patch {
                if !out.contains(item) {
                    out.push(item.clone());
                }
            }
            return Value::Array(out);
        }
        return Value::Array(patch.to_vec());
    }
    let Some(key) = merge_key(field, patch) else { return Value::Array(patch.to_vec()) };
    let mut out = original;
    for item in patch {
        let id = item.get(key);
        let position = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (position, delete) {
            (Some(p), true) => {
                out.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => out[p] = merge(&out[p], item, field),
            (None, false) => {
                let mut fresh = item.clone();
                if let Some(o) = fresh.as_object_mut() {
                    o.retain(|k, _| !k.starts_with('$'));
                }
                out.push(merge(&Value::Null, &fresh, field));
            }
        }
    }
    Value::Array(out)
}

/// Orders the list `field` as `order` lists it (by merge key or by value); items not
/// mentioned keep their relative order at the end.
fn reorder(obj: &mut Map<String, Value>, field: &str, order: &[Value]) {
    let Some(Value::Array(list)) = obj.get_mut(field) else { return };
    let key = merge_key(field, order);
    let id_of = |v: &Value| -> Value {
        match key {
            Some(k) if v.is_object() => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let mut rest = std::mem::take(list);
    let mut sorted = Vec::with_capacity(rest.len());
    for o in order {
        let want = id_of(o);
        if let Some(p) = rest.iter().position(|item| id_of(item) == want) {
            sorted.push(rest.remove(p));
        }
    }
    sorted.extend(rest);
    *list = sorted;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name() {
        let orig = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}]},
            {"name": "b", "image": "b:1"}
        ]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "image": "a:2"}]}});
        let out = merge(&orig, &patch, "");
        assert_eq!(out["spec"]["containers"][0]["image"], "a:2");
        assert_eq!(out["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
        assert_eq!(out["spec"]["containers"][1]["image"], "b:1");
    }

    #[test]
    fn directives() {
        let orig = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "args": ["1", "2"]}});
        let patch = json!({
            "metadata": {"labels": {"a": null}, "finalizers": ["y"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "$patch": "delete"}],
                "args": ["3"]
            }
        });
        let out = merge(&orig, &patch, "");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}]));
        assert_eq!(out["spec"]["args"], json!(["3"]));
    }

    #[test]
    fn retain_keys_and_replace() {
        let orig = json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}});
        let patch = json!({"strategy": {"$retainKeys": ["type"], "type": "Recreate"}});
        assert_eq!(merge(&orig, &patch, ""), json!({"strategy": {"type": "Recreate"}}));
        let patch = json!({"strategy": {"$patch": "replace", "type": "Recreate"}});
        assert_eq!(merge(&orig, &patch, ""), json!({"strategy": {"type": "Recreate"}}));
    }
}
