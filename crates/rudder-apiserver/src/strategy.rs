//! Per-resource behaviour on top of the generic registry: what is reset on create, what an
//! update may not change, the spec/status split, and deletion that waits (namespaces,
//! finalizers, propagation policies). Kind-specific defaulting and validation grow here.

use rudder_api::{FieldError, ResourceInfo};
use serde_json::{Value, json};

use crate::object::{self, meta_mut};

const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Kinds whose status a client may set at creation (their status is their identity).
fn keeps_status_on_create(kind: &str) -> bool {
    matches!(kind, "Node" | "PersistentVolume" | "PersistentVolumeClaim")
}

pub fn prepare_for_create(info: &ResourceInfo, obj: &mut Value) {
    crate::defaults::apply(info.kind, obj);
    crate::storage::apply_defaults(info.kind, obj);
    if info.kind == "Job" {
        job_selector(obj);
    }
    if info.kind == "DaemonSet" {
        set_annotation(obj, DAEMONSET_TEMPLATE_GENERATION, "1");
    }
    if obj.get("spec").is_some() || info.kind == "EndpointSlice" {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
    match info.kind {
        "Namespace" => {
            let name = object::name(obj).unwrap_or_default().to_owned();
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
            }
            if obj.get("spec").and_then(|s| s.get("finalizers")).is_none() {
                obj["spec"] = json!({ "finalizers": ["kubernetes"] });
            }
            obj["status"] = json!({ "phase": "Active" });
        }
        "Pod" => obj["status"] = json!({ "phase": "Pending" }),
        kind if info.has_subresource("status") && !keeps_status_on_create(kind) => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
}

/// Makes `new` a valid successor of `current`: identity and bookkeeping fields come from
/// `current`; a write to the main resource keeps the status, a write to `/status` keeps
/// everything but the status.
pub fn prepare_for_update(
    info: &ResourceInfo,
    subresource: Option<&str>,
    current: &Value,
    new: &mut Value,
) {
    crate::defaults::apply(info.kind, new);
    if subresource.is_none() {
        crate::storage::keep_filled_in(info.kind, current, new);
    }
    if subresource == Some("finalize") {
        // Namespaces' finalize: only spec.finalizers changes.
        let finalizers = new.get("spec").and_then(|s| s.get("finalizers")).cloned();
        *new = current.clone();
        meta_mut(new).remove("resourceVersion");
        match finalizers {
            Some(f) => new["spec"]["finalizers"] = f,
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
        return;
    }
    if subresource == Some("status") {
        let status = new.get("status").cloned();
        *new = current.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return;
    }
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match object::meta(current).and_then(|m| m.get(field)) {
            Some(v) => {
                meta_mut(new).insert(field.into(), v.clone());
            }
            None => {
                meta_mut(new).remove(field);
            }
        }
    }
    meta_mut(new).remove("resourceVersion");
    if info.has_subresource("status") && subresource.is_none() {
        match current.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    if info.kind == "Namespace" {
        let name = object::name(current).unwrap_or_default().to_owned();
        let labels = meta_mut(new).entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(NAMESPACE_NAME_LABEL.into(), json!(name));
        }
        if let Some(finalizers) = current.get("spec").and_then(|s| s.get("finalizers")) {
            new["spec"]["finalizers"] = finalizers.clone();
        }
    }
    let changed = |field: &str| new.get(field) != current.get(field);
    let bumps = if info.kind == "EndpointSlice" {
        changed("endpoints") || changed("ports") || changed("addressType")
    } else {
        changed("spec") && current.get("spec").is_some()
    };
    if bumps {
        let generation = object::meta(current)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(generation + 1));
    }
    if info.kind == "DaemonSet" {
        // Upstream's templateGeneration, kept in its v1 annotation: 1 at creation, +1 per
        // template change.
        let previous = object::meta(current)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(DAEMONSET_TEMPLATE_GENERATION))
            .and_then(Value::as_str)
            .and_then(|g| g.parse::<i64>().ok())
            .unwrap_or(1);
        let template = |o: &Value| o.get("spec").and_then(|s| s.get("template")).cloned();
        let generation = if template(new) != template(current) { previous + 1 } else { previous };
        set_annotation(new, DAEMONSET_TEMPLATE_GENERATION, &generation.to_string());
    }
}

