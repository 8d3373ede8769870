//! One simulated pod's life (pure logic): start, readiness, scripted exits, restarts with
//! upstream's crash-loop back-off, completion, activeDeadlineSeconds; and the PodStatus a
//! kubelet would report for it. Time is passed in; nothing here does I/O.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock::{add, elapsed};

use crate::pod_info::{ContainerSpec, ExitPlan, ObservedPodStatus, QosClass, RestartPolicy};

/// The exit code of a container the simulated kubelet kills (SIGKILL).
const KILLED_EXIT_CODE: i32 = 137;

/// The configured timings a pod's life depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    pub succeed_after: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// One termination of the pod's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Exit {
    pub code: i32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// The restart count of the instance that exited (names its container ID).
    pub instance: u32,
}

impl Exit {
    fn reason(&self) -> &'static str {
        if self.code == 0 { "Completed" } else { "Error" }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Bound, containers not started yet.
    Pending,
    Running { since: Timestamp },
    /// Exited; waiting to restart (CrashLoopBackOff).
    BackOff { until: Timestamp, delay: Duration },
    Succeeded { at: Timestamp },
    Failed { at: Timestamp, deadline_exceeded: bool },
}

/// The simulated state of one pod. All app containers share it (annotations are per pod).
#[derive(Clone, Debug)]
pub(crate) struct PodSim {
    pub restart_policy: RestartPolicy,
    pub plan: ExitPlan,
    pub active_deadline: Option<Duration>,
    pub stage: Stage,
    pub start_time: Option<Timestamp>,
    pub restart_count: u32,
    pub last_exit: Option<Exit>,
    pub prior_exit: Option<Exit>,
    /// Upstream's back-off entry: current delay and when it was last moved.
    backoff: Option<(Duration, Timestamp)>,
    pub containers_ready: bool,
    containers_ready_since: Option<Timestamp>,
    pub pod_ready: bool,
    pod_ready_since: Option<Timestamp>,
}

impl PodSim {
    pub fn new(restart_policy: RestartPolicy, plan: ExitPlan, active_deadline: Option<Duration>) -> Self {
        PodSim {
            restart_policy,
            plan,
            active_deadline,
            stage: Stage::Pending,
            start_time: None,
            restart_count: 0,
            last_exit: None,
            prior_exit: None,
            backoff: None,
            containers_ready: false,
            containers_ready_since: None,
            pod_ready: false,
            pod_ready_since: None,
        }
    }

