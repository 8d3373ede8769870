use serde_json::json;

use super::*;
use crate::scores::*;

#[test]
fn least_allocated_prefers_emptier_nodes_and_counts_defaults_for_best_effort() {
    // upstream's example: cpu 4000m, memory 10000; pod 1000m + 2000 on an empty node ->
    // cpu (4000-1000)*100/4000 = 75, memory (10000-2000)*100/10000 = 80 -> 77
    let snap = snapshot(
        vec![node("n1", "4", "10000"), node("n2", "4", "10000")],
        vec![(pod("a", "2", "5000"), "n2")],
    );
    let p = info(pod("p", "1", "2000"));
    assert_eq!(least_allocated(&p, snap.node_by_name("n1").unwrap()), 77);
    // n2: cpu (4000-3000)*100/4000 = 25, memory (10000-7000)*100/10000 = 30 -> 27
    assert_eq!(least_allocated(&p, snap.node_by_name("n2").unwrap()), 27);
    // a best-effort pod counts 100m and 200Mi: memory over capacity scores 0
    let be = info(pod("be", "", ""));
    assert_eq!(least_allocated(&be, snap.node_by_name("n1").unwrap()), (3900 * 100 / 4000) / 2);
}

#[test]
fn balanced_allocation_prefers_even_cpu_and_memory_use() {
    let snap = snapshot(
        vec![node("n1", "4", "4000"), node("n2", "4", "4000")],
        vec![(pod("a", "2", "0"), "n2")],
    );
    let p = info(pod("p", "1", "1000"));
    assert!(balanced_allocation_applies(&p));
    // n1: 1/4 and 1/4 -> std 0 -> 100
    assert_eq!(balanced_allocation(&p, snap.node_by_name("n1").unwrap()), 100);
    // n2: 3/4 and 1/4 -> std 0.25 -> 75
    assert_eq!(balanced_allocation(&p, snap.node_by_name("n2").unwrap()), 75);
    assert!(!balanced_allocation_applies(&info(pod("be", "", ""))));
}

#[test]
fn preferred_node_affinity_sums_matching_weights() {
    let snap = snapshot(
        vec![
            with_labels(node("n1", "4", "8Gi"), &[("zone", "a"), ("disk", "ssd")]),
            with_labels(node("n2", "4", "8Gi"), &[("zone", "a")]),
            node("n3", "4", "8Gi"),
        ],
        vec![],
    );
    let p = info(with_spec(
        pod("p", "", ""),
        "affinity",
        json!({ "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 5, "preference": { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] } },
            { "weight": 20, "preference": { "matchExpressions": [{ "key": "disk", "operator": "Exists" }] } }
        ] } }),
    ));
    let mut raw: Vec<i64> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| node_affinity_preferred(&p, snap.node_by_name(n).unwrap()))
        .collect();
    assert_eq!(raw, [25, 5, 0]);
    default_normalize(&mut raw, false);
    assert_eq!(raw, [100, 20, 0]);
}

#[test]
fn taint_toleration_score_counts_intolerable_prefer_no_schedule_reversed() {
    let snap = snapshot(
        vec![
            with_taint(
                with_taint(node("n1", "4", "8Gi"), "a", "1", "PreferNoSchedule"),
                "b",
                "",
                "PreferNoSchedule",
            ),
            with_taint(node("n2", "4", "8Gi"), "a", "1", "PreferNoSchedule"),
            node("n3", "4", "8Gi"),
        ],
        vec![],
    );
    let p = info(with_spec(
        pod("p", "", ""),
        "tolerations",
        json!([{ "key": "b", "operator": "Exists", "effect": "PreferNoSchedule" }]),
    ));
    let mut raw: Vec<i64> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| taint_toleration(&p, snap.node_by_name(n).unwrap()))
        .collect();
    assert_eq!(raw, [1, 1, 0]);
    default_normalize(&mut raw, true);
    assert_eq!(raw, [0, 0, 100]);
    let mut none = vec![0, 0];
    default_normalize(&mut none, true);
    assert_eq!(none, [100, 100]);
}