/// The v1 annotation that carries a DaemonSet's template generation.
const DAEMONSET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

fn set_annotation(obj: &mut Value, key: &str, value: &str) {
    let annotations = meta_mut(obj).entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(key.to_owned(), json!(value));
    }
}

/// Kind-specific validation (every error, upstream wording).
pub fn validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errors = crate::kind_validation::validate(info.kind, obj);
    errors.extend(crate::storage::validate(info.kind, obj));
    if matches!(info.kind, "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController")
        && let Some(replicas) = object::path(obj, "spec.replicas")
    {
        match replicas.as_i64() {
            Some(r) if r < 0 => errors.push(FieldError::invalid(
                "spec.replicas",
                r,
                "must be greater than or equal to 0",
            )),
            Some(_) => {}
            None => errors.push(FieldError::invalid(
                "spec.replicas",
                replicas.clone(),
                "must be an integer",
            )),
        }
    }
    errors
}

/// Prepares `obj` for deletion. Returns true when the object must stay (marked with a
/// deletionTimestamp) until something else finishes its deletion.
pub fn prepare_for_delete(
    info: &ResourceInfo,
    obj: &mut Value,
    propagation_policy: Option<&str>,
) -> bool {
    let finalizer = match propagation_policy {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    if let Some(f) = finalizer {
        let list = meta_mut(obj).entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut()
            && !list.iter().any(|v| v.as_str() == Some(f))
        {
            list.push(json!(f));
        }
    }
    if info.kind == "Namespace" {
        obj["status"] = json!({ "phase": "Terminating" });
        return true;
    }
    false
}

/// Upstream's Job strategy: unless `manualSelector`, the selector is generated from the Job's
/// uid and the template carries the matching labels.
fn job_selector(obj: &mut Value) {
    if object::path(obj, "spec.manualSelector") == Some(&json!(true)) {
        return;
    }
    let uid = object::meta_str(obj, "uid").unwrap_or_default().to_owned();
    let name = object::name(obj).unwrap_or_default().to_owned();
    obj["spec"]["selector"] =
        json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } });
    let labels = obj["spec"]["template"]["metadata"]["labels"].take();
    let mut labels = labels.as_object().cloned().unwrap_or_default();
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels.insert(k.into(), json!(v));
    }
    obj["spec"]["template"]["metadata"]["labels"] = Value::Object(labels);
}

/// Whether an object marked for deletion can go now: no metadata finalizers left, and for a
/// namespace also no `spec.finalizers` (what the namespace controller removes via /finalize).
pub fn deletion_can_finish(obj: &Value) -> bool {
    let spec_finalizers = object::path(obj, "spec.finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    object::finalizers(obj).is_empty()
        && !(obj.get("kind") == Some(&json!("Namespace")) && spec_finalizers)
}

/// Rules about what an update may change (beyond the metadata identity fields, which
/// `prepare_for_update` keeps).
pub fn validate_update(info: &ResourceInfo, current: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = crate::storage::validate_update(info.kind, current, new);
    if info.kind == "Node" {
        let old = object::path(current, "spec.podCIDR").and_then(Value::as_str).unwrap_or("");
        let now = object::path(new, "spec.podCIDR").and_then(Value::as_str).unwrap_or("");
        if !old.is_empty() && old != now {
            errors.push(FieldError {
                error_type: rudder_api::FieldErrorType::Forbidden,
                field: "spec.podCIDRs".into(),
                bad_value: None,
                detail: "node updates may not change podCIDR except from \"\" to valid".into(),
            });
        } else if !now.is_empty() && !is_cidr(now) {
            errors.push(FieldError::invalid(
                "spec.podCIDR",
                now,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    errors
}

fn is_cidr(text: &str) -> bool {
    let Some((ip, bits)) = text.split_once('/') else { return false };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else { return false };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    bits.parse::<u8>().is_ok_and(|b| b <= max)
}
