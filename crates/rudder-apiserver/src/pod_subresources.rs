//! Pod subresources the control plane uses: `binding` (the scheduler assigns a node) and
//! `eviction` (a delete that respects PodDisruptionBudgets).

use serde_json::{Value, json};

use crate::object;
use crate::registry::Registry;
use crate::request::{Query, Target};
use crate::selectors::Filter;
use crate::status::ApiError;

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// POST pods/<name>/binding: sets `spec.nodeName` once, and the PodScheduled condition.
pub async fn bind(reg: &Registry, t: &Target, body: &[u8], q: &Query) -> Result<Value, ApiError> {
    let binding = body_json(body)?;
    let name = t.name.clone().unwrap_or_default();
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(t.info, &name, &[rudder_api::FieldError::required("target.name", "")])
        })?
        .to_owned();
    if let Some(kind) = binding.pointer("/target/kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != "Node"
    {
        return Err(ApiError::invalid(
            t.info,
            &name,
            &[rudder_api::FieldError::not_supported("target.kind", kind, &["Node"])],
        ));
    }
    let now = crate::clock::rfc3339(reg.clock.now());
    let node_for_change = node.clone();
    let name_for_change = name.clone();
    reg.write_raw(t, q, move |current| {
        if let Some(assigned) = object::path(current, "spec.nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name_for_change}\": pod {name_for_change} is already assigned to node \"{assigned}\""),
            ));
        }
        if object::meta_str(current, "deletionTimestamp").is_some() {
            return Err(ApiError::new(409, "Conflict", format!("pod {name_for_change} is being deleted, cannot be assigned to a host")));
        }
        let mut pod = current.clone();
        pod["spec"]["nodeName"] = json!(node_for_change);
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let mut conditions: Vec<Value> = conditions.into_iter().filter(|c| c["type"] != "PodScheduled").collect();
        conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now }));
        pod["status"]["conditions"] = json!(conditions);
        Ok(pod)
    })
    .await?;
    Ok(
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    )
}

/// POST pods/<name>/eviction: deletes the pod unless a PodDisruptionBudget that selects it
/// allows no disruption now (429, like upstream).
pub async fn evict(reg: &Registry, t: &Target, body: &[u8], q: &Query) -> Result<Value, ApiError> {
    let eviction = if body.is_empty() { json!({}) } else { body_json(body)? };
    let main = Target { subresource: None, ..t.clone() };
    let pod = reg.get(&main).await?;
    let pdb_info =
        rudder_api::resources::find("policy", "v1", "poddisruptionbudgets").expect("pdbs served");
    let pdbs = reg
        .list(
            &Target {
                info: pdb_info,
                namespace: t.namespace.clone(),
                name: None,
                subresource: None,
            },
            &Query::default(),
        )
        .await?;
    for pdb in pdbs["items"].as_array().into_iter().flatten() {
        let Some(selector) = pdb.pointer("/spec/selector") else { continue };
        let text = crate::kind_validation::label_selector_text(selector);
        let filter = Filter::parse(Some(&text), None)?;
        if !text.is_empty() && filter.matches(&pod) {
            let allowed =
                pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if allowed < 1 {
                return Err(ApiError::new(
                    429,
                    "TooManyRequests",
                    format!(
                        "Cannot evict pod as it would violate the pod's disruption budget. The disruption budget {} needs {} healthy pods and has {} currently",
                        object::name(pdb).unwrap_or_default(),
                        pdb.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0),
                        pdb.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0),
                    ),
                ));
            }
        }
    }
    let options = eviction.get("deleteOptions").cloned().unwrap_or_else(|| json!({}));
    reg.delete(&main, &serde_json::to_vec(&options).expect("JSON"), q).await?;
    Ok(
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    )
}
