//! The status the kubelet reports for a pod (upstream's generateAPIPodStatus and getPhase):
//! pure, from the pod, the runtime's containers, probe results and the waiting reasons the
//! worker met (image pulls, config errors, back-off).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus as KStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rudder_runtime::{ContainerState, ContainerStatus};

use crate::actions::{self, app_containers, by_name, init_containers, restart_policy};

/// Why a container is waiting, as the worker found out (reason, message).
pub type Waiting = HashMap<String, (String, String)>;

pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    /// The pod IP (the node IP for host-network pods); None before the sandbox exists.
    pub pod_ip: Option<String>,
    pub host_ip: String,
    /// Whether the pod's sandbox is ready (PodReadyToStartContainers).
    pub sandbox_ready: bool,
    /// The runtime's containers of the pod's current sandbox.
    pub containers: &'a [ContainerStatus],
    pub waiting: &'a Waiting,
    /// Readiness (from probes, or running without a readiness probe) by container id.
    pub ready: &'a dyn Fn(&ContainerStatus) -> bool,
    /// Startup-probe state by container id (true without a startup probe).
    pub started: &'a dyn Fn(&ContainerStatus) -> bool,
    /// A terminal phase decided outside the containers (node shutdown, deadline): phase,
    /// reason, message.
    pub terminal_override: Option<(&'a str, &'a str, &'a str)>,
    pub now: Timestamp,
}

fn ts_of_ns(ns: i64) -> Option<Time> {
    (ns > 0).then(|| Timestamp::from_nanosecond(i128::from(ns)).ok().map(Time)).flatten()
}

pub fn container_id(c: &ContainerStatus) -> String {
    format!("rudder://{}", c.id)
}

fn terminated(c: &ContainerStatus) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: (!c.reason.is_empty()).then(|| c.reason.clone()),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: ts_of_ns(c.started_at_ns),
        finished_at: ts_of_ns(c.finished_at_ns),
        container_id: Some(container_id(c)),
        signal: None,
    }
}

fn waiting_state(reason: &str, message: &str) -> KState {
    KState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: (!message.is_empty()).then(|| message.to_owned()),
        }),
        ..KState::default()
    }
}

fn container_status(
    spec: &Container,
    history: &[&ContainerStatus],
    input: &StatusInput<'_>,
    default_waiting: &str,
) -> KStatus {
    let latest = history.first().copied();
    let previous = history.get(1).copied();
    let image = spec.image.clone().unwrap_or_default();
    let mut st = KStatus {
        name: spec.name.clone(),
        image: image.clone(),
        image_id: String::new(),
        restart_count: latest.map(|c| c.metadata.attempt as i32).unwrap_or(0),
        ready: false,
        started: Some(false),
        ..KStatus::default()
    };
    let waiting = input.waiting.get(&spec.name);
    match latest {
        None => {
            let (reason, message) =
                waiting.cloned().unwrap_or_else(|| (default_waiting.to_owned(), String::new()));
            st.state = Some(waiting_state(&reason, &message));
        }
        Some(c) => {
            st.image_id = c.image_ref.clone();
            st.container_id = Some(container_id(c));
            match c.state {
                ContainerState::Running => {
                    st.state = Some(KState {
                        running: Some(ContainerStateRunning {
                            started_at: ts_of_ns(c.started_at_ns),
                        }),
                        ..KState::default()
                    });
                    st.started = Some((input.started)(c));
                    st.ready = st.started == Some(true) && (input.ready)(c);
                    st.last_state = previous
                        .map(|p| KState { terminated: Some(terminated(p)), ..KState::default() });
                }
                ContainerState::Exited => {
                    // Waiting to be restarted (back-off, pull) shows as waiting with the
                    // exit as lastState, as upstream.
                    if let Some((reason, message)) = waiting {
                        st.state = Some(waiting_state(reason, message));
                        st.last_state =
                            Some(KState { terminated: Some(terminated(c)), ..KState::default() });
                    } else {
                        st.state =
                            Some(KState { terminated: Some(terminated(c)), ..KState::default() });
                        st.last_state = previous.map(|p| KState {
                            terminated: Some(terminated(p)),
                            ..KState::default()
                        });
                    }
                }
                ContainerState::Created | ContainerState::Unknown => {
                    let (reason, message) = waiting
                        .cloned()
                        .unwrap_or_else(|| ("ContainerCreating".to_owned(), String::new()));
                    st.state = Some(waiting_state(&reason, &message));
                    st.last_state = previous
                        .map(|p| KState { terminated: Some(terminated(p)), ..KState::default() });
                }
            }
        }
    }
    st
}

