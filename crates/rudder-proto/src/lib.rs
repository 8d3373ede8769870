//! Kubernetes protobuf bodies to JSON. kubectl 1.33's typed clients (`kubectl create
//! namespace`, `create configmap`, `create deployment`, ...) send
//! `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a `runtime.Unknown`
//! envelope with the object's apiVersion and kind and the object's own message. This crate
//! turns such a body into the JSON object the API server works with.
//!
//! The field table (tag -> field, per message) is generated at build time from the k8s-pb
//! crate; JSON field names come from the OpenAPI schemas (so `pod_ip` becomes `podIP`).

mod wire;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{Map, Value, json};

use wire::{Reader, WireValue};

pub(crate) struct FieldInfo {
    pub tag: u32,
    pub name: &'static str,
    pub kind: &'static str,
    pub repeated: bool,
    pub map_value: &'static str,
    pub message: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/fields.rs"));

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("not a Kubernetes protobuf body (missing the k8s magic prefix)")]
    NoMagic,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error("no protobuf schema for {kind} in {api_version}")]
    UnknownType { api_version: String, kind: String },
}

fn messages() -> &'static HashMap<&'static str, &'static [FieldInfo]> {
    static INDEX: OnceLock<HashMap<&'static str, &'static [FieldInfo]>> = OnceLock::new();
    INDEX.get_or_init(|| MESSAGES.iter().map(|(name, fields)| (*name, *fields)).collect())
}

/// The protobuf message of a kind: `apps/v1` `Deployment` -> `k8s.io.api.apps.v1.Deployment`.
fn message_for(api_version: &str, kind: &str) -> Option<&'static str> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let candidates = if group.is_empty() {
        vec![
            format!("k8s.io.api.core.{version}.{kind}"),
            format!("k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}"),
        ]
    } else {
        let short = group.split('.').next().unwrap_or(group);
        vec![format!("k8s.io.api.{short}.{version}.{kind}")]
    };
    candidates.iter().find_map(|c| messages().get_key_value(c.as_str()).map(|(k, _)| *k))
}

/// The JSON name of a field: the schema's property that matches the Rust field name when
/// underscores and case are ignored; lowerCamelCase otherwise.
fn json_name(message: &'static str, field: &'static str) -> String {
    static CACHE: OnceLock<std::sync::Mutex<HashMap<(&'static str, &'static str), String>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(name) = cache.lock().expect("cache lock").get(&(message, field)) {
        return name.clone();
    }
    let wanted: String = field.chars().filter(|c| *c != '_').collect::<String>().to_lowercase();
    let definition = message.strip_prefix("k8s.io.").map(|rest| format!("io.k8s.{rest}"));
    let from_schema = definition
        .and_then(|d| rudder_openapi::definitions().get(&d))
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .and_then(|props| props.keys().find(|k| k.to_lowercase() == wanted).cloned());
    let name = from_schema.unwrap_or_else(|| {
        let mut out = String::new();
        let mut upper = false;
        for c in field.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                out.extend(c.to_uppercase());
                upper = false;
            } else {
                out.push(c);
            }
        }
        out
    });
    cache.lock().expect("cache lock").insert((message, field), name.clone());
    name
}

