//! Storage kinds: the `local-path` StorageClass every cluster starts with, the
//! DefaultStorageClass admission plugin, and defaults and validation for StorageClasses,
//! PersistentVolumeClaims and PersistentVolumes (upstream's rules, loosely).

use rudder_api::FieldError;
use rudder_store::Storage;
use serde_json::{Value, json};

use crate::object::{self, decode, prefix};
use crate::status::ApiError;

/// The class bootstrapped at server start (unless one of that name exists).
pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const LOCAL_PATH_PROVISIONER: &str = "rudder.dev/local-path";
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

const ACCESS_MODES: &[&str] =
    &["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];
/// The volume sources a PersistentVolume may name (exactly one).
const PV_SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// The `local-path` StorageClass.
pub fn local_path_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_PATH_CLASS,
            "annotations": { DEFAULT_CLASS_ANNOTATION: "true" },
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

fn is_default_class(class: &Value) -> bool {
    let annotations = object::meta(class).and_then(|m| m.get("annotations"));
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| annotations.and_then(|x| x.get(*a)).and_then(Value::as_str) == Some("true"))
}

/// The default class among `classes`: the newest of those annotated default (then by name).
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    let mut defaults: Vec<&Value> = classes.iter().filter(|c| is_default_class(c)).collect();
    defaults.sort_by(|a, b| {
        let created = |o: &Value| object::meta_str(o, "creationTimestamp").unwrap_or("").to_owned();
        created(b).cmp(&created(a)).then_with(|| object::name(a).cmp(&object::name(b)))
    });
    defaults.into_iter().next()
}

/// The DefaultStorageClass admission plugin: a claim created without
/// `spec.storageClassName` (and without the beta annotation) gets the default class.
pub async fn admit_claim(store: &dyn Storage, pvc: &mut Value) -> Result<(), ApiError> {
    let has_class = pvc.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null())
        || object::meta(pvc)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
            .is_some();
    if has_class || pvc.get("spec").is_none_or(|s| !s.is_object()) {
        return Ok(());
    }
    let info = rudder_api::resources::find("storage.k8s.io", "v1", "storageclasses")
        .expect("storageclasses in the resource table");
    let page = store
        .list(&prefix(info, None), rudder_store::ListOptions::default())
        .await
        .map_err(|e| ApiError::from_store(e, info, ""))?;
    let classes = page.items.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    if let Some(class) = default_class(&classes).and_then(object::name) {
        pvc["spec"]["storageClassName"] = json!(class);
    }
    Ok(())
}

fn set_default(obj: &mut Value, pointer_parent: &str, field: &str, value: Value) {
    if let Some(m) = obj.pointer_mut(pointer_parent).and_then(Value::as_object_mut)
        && m.get(field).is_none_or(Value::is_null)
    {
        m.insert(field.into(), value);
    }
}

/// Upstream's `SetDefaults_*` for the storage kinds.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    match kind {
        "StorageClass" => {
            if let Some(m) = obj.as_object_mut() {
                m.entry("reclaimPolicy").or_insert_with(|| json!("Delete"));
                m.entry("volumeBindingMode").or_insert_with(|| json!("Immediate"));
            }
        }
        "PersistentVolumeClaim" => {
            set_default(obj, "/spec", "volumeMode", json!("Filesystem"));
            if obj.get("status").is_none_or(|s| !s.is_object()) {
                obj["status"] = json!({});
            }
            set_default(obj, "/status", "phase", json!("Pending"));
        }
        "PersistentVolume" => {
            set_default(obj, "/spec", "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(obj, "/spec", "volumeMode", json!("Filesystem"));
            if obj.get("status").is_none_or(|s| !s.is_object()) {
                obj["status"] = json!({});
            }
            set_default(obj, "/status", "phase", json!("Pending"));
        }
        _ => {}
    }
}

