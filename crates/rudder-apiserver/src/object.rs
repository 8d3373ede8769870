//! Helpers for objects held as JSON values: metadata access, storage keys and encoding.
//! Objects are stored as JSON without `metadata.resourceVersion`; the store's mod revision
//! is put back on every read.

use std::collections::BTreeMap;

use bytes::Bytes;
use rudder_api::ResourceInfo;
use rudder_store::KeyValue;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

pub fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|n| !n.is_empty())
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    meta(obj)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// `/registry/<group>/<resource>[/<namespace>]/<name>`.
pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/{name}", info.storage_group(), info.plural),
        None => format!("/registry/{}/{}/{name}", info.storage_group(), info.plural),
    }
}

/// The key prefix of every object of `info` (in `namespace`, if given).
pub fn prefix(info: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace.filter(|_| info.namespaced) {
        Some(ns) => format!("/registry/{}/{}/{ns}/", info.storage_group(), info.plural),
        None => format!("/registry/{}/{}/", info.storage_group(), info.plural),
    }
}

/// Decodes a stored object and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object at {} is not JSON: {e}", kv.key)))?;
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
    Ok(obj)
}

/// Encodes an object for storage (without its resourceVersion), without copying it.
pub fn encode(obj: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&WithoutResourceVersion(obj)).expect("JSON values serialize"))
}

/// Serializes an object as is, except `metadata.resourceVersion`.
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else { return self.0.serialize(s) };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    map.serialize_entry(k, &Filtered(meta, "resourceVersion"))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A JSON object without one of its fields.
struct Filtered<'a>(&'a Map<String, Value>, &'static str);

impl serde::Serialize for Filtered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().filter(|(k, _)| k.as_str() != self.1))
    }
}

/// The object as it reads back from the store after a write at `revision`: `obj` with its
/// resourceVersion stamped, so a write needs no re-parse of what it just stored.
pub fn stamped(mut obj: Value, revision: i64) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), json!(revision.to_string()));
    obj
}

/// A random RFC 4122 version 4 UUID.
pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]]),
    )
}

/// The 5-character suffix of generated names (upstream's alphabet: no vowels, no lookalikes).
pub fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..5).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// The value at a dotted path such as `spec.nodeName` (a number indexes an array).
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, part| match (v, part.parse::<usize>()) {
        (Value::Array(a), Ok(i)) => a.get(i),
        _ => v.get(part),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_version_4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(u, new_uid());
    }

    #[test]
    fn encoding_drops_only_the_resource_version_and_stamping_restores_it() {
        let obj = json!({
            "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "7", "labels": {"resourceVersion": "x"}},
            "data": {"resourceVersion": "y"},
        });
        let stored: Value = serde_json::from_slice(&encode(&obj)).unwrap();
        assert_eq!(
            stored,
            json!({
                "kind": "ConfigMap",
                "metadata": {"name": "a", "labels": {"resourceVersion": "x"}},
                "data": {"resourceVersion": "y"},
            })
        );
        let kv =
            KeyValue { key: "k".into(), value: encode(&obj), create_revision: 3, mod_revision: 9 };
        assert_eq!(decode(&kv).unwrap(), stamped(stored, 9));
        assert_eq!(encode(&json!("scalar")).as_ref(), b"\"scalar\"");
    }

    #[test]
    fn keys() {
        let cm = rudder_api::resources::find("", "v1", "configmaps").unwrap();
        assert_eq!(key(cm, Some("default"), "x"), "/registry/core/configmaps/default/x");
        let ns = rudder_api::resources::find("", "v1", "namespaces").unwrap();
        assert_eq!(key(ns, Some("ignored"), "x"), "/registry/core/namespaces/x");
        assert_eq!(prefix(cm, None), "/registry/core/configmaps/");
    }
}
