//! Startup, liveness and readiness probes: one task per probe of a running container,
//! results kept by container id. A change the pod worker must act on (ready flips, started,
//! liveness failed) wakes it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use rudder_client::events::object_reference;
use rudder_client::{EventType, Recorder};
use rudder_runtime::Runtime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handlers::{self, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// Upstream's defaults: period 10 s, timeout 1 s, success 1, failure 3, no initial delay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

pub fn timing(p: &Probe) -> Timing {
    let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
    Timing {
        initial_delay: secs(p.initial_delay_seconds, 0),
        period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
    }
}

/// Counts consecutive results and says when the reported state flips.
#[derive(Clone, Debug)]
pub struct Counter {
    successes: u32,
    failures: u32,
    state: Option<bool>,
}

impl Counter {
    pub fn new(initial: Option<bool>) -> Self {
        Counter { successes: 0, failures: 0, state: initial }
    }

    /// Records a result; returns the new state if it changed.
    pub fn record(&mut self, ok: bool, t: &Timing) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= t.success_threshold && self.state != Some(true) {
                self.state = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= t.failure_threshold && self.state != Some(false) {
                self.state = Some(false);
                return Some(false);
            }
        }
        None
    }
}

#[derive(Clone, Debug, Default)]
struct State {
    started: bool,
    ready: bool,
    liveness_failed: bool,
}

#[derive(Default)]
struct Inner {
    results: HashMap<String, State>,
    /// Running probe tasks by pod uid, then container id.
    workers: HashMap<String, HashMap<String, CancellationToken>>,
}

/// See the module docs.
#[derive(Clone)]
pub struct Probes {
    inner: Arc<Mutex<Inner>>,
    runtime: Arc<dyn Runtime>,
    recorder: Recorder,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

impl Probes {
    pub fn new(runtime: Arc<dyn Runtime>, recorder: Recorder) -> Self {
        Probes { inner: Arc::default(), runtime, recorder }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Readiness of a running container (no readiness probe: ready).
    pub fn is_ready(&self, container: &Container, id: &str) -> bool {
        if container.readiness_probe.is_none() {
            return true;
        }
        self.lock().results.get(id).is_some_and(|s| s.ready)
    }

    /// Whether the startup probe passed (no startup probe: started).
    pub fn is_started(&self, container: &Container, id: &str) -> bool {
        if container.startup_probe.is_none() {
            return true;
        }
        self.lock().results.get(id).is_some_and(|s| s.started)
    }

    /// Containers of the pod whose liveness or startup probe failed.
    pub fn liveness_failed(&self, pod_uid: &str) -> HashSet<String> {
        let inner = self.lock();
        let Some(ids) = inner.workers.get(pod_uid) else { return HashSet::new() };
        ids.keys()
            .filter(|id| inner.results.get(*id).is_some_and(|s| s.liveness_failed))
            .cloned()
            .collect()
    }

    /// Makes the probe tasks match the pod's running containers: `(spec, container id)`.
    pub fn sync(
        &self,
        pod: &Arc<Pod>,
        host: &str,
        running: &[(Container, String)],
        wake: &Arc<Notify>,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut inner = self.lock();
        let keep: HashSet<&str> = running.iter().map(|(_, id)| id.as_str()).collect();
        let mut stale = Vec::new();
        if let Some(ws) = inner.workers.get_mut(&uid) {
            ws.retain(|id, token| {
                let k = keep.contains(id.as_str());
                if !k {
                    token.cancel();
                    stale.push(id.clone());
                }
                k
            });
        }
        for id in stale {
            inner.results.remove(&id);
        }
        for (c, id) in running {
            if inner.workers.get(&uid).is_some_and(|w| w.contains_key(id)) {
                continue;
            }
            let token = CancellationToken::new();
            inner.workers.entry(uid.clone()).or_default().insert(id.clone(), token.clone());
            inner.results.insert(
                id.clone(),
                State { started: c.startup_probe.is_none(), ..State::default() },
            );
            for (kind, probe) in [
                (Kind::Startup, &c.startup_probe),
                (Kind::Liveness, &c.liveness_probe),
                (Kind::Readiness, &c.readiness_probe),
            ] {
                if let Some(p) = probe {
                    let worker = Worker {
                        probes: self.clone(),
                        pod: pod.clone(),
                        container: c.clone(),
                        id: id.clone(),
                        host: host.to_owned(),
                        kind,
                        probe: p.clone(),
                        wake: wake.clone(),
                    };
                    let token = token.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = token.cancelled() => {}
                            _ = worker.run() => {}
                        }
                    });
                }
            }
        }
    }

    /// Stops every probe of the pod.
    pub fn remove_pod(&self, pod_uid: &str) {
        let mut inner = self.lock();
        if let Some(ws) = inner.workers.remove(pod_uid) {
            for (id, token) in ws {
                token.cancel();
                inner.results.remove(&id);
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut State)) {
        if let Some(s) = self.lock().results.get_mut(id) {
            f(s);
        }
    }

    fn started(&self, id: &str) -> bool {
        self.lock().results.get(id).is_some_and(|s| s.started)
    }
}