fn storage_quantity(v: Option<&Value>) -> Option<Result<i128, ()>> {
    let v = v?;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Some(Err(())),
    };
    Some(rudder_api::quantity::parse_milli(&text).map_err(|_| ()))
}

fn access_modes(spec: &Value, field: &str, errors: &mut Vec<FieldError>) {
    let modes = spec.get("accessModes").and_then(Value::as_array).cloned().unwrap_or_default();
    if modes.is_empty() {
        errors.push(FieldError::required(field, "at least 1 access mode is required"));
    }
    let mut once_pod = false;
    for m in &modes {
        let mode = m.as_str().unwrap_or("");
        once_pod |= mode == "ReadWriteOncePod";
        if !ACCESS_MODES.contains(&mode) {
            errors.push(FieldError::not_supported(field, mode, ACCESS_MODES));
        }
    }
    if once_pod && modes.len() > 1 {
        errors.push(FieldError::forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn volume_mode(spec: &Value, field: &str, errors: &mut Vec<FieldError>) {
    if let Some(mode) = spec.get("volumeMode").and_then(Value::as_str)
        && !VOLUME_MODES.contains(&mode)
    {
        errors.push(FieldError::not_supported(field, mode, VOLUME_MODES));
    }
}

/// Validation of a new (or updated) object of a storage kind.
pub fn validate(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match kind {
        "StorageClass" => {
            if obj.get("provisioner").and_then(Value::as_str).unwrap_or("").is_empty() {
                errors.push(FieldError::required("provisioner", ""));
            }
            if let Some(p) = obj.get("reclaimPolicy").and_then(Value::as_str)
                && !matches!(p, "Delete" | "Retain")
            {
                errors.push(FieldError::not_supported("reclaimPolicy", p, &["Delete", "Retain"]));
            }
            if let Some(m) = obj.get("volumeBindingMode").and_then(Value::as_str)
                && !matches!(m, "Immediate" | "WaitForFirstConsumer")
            {
                errors.push(FieldError::not_supported(
                    "volumeBindingMode",
                    m,
                    &["Immediate", "WaitForFirstConsumer"],
                ));
            }
        }
        "PersistentVolumeClaim" => {
            let Some(spec) = obj.get("spec") else {
                errors.push(FieldError::required("spec", ""));
                return errors;
            };
            access_modes(spec, "spec.accessModes", &mut errors);
            volume_mode(spec, "spec.volumeMode", &mut errors);
            match storage_quantity(spec.pointer("/resources/requests/storage")) {
                None => errors.push(FieldError::required("spec.resources[storage]", "")),
                Some(Err(())) => errors.push(FieldError::invalid(
                    "spec.resources.requests[storage]",
                    spec.pointer("/resources/requests/storage").cloned().unwrap_or_default(),
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                Some(Ok(q)) if q <= 0 => errors.push(FieldError::invalid(
                    "spec.resources[storage]",
                    spec.pointer("/resources/requests/storage").cloned().unwrap_or_default(),
                    "must be greater than zero",
                )),
                Some(Ok(_)) => {}
            }
        }
        "PersistentVolume" => {
            let Some(spec) = obj.get("spec") else {
                errors.push(FieldError::required("spec", ""));
                return errors;
            };
            access_modes(spec, "spec.accessModes", &mut errors);
            volume_mode(spec, "spec.volumeMode", &mut errors);
            let capacity = spec.get("capacity").and_then(Value::as_object);
            match capacity {
                None => errors.push(FieldError::required("spec.capacity", "")),
                Some(c) if c.is_empty() => errors.push(FieldError::required("spec.capacity", "")),
                Some(c) => {
                    if !c.contains_key("storage") || c.len() > 1 {
                        errors.push(FieldError::not_supported(
                            "spec.capacity",
                            Value::Object(c.clone()),
                            &["storage"],
                        ));
                    }
                    if let Some(Ok(q)) = storage_quantity(c.get("storage"))
                        && q <= 0
                    {
                        errors.push(FieldError::invalid(
                            "spec.capacity[storage]",
                            c["storage"].clone(),
                            "must be greater than zero",
                        ));
                    }
                }
            }
            if let Some(p) = spec.get("persistentVolumeReclaimPolicy").and_then(Value::as_str)
                && !matches!(p, "Delete" | "Recycle" | "Retain")
            {
                errors.push(FieldError::not_supported(
                    "spec.persistentVolumeReclaimPolicy",
                    p,
                    &["Delete", "Recycle", "Retain"],
                ));
            }
            let sources: Vec<&str> = PV_SOURCES
                .iter()
                .copied()
                .filter(|s| spec.get(*s).is_some_and(|v| !v.is_null()))
                .collect();
            match sources.as_slice() {
                [] => errors.push(FieldError::required("spec", "must specify a volume type")),
                [_] => {}
                [_, rest @ ..] => {
                    for s in rest {
                        errors.push(FieldError::forbidden(
                            format!("spec.{s}"),
                            "may not specify more than 1 volume type",
                        ));
                    }
                }
            }
            if let Some(hp) = spec.get("hostPath")
                && hp.get("path").and_then(Value::as_str).unwrap_or("").is_empty()
            {
                errors.push(FieldError::required("spec.hostPath.path", ""));
            }
            if let Some(local) = spec.get("local") {
                if local.get("path").and_then(Value::as_str).unwrap_or("").is_empty() {
                    errors.push(FieldError::required("spec.local.path", ""));
                }
                if spec.get("nodeAffinity").is_none_or(Value::is_null) {
                    errors.push(FieldError::required(
                        "spec.nodeAffinity",
                        "Local volumes require node affinity",
                    ));
                }
            }
        }
        _ => {}
    }
    errors
}

/// A claim updated without the fields the server filled in keeps them (so a PUT of the
/// original manifest is not a change of the immutable spec).
pub fn keep_filled_in(kind: &str, current: &Value, new: &mut Value) {
    if kind != "PersistentVolumeClaim" {
        return;
    }
    for field in ["storageClassName", "volumeMode", "volumeName"] {
        if let Some(v) = current.pointer(&format!("/spec/{field}"))
            && new.get("spec").is_some_and(Value::is_object)
            && new.pointer(&format!("/spec/{field}")).is_none()
        {
            new["spec"][field] = v.clone();
        }
    }
}

/// What an update of a storage kind may not change.
pub fn validate_update(kind: &str, current: &Value, new: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match kind {
        "StorageClass" => {
            for (field, message) in [
                ("provisioner", "updates to provisioner are forbidden."),
                ("parameters", "updates to parameters are forbidden."),
                ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
                ("volumeBindingMode", "field is immutable"),
            ] {
                if current.get(field) != new.get(field) {
                    errors.push(FieldError::forbidden(field, message));
                }
            }
        }
        "PersistentVolumeClaim" => {
            let (Some(old), Some(now)) = (current.get("spec"), new.get("spec")) else {
                return errors;
            };
            let mut old_rest = old.clone();
            let mut new_rest = now.clone();
            for spec in [&mut old_rest, &mut new_rest] {
                if let Some(m) = spec.as_object_mut() {
                    m.remove("resources");
                    m.remove("volumeAttributesClassName");
                }
            }
            // Binding: volumeName may go from empty to a name.
            let old_volume = old.get("volumeName").and_then(Value::as_str).unwrap_or("");
            if old_volume.is_empty() {
                for spec in [&mut old_rest, &mut new_rest] {
                    if let Some(m) = spec.as_object_mut() {
                        m.remove("volumeName");
                    }
                }
            }
            // Retroactive default class assignment: storageClassName may go from unset to a
            // class (upstream allows it since 1.28).
            if old.get("storageClassName").is_none_or(Value::is_null) {
                for spec in [&mut old_rest, &mut new_rest] {
                    if let Some(m) = spec.as_object_mut() {
                        m.remove("storageClassName");
                    }
                }
            }
            if old_rest != new_rest {
                errors.push(FieldError::forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                ));
            }
            let old_size = storage_quantity(old.pointer("/resources/requests/storage"));
            let new_size = storage_quantity(now.pointer("/resources/requests/storage"));
            if let (Some(Ok(a)), Some(Ok(b))) = (old_size, new_size)
                && b < a
            {
                errors.push(FieldError::forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                ));
            }
        }
        "PersistentVolume" => {
            let source = |o: &Value| {
                PV_SOURCES
                    .iter()
                    .map(|s| o.pointer(&format!("/spec/{s}")).cloned())
                    .collect::<Vec<_>>()
            };
            if source(current) != source(new) {
                errors.push(FieldError::forbidden(
                    "spec.persistentvolumesource",
                    "spec.persistentvolumesource is immutable after creation",
                ));
            }
        }
        _ => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, created: &str, default: bool) -> Value {
        let mut c = json!({ "metadata": { "name": name, "creationTimestamp": created }, "provisioner": "x" });
        if default {
            c["metadata"]["annotations"] = json!({ DEFAULT_CLASS_ANNOTATION: "true" });
        }
        c
    }

    #[test]
    fn the_newest_default_class_wins() {
        let classes = [
            class("old", "2024-01-01T00:00:00Z", true),
            class("new", "2025-01-01T00:00:00Z", true),
            class("newest-not-default", "2026-01-01T00:00:00Z", false),
        ];
        assert_eq!(default_class(&classes).and_then(object::name), Some("new"));
        assert!(default_class(&classes[2..]).is_none());
    }

    #[test]
    fn claims_need_access_modes_and_a_size_and_keep_their_spec() {
        let mut pvc = json!({ "metadata": { "name": "c" }, "spec": {} });
        apply_defaults("PersistentVolumeClaim", &mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let errors: Vec<String> =
            validate("PersistentVolumeClaim", &pvc).iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        pvc["spec"]["accessModes"] = json!(["ReadWriteOnce"]);
        pvc["spec"]["resources"] = json!({ "requests": { "storage": "1Gi" } });
        assert!(validate("PersistentVolumeClaim", &pvc).is_empty());

        let mut grown = pvc.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        grown["spec"]["volumeName"] = json!("pv-1");
        assert!(validate_update("PersistentVolumeClaim", &pvc, &grown).is_empty());
        let mut shrunk = grown.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        assert_eq!(validate_update("PersistentVolumeClaim", &grown, &shrunk).len(), 1);
        let mut rebound = grown.clone();
        rebound["spec"]["volumeName"] = json!("pv-2");
        assert_eq!(validate_update("PersistentVolumeClaim", &grown, &rebound).len(), 1);
        let mut modes = pvc.clone();
        modes["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        assert_eq!(validate_update("PersistentVolumeClaim", &pvc, &modes).len(), 1);
    }

    #[test]
    fn volumes_need_exactly_one_source_a_capacity_and_access_modes() {
        let pv = json!({ "metadata": { "name": "v" }, "spec": {} });
        let errors: Vec<String> =
            validate("PersistentVolume", &pv).iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.capacity: Required value",
                "spec: Required value: must specify a volume type",
            ]
        );
        let two = json!({ "spec": {
            "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
            "hostPath": { "path": "/x" }, "nfs": { "server": "s", "path": "/" },
        } });
        let errors: Vec<String> =
            validate("PersistentVolume", &two).iter().map(ToString::to_string).collect();
        assert_eq!(errors, ["spec.nfs: Forbidden: may not specify more than 1 volume type"]);
        let local = json!({ "spec": {
            "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
            "local": { "path": "/x" },
        } });
        assert_eq!(validate("PersistentVolume", &local).len(), 1);
    }
}
