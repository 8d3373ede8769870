//! One simulated pod's life (pure logic): start, readiness, scripted exits, restarts with
//! upstream's crash-loop back-off, completion, activeDeadlineSeconds; and the PodStatus a
//! kubelet would report for it. Time is passed in; nothing here does I/O.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rudder_client::clock::{add, elapsed};

use crate::pod_info::{ExitPlan, ObservedPodStatus, RestartPolicy};

#[path = "pod_status.rs"]
mod status;
pub(crate) use status::PodFacts;
#[cfg(test)]
pub(crate) use status::go_duration;

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
    Running {
        since: Timestamp,
    },
    /// Exited; waiting to restart (CrashLoopBackOff).
    BackOff {
        until: Timestamp,
        delay: Duration,
    },
    Succeeded {
        at: Timestamp,
    },
    Failed {
        at: Timestamp,
        deadline_exceeded: bool,
    },
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
    pub fn new(
        restart_policy: RestartPolicy,
        plan: ExitPlan,
        active_deadline: Option<Duration>,
    ) -> Self {
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
            Stage::Running { since } => {
                !self.plan.not_ready && add(since, self.plan.ready_after) <= now
            }
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

#[cfg(test)]
#[path = "pod_state_tests.rs"]
mod tests;
