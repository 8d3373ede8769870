use serde_json::json;

use super::*;
use crate::interpod::*;

fn zoned(name: &str, zone: &str) -> serde_json::Value {
    with_labels(node(name, "4", "8Gi"), &[("zone", zone)])
}

fn affine(
    p: serde_json::Value,
    kind: &str,
    mode: &str,
    terms: serde_json::Value,
) -> serde_json::Value {
    with_spec(p, "affinity", json!({ kind: { mode: terms } }))
}

const REQ: &str = "requiredDuringSchedulingIgnoredDuringExecution";
const PREF: &str = "preferredDuringSchedulingIgnoredDuringExecution";

fn filter(
    snap: &crate::snapshot::Snapshot,
    p: &crate::pod_info::PodInfo,
    node: &str,
) -> Result<(), Vec<String>> {
    let state = InterPodFilterState::compute(p, snap).unwrap_or_default();
    state
        .filter(p, snap.node_by_name(node).unwrap(), &snap.namespaces)
        .map_err(|r| r.reasons.iter().map(|s| s.to_string()).collect())
}

#[test]
fn required_anti_affinity_keeps_replicas_apart() {
    let web = |name| with_pod_labels(pod(name, "", ""), &[("app", "web")]);
    let snap =
        snapshot(vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")], vec![(web("w1"), "n1")]);
    let p = info(affine(
        web("w2"),
        "podAntiAffinity",
        REQ,
        json!([term("web", "kubernetes.io/hostname")]),
    ));
    assert_eq!(filter(&snap, &p, "n1"), Err(vec![REASON_ANTI_AFFINITY.to_owned()]));
    assert_eq!(filter(&snap, &p, "n2"), Ok(()));
}

#[test]
fn existing_pods_anti_affinity_keeps_the_incoming_pod_away() {
    let db = affine(
        with_pod_labels(pod("db", "", ""), &[("app", "db")]),
        "podAntiAffinity",
        REQ,
        json!([term("web", "zone")]),
    );
    let snap =
        snapshot(vec![zoned("n1", "a"), zoned("n2", "a"), zoned("n3", "b")], vec![(db, "n1")]);
    let web = info(with_pod_labels(pod("w", "", ""), &[("app", "web")]));
    assert_eq!(filter(&snap, &web, "n2"), Err(vec![REASON_EXISTING_ANTI_AFFINITY.to_owned()]));
    assert_eq!(filter(&snap, &web, "n3"), Ok(()));
    let other = info(with_pod_labels(pod("o", "", ""), &[("app", "other")]));
    assert_eq!(filter(&snap, &other, "n1"), Ok(()));
}

#[test]
fn required_affinity_needs_a_matching_pod_in_the_same_topology() {
    let cache = with_pod_labels(pod("c", "", ""), &[("app", "cache")]);
    let snap = snapshot(
        vec![zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "a"), node("n4", "4", "8Gi")],
        vec![(cache, "n1")],
    );
    let p = info(affine(pod("p", "", ""), "podAffinity", REQ, json!([term("cache", "zone")])));
    assert_eq!(filter(&snap, &p, "n1"), Ok(()));
    assert_eq!(filter(&snap, &p, "n3"), Ok(()));
    assert_eq!(filter(&snap, &p, "n2"), Err(vec![REASON_AFFINITY.to_owned()]));
    assert_eq!(filter(&snap, &p, "n4"), Err(vec![REASON_AFFINITY.to_owned()]), "no zone label");
    let state = InterPodFilterState::compute(&p, &snap).unwrap();
    let r = state.filter(&p, snap.node_by_name("n2").unwrap(), &snap.namespaces).unwrap_err();
    assert!(r.unresolvable);
}

#[test]
fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
    let snap = snapshot(vec![zoned("n1", "a")], vec![]);
    let first = info(affine(
        with_pod_labels(pod("p", "", ""), &[("app", "cache")]),
        "podAffinity",
        REQ,
        json!([term("cache", "zone")]),
    ));
    assert_eq!(filter(&snap, &first, "n1"), Ok(()));
    let stranger =
        info(affine(pod("q", "", ""), "podAffinity", REQ, json!([term("cache", "zone")])));
    assert_eq!(filter(&snap, &stranger, "n1"), Err(vec![REASON_AFFINITY.to_owned()]));
}

