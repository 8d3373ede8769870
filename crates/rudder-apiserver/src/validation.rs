//! Validation every object gets, whatever its kind: metadata names, labels, annotations.
//! Kind-specific validation lives in per-resource strategies.

use rudder_api::labels::{check_key, check_value};
use rudder_api::names::{dns1123_label, dns1123_subdomain, path_segment};
use rudder_api::{FieldError, ResourceInfo};
use serde_json::Value;

use crate::object;

/// Every problem with the object's metadata.
pub fn validate_metadata(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match object::name(obj) {
        None => {
            errors.push(FieldError::required("metadata.name", "name or generateName is required"))
        }
        Some(name) => {
            let problems = match info.kind {
                "Namespace" => dns1123_label(name),
                "Service" => dns1035_label(name),
                _ if info.group == "rbac.authorization.k8s.io" => path_segment(name),
                _ => dns1123_subdomain(name),
            };
            for p in problems {
                errors.push(FieldError::invalid("metadata.name", name, p));
            }
        }
    }
    if let Some(labels) = object::meta(obj).and_then(|m| m.get("labels")) {
        match labels.as_object() {
            Some(map) => {
                for (k, v) in map {
                    if let Err(p) = check_key(k) {
                        errors.push(FieldError::invalid("metadata.labels", k.as_str(), p));
                    }
                    match v.as_str() {
                        Some(v) => {
                            if let Err(p) = check_value(v) {
                                errors.push(FieldError::invalid(
                                    format!("metadata.labels.{k}"),
                                    v,
                                    p,
                                ));
                            }
                        }
                        None => errors.push(FieldError::invalid(
                            format!("metadata.labels.{k}"),
                            v.clone(),
                            "must be a string",
                        )),
                    }
                }
            }
            None => {
                errors.push(FieldError::invalid("metadata.labels", labels.clone(), "must be a map"))
            }
        }
    }
    if let Some(annotations) = object::meta(obj).and_then(|m| m.get("annotations")) {
        match annotations.as_object() {
            Some(map) => {
                let mut total = 0;
                for (k, v) in map {
                    if let Err(p) = check_key(k) {
                        errors.push(FieldError::invalid("metadata.annotations", k.as_str(), p));
                    }
                    total += k.len() + v.as_str().map_or(0, str::len);
                }
                if total > 256 * 1024 {
                    errors.push(FieldError {
                        error_type: rudder_api::FieldErrorType::TooLong,
                        field: "metadata.annotations".into(),
                        bad_value: None,
                        detail: "may not be more than 262144 bytes".into(),
                    });
                }
            }
            None => errors.push(FieldError::invalid(
                "metadata.annotations",
                annotations.clone(),
                "must be a map",
            )),
        }
    }
    errors.extend(owner_references(obj));
    errors
}

/// Owner references: apiVersion, kind, name and uid present, at most one controller.
fn owner_references(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(refs) = object::meta(obj).and_then(|m| m.get("ownerReferences")) else {
        return errors;
    };
    let Some(list) = refs.as_array() else { return errors };
    let mut controllers = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let field = |f: &str| format!("metadata.ownerReferences[{i}].{f}");
        for required in ["apiVersion", "kind", "name", "uid"] {
            if r.get(required).and_then(Value::as_str).is_none_or(str::is_empty) {
                let detail = format!("{required} must not be empty");
                errors.push(FieldError::invalid(field(required), "", detail));
            }
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let kind = r.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
            controllers.push(format!("{kind}/{name}"));
        }
    }
    if controllers.len() > 1 {
        errors.push(FieldError::invalid(
            "metadata.ownerReferences",
            refs.clone(),
            format!(
                "Only one reference can have Controller set to true. Found \"true\" in references for {}",
                controllers.join(" and ")
            ),
        ));
    }
    errors
}

/// Service names are DNS-1035 labels: like DNS-1123 labels but starting with a letter.
fn dns1035_label(name: &str) -> Vec<String> {
    let mut problems = dns1123_label(name);
    if problems.is_empty() && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        problems.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into());
    }
    problems
}
