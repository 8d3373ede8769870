//! The PodStatus a kubelet would report for a simulated pod (pure rendering of
//! [`PodSim`]'s state).

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::{Exit, PodSim, Stage};
use crate::pod_info::{ContainerSpec, QosClass};

/// Go's `time.Duration` text for the delays a back-off message shows (`10s`, `2m40s`, `50ms`).
pub(crate) fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        return format!("{}ms", d.as_millis());
    }
    let total = d.as_secs();
    let (h, m) = (total / 3600, (total / 60) % 60);
    let millis = d.subsec_millis();
    let mut secs = format!("{}", total % 60);
    if millis > 0 {
        let frac = format!("{millis:03}");
        secs = format!("{secs}.{}", frac.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

/// What a status shows besides the simulated state.
#[derive(Debug)]
pub(crate) struct PodFacts<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub containers: &'a [ContainerSpec],
    pub init_containers: &'a [ContainerSpec],
    pub qos: QosClass,
    pub host_ip: Ipv4Addr,
    pub pod_ip: Option<Ipv4Addr>,
    /// The pod has a PodScheduled condition already (the binding set it).
    pub has_scheduled_condition: bool,
    /// Readiness gates and whether their condition is True (`None`: absent).
    pub readiness_gates: &'a [(String, Option<bool>)],
}

fn container_id(uid: &str, name: &str, instance: u32) -> String {
    if instance == 0 {
        format!("sim://{uid}-{name}")
    } else {
        format!("sim://{uid}-{name}-{instance}")
    }
}

fn condition(type_: &str, status: bool, since: Timestamp) -> PodCondition {
    PodCondition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(since)),
        ..PodCondition::default()
    }
}

fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

