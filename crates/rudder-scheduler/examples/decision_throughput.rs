//! How fast the pure scheduling decision is, without any API server: a snapshot of N nodes,
//! then M pods scheduled and assumed one after the other (what the scheduling loop does per
//! pod, minus the binding). Prints `BENCH` lines like rudder-bench.
//!
//! `cargo run --release -p rudder-scheduler --example decision_throughput [nodes] [pods]`

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rudder_scheduler::algorithm::{AlgorithmConfig, CycleCursor, Nominated, schedule_pod};
use rudder_scheduler::pod_info::{PodInfo, PriorityClasses};
use rudder_scheduler::snapshot::Snapshot;
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10000);
    for (label, owners) in [("plain", 0usize), ("replicaset", 10)] {
        let mut snap = Snapshot::new();
        for i in 0..nodes {
            let name = format!("node-{i}");
            let node: Node = serde_json::from_value(json!({
                "metadata": { "name": name, "labels": {
                    "kubernetes.io/hostname": name,
                    "topology.kubernetes.io/zone": format!("zone-{}", i % 3) } },
                "status": {
                    "allocatable": { "cpu": "32", "memory": "128Gi", "pods": "110" },
                    "conditions": [{ "type": "Ready", "status": "True" }] }
            }))
            .expect("node");
            snap.upsert_node(&node);
        }
        let classes = PriorityClasses::default();
        let infos: Vec<Arc<PodInfo>> = (0..pods)
            .map(|i| {
                let mut p = json!({
                    "metadata": { "name": format!("pod-{i}"), "namespace": "default",
                                  "uid": format!("uid-{i}"), "labels": { "app": "bench" } },
                    "spec": { "containers": [{ "name": "c", "image": "pause",
                        "resources": { "requests": { "cpu": "100m", "memory": "100Mi" } } }] }
                });
                if owners > 0 {
                    p["metadata"]["ownerReferences"] = json!([{ "apiVersion": "apps/v1",
                        "kind": "ReplicaSet", "name": "rs", "uid": format!("rs-{}", i % owners),
                        "controller": true }]);
                }
                let pod: Pod = serde_json::from_value(p).expect("pod");
                Arc::new(PodInfo::new(Arc::new(pod), &classes))
            })
            .collect();
        let cfg = AlgorithmConfig::default();
        let nominated = Nominated::default();
        let mut cursor = CycleCursor::default();
        let mut rng = StdRng::seed_from_u64(1);
        let start = Instant::now();
        for info in infos {
            snap.prepare();
            let s = schedule_pod(&snap, &info, None, &nominated, &cfg, &mut cursor, &mut rng)
                .expect("fits");
            snap.assume_pod(info, &s.node);
        }
        let elapsed = start.elapsed();
        let per_pod_us = elapsed.as_secs_f64() * 1e6 / pods as f64;
        println!("BENCH scheduler_decision_{label}_{nodes}_nodes {per_pod_us:.1} us/pod");
        println!(
            "BENCH scheduler_decision_{label}_{nodes}_nodes_rate {:.0} pods/s",
            pods as f64 / elapsed.as_secs_f64()
        );
    }
}
