//! Validation of the workload kinds, in upstream's wording: pod specs wherever they appear
//! (pods and every template), selectors against template labels, restart policies, service
//! ports. Every error is collected; none stops the others.

use std::collections::BTreeSet;

use rudder_api::FieldError;
use rudder_api::labels::Selector;
use rudder_api::names::dns1123_label;
use serde_json::Value;

fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    v.pointer(pointer)
}

/// Go's rendering of a label map, as upstream's messages show it.
fn go_map(v: Option<&Value>) -> String {
    let pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k:?}:{}", v)).collect())
        .unwrap_or_default();
    format!("map[string]string{{{}}}", pairs.join(", "))
}

fn port_in_range(errors: &mut Vec<FieldError>, field: String, v: Option<&Value>) {
    match v.and_then(Value::as_i64) {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(p) => {
            errors.push(FieldError::invalid(field, p, "must be between 1 and 65535, inclusive"))
        }
        None => errors.push(FieldError::required(field, "")),
    }
}

/// Every resource amount of a container must be a well-formed, non-negative quantity.
fn quantities(c: &Value, cpath: &str, errors: &mut Vec<FieldError>) {
    for kind in ["limits", "requests"] {
        let amounts = c.pointer(&format!("/resources/{kind}")).and_then(Value::as_object);
        for (resource, amount) in amounts.into_iter().flatten() {
            let field = format!("{cpath}.resources.{kind}.{resource}");
            let text = match amount {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match rudder_api::quantity::parse_milli(&text) {
                Err(_) => errors.push(FieldError::invalid(
                    field,
                    text.as_str(),
                    rudder_api::quantity::FORMAT_MESSAGE,
                )),
                Ok(v) if v < 0 => errors.push(FieldError::invalid(
                    field,
                    text.as_str(),
                    "must be greater than or equal to 0",
                )),
                Ok(_) => {}
            }
        }
    }
}

pub fn pod_spec(spec: &Value, path: &str, allowed_restart: &[&str], errors: &mut Vec<FieldError>) {
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(|c| c.is_empty()) {
        errors.push(FieldError::required(format!("{path}.containers"), ""));
    }
    let mut names = BTreeSet::new();
    for list in ["initContainers", "containers"] {
        for (i, c) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            let cpath = format!("{path}.{list}[{i}]");
            match c.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                None => errors.push(FieldError::required(format!("{cpath}.name"), "")),
                Some(name) => {
                    for p in dns1123_label(name) {
                        errors.push(FieldError::invalid(format!("{cpath}.name"), name, p));
                    }
                    if !names.insert(name.to_owned()) {
                        errors.push(FieldError {
                            error_type: rudder_api::FieldErrorType::Duplicate,
                            field: format!("{cpath}.name"),
                            bad_value: Some(Value::from(name)),
                            detail: String::new(),
                        });
                    }
                }
            }
            if list == "containers" && c.get("restartPolicy").is_some() {
                errors.push(FieldError::forbidden(
                    format!("{cpath}.restartPolicy"),
                    "may not be set for non-init containers",
                ));
            }
            if c.get("image").and_then(Value::as_str).is_none_or(|i| i.trim().is_empty()) {
                errors.push(FieldError::required(format!("{cpath}.image"), ""));
            }
            if let Some(policy) = c.get("imagePullPolicy").and_then(Value::as_str)
                && !["Always", "IfNotPresent", "Never"].contains(&policy)
            {
                errors.push(FieldError::not_supported(
                    format!("{cpath}.imagePullPolicy"),
                    policy,
                    &["Always", "IfNotPresent", "Never"],
                ));
            }
            quantities(c, &cpath, errors);
            for (j, p) in c.get("ports").and_then(Value::as_array).into_iter().flatten().enumerate()
            {
                port_in_range(
                    errors,
                    format!("{cpath}.ports[{j}].containerPort"),
                    p.get("containerPort"),
                );
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy").and_then(Value::as_str)
        && !allowed_restart.contains(&policy)
    {
        errors.push(FieldError::not_supported(
            format!("{path}.restartPolicy"),
            policy,
            allowed_restart,
        ));
    }
    if let Some(policy) = spec.get("dnsPolicy").and_then(Value::as_str) {
        let supported = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
        if !supported.contains(&policy) {
            errors.push(FieldError::not_supported(format!("{path}.dnsPolicy"), policy, &supported));
        }
    }
}

/// `spec.selector` must be set, non-empty and select the template's labels.
fn selector_matches_template(obj: &Value, kind: &str, errors: &mut Vec<FieldError>) {
    let Some(selector) = at(obj, "/spec/selector") else {
        errors.push(FieldError::required("spec.selector", ""));
        return;
    };
    let labels = at(obj, "/spec/template/metadata/labels");
    let text = label_selector_text(selector);
    if text.is_empty() {
        errors.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            format!("empty selector is invalid for {}", kind.to_lowercase()),
        ));
        return;
    }
    let Ok(parsed) = Selector::parse(&text) else {
        errors.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            "invalid label selector",
        ));
        return;
    };
    let map = labels
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    if !parsed.matches(&map) {
        // Upstream prints the value with Go's %#v, unquoted.
        errors.push(FieldError {
            error_type: rudder_api::FieldErrorType::Invalid,
            field: "spec.template.metadata.labels".into(),
            bad_value: None,
            detail: format!("{}: `selector` does not match template `labels`", go_map(labels)),
        });
    }
}

