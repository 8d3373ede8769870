//! Which pods a controller deletes first when it has too many (upstream's
//! `ActivePodsWithRanks`): pods that are further from serving go first.
//!
//! In order: unscheduled before scheduled; Pending before Unknown before Running; not ready
//! before ready; lower `controller.kubernetes.io/pod-deletion-cost` first; pods sharing a
//! node with more related pods first (spreading); ready for a shorter time first; more
//! container restarts first; created more recently first. Times are compared on a
//! logarithmic scale of their age (upstream's LogarithmicScaleDown, on by default), so pods
//! of about the same age are interchangeable and the UID decides among them.
//!
//! Upstream's comparison jumps to the UID as soon as two times differ but share a scale
//! bucket; this one compares the later keys first, which keeps it a total order (Rust's sort
//! requires one).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::{pod_condition, pod_is_active, pod_is_ready};

/// Pods whose deletion costs less go first (an integer annotation; invalid means 0).
pub const POD_DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_ordinal(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        // Upstream's map has no other phases: they rank with Pending.
        _ => 0,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST_ANNOTATION))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// A time's place on the logarithmic scale of its age at `now`: missing times first, then
/// by `floor(log2(age in ns))` (younger = smaller), -1 for times not in the past.
fn age_bucket(t: Option<Timestamp>, now: Timestamp) -> (u8, i64) {
    let Some(t) = t else { return (0, 0) };
    let age_ns = now.as_nanosecond() - t.as_nanosecond();
    if age_ns <= 0 {
        return (1, -1);
    }
    (1, (age_ns as f64).log2().floor() as i64)
}

