//! What the simulator keeps of a pod (a small summary, never the whole object), the pod's
//! QoS class as upstream computes it, and the `sim.rudder.dev/*` annotations.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// Annotation: the containers exit this many milliseconds after they start (same name as the
/// simulated runtime's).
pub const EXIT_AFTER_MS_ANNOTATION: &str = "sim.rudder.dev/exit-after-ms";
/// Annotation: the containers' exit code (default 0; same name as the simulated runtime's).
pub const EXIT_CODE_ANNOTATION: &str = "sim.rudder.dev/exit-code";
/// Annotation: the containers become ready this many milliseconds after each start.
pub const READY_AFTER_MS_ANNOTATION: &str = "sim.rudder.dev/ready-after-ms";
/// Annotation: `"true"` keeps the containers running but never ready.
pub const NOT_READY_ANNOTATION: &str = "sim.rudder.dev/not-ready";
/// Annotation: `"true"` keeps the containers running until the pod is deleted, whatever the
/// restart policy.
pub const RUN_FOREVER_ANNOTATION: &str = "sim.rudder.dev/run-forever";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// How the pod's containers behave, from its annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ExitPlan {
    pub exit_after: Option<Duration>,
    pub exit_code: Option<i32>,
    pub ready_after: Duration,
    pub not_ready: bool,
    pub run_forever: bool,
}

fn flag(annotations: &BTreeMap<String, String>, key: &str) -> bool {
    annotations.get(key).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn number<T: std::str::FromStr>(annotations: &BTreeMap<String, String>, key: &str) -> Option<T> {
    let raw = annotations.get(key)?;
    match raw.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => {
            tracing::debug!(annotation = key, value = %raw, "ignoring an annotation that is not a number");
            None
        }
    }
}

impl ExitPlan {
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Self {
        ExitPlan {
            exit_after: number::<u64>(annotations, EXIT_AFTER_MS_ANNOTATION)
                .map(Duration::from_millis),
            exit_code: number::<i32>(annotations, EXIT_CODE_ANNOTATION),
            ready_after: number::<u64>(annotations, READY_AFTER_MS_ANNOTATION)
                .map(Duration::from_millis)
                .unwrap_or_default(),
            not_ready: flag(annotations, NOT_READY_ANNOTATION),
            run_forever: flag(annotations, RUN_FOREVER_ANNOTATION),
        }
    }
}

/// One container of the spec: what its status repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ContainerSpec {
    pub name: Box<str>,
    pub image: Box<str>,
    /// An init container with `restartPolicy: Always` (a sidecar).
    pub sidecar: bool,
}

impl ContainerSpec {
    fn of(c: &Container) -> Self {
        ContainerSpec {
            name: c.name.as_str().into(),
            image: c.image.as_deref().unwrap_or_default().into(),
            sidecar: c.restart_policy.as_deref() == Some("Always"),
        }
    }
}

/// What the API showed of a pod's status (used to adopt pods after a restart).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ObservedPodStatus {
    pub phase: Option<String>,
    pub pod_ip: Option<Ipv4Addr>,
    pub start_time: Option<Timestamp>,
    pub restart_count: u32,
    /// The first app container is running, since then.
    pub running_since: Option<Timestamp>,
    pub ready: bool,
    pub ready_since: Option<Timestamp>,
    /// The first app container's last termination: (exit code, started, finished).
    pub last_exit: Option<(i32, Option<Timestamp>, Option<Timestamp>)>,
}

/// The summary of one pod on one of our nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: usize,
    pub deleting: bool,
    pub containers: Vec<ContainerSpec>,
    pub init_containers: Vec<ContainerSpec>,
    pub restart_policy: RestartPolicy,
    /// The pod uses the node's network: its IP is the node's.
    pub host_network: bool,
    pub qos: QosClass,
    pub plan: ExitPlan,
    pub active_deadline: Option<Duration>,
    /// Readiness gates and whether their condition is True now.
    pub readiness_gates: Vec<(String, Option<bool>)>,
    /// The pod already has a PodScheduled condition (set by the binding).
    pub has_scheduled_condition: bool,
    pub observed: ObservedPodStatus,
}

impl PodInfo {
    /// The summary of `pod`, bound to our node `node`.
    pub fn of(pod: &Pod, node: usize) -> Option<PodInfo> {
        let spec = pod.spec.as_ref()?;
        let meta = &pod.metadata;
        let empty = BTreeMap::new();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
        let condition = |t: &str| conditions.and_then(|cs| cs.iter().find(|c| c.type_ == t));
        let readiness_gates = spec
            .readiness_gates
            .iter()
            .flatten()
            .map(|g| {
                let state = condition(&g.condition_type).map(|c| c.status == "True");
                (g.condition_type.clone(), state)
            })
            .collect();
        Some(PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone().unwrap_or_default(),
            node,
            deleting: meta.deletion_timestamp.is_some(),
            containers: spec.containers.iter().map(ContainerSpec::of).collect(),
            init_containers: spec.init_containers.iter().flatten().map(ContainerSpec::of).collect(),
            restart_policy: match spec.restart_policy.as_deref() {
                Some("Never") => RestartPolicy::Never,
                Some("OnFailure") => RestartPolicy::OnFailure,
                _ => RestartPolicy::Always,
            },
            host_network: spec.host_network == Some(true),
            qos: qos_class(pod),
            plan: ExitPlan::from_annotations(annotations),
            active_deadline: spec
                .active_deadline_seconds
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(s as u64)),
            readiness_gates,
            has_scheduled_condition: condition("PodScheduled").is_some(),
            observed: observe_status(pod),
        })
    }
}