/// A `LabelSelector` in the string syntax.
pub fn label_selector_text(selector: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = selector.get("matchLabels").and_then(Value::as_object) {
        parts.extend(m.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))));
    }
    for e in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e.get("operator").and_then(Value::as_str) {
            Some("In") => parts.push(format!("{key} in ({})", values.join(","))),
            Some("NotIn") => parts.push(format!("{key} notin ({})", values.join(","))),
            Some("Exists") => parts.push(key.to_owned()),
            Some("DoesNotExist") => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

pub fn validate(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    const ALWAYS: &[&str] = &["Always"];
    const ANY: &[&str] = &["Always", "OnFailure", "Never"];
    const JOB: &[&str] = &["OnFailure", "Never"];
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get("spec") {
                pod_spec(spec, "spec", ANY, &mut errors);
            } else {
                errors.push(FieldError::required("spec", ""));
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            selector_matches_template(obj, kind, &mut errors);
            match at(obj, "/spec/template/spec") {
                Some(spec) => pod_spec(spec, "spec.template.spec", ALWAYS, &mut errors),
                None => errors.push(FieldError::required("spec.template", "")),
            }
        }
        "ReplicationController" => {
            if let Some(spec) = at(obj, "/spec/template/spec") {
                pod_spec(spec, "spec.template.spec", ALWAYS, &mut errors);
            }
        }
        "Job" => match at(obj, "/spec/template/spec") {
            Some(spec) => {
                pod_spec(spec, "spec.template.spec", JOB, &mut errors);
                if spec.get("restartPolicy").is_none() {
                    errors.push(FieldError::required(
                        "spec.template.spec.restartPolicy",
                        "valid values: \"OnFailure\", \"Never\"",
                    ));
                }
            }
            None => errors.push(FieldError::required("spec.template", "")),
        },
        "CronJob" => {
            match at(obj, "/spec/schedule").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                None => errors.push(FieldError::required("spec.schedule", "")),
                Some(schedule) => {
                    let tz = at(obj, "/spec/timeZone").and_then(Value::as_str);
                    for (field, message) in rudder_cron::validate_schedule(schedule, tz) {
                        let value =
                            if field == "spec.timeZone" { tz.unwrap_or("") } else { schedule };
                        errors.push(FieldError::invalid(field, value, message));
                    }
                }
            }
            match at(obj, "/spec/jobTemplate/spec/template/spec") {
                Some(spec) => {
                    pod_spec(spec, "spec.jobTemplate.spec.template.spec", JOB, &mut errors)
                }
                None => errors.push(FieldError::required("spec.jobTemplate.spec.template", "")),
            }
        }
        "Service" => {
            let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
            let t = at(obj, "/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            if !types.contains(&t) {
                errors.push(FieldError::not_supported("spec.type", t, &types));
            }
            let headless = at(obj, "/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let ports = at(obj, "/spec/ports").and_then(Value::as_array);
            if t != "ExternalName" && !headless && ports.is_none_or(|p| p.is_empty()) {
                errors.push(FieldError::required("spec.ports", ""));
            }
            for (i, p) in ports.into_iter().flatten().enumerate() {
                port_in_range(&mut errors, format!("spec.ports[{i}].port"), p.get("port"));
            }
        }
        _ => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_problem_is_reported() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": {
            "metadata": {"labels": {"app": "b"}},
            "spec": {"restartPolicy": "Never", "containers": [
                {"name": "Bad_Name", "image": "", "ports": [{"containerPort": 70000}]},
                {"name": "ok", "image": "x"}, {"name": "ok", "image": "x"}]}}}});
        let errors: Vec<String> =
            validate("Deployment", &d).iter().map(ToString::to_string).collect();
        let expect = [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`",
            "spec.template.spec.containers[0].image: Required value",
            "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.template.spec.containers[2].name: Duplicate value: \"ok\"",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ];
        for e in expect {
            assert!(errors.iter().any(|x| x == e), "missing {e:?} in {errors:#?}");
        }
        assert!(errors.iter().any(|x| {
            x.starts_with("spec.template.spec.containers[0].name: Invalid value: \"Bad_Name\"")
        }));
    }
}
