//! DaemonSet bookkeeping without I/O (upstream's `daemon/util`): the template generation,
//! the pod template with the daemon tolerations and labels, the node-name affinity that pins
//! a pod to its node, which pods are up to date, maxSurge/maxUnavailable, and the revision
//! data (`{"spec":{"template":{...,"$patch":"replace"}}}`) that `kubectl rollout undo` applies.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

pub use crate::history::CONTROLLER_REVISION_HASH_LABEL;

/// The template generation the API server keeps on a DaemonSet (apps/v1
/// `DeprecatedTemplateGeneration`).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The template generation a pod was made from (`DaemonSetTemplateGenerationKey`).
pub const POD_TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const ON_DELETE: &str = "OnDelete";

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
/// The field a node-name affinity term matches (`metav1.ObjectNameField`).
pub const NODE_NAME_FIELD: &str = "metadata.name";

pub fn template(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

pub fn template_labels(ds: &DaemonSet) -> BTreeMap<String, String> {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

pub fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

pub fn revision_history_limit(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10)
}

pub fn collision_count(ds: &DaemonSet) -> Option<i32> {
    ds.status.as_ref().and_then(|s| s.collision_count)
}

pub fn strategy_type(ds: &DaemonSet) -> &str {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE)
}

/// The template generation from the annotation; `None` when absent or not a number (upstream
/// treats a parse error as no generation).
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata.annotations.as_ref()?.get(TEMPLATE_GENERATION_ANNOTATION)?.parse().ok()
}

fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    a.key == b.key && a.effect == b.effect && a.operator == b.operator && a.value == b.value
}

/// Adds `toleration`, replacing one with the same key, operator, value and effect (upstream's
/// AddOrUpdateTolerationInPodSpec: the new one wins, e.g. drops tolerationSeconds).
pub fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    match tolerations.iter_mut().find(|t| same_toleration(t, &toleration)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Toleration::default()
    }
}

/// The tolerations every daemon pod gets (upstream's AddOrUpdateDaemonPodTolerations): it
/// stays through not-ready/unreachable without a time limit and schedules onto nodes under
/// pressure, unschedulable nodes and, with hostNetwork, nodes whose network is not ready.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    add_or_update_toleration(spec, exists(TAINT_NOT_READY, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_UNREACHABLE, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_DISK_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_MEMORY_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_PID_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_UNSCHEDULABLE, "NoSchedule"));
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

/// The template new pods are made from (upstream's CreatePodTemplate): the daemon
/// tolerations, the template generation label (when known) and the revision hash label.
pub fn create_pod_template(
    template: &PodTemplateSpec,
    generation: Option<i64>,
    hash: &str,
) -> PodTemplateSpec {
    let mut t = template.clone();
    add_daemon_tolerations(t.spec.get_or_insert_with(PodSpec::default));
    let labels = t.metadata.get_or_insert_with(Default::default).labels.get_or_insert_default();
    if let Some(g) = generation {
        labels.insert(POD_TEMPLATE_GENERATION_LABEL.into(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    }
    t
}

/// `affinity` with its required node affinity replaced by the single term
/// `metadata.name In [node]` (upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the
/// controller already checked the other terms against this node).
pub fn replace_node_name_affinity(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution =
        Some(NodeSelector { node_selector_terms: vec![term] });
    affinity
}

/// The node a daemon pod is for: spec.nodeName once bound, else the node its required
/// affinity pins (`metadata.name In [one node]`).
pub fn target_node_name(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_owned());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    for term in terms {
        for f in term.match_fields.iter().flatten() {
            if f.key == NODE_NAME_FIELD && f.operator == "In" {
                return match f.values.as_deref() {
                    Some([one]) => Some(one.clone()),
                    _ => None,
                };
            }
        }
    }
    None
}

pub fn pod_label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Whether the pod was made from the current template: its revision hash label matches, or
/// (older pods) its template generation label does.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let generation_matches = generation.is_some_and(|g| {
        pod_label(pod, POD_TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str())
    });
    let hash_matches =
        !hash.is_empty() && pod_label(pod, CONTROLLER_REVISION_HASH_LABEL) == Some(hash);
    hash_matches || generation_matches
}

fn rolling_param(ds: &DaemonSet, surge: bool) -> Option<&IntOrString> {
    if strategy_type(ds) != ROLLING_UPDATE {
        return None;
    }
    let r = ds.spec.as_ref()?.update_strategy.as_ref()?.rolling_update.as_ref()?;
    if surge { r.max_surge.as_ref() } else { r.max_unavailable.as_ref() }
}

/// maxSurge against `desired` nodes, rounded up; 0 when not a rolling update.
pub fn surge_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    match rolling_param(ds, true) {
        None => Ok(0),
        Some(v) => crate::deployment::util::scaled_value(v, desired, true),
    }
}

/// maxUnavailable against `desired` nodes, rounded up; 0 when not a rolling update.
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    match rolling_param(ds, false) {
        None => Ok(0),
        Some(v) => crate::deployment::util::scaled_value(v, desired, true),
    }
}

/// Whether the update strategy may run two pods on a node (a new one next to the old).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|s| s != 0)
}

/// What a DaemonSet's revision records (upstream's getPatch): a strategic merge patch that
/// replaces spec.template with the current one.
pub fn revision_data(ds: &DaemonSet) -> Value {
    let mut template = serde_json::to_value(template(ds)).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut template {
        m.insert("$patch".into(), Value::String("replace".into()));
    }
    serde_json::json!({ "spec": { "template": template } })
}

/// Whether `revision` records the DaemonSet's current template.
pub fn revision_matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    revision.data.as_ref().is_some_and(|d| d.0 == revision_data(ds))
}

/// Bound pods first, then oldest, then by name (upstream's podByCreationTimestampAndPhase).
pub fn by_creation_and_phase(a: &Pod, b: &Pod) -> Ordering {
    let bound = |p: &Pod| {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty())
    };
    bound(b)
        .cmp(&bound(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

#[cfg(test)]
mod tests;
