//! An object as the watch cache holds it: its JSON in API form (`resourceVersion` set), the
//! bytes every watcher is sent. It is decoded only when something needs the whole object
//! (a read-modify-write, a list, a table); selectors read just the labels and fields they
//! name, worked out once per object version. A pod's JSON takes about a fifth of the memory
//! of its decoded `serde_json::Value`, and the cache holds every object of a resource.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use rudder_store::KeyValue;
use serde_json::Value;

use crate::object;
use crate::raw_json;
use crate::selectors::Filter;
use crate::status::ApiError;

/// Field values a field selector asked about, per object version (few distinct fields).
const FIELD_MEMO: usize = 16;

#[derive(Debug)]
pub struct CachedObject {
    json: Bytes,
    revision: i64,
    labels: OnceLock<BTreeMap<String, String>>,
    fields: Mutex<Vec<(Box<str>, Box<str>)>>,
}

impl CachedObject {
    /// The stored object `kv` in API form: its resourceVersion is its mod revision.
    pub fn from_kv(kv: &KeyValue) -> Result<Self, ApiError> {
        let rv = kv.mod_revision.to_string();
        let json = match raw_json::with_resource_version(&kv.value, &rv) {
            Some(json) => Bytes::from(json),
            // Not the shape a splice handles (no metadata object): decode, which also
            // reports text that is not JSON.
            None => Bytes::from(serde_json::to_vec(&object::decode(kv)?).expect("JSON")),
        };
        Ok(Self::new(json, kv.mod_revision))
    }

    fn new(json: Bytes, revision: i64) -> Self {
        CachedObject { json, revision, labels: OnceLock::new(), fields: Mutex::default() }
    }

    /// The object's JSON (API form).
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The store revision this version was written at (its resourceVersion).
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The whole object, decoded.
    pub fn value(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.json)
            .map_err(|e| ApiError::internal(format!("cached object is not JSON: {e}")))
    }

    /// The object's `PartialObjectMetadata` as JSON (what `form::metadata` makes of it).
    pub fn metadata_json(&self) -> Bytes {
        let meta = raw_json::member(&self.json, "metadata").unwrap_or(b"{}");
        let mut out = Vec::with_capacity(meta.len() + 80);
        out.extend_from_slice(
            b"{\"apiVersion\":\"meta.k8s.io/v1\",\"kind\":\"PartialObjectMetadata\",\"metadata\":",
        );
        out.extend_from_slice(meta);
        out.push(b'}');
        Bytes::from(out)
    }

    /// The value at a dotted path as a field selector compares it: a string as is, a
    /// missing field or null as "", anything else as its JSON text.
    pub fn field(&self, dotted: &str) -> String {
        let mut memo = self.fields.lock().expect("fields lock");
        if let Some((_, v)) = memo.iter().find(|(k, _)| **k == *dotted) {
            return v.to_string();
        }
        let value = match raw_json::path(&self.json, dotted) {
            Some(None) => String::new(),
            Some(Some(raw)) if raw.first() == Some(&b'"') => {
                serde_json::from_slice::<String>(raw).unwrap_or_default()
            }
            Some(Some(b"null")) => String::new(),
            Some(Some(raw)) => String::from_utf8_lossy(raw).into_owned(),
            None => self
                .value()
                .map(|v| crate::selectors::field_text(object::path(&v, dotted)))
                .unwrap_or_default(),
        };
        if memo.len() < FIELD_MEMO {
            memo.push((dotted.into(), value.as_str().into()));
        }
        value
    }

    /// The object's labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.labels.get_or_init(|| match raw_json::path(&self.json, "metadata.labels") {
            Some(Some(raw)) => serde_json::from_slice::<BTreeMap<String, Value>>(raw)
                .map(|l| {
                    l.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_owned()))).collect()
                })
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        })
    }

    /// Whether the object passes `filter`'s label and field selectors.
    pub fn matches(&self, filter: &Filter) -> bool {
        (filter.labels.is_empty() || filter.labels.matches(self.labels()))
            && filter.fields.matches_with(|field| self.field(field))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn kv(obj: &Value, revision: i64) -> KeyValue {
        KeyValue {
            key: "/registry/pods/d/p".into(),
            value: object::encode(obj),
            create_revision: 1,
            mod_revision: revision,
        }
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "d", "labels": {"app": "web", "tier": "1"}},
            "spec": {"nodeName": "n1", "hostNetwork": true, "priority": 3},
            "status": {"phase": "Running", "podIP": null},
        })
    }

    #[test]
    fn json_is_what_decode_and_encode_would_send() {
        let kv = kv(&pod(), 17);
        let cached = CachedObject::from_kv(&kv).unwrap();
        assert_eq!(
            cached.json().as_ref(),
            serde_json::to_vec(&object::decode(&kv).unwrap()).unwrap()
        );
        assert_eq!(cached.value().unwrap(), object::decode(&kv).unwrap());
        assert_eq!(cached.revision(), 17);
        let meta: Value = serde_json::from_slice(&cached.metadata_json()).unwrap();
        assert_eq!(meta, crate::form::metadata(&object::decode(&kv).unwrap()));
        assert_eq!(cached.metadata_json().as_ref(), serde_json::to_vec(&meta).unwrap());
    }

    #[test]
    fn selectors_see_the_same_fields_and_labels_as_on_the_decoded_object() {
        let cached = CachedObject::from_kv(&kv(&pod(), 5)).unwrap();
        let decoded = cached.value().unwrap();
        for (labels, fields) in [
            (None, Some("spec.nodeName=n1")),
            (None, Some("spec.nodeName!=")),
            (None, Some("spec.nodeName=")),
            (None, Some("status.podIP=")),
            (None, Some("spec.hostNetwork=true")),
            (None, Some("spec.priority=3,status.phase=Running")),
            (None, Some("metadata.resourceVersion=5")),
            (None, Some("spec.missing.deeper=")),
            (Some("app=web"), None),
            (Some("app in (web,db),tier"), Some("metadata.name=p")),
            (Some("app!=web"), None),
            (Some("!tier"), None),
        ] {
            let filter = Filter::parse(labels, fields).unwrap();
            assert_eq!(cached.matches(&filter), filter.matches(&decoded), "{labels:?} {fields:?}");
            // Again, from the memo.
            assert_eq!(cached.matches(&filter), filter.matches(&decoded), "{labels:?} {fields:?}");
        }
    }

    #[test]
    fn objects_the_splice_cannot_handle_are_decoded_or_refused() {
        let mut kv = kv(&json!({"kind": "X"}), 3);
        let cached = CachedObject::from_kv(&kv).unwrap();
        assert_eq!(
            cached.value().unwrap(),
            json!({"kind": "X", "metadata": {"resourceVersion": "3"}})
        );
        kv.value = bytes::Bytes::from_static(b"{not json");
        assert!(CachedObject::from_kv(&kv).is_err());
    }
}
