use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::algorithm::*;

fn run(snap: &Snapshot, p: &PodInfo, cursor: &mut CycleCursor) -> Result<Scheduled, ScheduleError> {
    let mut rng = StdRng::seed_from_u64(42);
    schedule_pod(
        snap,
        p,
        None,
        &Nominated::default(),
        &AlgorithmConfig::default(),
        cursor,
        &mut rng,
    )
}

fn message(r: Result<Scheduled, ScheduleError>) -> String {
    match r {
        Err(ScheduleError::Unschedulable(d)) => d.message(None),
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

#[test]
fn adaptive_percentage_of_nodes_to_score() {
    assert_eq!(num_feasible_nodes_to_find(0, 50), 50);
    assert_eq!(num_feasible_nodes_to_find(0, 1000), 420);
    assert_eq!(num_feasible_nodes_to_find(0, 5000), 500);
    assert_eq!(num_feasible_nodes_to_find(0, 6000), 300, "never below 5%");
    assert_eq!(num_feasible_nodes_to_find(10, 200), 100, "never below 100 nodes");
    assert_eq!(num_feasible_nodes_to_find(100, 5000), 5000);
}

#[test]
fn fit_messages_count_and_sort_reasons_like_upstream() {
    let reasons = std::iter::repeat_n("Insufficient cpu", 10)
        .chain(std::iter::repeat_n("node(s) had untolerated taint {a: b}", 2));
    assert_eq!(
        fit_message(12, reasons.clone(), None),
        "0/12 nodes are available: 10 Insufficient cpu, 2 node(s) had untolerated taint {a: b}."
    );
    assert_eq!(
        fit_message(
            3,
            std::iter::repeat_n("Insufficient cpu", 3),
            Some(
                "preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
            )
        ),
        "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
}

#[test]
fn picks_the_emptier_node_and_assumed_pods_count_at_once() {
    let mut snap = snapshot(
        vec![node("n1", "2", "4Gi"), node("n2", "2", "4Gi")],
        vec![(pod("a", "1", "1Gi"), "n1")],
    );
    let mut cursor = CycleCursor::default();
    let p = info(pod("p", "1", "1Gi"));
    let s = run(&snap, &p, &mut cursor).unwrap();
    assert_eq!(&*s.node, "n2");
    assert_eq!(s.feasible, 2);
    snap.assume_pod(p, "n2");
    let q = info(pod("q", "1500m", "1Gi"));
    assert_eq!(
        message(run(&snap, &q, &mut cursor)),
        "0/2 nodes are available: 2 Insufficient cpu."
    );
    assert!(snap.forget_pod("uid-p"));
    assert_eq!(&*run(&snap, &q, &mut cursor).unwrap().node, "n2");
}

#[test]
fn filters_explain_every_node() {
    let snap = snapshot(
        vec![
            with_taint(node("n1", "4", "8Gi"), "dedicated", "gpu", "NoSchedule"),
            with_labels(node("n2", "4", "8Gi"), &[("disk", "ssd")]),
            node("n3", "1", "8Gi"),
        ],
        vec![],
    );
    let p = info(pod("p", "5", ""));
    assert_eq!(
        message(run(&snap, &p, &mut CycleCursor::default())),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    );
    let picky = info(with_spec(pod("p", "", ""), "nodeSelector", json!({ "disk": "hdd" })));
    assert_eq!(
        message(run(&snap, &picky, &mut CycleCursor::default())),
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 node(s) didn't match Pod's node affinity/selector."
    );
    assert!(matches!(
        run(&Snapshot::new(), &p, &mut CycleCursor::default()),
        Err(ScheduleError::NoNodes)
    ));
}

#[test]
fn pods_pinned_by_node_name_affinity_only_look_at_those_nodes() {
    let snap = snapshot(
        vec![node("n1", "1", "8Gi"), node("n2", "4", "8Gi"), node("n3", "4", "8Gi")],
        vec![],
    );
    let pinned = |name: &str| {
        info(with_spec(
            pod("p", "2", ""),
            "affinity",
            json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": [name] }] }] } } }),
        ))
    };
    assert_eq!(&*run(&snap, &pinned("n3"), &mut CycleCursor::default()).unwrap().node, "n3");
    assert_eq!(
        message(run(&snap, &pinned("n1"), &mut CycleCursor::default())),
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't satisfy plugin(s) [NodeAffinity]."
    );
}

#[test]
fn only_a_share_of_a_big_cluster_is_checked_starting_where_the_last_cycle_stopped() {
    let nodes: Vec<_> = (0..200).map(|i| node(&format!("n{i:03}"), "4", "8Gi")).collect();
    let snap = snapshot(nodes, vec![]);
    let cfg = AlgorithmConfig { percentage_of_nodes_to_score: 50, ..AlgorithmConfig::default() };
    let mut cursor = CycleCursor::default();
    let mut rng = StdRng::seed_from_u64(1);
    let p = info(pod("p", "100m", ""));
    let s =
        schedule_pod(&snap, &p, None, &Nominated::default(), &cfg, &mut cursor, &mut rng).unwrap();
    assert_eq!((s.evaluated, s.feasible), (100, 100));
    assert_eq!(cursor.next_start, 100);
    let s =
        schedule_pod(&snap, &p, None, &Nominated::default(), &cfg, &mut cursor, &mut rng).unwrap();
    assert_eq!(s.evaluated, 100);
    assert_eq!(cursor.next_start, 0);
}

#[test]
fn ties_are_broken_at_random_reproducibly() {
    let totals = [5, 9, 9, 3, 9];
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let pick = select_host(&totals, &mut StdRng::seed_from_u64(seed));
        assert_eq!(totals[pick], 9);
        seen.insert(pick);
        assert_eq!(pick, select_host(&totals, &mut StdRng::seed_from_u64(seed)));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [1, 2, 4]);
}

#[test]
fn nominated_pods_hold_their_room_against_lower_priorities() {
    let snap = snapshot(vec![node("n1", "1", "8Gi")], vec![]);
    let mut nominated = Nominated::default();
    let preemptor = info(with_spec(pod("big", "800m", ""), "priority", json!(100)));
    nominated.add(preemptor.clone(), "n1");
    let cfg = AlgorithmConfig::default();
    let mut rng = StdRng::seed_from_u64(1);
    let low = info(pod("low", "500m", ""));
    let r =
        schedule_pod(&snap, &low, None, &nominated, &cfg, &mut CycleCursor::default(), &mut rng);
    assert_eq!(message(r), "0/1 nodes are available: 1 Insufficient cpu.");
    // the preemptor itself goes to its nominated node
    let r = schedule_pod(
        &snap,
        &preemptor,
        Some("n1"),
        &nominated,
        &cfg,
        &mut CycleCursor::default(),
        &mut rng,
    );
    assert_eq!(&*r.unwrap().node, "n1");
    let higher = info(with_spec(pod("higher", "500m", ""), "priority", json!(1000)));
    let r =
        schedule_pod(&snap, &higher, None, &nominated, &cfg, &mut CycleCursor::default(), &mut rng);
    assert_eq!(&*r.unwrap().node, "n1");
}

#[test]
fn default_spreading_and_anti_affinity_change_the_choice() {
    let owned = |name: &str| with_owner(pod(name, "100m", "100Mi"), "rs-1");
    let snap = snapshot(
        vec![node("n1", "4", "8Gi"), node("n2", "4", "8Gi")],
        vec![(owned("a"), "n1"), (pod("other", "100m", "100Mi"), "n2")],
    );
    // both nodes use the same resources; only spreading separates them
    let s = run(&snap, &info(owned("b")), &mut CycleCursor::default()).unwrap();
    assert_eq!(&*s.node, "n2");
}