impl PodSim {
    fn terminated(&self, exit: &Exit, facts: &PodFacts<'_>, name: &str) -> ContainerState {
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: exit.code,
                reason: Some(exit.reason().into()),
                started_at: Some(Time(exit.started_at)),
                finished_at: Some(Time(exit.finished_at)),
                container_id: Some(container_id(facts.uid, name, exit.instance)),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        }
    }

    fn app_status(&self, c: &ContainerSpec, facts: &PodFacts<'_>) -> ContainerStatus {
        let name: &str = &c.name;
        let mut status = ContainerStatus {
            name: name.to_owned(),
            image: c.image.to_string(),
            image_id: format!("sim://{}", c.image),
            restart_count: self.restart_count.min(i32::MAX as u32) as i32,
            started: Some(false),
            ..ContainerStatus::default()
        };
        let last = |exit: &Option<Exit>| exit.as_ref().map(|e| self.terminated(e, facts, name));
        match self.stage {
            Stage::Pending => {
                status.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("ContainerCreating".into()),
                        message: None,
                    }),
                    ..ContainerState::default()
                });
            }
            Stage::Running { since } => {
                status.container_id = Some(container_id(facts.uid, name, self.restart_count));
                status.ready = self.containers_ready;
                status.started = Some(true);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning { started_at: Some(Time(since)) }),
                    ..ContainerState::default()
                });
                status.last_state = last(&self.last_exit);
            }
            Stage::BackOff { delay, .. } => {
                status.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some("CrashLoopBackOff".into()),
                        message: Some(format!(
                            "back-off {} restarting failed container={name} pod={}_{}({})",
                            go_duration(delay),
                            facts.name,
                            facts.namespace,
                            facts.uid
                        )),
                    }),
                    ..ContainerState::default()
                });
                status.last_state = last(&self.last_exit);
            }
            Stage::Succeeded { .. } | Stage::Failed { .. } => {
                status.container_id =
                    self.last_exit.map(|e| container_id(facts.uid, name, e.instance));
                status.state = last(&self.last_exit);
                status.last_state = last(&self.prior_exit);
            }
        }
        status
    }

    fn init_status(
        &self,
        c: &ContainerSpec,
        facts: &PodFacts<'_>,
        start: Timestamp,
    ) -> ContainerStatus {
        let name: &str = &c.name;
        let id = container_id(facts.uid, name, 0);
        let terminated = |finished: Timestamp| ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: 0,
                reason: Some("Completed".into()),
                started_at: Some(Time(start)),
                finished_at: Some(Time(finished)),
                container_id: Some(id.clone()),
                ..ContainerStateTerminated::default()
            }),
            ..ContainerState::default()
        };
        let mut status = ContainerStatus {
            name: name.to_owned(),
            image: c.image.to_string(),
            image_id: format!("sim://{}", c.image),
            container_id: Some(id.clone()),
            started: Some(false),
            ..ContainerStatus::default()
        };
        let finished_at = match self.stage {
            Stage::Succeeded { at } | Stage::Failed { at, .. } => Some(at),
            _ => None,
        };
        match (c.sidecar, finished_at) {
            (true, None) => {
                status.ready = true;
                status.started = Some(true);
                status.state = Some(ContainerState {
                    running: Some(ContainerStateRunning { started_at: Some(Time(start)) }),
                    ..ContainerState::default()
                });
            }
            (true, Some(at)) => status.state = Some(terminated(at)),
            (false, _) => {
                status.ready = true;
                status.state = Some(terminated(start));
            }
        }
        status
    }

    /// The PodStatus a kubelet would report now (deterministic in the state: rendering the
    /// same state twice gives the same status, which is how unchanged writes are skipped).
    pub fn render(&self, facts: &PodFacts<'_>) -> PodStatus {
        let start = self.start_time.unwrap_or(Timestamp::UNIX_EPOCH);
        let (phase, finished) = match self.stage {
            Stage::Pending => ("Pending", None),
            Stage::Running { .. } | Stage::BackOff { .. } => ("Running", None),
            Stage::Succeeded { at } => ("Succeeded", Some(at)),
            Stage::Failed { at, .. } => ("Failed", Some(at)),
        };
        let mut containers: Vec<ContainerStatus> =
            facts.containers.iter().map(|c| self.app_status(c, facts)).collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name));
        let init: Vec<ContainerStatus> =
            facts.init_containers.iter().map(|c| self.init_status(c, facts, start)).collect();

        let mut conditions = Vec::with_capacity(5);
        conditions.push(match finished {
            None => condition("PodReadyToStartContainers", true, start),
            Some(at) => condition("PodReadyToStartContainers", false, at),
        });
        let mut initialized = condition("Initialized", true, start);
        if phase == "Succeeded" {
            initialized.reason = Some("PodCompleted".into());
        }
        conditions.push(initialized);

        let cr_since = self.containers_ready_since.unwrap_or(start);
        let mut containers_ready = condition("ContainersReady", self.containers_ready, cr_since);
        if !self.containers_ready {
            match phase {
                "Succeeded" => containers_ready.reason = Some("PodCompleted".into()),
                "Failed" => containers_ready.reason = Some("PodFailed".into()),
                _ => {
                    // App containers share one state: when they are not ready, none is.
                    let unready: Vec<&str> = facts.containers.iter().map(|c| &*c.name).collect();
                    containers_ready.reason = Some("ContainersNotReady".into());
                    containers_ready.message =
                        Some(format!("containers with unready status: {}", go_list(&unready)));
                }
            }
        }
        let pr_since = self.pod_ready_since.unwrap_or(start);
        let mut ready = condition("Ready", self.pod_ready, pr_since);
        if !self.containers_ready {
            ready.reason = containers_ready.reason.clone();
            ready.message = containers_ready.message.clone();
        } else if !self.pod_ready {
            let messages: Vec<String> = facts
                .readiness_gates
                .iter()
                .filter_map(|(gate, state)| match state {
                    None => Some(format!(
                        "corresponding condition of pod readiness gate {gate:?} does not exist."
                    )),
                    Some(false) => Some(format!(
                        "the status of pod readiness gate {gate:?} is not \"True\", but False"
                    )),
                    Some(true) => None,
                })
                .collect();
            ready.reason = Some("ReadinessGatesNotReady".into());
            ready.message = Some(messages.join(", "));
        }
        conditions.push(ready);
        conditions.push(containers_ready);
        if !facts.has_scheduled_condition {
            conditions.push(condition("PodScheduled", true, start));
        }

        let (reason, message) = match self.stage {
            Stage::Failed { deadline_exceeded: true, .. } => (
                Some("DeadlineExceeded".to_owned()),
                Some("Pod was active on the node longer than the specified deadline".to_owned()),
            ),
            _ => (None, None),
        };
        PodStatus {
            phase: Some(phase.into()),
            reason,
            message,
            conditions: Some(conditions),
            host_ip: Some(facts.host_ip.to_string()),
            host_ips: Some(vec![HostIP { ip: facts.host_ip.to_string() }]),
            pod_ip: facts.pod_ip.map(|ip| ip.to_string()),
            pod_ips: facts.pod_ip.map(|ip| vec![PodIP { ip: ip.to_string() }]),
            start_time: self.start_time.map(Time),
            qos_class: Some(facts.qos.as_str().into()),
            container_statuses: Some(containers),
            init_container_statuses: (!init.is_empty()).then_some(init),
            ..PodStatus::default()
        }
    }
}
