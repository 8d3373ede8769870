//! OpenAPI v3 for the built-in resources, as kubectl 1.33 reads it: the discovery root
//! `/openapi/v3`, one document per group version (`/openapi/v3/apis/apps/v1`) with the
//! resource paths (whose write operations accept `fieldValidation`, so kubectl leaves
//! validation to the server) and the schemas with `x-kubernetes-group-version-kind`, patch
//! strategies and merge keys. Schemas come from k8s-openapi; the extensions from our table.
//!
//! [`check`] checks an object against its schema the way the API server's decoding and strict
//! field validation do (values of the wrong JSON type, unknown fields), in one walk over the
//! schemas compiled once into a graph.

mod compiled;
mod extensions;
mod kinds;
mod strict;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use rudder_api::ResourceInfo;
use rudder_api::resources::builtin_resources;
use serde_json::{Map, Value, json};

pub use strict::{TypeError, check, first_type_error, validate_fields};

/// Every schema, keyed by upstream's definition name (`io.k8s.api.apps.v1.Deployment`).
pub fn definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut defs = kinds::generate();
        extensions::apply(&mut defs);
        defs
    })
}

/// The definition name of a kind, if rudder has its schema.
pub fn definition_for(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    kinds::definition_name(group, version, kind)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The group versions rudder serves, as (group, version).
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in builtin_resources() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn hash_of(value: &Value) -> String {
    // FNV-1a over the serialized document: stable, cheap, and only a cache key for clients.
    let bytes = serde_json::to_vec(value).expect("JSON");
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// The `/openapi/v3` discovery document.
pub fn root() -> &'static Value {
    static ROOT: OnceLock<Value> = OnceLock::new();
    ROOT.get_or_init(|| {
        let mut paths = Map::new();
        for (g, v) in group_versions() {
            let path = gv_path(g, v);
            let doc = document(g, v).expect("served group version has a document");
            paths.insert(
                path.clone(),
                json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash_of(doc)) }),
            );
        }
        json!({ "paths": paths })
    })
}

/// The document of one group version (`api/v1`, `apis/apps/v1`), or None.
pub fn document_at(path: &str) -> Option<&'static Value> {
    let (g, v) = match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let (g, v) = group_versions().into_iter().find(|(gg, vv)| *gg == g && *vv == v)?;
    document(g, v)
}

fn document(group: &'static str, version: &'static str) -> Option<&'static Value> {
    static DOCS: OnceLock<BTreeMap<(&'static str, &'static str), Value>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions().into_iter().map(|(g, v)| ((g, v), build_document(g, v))).collect()
    })
    .get(&(group, version))
}

fn param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "query", "description": description, "schema": { "type": "string", "uniqueItems": true } })
}

fn operation(r: &ResourceInfo, action: &str, def: &str, write: bool) -> Value {
    let mut params = vec![param("pretty", "If 'true', then the output is pretty printed.")];
    if write {
        params.push(param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ));
        params.push(param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields: Ignore, Warn or Strict."));
    }
    let reference = json!({ "$ref": format!("#/components/schemas/{def}") });
    let mut op = json!({
        "description": format!("{action} {}", r.kind),
        "operationId": format!("{action}{}", r.kind),
        "parameters": params,
        "responses": {
            "200": { "description": "OK", "content": { "application/json": { "schema": reference.clone() } } },
            "401": { "description": "Unauthorized" },
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
    });
    if write && action != "delete" {
        let media = if action == "patch" {
            json!({
                "application/json-patch+json": { "schema": { "type": "object" } },
                "application/merge-patch+json": { "schema": { "type": "object" } },
                "application/strategic-merge-patch+json": { "schema": { "type": "object" } },
            })
        } else {
            json!({ "application/json": { "schema": reference } })
        };
        op["requestBody"] = json!({ "content": media, "required": true });
    }
    op
}

fn build_document(group: &str, version: &str) -> Value {
    let defs = definitions();
    let mut paths = Map::new();
    let mut wanted = BTreeSet::new();
    for r in builtin_resources().iter().filter(|r| r.group == group && r.version == version) {
        let Some(def) = kinds::definition_name(r.group, r.version, r.kind) else { continue };
        wanted.insert(def.to_owned());
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let collection = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", r.plural)
        } else {
            format!("{base}/{}", r.plural)
        };
        let mut coll = Map::new();
        coll.insert("get".into(), operation(r, "list", def, false));
        if r.has_verb("create") {
            coll.insert("post".into(), operation(r, "post", def, true));
        }
        paths.insert(collection.clone(), Value::Object(coll));
        let mut item = Map::new();
        item.insert("get".into(), operation(r, "get", def, false));
        if r.has_verb("update") {
            item.insert("put".into(), operation(r, "put", def, true));
        }
        if r.has_verb("patch") {
            item.insert("patch".into(), operation(r, "patch", def, true));
        }
        if r.has_verb("delete") {
            item.insert("delete".into(), operation(r, "delete", def, true));
        }
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));
    }
    // Every schema the kinds reach through $ref.
    let mut schemas = Map::new();
    let mut queue: Vec<String> = wanted.into_iter().collect();
    while let Some(name) = queue.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let Some(schema) = defs.get(&name) else { continue };
        collect_refs(schema, &mut queue);
        schemas.insert(name, schema.clone());
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "paths": paths,
        "components": { "schemas": schemas },
    })
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref")
                && let Some(name) = r.strip_prefix("#/components/schemas/")
            {
                out.push(name.to_owned());
            }
            for child in m.values() {
                collect_refs(child, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_kind_has_a_schema_with_its_gvk() {
        for r in builtin_resources() {
            let def = definition_for(r.group, r.version, r.kind)
                .unwrap_or_else(|| panic!("no schema for {} {}", r.api_version(), r.kind));
            let schema = &definitions()[def];
            let gvks = schema["x-kubernetes-group-version-kind"].as_array().expect("gvk extension");
            assert!(
                gvks.iter().any(|g| g["kind"] == r.kind
                    && g["version"] == r.version
                    && g["group"] == r.group),
                "{def}"
            );
        }
    }

    #[test]
    fn documents_reference_only_included_schemas() {
        let doc = document_at("apis/apps/v1").unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        assert!(schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        let mut refs = Vec::new();
        collect_refs(doc, &mut refs);
        for r in refs {
            assert!(schemas.contains_key(&r), "dangling $ref {r}");
        }
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert!(
            root()["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .unwrap()
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