struct Worker {
    probes: Probes,
    pod: Arc<Pod>,
    container: Container,
    id: String,
    host: String,
    kind: Kind,
    probe: Probe,
    wake: Arc<Notify>,
}

impl Worker {
    async fn attempt(&self, t: &Timing) -> handlers::Outcome {
        let target =
            Target { container: &self.container, container_id: &self.id, host: &self.host };
        let p = &self.probe;
        if let Some(e) = &p.exec {
            handlers::exec(
                &*self.probes.runtime,
                &target,
                e.command.as_deref().unwrap_or(&[]),
                t.timeout,
            )
            .await
        } else if let Some(h) = &p.http_get {
            handlers::http_get(&target, h, t.timeout).await
        } else if let Some(s) = &p.tcp_socket {
            handlers::tcp(&target, s, t.timeout).await
        } else if p.grpc.is_some() {
            Err("gRPC probes are not supported by rudder yet".into())
        } else {
            Err("probe has no action".into())
        }
    }

    fn event(&self, kind: EventType, reason: &str, message: String) {
        let mut r = object_reference(&*self.pod);
        r.field_path = Some(format!("spec.containers{{{}}}", self.container.name));
        self.probes.recorder.event_for(r, kind, reason, message);
    }

    async fn run(self) {
        let t = timing(&self.probe);
        tokio::time::sleep(t.initial_delay).await;
        let has_startup = self.container.startup_probe.is_some();
        let mut counter = Counter::new(None);
        loop {
            let gated = self.kind != Kind::Startup && has_startup && !self.probes.started(&self.id);
            if !gated {
                let outcome = self.attempt(&t).await;
                if let Err(msg) = &outcome {
                    self.event(
                        EventType::Warning,
                        "Unhealthy",
                        format!("{} probe failed: {msg}", self.kind.name()),
                    );
                }
                if let Some(state) = counter.record(outcome.is_ok(), &t) {
                    match (self.kind, state) {
                        (Kind::Readiness, ready) => {
                            self.probes.update(&self.id, |s| s.ready = ready)
                        }
                        (Kind::Startup, true) => {
                            self.probes.update(&self.id, |s| s.started = true);
                            self.wake.notify_one();
                            return;
                        }
                        (Kind::Liveness | Kind::Startup, false) => {
                            self.event(
                                EventType::Normal,
                                "Killing",
                                format!(
                                    "Container {} failed {} probe, will be restarted",
                                    self.container.name,
                                    self.kind.name().to_lowercase()
                                ),
                            );
                            self.probes.update(&self.id, |s| s.liveness_failed = true);
                            self.wake.notify_one();
                            return;
                        }
                        (Kind::Liveness, true) => {}
                    }
                    self.wake.notify_one();
                }
            }
            tokio::time::sleep(t.period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_flips() {
        let p: Probe = serde_json::from_value(
            serde_json::json!({"successThreshold": 2, "failureThreshold": 2}),
        )
        .unwrap();
        let t = timing(&p);
        assert_eq!((t.period, t.timeout), (Duration::from_secs(10), Duration::from_secs(1)));
        let mut c = Counter::new(None);
        assert_eq!(c.record(true, &t), None);
        assert_eq!(c.record(true, &t), Some(true));
        assert_eq!(c.record(true, &t), None);
        assert_eq!(c.record(false, &t), None);
        assert_eq!(c.record(true, &t), None, "a success resets the failure count");
        assert_eq!(c.record(false, &t), None);
        assert_eq!(c.record(false, &t), Some(false));
    }
}
