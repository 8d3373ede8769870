//! Mutating admission that needs other objects (upstream's admission plugins of the same
//! names). Today: `Priority` — a pod's `spec.priority` and `preemptionPolicy` come from its
//! PriorityClass (or the global default class, or 0).

use rudder_store::Storage;
use serde_json::{Value, json};

use crate::object::{self, decode};
use crate::status::ApiError;
use crate::watch_cache::WatchCache;

/// The PriorityClasses every cluster has.
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

fn priority_classes() -> &'static rudder_api::ResourceInfo {
    rudder_api::resources::find("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses in the resource table")
}

/// Resolves a new pod's priority from its PriorityClass. Classes are read from the watch
/// cache, as upstream's admission reads its informer; a named class the cache does not show
/// yet is looked up in the store before the pod is refused.
pub async fn pod_priority(
    cache: &WatchCache,
    store: &dyn Storage,
    pod: &mut Value,
) -> Result<(), ApiError> {
    let pod_name = object::name(pod).unwrap_or_default().to_owned();
    let info = priority_classes();
    let class_name = object::path(pod, "spec.priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let store_err = |e| ApiError::from_store(e, info, "");
    let (classes, _) =
        cache.snapshot(info, &object::prefix(info, None)).await.map_err(store_err)?;
    // Only the class that applies is decoded.
    let class: Option<Value> = match &class_name {
        Some(name) => match classes.iter().find(|(_, c)| c.field("metadata.name") == *name) {
            Some((_, c)) => Some(c.value()?),
            None => match store.get(&object::key(info, None, name)).await.map_err(store_err)? {
                Some(kv) => Some(decode(&kv)?),
                None => {
                    return Err(ApiError::forbidden(format!(
                        "pods \"{pod_name}\" is forbidden: no PriorityClass with name {name} was found"
                    )));
                }
            },
        },
        // The global default class, if one is marked (the lowest value wins, as upstream).
        None => classes
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.field("globalDefault") == "true")
            .min_by_key(|c| c.field("value").parse::<i64>().unwrap_or(0))
            .map(|c| c.value())
            .transpose()?,
    };
    let (priority, policy, resolved_name) = match &class {
        Some(c) => (
            c.get("value").and_then(Value::as_i64).unwrap_or(0),
            c.get("preemptionPolicy")
                .and_then(Value::as_str)
                .unwrap_or("PreemptLowerPriority")
                .to_owned(),
            object::name(c).map(str::to_owned),
        ),
        None => (0, "PreemptLowerPriority".to_owned(), None),
    };
    let spec = pod.get_mut("spec").and_then(Value::as_object_mut);
    let Some(spec) = spec else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != priority
    {
        return Err(ApiError::forbidden(format!(
            "pods \"{pod_name}\" is forbidden: the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if class.is_some()
        && let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(ApiError::forbidden(format!(
            "pods \"{pod_name}\" is forbidden: the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    spec.insert("priority".into(), json!(priority));
    if let Some(name) = resolved_name {
        spec.insert("priorityClassName".into(), json!(name));
    }
    if class.is_some() || !spec.contains_key("preemptionPolicy") {
        spec.insert("preemptionPolicy".into(), json!(policy));
    }
    Ok(())
}