fn observe_status(pod: &Pod) -> ObservedPodStatus {
    let Some(status) = pod.status.as_ref() else { return ObservedPodStatus::default() };
    let first: Option<&ContainerStatus> =
        status.container_statuses.as_ref().and_then(|cs| cs.first());
    let ready_condition = status.conditions.iter().flatten().find(|c| c.type_ == "ContainersReady");
    ObservedPodStatus {
        phase: status.phase.clone(),
        pod_ip: status.pod_ip.as_deref().and_then(|ip| ip.parse().ok()),
        start_time: status.start_time.as_ref().map(|t| t.0),
        restart_count: first.map(|c| c.restart_count.max(0) as u32).unwrap_or(0),
        running_since: first
            .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
            .map(|t| t.0),
        ready: first.is_some_and(|c| c.ready),
        ready_since: ready_condition.and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0),
        last_exit: first.and_then(|c| c.last_state.as_ref()?.terminated.as_ref()).map(|t| {
            (t.exit_code, t.started_at.as_ref().map(|x| x.0), t.finished_at.as_ref().map(|x| x.0))
        }),
    }
}

/// Upstream's QoS classes: BestEffort when no container requests or limits cpu or memory;
/// Guaranteed when every container limits both and every request equals its limit;
/// Burstable otherwise. Init containers count like the others.
pub(crate) fn qos_class(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else { return QosClass::BestEffort };
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let positive = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        rudder_api::quantity::parse_milli(&q.0).ok().filter(|v| *v > 0)
    };
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let resources = c.resources.as_ref();
        let container_limits = resources.and_then(|r| r.limits.as_ref());
        let container_requests = resources.and_then(|r| r.requests.as_ref());
        let mut found = 0;
        for name in ["cpu", "memory"] {
            let limit = container_limits.and_then(|l| l.get(name)).and_then(positive);
            // A request left out defaults to the limit (the API server's defaulting).
            let request = match container_requests.and_then(|r| r.get(name)) {
                Some(q) => positive(q),
                None => limit,
            };
            if let Some(v) = request {
                *requests.entry(name).or_default() += v;
            }
            if let Some(v) = limit {
                found += 1;
                *limits.entry(name).or_default() += v;
            }
        }
        if found != 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
        && requests.len() == limits.len()
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn with_resources(containers: serde_json::Value) -> Pod {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": containers}}))
    }

    #[test]
    fn qos_classes_as_upstream() {
        let be = with_resources(
            json!([{"name": "a"}, {"name": "b", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]),
        );
        assert_eq!(qos_class(&be), QosClass::BestEffort);
        let g = with_resources(json!([
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}
        ]));
        assert_eq!(qos_class(&g), QosClass::Guaranteed, "requests default to limits; 1 == 1000m");
        let b = with_resources(json!([
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}}
        ]));
        assert_eq!(qos_class(&b), QosClass::Burstable);
        let b2 = with_resources(json!([
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b"}
        ]));
        assert_eq!(qos_class(&b2), QosClass::Burstable, "one container without limits");
        let b3 =
            with_resources(json!([{"name": "a", "resources": {"requests": {"memory": "10Mi"}}}]));
        assert_eq!(qos_class(&b3), QosClass::Burstable);
        let init = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i"}]
        }}));
        assert_eq!(qos_class(&init), QosClass::Burstable, "init containers count");
    }

    #[test]
    fn summarizes_pods_and_annotations() {
        let p = pod(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": {
                "sim.rudder.dev/exit-after-ms": "250", "sim.rudder.dev/exit-code": "3",
                "sim.rudder.dev/ready-after-ms": "oops", "sim.rudder.dev/not-ready": "True"
            }},
            "spec": {
                "restartPolicy": "OnFailure", "nodeName": "n", "activeDeadlineSeconds": 30,
                "containers": [{"name": "c", "image": "busybox"}],
                "initContainers": [{"name": "init", "image": "i"}, {"name": "side", "image": "s", "restartPolicy": "Always"}],
                "readinessGates": [{"conditionType": "example.com/gate"}]
            },
            "status": {"phase": "Running", "podIP": "10.42.0.9", "conditions": [
                {"type": "PodScheduled", "status": "True"}, {"type": "example.com/gate", "status": "False"}
            ], "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": true, "restartCount": 2,
                "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}},
                "lastState": {"terminated": {"exitCode": 3}}}]}
        }));
        let info = PodInfo::of(&p, 4).unwrap();
        assert_eq!(info.node, 4);
        assert_eq!(info.restart_policy, RestartPolicy::OnFailure);
        assert_eq!(info.plan.exit_after, Some(Duration::from_millis(250)));
        assert_eq!(info.plan.exit_code, Some(3));
        assert_eq!(info.plan.ready_after, Duration::ZERO, "unparsable: ignored");
        assert!(info.plan.not_ready);
        assert!(!info.plan.run_forever);
        assert_eq!(info.active_deadline, Some(Duration::from_secs(30)));
        assert_eq!(
            info.init_containers.iter().map(|c| c.sidecar).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(info.readiness_gates, [("example.com/gate".to_owned(), Some(false))]);
        assert!(info.has_scheduled_condition);
        assert_eq!(info.observed.restart_count, 2);
        assert_eq!(info.observed.pod_ip, Some(Ipv4Addr::new(10, 42, 0, 9)));
        assert_eq!(info.observed.last_exit.map(|e| e.0), Some(3));
        assert!(info.observed.running_since.is_some());
    }
}
