use super::*;
use crate::snapshot::NodeChange;

#[test]
fn pods_follow_their_nodes_away_and_back() {
    let mut snap = snapshot(vec![node("n1", "4", "8Gi")], vec![(pod("a", "1", "1Gi"), "n1")]);
    // a pod bound to a node not seen yet waits for it
    snap.add_bound_pod(info(pod("b", "500m", "")), "n2");
    assert_eq!(snap.num_pods(), 2);
    assert_eq!(snap.upsert_node(&to_node(node("n2", "4", "8Gi"))), NodeChange::Added);
    assert_eq!(snap.node_by_name("n2").unwrap().requested.milli_cpu, 500);
    assert!(snap.remove_node("n1"));
    assert!(snap.node_by_name("n1").is_none());
    assert_eq!(snap.pods_in_namespace("default").count(), 1, "a left with its node");
    snap.upsert_node(&to_node(node("n1", "4", "8Gi")));
    assert_eq!(snap.node_by_name("n1").unwrap().requested.milli_cpu, 1000);
    assert!(snap.remove_pod("uid-a").is_some());
    assert_eq!(snap.node_by_name("n1").unwrap().requested.milli_cpu, 0);
    assert!(snap.node_by_name("n1").unwrap().pods.is_empty());
}

#[test]
fn assumed_pods_are_confirmed_or_forgotten_without_double_counting() {
    let mut snap = snapshot(vec![node("n1", "4", "8Gi")], vec![]);
    snap.assume_pod(info(with_owner(pod("a", "1", ""), "rs")), "n1");
    assert!(snap.pod("uid-a").unwrap().assumed);
    assert_eq!(snap.owner_slots("rs").map(|s| s.values().sum::<u32>()), Some(1));
    snap.add_bound_pod(info(with_owner(pod("a", "1", ""), "rs")), "n1");
    let n1 = snap.node_by_name("n1").unwrap();
    assert_eq!((n1.pods.len(), n1.requested.milli_cpu), (1, 1000));
    assert!(!snap.pod("uid-a").unwrap().assumed);
    assert!(!snap.forget_pod("uid-a"), "bound pods are not forgotten");
    snap.assume_pod(info(pod("b", "1", "")), "n1");
    assert!(snap.forget_pod("uid-b"));
    assert_eq!(snap.node_by_name("n1").unwrap().requested.milli_cpu, 1000);
    snap.remove_pod("uid-a");
    assert!(snap.owner_slots("rs").is_none());
}

#[test]
fn node_updates_report_only_what_scheduling_reads() {
    let mut snap = snapshot(vec![node("n1", "4", "8Gi")], vec![]);
    let mut heartbeat = node("n1", "4", "8Gi");
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] =
        serde_json::json!("2025-01-01T00:00:00Z");
    assert_eq!(snap.upsert_node(&to_node(heartbeat)), NodeChange::Unchanged);
    let bigger = node("n1", "8", "8Gi");
    assert!(matches!(snap.upsert_node(&to_node(bigger)), NodeChange::Changed(..)));
}

#[test]
fn nodes_are_listed_zone_by_zone_in_turn() {
    let zoned =
        |n: &str, z: &str| with_labels(node(n, "1", "1Gi"), &[("topology.kubernetes.io/zone", z)]);
    let snap = snapshot(
        vec![
            zoned("a1", "a"),
            zoned("a2", "a"),
            zoned("a3", "a"),
            zoned("b1", "b"),
            zoned("c1", "c"),
        ],
        vec![],
    );
    let names: Vec<&str> = snap.order().iter().map(|&s| &*snap.node(s).name).collect();
    assert_eq!(names, ["a1", "b1", "c1", "a2", "a3"]);
}

#[test]
fn owner_zone_counts_follow_pods_and_relabelled_nodes() {
    let zone =
        |n: &str, z: &str| with_labels(node(n, "4", "8Gi"), &[("topology.kubernetes.io/zone", z)]);
    let owned = |name: &str| with_owner(pod(name, "", ""), "rs");
    let mut snap = snapshot(
        vec![zone("n1", "a"), zone("n2", "b")],
        vec![(owned("p1"), "n1"), (owned("p2"), "n2"), (owned("p3"), "n2")],
    );
    let counts = |snap: &Snapshot| {
        let mut v: Vec<(String, u32)> = snap
            .owner_zones("rs")
            .into_iter()
            .flatten()
            .map(|(z, n)| (z.to_string(), *n))
            .collect();
        v.sort();
        v
    };
    assert_eq!(counts(&snap), [("a".to_owned(), 1), ("b".to_owned(), 2)]);
    snap.upsert_node(&to_node(zone("n2", "a")));
    assert_eq!(counts(&snap), [("a".to_owned(), 3)]);
    snap.remove_pod("uid-p1");
    snap.remove_node("n2");
    assert!(snap.owner_zones("rs").is_none());
}