    /// Takes over a pod an earlier simulator process started (phase Running), from what the
    /// API shows; `None` when the pod must be started afresh.
    pub fn adopt(
        restart_policy: RestartPolicy,
        plan: ExitPlan,
        active_deadline: Option<Duration>,
        observed: &ObservedPodStatus,
        timing: &Timing,
        now: Timestamp,
    ) -> Option<Self> {
        if observed.phase.as_deref() != Some("Running") {
            return None;
        }
        let mut sim = PodSim::new(restart_policy, plan, active_deadline);
        sim.start_time = Some(observed.start_time.unwrap_or(now));
        sim.restart_count = observed.restart_count;
        sim.last_exit = observed.last_exit.map(|(code, started, finished)| Exit {
            code,
            started_at: started.unwrap_or(now),
            finished_at: finished.unwrap_or(now),
            instance: observed.restart_count.saturating_sub(1),
        });
        let delay = backoff_delay(timing, observed.restart_count);
        if observed.restart_count > 0 {
            sim.backoff = Some((delay, now));
        }
        sim.stage = match observed.running_since {
            Some(since) => Stage::Running { since },
            None => Stage::BackOff { until: add(now, delay), delay },
        };
        sim.containers_ready = observed.ready;
        sim.containers_ready_since = observed.ready_since;
        sim.pod_ready = observed.ready;
        sim.pod_ready_since = observed.ready_since;
        Some(sim)
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self.stage, Stage::Succeeded { .. } | Stage::Failed { .. })
    }

    /// How long the containers run before exiting, if they exit at all.
    fn run_time(&self, timing: &Timing) -> Option<Duration> {
        if self.plan.run_forever {
            return None;
        }
        if let Some(d) = self.plan.exit_after {
            return Some(d);
        }
        if self.plan.exit_code.is_some() || self.restart_policy != RestartPolicy::Always {
            return timing.succeed_after;
        }
        None
    }

    fn deadline(&self) -> Option<Timestamp> {
        Some(add(self.start_time?, self.active_deadline?))
    }

    /// Moves the pod along to `now`; `gates_ready` says whether its readiness gates (if any)
    /// are all True. Returns whether anything a status shows changed.
    pub fn advance(&mut self, now: Timestamp, timing: &Timing, gates_ready: bool) -> bool {
        let mut changed = false;
        // Each pass makes one transition; a pod can at most start, exit, and restart or
        // back off within one call, so this ends (back-off delays are above zero).
        for _ in 0..8 {
            if !self.is_terminal() && self.deadline().is_some_and(|d| d <= now) {
                if let Stage::Running { since } = self.stage {
                    self.record_exit(KILLED_EXIT_CODE, since, now);
                }
                self.stage = Stage::Failed { at: now, deadline_exceeded: true };
                changed = true;
                break;
            }
            match self.stage {
                Stage::Pending => {
                    self.start_time.get_or_insert(now);
                    self.stage = Stage::Running { since: now };
                }
                Stage::Running { since } => match self.run_time(timing) {
                    Some(rt) if add(since, rt) <= now => {
                        let code = self.plan.exit_code.unwrap_or(0);
                        self.exit(code, since, now, timing);
                    }
                    _ => break,
                },
                Stage::BackOff { until, delay } if until <= now => {
                    self.restart_count += 1;
                    self.backoff = Some(((delay * 2).min(timing.backoff_max), now));
                    self.stage = Stage::Running { since: now };
                }
                _ => break,
            }
            changed = true;
        }
        changed |= self.refresh_readiness(now, gates_ready);
        changed
    }

    fn record_exit(&mut self, code: i32, started_at: Timestamp, finished_at: Timestamp) {
        self.prior_exit = self.last_exit.take();
        self.last_exit = Some(Exit { code, started_at, finished_at, instance: self.restart_count });
    }

    fn exit(&mut self, code: i32, since: Timestamp, now: Timestamp, timing: &Timing) {
        self.record_exit(code, since, now);
        let restart = match self.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Never => false,
        };
        if !restart {
            self.stage = if code == 0 {
                Stage::Succeeded { at: now }
            } else {
                Stage::Failed { at: now, deadline_exceeded: false }
            };
            return;
        }
        // Upstream: the first restart is immediate and starts a back-off of `base`; a later
        // exit waits out the current delay, which doubles (to the cap) at each restart; an
        // entry untouched for twice the cap starts over.
        match self.backoff {
            Some((delay, updated)) if elapsed(updated, now) <= timing.backoff_max * 2 => {
                self.stage = Stage::BackOff { until: add(now, delay), delay };
            }
            _ => {
                self.backoff = Some((timing.backoff_base, now));
                self.restart_count += 1;
                self.stage = Stage::Running { since: now };
            }
        }
    }

    fn refresh_readiness(&mut self, now: Timestamp, gates_ready: bool) -> bool {
        let containers_ready = match self.stage {
            Stage::Running { since } => !self.plan.not_ready && add(since, self.plan.ready_after) <= now,
            _ => false,
        };
        let mut changed = false;
        if containers_ready != self.containers_ready || self.containers_ready_since.is_none() {
            changed |= containers_ready != self.containers_ready;
            self.containers_ready = containers_ready;
            self.containers_ready_since = Some(now);
        }
        let pod_ready = containers_ready && gates_ready;
        if pod_ready != self.pod_ready || self.pod_ready_since.is_none() {
            changed |= pod_ready != self.pod_ready;
            self.pod_ready = pod_ready;
            self.pod_ready_since = Some(now);
        }
        changed
    }

    /// When [`PodSim::advance`] has something to do next.
    pub fn next_wake(&self, timing: &Timing) -> Option<Timestamp> {
        let deadline = if self.is_terminal() { None } else { self.deadline() };
        let own = match self.stage {
            Stage::Running { since } => {
                let exit = self.run_time(timing).map(|rt| add(since, rt));
                let ready = (!self.containers_ready && !self.plan.not_ready)
                    .then(|| add(since, self.plan.ready_after));
                [exit, ready].into_iter().flatten().min()
            }
            Stage::BackOff { until, .. } => Some(until),
            _ => None,
        };
        [own, deadline].into_iter().flatten().min()
    }
}

/// The delay before restart number `restarts + 1` under upstream's back-off.
fn backoff_delay(timing: &Timing, restarts: u32) -> Duration {
    let doublings = restarts.saturating_sub(1).min(30);
    timing.backoff_base.saturating_mul(1 << doublings).min(timing.backoff_max)
}

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
    if instance == 0 { format!("sim://{uid}-{name}") } else { format!("sim://{uid}-{name}-{instance}") }
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
                status.container_id = self.last_exit.map(|e| container_id(facts.uid, name, e.instance));
                status.state = last(&self.last_exit);
                status.last_state = last(&self.prior_exit);
            }
        }
        status
    }

    fn init_status(&self, c: &ContainerSpec, facts: &PodFacts<'_>, start: Timestamp) -> ContainerStatus {
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
                    None => Some(format!("corresponding condition of pod readiness gate {gate:?} does not exist.")),
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

#[cfg(test)]
#[path = "pod_state_tests.rs"]
mod tests;