/// Decodes a `k8s\0`-prefixed body into the JSON object (with apiVersion and kind).
pub fn decode_object(body: &[u8]) -> Result<Value, ProtoError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut reader = Reader::new(envelope);
    while let Some((tag, value)) = reader.next_field()? {
        match (tag, value) {
            (1, WireValue::Bytes(type_meta)) => {
                let mut tm = Reader::new(type_meta);
                while let Some((t, v)) = tm.next_field()? {
                    match (t, v) {
                        (1, WireValue::Bytes(b)) => api_version = utf8(b)?,
                        (2, WireValue::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, WireValue::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let message = message_for(&api_version, &kind).ok_or_else(|| ProtoError::UnknownType {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut obj = decode_message(message, raw, 0)?;
    if let Value::Object(m) = &mut obj {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    }
    Ok(obj)
}

fn utf8(b: &[u8]) -> Result<String, ProtoError> {
    String::from_utf8(b.to_vec()).map_err(|_| ProtoError::Malformed("string is not UTF-8"))
}

/// Nesting deeper than this is refused (a malicious body cannot exhaust the stack).
const MAX_DEPTH: usize = 64;

fn decode_message(message: &'static str, bytes: &[u8], depth: usize) -> Result<Value, ProtoError> {
    if depth > MAX_DEPTH {
        return Err(ProtoError::Malformed("nesting too deep"));
    }
    if let Some(special) = decode_special(message, bytes)? {
        return Ok(special);
    }
    let fields = messages().get(message).copied().unwrap_or(&[]);
    let mut out = Map::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, value)) = reader.next_field()? {
        let Some(field) = fields.iter().find(|f| f.tag == tag) else { continue };
        let name = json_name(message, field.name);
        if field.kind == "map" {
            let (k, v) = decode_map_entry(field, value, depth)?;
            let entry = out.entry(name).or_insert_with(|| json!({}));
            if let Value::Object(m) = entry {
                m.insert(k, v);
            }
            continue;
        }
        let mut values = decode_scalar(field, value, depth)?;
        if !field.repeated {
            values
                .retain(|v| !v.is_null() && (!is_zero(v) || ZERO_MATTERS.contains(&name.as_str())));
        }
        if field.repeated {
            let entry = out.entry(name).or_insert_with(|| json!([]));
            if let Value::Array(a) = entry {
                a.extend(values);
            }
        } else if let Some(v) = values.into_iter().last() {
            out.insert(name, v);
        }
    }
    Ok(Value::Object(out))
}

fn decode_map_entry(
    field: &FieldInfo,
    value: WireValue<'_>,
    depth: usize,
) -> Result<(String, Value), ProtoError> {
    let WireValue::Bytes(entry) = value else {
        return Err(ProtoError::Malformed("map entry is not a message"));
    };
    let (mut key, mut val) = (String::new(), Value::Null);
    let mut reader = Reader::new(entry);
    while let Some((tag, v)) = reader.next_field()? {
        match (tag, v) {
            (1, WireValue::Bytes(b)) => key = utf8(b)?,
            (2, WireValue::Bytes(b)) => {
                val = match field.map_value {
                    "string" => json!(utf8(b)?),
                    "bytes" => json!(base64::engine::general_purpose::STANDARD.encode(b)),
                    _ => decode_message(field.message, b, depth + 1)?,
                }
            }
            _ => {}
        }
    }
    if val.is_null() {
        val = match field.map_value {
            "string" | "bytes" => json!(""),
            _ => json!({}),
        };
    }
    Ok((key, val))
}

/// Go clients encode every non-pointer field, zero or not, where JSON would omit it
/// (`omitempty`). Zero scalars are dropped, except for fields that are pointers upstream
/// and where an explicit zero means something different from "not set".
const ZERO_MATTERS: &[&str] = &[
    "replicas",
    "parallelism",
    "completions",
    "backoffLimit",
    "backoffLimitPerIndex",
    "maxFailedIndexes",
    "revisionHistoryLimit",
    "ttlSecondsAfterFinished",
    "successfulJobsHistoryLimit",
    "failedJobsHistoryLimit",
    "activeDeadlineSeconds",
    "startingDeadlineSeconds",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "gracePeriodSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "automountServiceAccountToken",
    "enableServiceLinks",
    "allowPrivilegeEscalation",
    "hostUsers",
    "priority",
    "partition",
    "defaultMode",
    "mode",
    "expirationSeconds",
    "tolerationSeconds",
    "minAvailable",
    "maxUnavailable",
    "maxSurge",
];

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// One wire value of a field (several for a packed repeated number field).
fn decode_scalar(
    field: &FieldInfo,
    value: WireValue<'_>,
    depth: usize,
) -> Result<Vec<Value>, ProtoError> {
    Ok(match (field.kind, value) {
        ("string", WireValue::Bytes(b)) => vec![json!(utf8(b)?)],
        ("bytes", WireValue::Bytes(b)) => {
            vec![json!(base64::engine::general_purpose::STANDARD.encode(b))]
        }
        ("message", WireValue::Bytes(b)) => vec![decode_message(field.message, b, depth + 1)?],
        ("bool", WireValue::Varint(v)) => vec![json!(v != 0)],
        ("int32", WireValue::Varint(v)) => vec![json!(v as i64 as i32)],
        ("int64", WireValue::Varint(v)) => vec![json!(v as i64)],
        ("double", WireValue::Fixed64(v)) => vec![json!(f64::from_bits(v))],
        ("int32" | "int64", WireValue::Bytes(packed)) => {
            let mut r = Reader::new(packed);
            let mut out = Vec::new();
            while !r.is_empty() {
                let v = r.varint()?;
                out.push(if field.kind == "int32" {
                    json!(v as i64 as i32)
                } else {
                    json!(v as i64)
                });
            }
            out
        }
        _ => return Err(ProtoError::Malformed("field has an unexpected wire type")),
    })
}

const SPECIAL: &[&str] = &[
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1",
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
];

fn fields_of(bytes: &[u8]) -> Result<HashMap<u32, WireValue<'_>>, ProtoError> {
    let mut fields = HashMap::new();
    let mut reader = Reader::new(bytes);
    while let Some((tag, v)) = reader.next_field()? {
        fields.insert(tag, v);
    }
    Ok(fields)
}

fn string_of(v: Option<&WireValue<'_>>) -> Result<String, ProtoError> {
    match v {
        Some(WireValue::Bytes(b)) => utf8(b),
        _ => Ok(String::new()),
    }
}

fn int_of(v: Option<&WireValue<'_>>) -> i64 {
    match v {
        Some(WireValue::Varint(n)) => *n as i64,
        _ => 0,
    }
}

/// Types whose JSON form is not an object of their fields.
fn decode_special(message: &str, bytes: &[u8]) -> Result<Option<Value>, ProtoError> {
    if !SPECIAL.contains(&message) {
        return Ok(None);
    }
    let fields = fields_of(bytes)?;
    Ok(Some(match message.rsplit('.').next().unwrap_or_default() {
        "IntOrString" => {
            if int_of(fields.get(&1)) == 1 {
                json!(string_of(fields.get(&3))?)
            } else {
                json!(int_of(fields.get(&2)) as i32)
            }
        }
        "Quantity" => json!(string_of(fields.get(&1))?),
        "Time" | "MicroTime" => {
            // Go's zero time (year 1) or nothing at all: JSON null, dropped by the caller.
            if int_of(fields.get(&1)) <= 0 {
                return Ok(Some(Value::Null));
            }
            let secs = int_of(fields.get(&1)) as u64;
            let nanos = int_of(fields.get(&2)).clamp(0, 999_999_999) as u32;
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            if message.ends_with("MicroTime") {
                json!(humantime_micros(t))
            } else {
                json!(humantime_seconds(t))
            }
        }
        "Duration" => json!(format!("{}s", int_of(fields.get(&1)) as f64 / 1e9)),
        _ => match fields.get(&1) {
            // FieldsV1 and RawExtension: embedded JSON (or an embedded protobuf object).
            Some(WireValue::Bytes(raw)) if raw.starts_with(MAGIC) => decode_object(raw)?,
            Some(WireValue::Bytes(raw)) if !raw.is_empty() => serde_json::from_slice(raw)
                .map_err(|_| ProtoError::Malformed("embedded object is not JSON"))?,
            _ => json!({}),
        },
    }))
}

fn civil(t: std::time::SystemTime) -> (i64, u32, u32, u64, u32) {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86400) as i64;
    // Howard Hinnant's civil-from-days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = if month <= 2 { y + 1 } else { y };
    (year, month, day, secs % 86400, d.subsec_micros())
}

fn humantime_seconds(t: std::time::SystemTime) -> String {
    let (y, m, d, s, _) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

fn humantime_micros(t: std::time::SystemTime) -> String {
    let (y, m, d, s, us) = civil(t);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{us:06}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests;
