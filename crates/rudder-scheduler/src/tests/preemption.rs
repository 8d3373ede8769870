use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

use super::*;
use crate::algorithm::{
    AlgorithmConfig, CycleCursor, CycleState, Nominated, ScheduleError, schedule_pod,
};
use crate::preemption::*;

fn prio(name: &str, cpu: &str, priority: i64) -> serde_json::Value {
    with_spec(pod(name, cpu, ""), "priority", json!(priority))
}

fn started(mut p: serde_json::Value, at: &str) -> serde_json::Value {
    p["status"] = json!({ "startTime": at });
    p
}

fn diagnose(
    snap: &crate::snapshot::Snapshot,
    p: &crate::pod_info::PodInfo,
) -> crate::algorithm::Diagnosis {
    let mut rng = StdRng::seed_from_u64(1);
    match schedule_pod(
        snap,
        p,
        None,
        &Nominated::default(),
        &AlgorithmConfig::default(),
        &mut CycleCursor::default(),
        &mut rng,
    ) {
        Err(ScheduleError::Unschedulable(d)) => d,
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

#[test]
fn victims_are_the_fewest_least_important_pods() {
    let snap = snapshot(
        vec![node("n1", "2", "8Gi")],
        vec![
            (started(prio("a", "800m", 10), "2024-01-01T00:00:00Z"), "n1"),
            (started(prio("b", "800m", 5), "2024-01-01T00:00:00Z"), "n1"),
            (prio("c", "200m", 1000), "n1"),
        ],
    );
    let p = info(prio("p", "1", 100));
    let state = CycleState::new(&p, &snap);
    let victims = select_victims_on_node(
        &state,
        &snap,
        snap.node_by_name("n1").unwrap(),
        &Nominated::default(),
    )
    .unwrap();
    let names: Vec<&str> = victims.iter().map(|v| &*v.name).collect();
    assert_eq!(names, ["b"], "a is more important and fits back");
}

#[test]
fn a_node_without_lower_priority_pods_has_no_victims() {
    let snap = snapshot(vec![node("n1", "1", "8Gi")], vec![(prio("a", "800m", 100), "n1")]);
    let p = info(prio("p", "500m", 100));
    let state = CycleState::new(&p, &snap);
    let r = select_victims_on_node(
        &state,
        &snap,
        snap.node_by_name("n1").unwrap(),
        &Nominated::default(),
    )
    .unwrap_err();
    assert_eq!(r.reasons, [REASON_NO_VICTIMS]);
    let d = diagnose(&snap, &p);
    let mut rng = StdRng::seed_from_u64(1);
    match preempt(&state, &snap, &d, &Nominated::default(), &mut rng) {
        PostFilter::Failed(msg) => {
            assert_eq!(
                msg,
                "0/1 nodes are available: 1 No preemption victims found for incoming pod."
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn preemption_is_not_helpful_where_the_pod_can_never_fit() {
    let snap = snapshot(
        vec![node("n1", "1", "8Gi"), with_labels(node("n2", "8", "8Gi"), &[("x", "y")])],
        vec![(prio("a", "800m", 0), "n1")],
    );
    // n1: too small even when empty; n2: wrong labels
    let p = info(with_spec(prio("p", "2", 100), "nodeSelector", json!({ "x": "z" })));
    let state = CycleState::new(&p, &snap);
    let d = diagnose(&snap, &p);
    assert_eq!(
        d.message(None),
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
    );
    let mut rng = StdRng::seed_from_u64(1);
    match preempt(&state, &snap, &d, &Nominated::default(), &mut rng) {
        PostFilter::Failed(msg) => {
            assert_eq!(msg, "0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_chosen_node_has_the_least_important_victims() {
    let snap = snapshot(
        vec![node("n1", "1", "8Gi"), node("n2", "1", "8Gi"), node("n3", "1", "8Gi")],
        vec![
            (prio("a", "800m", 50), "n1"),
            (prio("b", "800m", 10), "n2"),
            (prio("c", "800m", 2000), "n3"),
        ],
    );
    let p = info(prio("p", "500m", 100));
    let state = CycleState::new(&p, &snap);
    let d = diagnose(&snap, &p);
    assert_eq!(d.message(None), "0/3 nodes are available: 3 Insufficient cpu.");
    let mut rng = StdRng::seed_from_u64(7);
    match preempt(&state, &snap, &d, &Nominated::default(), &mut rng) {
        PostFilter::Preempt(c) => {
            assert_eq!(&*c.node, "n2");
            assert_eq!(c.victims.len(), 1);
            assert_eq!(&*c.victims[0].name, "b");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn ties_go_to_fewer_victims_then_later_start() {
    let c = |node: &str, victims: Vec<(&str, i64, &str)>| Candidate {
        node: node.into(),
        victims: victims.into_iter().map(|(n, p, t)| info(started(prio(n, "1", p), t))).collect(),
    };
    let picked = pick_one(vec![
        c("two", vec![("a", 5, "2024-01-01T00:00:00Z"), ("b", 5, "2024-01-01T00:00:00Z")]),
        c("one", vec![("c", 5, "2024-01-01T00:00:00Z")]),
    ]);
    assert_eq!(&*picked.node, "one", "lower priority sum");
    let picked = pick_one(vec![
        c("early", vec![("a", 5, "2024-01-01T00:00:00Z")]),
        c("late", vec![("b", 5, "2024-06-01T00:00:00Z")]),
    ]);
    assert_eq!(&*picked.node, "late");
}

#[test]
fn preemption_policy_never_is_honoured() {
    let snap = snapshot(vec![node("n1", "1", "8Gi")], vec![]);
    let p = info(with_spec(prio("p", "2", 100), "preemptionPolicy", json!("Never")));
    assert_eq!(eligibility(&p, &snap, None), Err(MSG_POLICY_NEVER.to_owned()));
    assert_eq!(eligibility(&info(prio("q", "2", 100)), &snap, None), Ok(()));
}