fn ready_since(pod: &Pod) -> Option<Timestamp> {
    pod_condition(pod, "Ready")
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Orders `a` before `b` when `a` should be deleted first.
pub fn compare_for_deletion(
    a: &Pod,
    rank_a: usize,
    b: &Pod,
    rank_b: usize,
    now: Timestamp,
) -> Ordering {
    let (na, nb) = (node_name(a), node_name(b));
    let (ready_a, ready_b) = (pod_is_ready(a), pod_is_ready(b));
    let ready_time = |p: &Pod, ready: bool| {
        if ready { age_bucket(ready_since(p), now) } else { (0, 0) }
    };
    // Unassigned first (`false` < `true`).
    (!na.is_empty())
        .cmp(&!nb.is_empty())
        .then(phase_ordinal(a).cmp(&phase_ordinal(b)))
        .then(ready_a.cmp(&ready_b))
        .then(deletion_cost(a).cmp(&deletion_cost(b)))
        // More co-located related pods first.
        .then(rank_b.cmp(&rank_a))
        .then(ready_time(a, ready_a).cmp(&ready_time(b, ready_b)))
        // More restarts first.
        .then(max_restarts(b).cmp(&max_restarts(a)))
        .then(
            age_bucket(a.metadata.creation_timestamp.as_ref().map(|t| t.0), now)
                .cmp(&age_bucket(b.metadata.creation_timestamp.as_ref().map(|t| t.0), now)),
        )
        .then(a.metadata.uid.cmp(&b.metadata.uid))
}

/// The `count` pods of `pods` to delete first. `related` are the pods the spreading rank is
/// computed from (the owner's and its siblings'; upstream: pods of every ReplicaSet of the
/// same Deployment): a pod's rank is the number of active related pods on its node.
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| pod_is_active(p)) {
        *on_node.entry(node_name(p)).or_default() += 1;
    }
    let mut ranked: Vec<(usize, &Arc<Pod>)> =
        pods.iter().map(|p| (on_node.get(node_name(p)).copied().unwrap_or(0), p)).collect();
    ranked.sort_by(|(ra, a), (rb, b)| compare_for_deletion(a, *ra, b, *rb, now));
    ranked.into_iter().take(count).map(|(_, p)| p.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::collections::BTreeMap;

    const NOW: i64 = 2_000_000_000;

    fn ts(seconds_ago: i64) -> Time {
        Time(Timestamp::from_second(NOW - seconds_ago).unwrap())
    }

    fn pod(
        name: &str,
        node: &str,
        phase: &str,
        ready_for: Option<i64>,
        created_ago: i64,
    ) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.creation_timestamp = Some(ts(created_ago));
        p.spec = Some(PodSpec {
            node_name: Some(node.into()).filter(|n: &String| !n.is_empty()),
            ..Default::default()
        });
        let conditions = ready_for.map(|ago| {
            vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(ts(ago)),
                ..Default::default()
            }]
        });
        p.status = Some(PodStatus { phase: Some(phase.into()), conditions, ..Default::default() });
        Arc::new(p)
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(NOW).unwrap()
    }

    #[test]
    fn unscheduled_then_pending_then_not_ready_then_newer() {
        let pods = vec![
            pod("old-ready", "n1", "Running", Some(3600), 7200),
            pod("unscheduled", "", "Pending", None, 7200),
            pod("pending", "n1", "Pending", None, 7200),
            pod("unknown", "n1", "Unknown", None, 7200),
            pod("not-ready", "n1", "Running", None, 7200),
            pod("new-ready", "n1", "Running", Some(3600), 10),
        ];
        let order = pods_to_delete(&pods, &pods, 6, now());
        assert_eq!(order.len(), 6);
        let order = pods_to_delete(&pods, &pods, 5, now());
        assert_eq!(names(&order), ["unscheduled", "pending", "unknown", "not-ready", "new-ready"]);
    }

    #[test]
    fn readiness_age_restarts_cost_and_spreading() {
        // Ready for a shorter time goes first.
        let a = pod("ready-long", "n1", "Running", Some(86_400), 86_400);
        let b = pod("ready-short", "n1", "Running", Some(10), 86_400);
        assert_eq!(names(&pods_to_delete(&[a.clone(), b.clone()], &[], 1, now())), ["ready-short"]);

        // Restarts decide between pods otherwise alike.
        let mut c = (*pod("restarts", "n1", "Running", Some(100), 100)).clone();
        c.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { restart_count: 4, ..Default::default() }]);
        let d = pod("calm", "n1", "Running", Some(100), 100);
        assert_eq!(names(&pods_to_delete(&[d.clone(), Arc::new(c)], &[], 1, now())), ["restarts"]);

        // A lower deletion cost goes first, even before a not-yet-ready-longer pod.
        let mut e = (*pod("cheap", "n1", "Running", Some(86_400), 86_400)).clone();
        e.metadata.annotations =
            Some(BTreeMap::from([(POD_DELETION_COST_ANNOTATION.into(), "-5".into())]));
        let pods = [b.clone(), Arc::new(e)];
        assert_eq!(names(&pods_to_delete(&pods, &[], 1, now())), ["cheap"]);

        // Doubled-up pods go first: n2 holds two related pods, n1 one.
        let x = pod("alone", "n1", "Running", Some(500), 500);
        let y = pod("doubled", "n2", "Running", Some(500), 500);
        let z = pod("sibling", "n2", "Running", Some(500), 500);
        let order = pods_to_delete(&[x.clone(), y.clone()], &[x, y, z], 1, now());
        assert_eq!(names(&order), ["doubled"]);
    }

    #[test]
    fn among_equals_newer_first_and_the_order_is_total() {
        let pods: Vec<Arc<Pod>> =
            (0..40).map(|i| pod(&format!("p{i}"), "n1", "Running", None, 1 << (i % 20))).collect();
        let order = pods_to_delete(&pods, &pods, 39, now());
        let ages: Vec<i64> = order
            .iter()
            .map(|p| NOW - p.metadata.creation_timestamp.as_ref().unwrap().0.as_second())
            .collect();
        assert!(ages.windows(2).all(|w| w[0] <= w[1]), "youngest first: {ages:?}");
    }
}