#[test]
fn terms_look_in_their_namespaces() {
    let mut other = with_pod_labels(pod("x", "", ""), &[("app", "web")]);
    other["metadata"]["namespace"] = json!("other");
    let mut snap = snapshot(vec![node("n1", "4", "8Gi")], vec![(other, "n1")]);
    snap.namespaces.labels.insert("other".into(), [("team".to_owned(), "a".to_owned())].into());
    let with_term =
        |t: serde_json::Value| info(affine(pod("p", "", ""), "podAntiAffinity", REQ, json!([t])));
    let own_ns = with_term(term("web", "kubernetes.io/hostname"));
    assert_eq!(filter(&snap, &own_ns, "n1"), Ok(()), "other namespace is not looked at");
    let mut named = term("web", "kubernetes.io/hostname");
    named["namespaces"] = json!(["other"]);
    assert!(filter(&snap, &with_term(named), "n1").is_err());
    let mut all = term("web", "kubernetes.io/hostname");
    all["namespaceSelector"] = json!({});
    assert!(filter(&snap, &with_term(all), "n1").is_err());
    let mut team_b = term("web", "kubernetes.io/hostname");
    team_b["namespaceSelector"] = json!({ "matchLabels": { "team": "b" } });
    assert_eq!(filter(&snap, &with_term(team_b), "n1"), Ok(()));
    let mut team_a = term("web", "kubernetes.io/hostname");
    team_a["namespaceSelector"] = json!({ "matchLabels": { "team": "a" } });
    assert!(filter(&snap, &with_term(team_a), "n1").is_err());
}

#[test]
fn removing_a_pod_updates_the_counts() {
    let web = with_pod_labels(pod("w1", "", ""), &[("app", "web")]);
    let snap = snapshot(vec![node("n1", "4", "8Gi")], vec![(web, "n1")]);
    let p = info(affine(
        pod("p", "", ""),
        "podAntiAffinity",
        REQ,
        json!([term("web", "kubernetes.io/hostname")]),
    ));
    let mut state = InterPodFilterState::compute(&p, &snap).unwrap();
    let node = snap.node_by_name("n1").unwrap();
    assert!(state.filter(&p, node, &snap.namespaces).is_err());
    let victim = node.pods[0].clone();
    state.update_pod(&victim, node, &p, &snap.namespaces, -1);
    assert!(state.filter(&p, node, &snap.namespaces).is_ok());
}

#[test]
fn preferred_terms_score_topologies() {
    let cache = with_pod_labels(pod("c", "", ""), &[("app", "cache")]);
    let snap =
        snapshot(vec![zoned("n1", "a"), zoned("n2", "b"), zoned("n3", "a")], vec![(cache, "n1")]);
    let pref =
        |weight: i64| json!([{ "weight": weight, "podAffinityTerm": term("cache", "zone") }]);
    let near = info(affine(pod("p", "", ""), "podAffinity", PREF, pref(10)));
    let state = score_state(&near, &snap, 1).unwrap();
    let mut raw: Vec<i64> =
        ["n1", "n2", "n3"].iter().map(|n| score(&state, snap.node_by_name(n).unwrap())).collect();
    assert_eq!(raw, [10, 0, 10]);
    normalize(&mut raw);
    assert_eq!(raw, [100, 0, 100]);
    let far = info(affine(pod("p", "", ""), "podAntiAffinity", PREF, pref(10)));
    let state = score_state(&far, &snap, 1).unwrap();
    let mut raw: Vec<i64> =
        ["n1", "n2", "n3"].iter().map(|n| score(&state, snap.node_by_name(n).unwrap())).collect();
    normalize(&mut raw);
    assert_eq!(raw, [0, 100, 0]);
    // no terms anywhere: nothing to score
    assert!(score_state(&info(pod("q", "", "")), &snap, 1).is_none());
}

#[test]
fn existing_pods_required_affinity_draws_matching_pods_with_the_hard_weight() {
    let needs_web = affine(pod("a", "", ""), "podAffinity", REQ, json!([term("web", "zone")]));
    let snap = snapshot(vec![zoned("n1", "a"), zoned("n2", "b")], vec![(needs_web, "n2")]);
    let web = info(with_pod_labels(pod("w", "", ""), &[("app", "web")]));
    let state = score_state(&web, &snap, 1).unwrap();
    assert_eq!(score(&state, snap.node_by_name("n2").unwrap()), 1);
    assert_eq!(score(&state, snap.node_by_name("n1").unwrap()), 0);
    assert!(score_state(&web, &snap, 0).is_none());
}