/// Upstream's getPhase over the app container statuses.
pub fn phase(pod: &Pod, init_done: bool, init_failed: bool, statuses: &[KStatus]) -> &'static str {
    let policy = restart_policy(pod);
    if init_failed && policy == "Never" {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in statuses {
        let state = s.state.as_ref();
        if state.is_some_and(|st| st.running.is_some()) {
            running += 1;
        } else if let Some(t) = state.and_then(|st| st.terminated.as_ref()) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s.last_state.as_ref().is_some_and(|l| l.terminated.is_some()) {
            stopped += 1;
            let ok = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            if ok {
                succeeded += 1;
            }
        } else {
            waiting += 1;
        }
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if succeeded == stopped => "Succeeded",
            "OnFailure" => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: if ok { None } else { reason },
        message: if ok { None } else { message },
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

/// Upstream's QoS class: Guaranteed when every container limits cpu and memory with
/// requests equal to limits, BestEffort when nothing is requested or limited, else Burstable.
pub fn qos_class(pod: &Pod) -> &'static str {
    let all: Vec<&Container> = init_containers(pod).iter().chain(app_containers(pod)).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.clone()).unwrap_or_default();
        let limits = r.and_then(|r| r.limits.clone()).unwrap_or_default();
        for res in ["cpu", "memory"] {
            let l = limits.get(res).map(|q| q.0.clone());
            let q = requests.get(res).map(|q| q.0.clone()).or_else(|| l.clone());
            if l.is_some() || q.is_some() {
                any = true;
            }
            let same = match (&l, &q) {
                (Some(l), Some(q)) => {
                    rudder_api::quantity::parse_milli(l).ok()
                        == rudder_api::quantity::parse_milli(q).ok()
                }
                _ => false,
            };
            if !same {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

pub fn generate(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let named = by_name(input.containers);
    let history = |name: &str| named.get(name).cloned().unwrap_or_default();

    let mut init_done = true;
    let mut init_failed = false;
    let mut incomplete_init = Vec::new();
    let init_statuses: Vec<KStatus> = init_containers(pod)
        .iter()
        .map(|c| {
            let h = history(&c.name);
            let st = container_status(c, &h, input, "PodInitializing");
            let latest = h.first();
            let succeeded =
                latest.is_some_and(|l| l.state == ContainerState::Exited && l.exit_code == 0);
            if latest.is_some_and(|l| l.state == ContainerState::Exited && l.exit_code != 0) {
                init_failed = true;
            }
            if !succeeded {
                init_done = false;
                incomplete_init.push(c.name.clone());
            }
            st
        })
        .collect();
    // App containers started means the inits completed earlier (their records may be gone).
    let apps_started = app_containers(pod).iter().any(|c| named.contains_key(c.name.as_str()));
    if apps_started {
        init_done = true;
        init_failed = false;
    }
    let app_waiting = if init_done { "ContainerCreating" } else { "PodInitializing" };
    let statuses: Vec<KStatus> = app_containers(pod)
        .iter()
        .map(|c| container_status(c, &history(&c.name), input, app_waiting))
        .collect();

    let (phase, reason, message) = match input.terminal_override {
        Some((p, r, m)) => (p.to_owned(), Some(r.to_owned()), Some(m.to_owned())),
        None => {
            let current = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            // A terminal phase is never left.
            let p = match current {
                Some(p @ ("Succeeded" | "Failed")) => p,
                _ => phase(pod, init_done, init_failed, &statuses),
            };
            (p.to_owned(), None, None)
        }
    };
    let terminal = phase == "Succeeded" || phase == "Failed";

    let unready: Vec<String> =
        statuses.iter().filter(|s| !s.ready).map(|s| s.name.clone()).collect();
    let gates_ok =
        pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref()).into_iter().flatten().all(|g| {
            pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                cs.iter().any(|c| c.type_ == g.condition_type && c.status == "True")
            })
        });
    let containers_ready = unready.is_empty() && !terminal;
    let (ready_reason, ready_message) = if terminal {
        (Some("PodCompleted".to_owned()), None)
    } else {
        (
            Some("ContainersNotReady".to_owned()),
            Some(format!("containers with unready status: [{}]", unready.join(" "))),
        )
    };
    let now = input.now;
    let mut conditions = vec![
        condition(
            pod,
            "PodReadyToStartContainers",
            input.sandbox_ready && !terminal,
            None,
            None,
            now,
        ),
        condition(
            pod,
            "Initialized",
            init_done,
            Some("ContainersNotInitialized".into()),
            Some(format!("containers with incomplete status: [{}]", incomplete_init.join(" "))),
            now,
        ),
        condition(
            pod,
            "Ready",
            containers_ready && gates_ok,
            ready_reason.clone(),
            ready_message.clone(),
            now,
        ),
        condition(pod, "ContainersReady", containers_ready, ready_reason, ready_message, now),
    ];
    if terminal {
        // Upstream reports Initialized True for a completed pod whose inits ran.
        conditions[1] = condition(pod, "Initialized", init_done || init_failed, None, None, now);
    }
    // Conditions the kubelet does not own (PodScheduled, DisruptionTarget, readiness gates)
    // are kept as they are.
    let owned = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];
    let mut kept: Vec<PodCondition> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| !owned.contains(&c.type_.as_str()))
        .collect();
    kept.extend(conditions);
    let existing = pod.status.as_ref();
    let pod_ip = input.pod_ip.clone().or_else(|| existing.and_then(|s| s.pod_ip.clone()));
    PodStatus {
        phase: Some(phase),
        reason: reason.or_else(|| existing.and_then(|s| s.reason.clone())),
        message: message.or_else(|| existing.and_then(|s| s.message.clone())),
        conditions: Some(kept),
        host_ip: Some(input.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: input.host_ip.clone() }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: existing.and_then(|s| s.start_time.clone()).or(Some(Time(now))),
        qos_class: Some(qos_class(pod).to_owned()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        nominated_node_name: existing.and_then(|s| s.nominated_node_name.clone()),
        ..PodStatus::default()
    }
}

/// The container names of the pod mapped to their spec, for lookups.
pub fn specs(pod: &Pod) -> BTreeMap<&str, (&Container, bool)> {
    let mut m = BTreeMap::new();
    for c in actions::init_containers(pod) {
        m.insert(c.name.as_str(), (c, true));
    }
    for c in actions::app_containers(pod) {
        m.insert(c.name.as_str(), (c, false));
    }
    m
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;
