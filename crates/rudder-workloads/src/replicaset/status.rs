//! The status a ReplicaSet (or ReplicationController) reports, computed from the pods it
//! owns (upstream's `calculateStatus`), and when to look again for pods that will become
//! available once they have been ready for minReadySeconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;
use rudder_client::objects::{map_selector_matches, pod_condition, pod_is_available, pod_is_ready};

use super::kinds::{ReplicaCondition, ReplicaStatus};

pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why the last attempt to create or delete pods failed, for the ReplicaFailure condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManageFailure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    pub message: String,
}

/// A timestamp as the API keeps it (whole seconds), so written and read-back values compare
/// equal.
pub fn api_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The new status: counts over the owned active `pods`, the observed generation, and the
/// ReplicaFailure condition set (kept as it is if already there) on a failure and removed
/// once an attempt succeeds.
pub fn calculate_status(
    current: &ReplicaStatus,
    generation: i64,
    template_labels: &BTreeMap<String, String>,
    min_ready_seconds: i32,
    pods: &[Arc<Pod>],
    failure: Option<&ManageFailure>,
    now: Timestamp,
) -> ReplicaStatus {
    let mut status = current.clone();
    let empty = BTreeMap::new();
    let labels_of = |p: &Pod| p.metadata.labels.as_ref().unwrap_or(&empty).clone();
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas =
        pods.iter().filter(|p| map_selector_matches(template_labels, &labels_of(p))).count() as i32;
    status.ready_replicas = pods.iter().filter(|p| pod_is_ready(p)).count() as i32;
    status.available_replicas =
        pods.iter().filter(|p| pod_is_available(p, min_ready_seconds, now)).count() as i32;
    status.observed_generation = generation;
    let has_failure = status.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(f) if !has_failure => status.conditions.push(ReplicaCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(api_time(now)),
        }),
        None if has_failure => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status
}

/// How long until the first ready-but-not-yet-available pod becomes available, if any.
pub fn next_available_after(
    pods: &[Arc<Pod>],
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let min_ready = Duration::from_secs(min_ready_seconds as u64);
    pods.iter()
        .filter(|p| pod_is_ready(p) && !pod_is_available(p, min_ready_seconds, now))
        .map(|p| {
            let since = pod_condition(p, "Ready").and_then(|c| c.last_transition_time.as_ref());
            match since {
                Some(t) => min_ready.saturating_sub(clock::elapsed(t.0, now)),
                None => min_ready,
            }
        })
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    const NOW: i64 = 2_000_000_000;

    fn pod(labels: &[(&str, &str)], ready_seconds_ago: Option<i64>) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.labels = Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
        p.status = Some(PodStatus {
            conditions: ready_seconds_ago.map(|ago| {
                vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(Timestamp::from_second(NOW - ago).unwrap())),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn counts_availability_and_failure_condition() {
        let now = Timestamp::from_second(NOW).unwrap();
        let template: BTreeMap<String, String> =
            [("app".to_owned(), "web".to_owned()), ("v".to_owned(), "1".to_owned())].into();
        let pods = vec![
            pod(&[("app", "web"), ("v", "1")], Some(100)),
            pod(&[("app", "web"), ("v", "1"), ("extra", "x")], Some(3)),
            pod(&[("app", "web")], None),
        ];
        let failure = ManageFailure { reason: "FailedCreate", message: "quota".into() };
        let s = calculate_status(
            &ReplicaStatus::default(),
            7,
            &template,
            10,
            &pods,
            Some(&failure),
            now,
        );
        assert_eq!(
            (s.replicas, s.fully_labeled_replicas, s.ready_replicas, s.available_replicas),
            (3, 2, 2, 1)
        );
        assert_eq!(s.observed_generation, 7);
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].reason.as_deref(), Some("FailedCreate"));
        // A later failure keeps the first condition; a success removes it.
        let other = ManageFailure { reason: "FailedDelete", message: "x".into() };
        let again = calculate_status(&s, 7, &template, 10, &pods, Some(&other), now);
        assert_eq!(again.conditions, s.conditions);
        let ok = calculate_status(&s, 7, &template, 10, &pods, None, now);
        assert!(ok.conditions.is_empty());

        assert_eq!(next_available_after(&pods, 10, now), Some(Duration::from_secs(7)));
        assert_eq!(next_available_after(&pods, 0, now), None);
        assert_eq!(next_available_after(&pods[..1], 10, now), None);
    }
}
