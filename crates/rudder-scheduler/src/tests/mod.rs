//! Unit tests over hand-built snapshots (no server), one file per plugin or part.

mod algorithm;
mod api;
mod filters;
mod interpod;
mod preemption;
mod queue;
mod scores;
mod snapshot;
mod spread;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};

use crate::pod_info::{PodInfo, PriorityClasses};
use crate::snapshot::Snapshot;

/// A Ready node with allocatable cpu/memory/pods and `kubernetes.io/hostname`.
pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } },
        "spec": {},
        "status": {
            "allocatable": { "cpu": cpu, "memory": memory, "pods": "110" },
            "conditions": [{ "type": "Ready", "status": "True" }]
        }
    })
}

pub fn with_labels(mut v: Value, labels: &[(&str, &str)]) -> Value {
    for (k, val) in labels {
        v["metadata"]["labels"][*k] = json!(val);
    }
    v
}

pub fn with_taint(mut v: Value, key: &str, value: &str, effect: &str) -> Value {
    let taint = json!({ "key": key, "value": value, "effect": effect });
    match v["spec"]["taints"].as_array_mut() {
        Some(list) => list.push(taint),
        None => v["spec"]["taints"] = json!([taint]),
    }
    v
}

pub fn to_node(v: Value) -> Node {
    serde_json::from_value(v).expect("node JSON")
}

/// A pod with one container requesting `cpu`/`memory` (empty strings: no request).
pub fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    let mut requests = serde_json::Map::new();
    if !cpu.is_empty() {
        requests.insert("cpu".into(), json!(cpu));
    }
    if !memory.is_empty() {
        requests.insert("memory".into(), json!(memory));
    }
    json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                      "labels": {} },
        "spec": { "containers": [{ "name": "c", "resources": { "requests": requests } }] }
    })
}

pub fn with_pod_labels(mut v: Value, labels: &[(&str, &str)]) -> Value {
    for (k, val) in labels {
        v["metadata"]["labels"][*k] = json!(val);
    }
    v
}

pub fn with_spec(mut v: Value, key: &str, value: Value) -> Value {
    v["spec"][key] = value;
    v
}

pub fn with_owner(mut v: Value, uid: &str) -> Value {
    v["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true
    }]);
    v
}

pub fn to_pod(v: Value) -> Pod {
    serde_json::from_value(v).expect("pod JSON")
}

pub fn info(v: Value) -> Arc<PodInfo> {
    Arc::new(PodInfo::new(Arc::new(to_pod(v)), &PriorityClasses::default()))
}

/// A snapshot of `nodes` with `pods` bound as given (pod, node name).
pub fn snapshot(nodes: Vec<Value>, pods: Vec<(Value, &str)>) -> Snapshot {
    let mut snap = Snapshot::new();
    for n in nodes {
        snap.upsert_node(&to_node(n));
    }
    for (p, n) in pods {
        snap.add_bound_pod(info(p), n);
    }
    snap.prepare();
    snap
}

/// A required (anti-)affinity term selecting `app=<app>` over `key`.
pub fn term(app: &str, key: &str) -> Value {
    json!({ "labelSelector": { "matchLabels": { "app": app } }, "topologyKey": key })
}
