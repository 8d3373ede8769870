use serde_json::json;

use super::*;
use crate::spread::*;

fn zoned(name: &str, zone: &str) -> serde_json::Value {
    with_labels(node(name, "4", "8Gi"), &[("zone", zone)])
}

fn web(name: &str) -> serde_json::Value {
    with_pod_labels(pod(name, "", ""), &[("app", "web")])
}

fn constrained(name: &str, constraint: serde_json::Value) -> serde_json::Value {
    with_spec(web(name), "topologySpreadConstraints", json!([constraint]))
}

fn zone_constraint(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({
        "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": { "matchLabels": { "app": "web" } }
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    c
}

fn check(
    snap: &crate::snapshot::Snapshot,
    p: &crate::pod_info::PodInfo,
    node: &str,
) -> Result<(), String> {
    let state = SpreadFilterState::compute(p, snap).expect("hard constraints");
    state.filter(p, snap.node_by_name(node).unwrap()).map_err(|r| r.reasons[0].to_string())
}

#[test]
fn max_skew_bounds_the_difference_between_domains() {
    let snap = snapshot(
        vec![zoned("n1", "a"), zoned("n2", "b"), node("n3", "4", "8Gi")],
        vec![(web("w1"), "n1"), (web("w2"), "n1")],
    );
    let p = info(constrained("p", zone_constraint(json!({}))));
    assert_eq!(check(&snap, &p, "n1"), Err(REASON_SPREAD.to_owned()));
    assert_eq!(check(&snap, &p, "n2"), Ok(()));
    assert_eq!(check(&snap, &p, "n3"), Err(REASON_SPREAD_MISSING_LABEL.to_owned()));
    let state = SpreadFilterState::compute(&p, &snap).unwrap();
    assert!(state.filter(&p, snap.node_by_name("n3").unwrap()).unwrap_err().unresolvable);
    // pods of another app or namespace do not count
    assert!(SpreadFilterState::compute(&info(web("x")), &snap).is_none());
}

#[test]
fn min_domains_treats_missing_domains_as_empty() {
    let snap = snapshot(vec![zoned("n1", "a")], vec![(web("w1"), "n1")]);
    let relaxed = info(constrained("p", zone_constraint(json!({}))));
    assert_eq!(check(&snap, &relaxed, "n1"), Ok(()));
    let strict = info(constrained("p", zone_constraint(json!({ "minDomains": 2 }))));
    assert_eq!(check(&snap, &strict, "n1"), Err(REASON_SPREAD.to_owned()));
}

#[test]
fn node_affinity_policy_decides_which_domains_count() {
    // zone b is empty but the pod may not go there: with Honor (the default) it does not
    // count as the minimum
    let snap = snapshot(
        vec![
            with_labels(zoned("n1", "a"), &[("pool", "x")]),
            zoned("n2", "b"),
            with_labels(zoned("n3", "c"), &[("pool", "x")]),
        ],
        vec![(web("w1"), "n1")],
    );
    let honor = info(with_spec(
        constrained("p", zone_constraint(json!({}))),
        "nodeSelector",
        json!({ "pool": "x" }),
    ));
    // domains a (1) and c (0): n1 -> 1+1-0 = 2 > 1; n3 -> ok
    assert_eq!(check(&snap, &honor, "n1"), Err(REASON_SPREAD.to_owned()));
    assert_eq!(check(&snap, &honor, "n3"), Ok(()));
    let snap2 = snapshot(
        vec![with_labels(zoned("n1", "a"), &[("pool", "x")]), zoned("n2", "b")],
        vec![(web("w1"), "n1")],
    );
    // only zone a counts with Honor: 1+1-1 = 1 -> fits
    assert_eq!(check(&snap2, &honor, "n1"), Ok(()));
    let ignore = info(with_spec(
        constrained("p", zone_constraint(json!({ "nodeAffinityPolicy": "Ignore" }))),
        "nodeSelector",
        json!({ "pool": "x" }),
    ));
    // zone b (0) counts with Ignore: 1+1-0 = 2 -> rejected
    assert_eq!(check(&snap2, &ignore, "n1"), Err(REASON_SPREAD.to_owned()));
}

#[test]
fn system_default_spreading_prefers_nodes_with_fewer_pods_of_the_owner() {
    let owned = |name: &str| with_owner(pod(name, "", ""), "rs-1");
    let snap = snapshot(
        vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi"), node("n3", "4", "8Gi")],
        vec![(owned("a"), "n1"), (owned("b"), "n1"), (owned("c"), "n3")],
    );
    let p = info(owned("p"));
    let candidates: Vec<usize> =
        ["n1", "n2", "n3"].iter().map(|n| snap.slot_of(n).unwrap()).collect();
    let state = SpreadScoreState::compute(&p, &snap, &candidates, true).unwrap();
    let mut raw = state.scores(&p, &snap, &candidates);
    // hostname: count * ln(3 + 2) + (3 - 1); no zone labels
    assert_eq!(raw, [5, 2, 4]);
    state.normalize(&mut raw);
    assert_eq!(raw, [40, 100, 60]);
    assert!(SpreadScoreState::compute(&p, &snap, &candidates, false).is_none());
    assert!(
        SpreadScoreState::compute(&info(pod("lone", "", "")), &snap, &candidates, true).is_none()
    );
}

#[test]
fn soft_constraints_score_zones_and_ignore_nodes_without_the_key() {
    let snap = snapshot(
        vec![zoned("n1", "a"), zoned("n2", "b"), node("n3", "4", "8Gi")],
        vec![(web("w1"), "n1"), (web("w2"), "n1")],
    );
    let p =
        info(constrained("p", zone_constraint(json!({ "whenUnsatisfiable": "ScheduleAnyway" }))));
    assert!(SpreadFilterState::compute(&p, &snap).is_none(), "soft only");
    let candidates: Vec<usize> =
        ["n1", "n2", "n3"].iter().map(|n| snap.slot_of(n).unwrap()).collect();
    let state = SpreadScoreState::compute(&p, &snap, &candidates, true).unwrap();
    let mut raw = state.scores(&p, &snap, &candidates);
    // zone weight ln(2 + 2): a = 2 * 1.386 = 2.77 -> 3, b = 0
    assert_eq!(raw, [3, 0, 0]);
    state.normalize(&mut raw);
    assert_eq!(raw, [0, 100, 0]);
}

#[test]
fn default_spreading_counts_zones_with_or_without_node_affinity() {
    let zone = |n: &str, z: &str| {
        with_labels(node(n, "4", "8Gi"), &[("topology.kubernetes.io/zone", z), ("pool", "x")])
    };
    let owned = |name: &str| with_owner(pod(name, "", ""), "rs-1");
    let snap = snapshot(
        vec![zone("n1", "a"), zone("n2", "a"), zone("n3", "b")],
        vec![(owned("a"), "n1"), (owned("b"), "n1")],
    );
    let candidates: Vec<usize> =
        ["n1", "n2", "n3"].iter().map(|n| snap.slot_of(n).unwrap()).collect();
    let free = info(owned("p"));
    let pinned = info(with_spec(owned("q"), "nodeSelector", json!({ "pool": "x" })));
    for p in [free, pinned] {
        let state = SpreadScoreState::compute(&p, &snap, &candidates, true).unwrap();
        let mut raw = state.scores(&p, &snap, &candidates);
        // host: n * ln(5) + 2; zone: n * ln(4) + 4 (zone a holds 2)
        assert_eq!(raw, [12, 9, 6]);
        state.normalize(&mut raw);
        assert_eq!(raw, [50, 75, 100]);
    }
}
