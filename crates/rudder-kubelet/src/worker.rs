//! One task per pod: brings the runtime in line with the pod (sandbox, init and app
//! containers per restart policy, with back-off), reports status, and on deletion stops
//! everything within the grace period and removes the pod from the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use rudder_client::EventType;
use rudder_client::api::{Target, call};
use rudder_kubelet_inputs::{EnvContext, PodVolumes, container_env, expand_command};
use rudder_runtime::{ContainerState, ContainerStatus, PodSandboxState, PodSandboxStatus};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::actions::{self, PodActions, Start};
use crate::handlers;
use crate::labels;
use crate::pod_status::{self, StatusInput, Waiting};
use crate::runtime_config;
use crate::shared::Shared;
use crate::start_slots::{Slot, without_slot};

/// How soon a failed step (mount, sandbox, API) is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// What the worker is told besides pod updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Run,
    /// Node shutdown: stop the pod within `grace` and report it Failed, without deleting it.
    Shutdown {
        grace: Duration,
    },
}

pub struct PodWorker {
    shared: Arc<Shared>,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    mode_rx: watch::Receiver<Mode>,
    wake: Arc<Notify>,
    /// Set when an object one of the pod's volumes shows changed.
    refresh: Arc<std::sync::atomic::AtomicBool>,
    waiting: Waiting,
    volumes: Option<PodVolumes>,
    last_refresh: Instant,
    deleted_sent: bool,
}

fn grace_of(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

impl PodWorker {
    pub fn new(
        shared: Arc<Shared>,
        pod_rx: watch::Receiver<Option<Arc<Pod>>>,
        mode_rx: watch::Receiver<Mode>,
        wake: Arc<Notify>,
        refresh: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        PodWorker {
            shared,
            pod_rx,
            mode_rx,
            wake,
            refresh,
            waiting: Waiting::new(),
            volumes: None,
            last_refresh: Instant::now(),
            deleted_sent: false,
        }
    }

    /// Runs until the pod is gone from the API (or the node shut down) and cleaned up.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut last: Option<Arc<Pod>> = None;
        loop {
            let pod = self.pod_rx.borrow_and_update().clone();
            let mode = *self.mode_rx.borrow_and_update();
            let next = match (pod, mode) {
                (None, _) => {
                    if let Some(p) = last.take() {
                        let grace = Duration::from_secs(grace_of(&p) as u64);
                        self.terminate(&p, grace).await;
                        self.cleanup(&p).await;
                    }
                    return;
                }
                (Some(p), Mode::Shutdown { grace }) => {
                    let grace = grace.min(Duration::from_secs(grace_of(&p) as u64));
                    self.terminate(&p, grace).await;
                    if !is_terminal(&p) {
                        self.report(
                            &p,
                            Some((
                                "Failed",
                                "Terminated",
                                "Pod was terminated in response to imminent node shutdown.",
                            )),
                        )
                        .await;
                    }
                    return;
                }
                (Some(p), Mode::Run) => {
                    last = Some(p.clone());
                    if p.metadata.deletion_timestamp.is_some() {
                        self.terminate(&p, Duration::from_secs(grace_of(&p) as u64)).await;
                        self.final_delete(&p).await
                    } else {
                        self.sync(&p).await
                    }
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.pod_rx.changed() => if r.is_err() { return },
                _ = self.mode_rx.changed() => {}
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(next) => {}
            }
        }
    }

    async fn pod_runtime_state(&self, uid: &str) -> (Vec<PodSandboxStatus>, Vec<ContainerStatus>) {
        let rt = &self.shared.runtime;
        let sandboxes: Vec<PodSandboxStatus> =
            match rt.list_pod_sandboxes_labelled(labels::POD_UID, uid).await {
                Ok(own) => actions::sandboxes_of(uid, &own).into_iter().cloned().collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "listing sandboxes failed");
                    Vec::new()
                }
            };
        let mut containers = Vec::new();
        for s in &sandboxes {
            match rt.list_containers(Some(&s.id)).await {
                Ok(cs) => containers.extend(cs),
                Err(e) => tracing::warn!(error = %e, sandbox = %s.id, "listing containers failed"),
            }
        }
        (sandboxes, containers)
    }

    /// One pass: returns how long until the next pass is needed without any event.
    async fn sync(&mut self, pod: &Arc<Pod>) -> Duration {
        let uid = actions::pod_uid(pod).to_owned();
        let mut next = self.shared.cfg.sync_frequency;
        let (sandboxes, containers) = self.pod_runtime_state(&uid).await;

        if is_terminal(pod) {
            // Done: release the network, keep the containers (and their logs) until deleted.
            self.shared.probes.remove_pod(&uid);
            for s in sandboxes.iter().filter(|s| s.state == PodSandboxState::Ready) {
                if let Err(e) = self.shared.runtime.stop_pod_sandbox(&s.id).await {
                    tracing::warn!(error = %e, "stopping the sandbox of a finished pod failed");
                }
            }
            return next;
        }

        if let Some(deadline) = self.active_deadline_passed(pod) {
            self.terminate(pod, Duration::from_secs(grace_of(pod) as u64)).await;
            let msg = format!(
                "Pod was active on the node longer than the specified deadline ({deadline}s)"
            );
            self.shared.event(pod, None, EventType::Normal, "DeadlineExceeded", msg.clone());
            self.report(pod, Some(("Failed", "DeadlineExceeded", &msg))).await;
            return next;
        }

        let liveness = self.shared.probes.liveness_failed(&uid);
        let plan = actions::compute(pod, &sandboxes, &containers, &liveness);
        let mut sandbox = sandboxes.iter().find(|s| s.state == PodSandboxState::Ready).cloned();
        self.kill(pod, &plan, &containers).await;
        // Starting something: wait for this node's turn (`start_slots`), held to the end of
        // the pass except while pulling images and running postStart hooks.
        let shared = self.shared.clone();
        let mut slot = None;
        if plan.create_sandbox || !plan.start.is_empty() {
            slot = Some(shared.start_slots.take().await);
        }

        // Volumes are ready before any container starts (and refreshed now and then).
        if self.volumes.is_none() || (plan.create_sandbox && !plan.start.is_empty()) {
            match self.shared.volumes.setup(pod, &*self.shared.source, &self.shared.node_info).await
            {
                Ok(v) => self.volumes = Some(v),
                Err(e) => {
                    self.shared.event(pod, None, EventType::Warning, "FailedMount", e.to_string());
                    self.report(pod, None).await;
                    return RETRY;
                }
            }
            self.last_refresh = Instant::now();
        } else if self.refresh.swap(false, std::sync::atomic::Ordering::Relaxed)
            || self.last_refresh.elapsed() >= self.shared.cfg.sync_frequency
        {
            if let Err(e) = self.shared.volumes.refresh(pod, &*self.shared.source).await {
                tracing::warn!(error = %e, "refreshing volumes failed");
            }
            self.last_refresh = Instant::now();
        }

        if plan.create_sandbox {
            for old in &sandboxes {
                let _ = self.shared.runtime.remove_pod_sandbox(&old.id).await;
            }
            let config =
                runtime_config::sandbox_config(&self.shared.cfg, pod, plan.sandbox_attempt);
            match self.shared.runtime.run_pod_sandbox(&config).await {
                Ok(id) => match self.shared.runtime.pod_sandbox_status(&id).await {
                    Ok(s) => sandbox = Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the new sandbox failed");
                        return RETRY;
                    }
                },
                Err(e) => {
                    self.shared.event(
                        pod,
                        None,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                    );
                    self.report(pod, None).await;
                    return RETRY;
                }
            }
        }
        let Some(sandbox) = sandbox else {
            self.report(pod, None).await;
            return next;
        };
        let pod_ip = self.pod_ip(pod, &sandbox);

        let specs = pod_status::specs(pod);
        let history = actions::by_name(&containers);
        for start in &plan.start {
            let Some((spec, _)) = specs.get(start.name.as_str()) else { continue };
            let key = format!("{uid}/{}", start.name);
            if start.restart {
                let now = self.shared.now_ms();
                let previous = history.get(start.name.as_str()).and_then(|v| v.first().copied());
                if let Some(p) = previous {
                    let ran =
                        Duration::from_nanos((p.finished_at_ns - p.started_at_ns).max(0) as u64);
                    if ran >= self.shared.cfg.backoff_reset {
                        self.shared.crash_backoff().reset(&key);
                    }
                }
                let wait = self.shared.crash_backoff().remaining(&key, now);
                if let Some(wait) = wait {
                    let delay = self.shared.crash_backoff().delay(&key).unwrap_or_default();
                    let msg = format!(
                        "back-off {} restarting failed container={} pod={}_{}({uid})",
                        go_duration(delay),
                        start.name,
                        pod.metadata.name.as_deref().unwrap_or(""),
                        pod.metadata.namespace.as_deref().unwrap_or(""),
                    );
                    if self.waiting.get(&start.name).map(|w| w.0.as_str())
                        != Some("CrashLoopBackOff")
                    {
                        self.shared.event(
                            pod,
                            Some((&start.name, start.init)),
                            EventType::Warning,
                            "BackOff",
                            "Back-off restarting failed container".to_owned()
                                + &format!(" {} in pod {}", start.name, pod_ref(pod)),
                        );
                    }
                    self.waiting.insert(start.name.clone(), ("CrashLoopBackOff".into(), msg));
                    next = next.min(wait + Duration::from_millis(50));
                    continue;
                }
                self.shared.crash_backoff().record_retry(&key, now);
            }
            match self.start_container(pod, spec, start, &sandbox, &pod_ip, slot.as_mut()).await {
                Ok(()) => {
                    self.waiting.remove(&start.name);
                    // Keep the previous attempt (for `logs --previous`), remove older ones.
                    for c in history.get(start.name.as_str()).into_iter().flatten() {
                        if c.metadata.attempt + 1 < start.attempt {
                            let _ = self.shared.runtime.remove_container(&c.id).await;
                        }
                    }
                }
                Err((reason, message, retry)) => {
                    self.waiting.insert(start.name.clone(), (reason, message));
                    next = next.min(retry);
                }
            }
        }

        let (_, containers) = self.pod_runtime_state(&uid).await;
        let running: Vec<(Container, String)> = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running && c.sandbox_id == sandbox.id)
            .filter_map(|c| {
                let (spec, init) = specs.get(c.metadata.name.as_str())?;
                (!init).then(|| ((*spec).clone(), c.id.clone()))
            })
            .collect();
        self.shared.probes.sync(pod, &pod_ip, &running, &self.wake);
        let status = self.status_for(pod, &sandbox, &containers, &pod_ip, None);
        let terminal = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        self.shared.status.set(pod, status);
        if terminal {
            // The next pass (after the status is written) releases the sandbox.
            next = next.min(Duration::from_secs(1));
        }
        next
    }

    fn active_deadline_passed(&self, pod: &Pod) -> Option<i64> {
        let deadline = pod.spec.as_ref()?.active_deadline_seconds?;
        let start = pod.status.as_ref()?.start_time.as_ref()?.0;
        let now = self.shared.clock.now();
        (now.as_second() - start.as_second() >= deadline).then_some(deadline)
    }

    fn pod_ip(&self, pod: &Pod, sandbox: &PodSandboxStatus) -> String {
        if host_network(pod) {
            self.shared.cfg.node_ip.to_string()
        } else {
            sandbox.ip.clone().unwrap_or_default()
        }
    }

    fn status_for(
        &self,
        pod: &Pod,
        sandbox: &PodSandboxStatus,
        containers: &[ContainerStatus],
        pod_ip: &str,
        terminal: Option<(&str, &str, &str)>,
    ) -> k8s_openapi::api::core::v1::PodStatus {
        let current: Vec<ContainerStatus> =
            containers.iter().filter(|c| c.sandbox_id == sandbox.id).cloned().collect();
        let specs = pod_status::specs(pod);
        let probes = &self.shared.probes;
        let ready = |c: &ContainerStatus| {
            specs.get(c.metadata.name.as_str()).is_some_and(|(s, _)| probes.is_ready(s, &c.id))
        };
        let started = |c: &ContainerStatus| {
            specs.get(c.metadata.name.as_str()).is_some_and(|(s, _)| probes.is_started(s, &c.id))
        };
        pod_status::generate(&StatusInput {
            pod,
            pod_ip: (!pod_ip.is_empty()).then(|| pod_ip.to_owned()),
            host_ip: self.shared.cfg.node_ip.to_string(),
            sandbox_ready: sandbox.state == PodSandboxState::Ready,
            containers: &current,
            waiting: &self.waiting,
            ready: &ready,
            started: &started,
            terminal_override: terminal,
            now: self.shared.clock.now(),
        })
    }

    /// Computes and queues the status from what the runtime has now.
    async fn report(&self, pod: &Pod, terminal: Option<(&str, &str, &str)>) {
        let uid = actions::pod_uid(pod);
        let (sandboxes, containers) = self.pod_runtime_state(uid).await;
        let sandbox = sandboxes.first().cloned().unwrap_or(PodSandboxStatus {
            id: String::new(),
            metadata: Default::default(),
            state: PodSandboxState::NotReady,
            created_at_ns: 0,
            ip: None,
            labels: Default::default(),
            annotations: Default::default(),
        });
        let ip = self.pod_ip(pod, &sandbox);
        let status = self.status_for(pod, &sandbox, &containers, &ip, terminal);
        self.shared.status.set(pod, status);
    }

    async fn kill(&self, pod: &Pod, plan: &PodActions, containers: &[ContainerStatus]) {
        let grace = Duration::from_secs(grace_of(pod) as u64);
        let grace_s = stop_timeout(grace, grace);
        for (id, name, why) in &plan.kill {
            let init = actions::init_containers(pod).iter().any(|c| &c.name == name);
            let msg = match why.as_str() {
                "spec changed" => format!("Container {name} definition changed, will be restarted"),
                "liveness" => format!("Stopping container {name}"),
                _ => format!("Stopping container {name}"),
            };
            self.shared.event(pod, Some((name, init)), EventType::Normal, "Killing", msg);
            if let Some(spec) = pod_status::specs(pod).get(name.as_str()).map(|(c, _)| (*c).clone())
                && let Some(c) = containers.iter().find(|c| &c.id == id)
            {
                self.pre_stop(pod, &spec, c, grace).await;
            }
            if let Err(e) = self.shared.runtime.stop_container(id, grace_s).await {
                tracing::warn!(error = %e, container = %id, "stopping a container failed");
            }
        }
    }

    async fn pre_stop(&self, pod: &Pod, spec: &Container, c: &ContainerStatus, budget: Duration) {
        let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else { return };
        let host = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        let target = handlers::Target { container: spec, container_id: &c.id, host: &host };
        if let Err(e) = run_hook(&*self.shared.runtime, h, &target, budget).await {
            self.shared.event(
                pod,
                Some((&spec.name, false)),
                EventType::Warning,
                "FailedPreStopHook",
                format!("PreStopHook failed: {e}"),
            );
        }
    }

    async fn start_container(
        &self,
        pod: &Pod,
        spec: &Container,
        start: &Start,
        sandbox: &PodSandboxStatus,
        pod_ip: &str,
        mut slot: Option<&mut Slot<'_>>,
    ) -> Result<(), (String, String, Duration)> {
        let sh = &self.shared;
        let who = Some((start.name.as_str(), start.init));
        let image = spec.image.clone().unwrap_or_default();
        self.ensure_image(pod, spec, start, &image, slot.as_deref_mut()).await?;

        let services = {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let mut v: Vec<_> =
                sh.services.list_namespace(ns).iter().map(|s| (**s).clone()).collect();
            if ns != "default"
                && let Some(k) = sh.services.get("default", "kubernetes")
            {
                v.push((*k).clone());
            }
            v
        };
        let env_ctx = EnvContext {
            node_name: sh.cfg.node_name.clone(),
            host_ips: vec![sh.cfg.node_ip.to_string()],
            pod_ips: if !pod_ip.is_empty() { vec![pod_ip.to_owned()] } else { Default::default() },
            services,
            allocatable: sh.node_info.allocatable.clone(),
        };
        let config_error = |msg: String| {
            sh.event(pod, who, EventType::Warning, "Failed", format!("Error: {msg}"));
            ("CreateContainerConfigError".to_owned(), msg, RETRY)
        };
        let env = container_env(pod, spec, &*sh.source, &env_ctx)
            .await
            .map_err(|e| config_error(e.to_string()))?;
        for skipped in &env.skipped {
            sh.event(
                pod,
                None,
                EventType::Warning,
                rudder_kubelet_inputs::env::INVALID_ENV_NAMES_REASON,
                skipped.event_message(),
            );
        }
        let volumes = self.volumes.clone().unwrap_or_default();
        let mounts =
            volumes.mounts_for(spec, &env.vars).map_err(|e| config_error(e.to_string()))?;
        let command = expand_command(spec.command.as_deref().unwrap_or(&[]), &env.vars);
        let args = expand_command(spec.args.as_deref().unwrap_or(&[]), &env.vars);
        let config = runtime_config::container_config(
            pod,
            spec,
            start.init,
            start.attempt,
            command,
            args,
            env.vars,
            mounts,
            sh.node_memory_bytes,
        );
        let sandbox_config = runtime_config::sandbox_config(&sh.cfg, pod, sandbox.metadata.attempt);
        let id = sh.runtime.create_container(&sandbox.id, &config, &sandbox_config).await.map_err(
            |e| {
                let msg = e.to_string();
                sh.event(pod, who, EventType::Warning, "Failed", format!("Error: {msg}"));
                ("CreateContainerError".to_owned(), msg, RETRY)
            },
        )?;
        sh.event(
            pod,
            who,
            EventType::Normal,
            "Created",
            format!("Created container: {}", start.name),
        );
        if let Err(e) = sh.runtime.start_container(&id).await {
            let msg = e.to_string();
            sh.event(pod, who, EventType::Warning, "Failed", format!("Error: {msg}"));
            let _ = sh.runtime.remove_container(&id).await;
            return Err(("RunContainerError".to_owned(), msg, RETRY));
        }
        sh.event(
            pod,
            who,
            EventType::Normal,
            "Started",
            format!("Started container {}", start.name),
        );
        if let Some(h) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
            let target = handlers::Target { container: spec, container_id: &id, host: pod_ip };
            let budget = Duration::from_secs(grace_of(pod).max(1) as u64);
            let hook = without_slot(slot, run_hook(&*sh.runtime, h, &target, budget)).await;
            if let Err(e) = hook {
                sh.event(
                    pod,
                    who,
                    EventType::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {e}"),
                );
                let _ = sh.runtime.stop_container(&id, grace_of(pod) as u64).await;
            }
        }
        Ok(())
    }

    async fn ensure_image(
        &self,
        pod: &Pod,
        spec: &Container,
        start: &Start,
        image: &str,
        slot: Option<&mut Slot<'_>>,
    ) -> Result<(), (String, String, Duration)> {
        let sh = &self.shared;
        let who = Some((start.name.as_str(), start.init));
        let policy = spec.image_pull_policy.clone().unwrap_or_else(|| {
            let tagged = image
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':') || last.contains('@'));
            if !tagged || image.ends_with(":latest") {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = matches!(sh.runtime.image_status(image).await, Ok(Some(_)));
        match policy.as_str() {
            "Never" if !present => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                sh.event(pod, who, EventType::Warning, "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg, RETRY * 5));
            }
            "Never" | "IfNotPresent" if present => {
                if start.attempt == 0 {
                    sh.event(
                        pod,
                        who,
                        EventType::Normal,
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                }
                return Ok(());
            }
            _ => {}
        }
        let key = format!("{}/{}/{image}", actions::pod_uid(pod), spec.name);
        let now = sh.now_ms();
        if let Some(wait) = sh.image_backoff().remaining(&key, now) {
            let msg = format!("Back-off pulling image \"{image}\"");
            sh.event(pod, who, EventType::Normal, "BackOff", msg.clone());
            return Err(("ImagePullBackOff".into(), msg, wait + Duration::from_millis(50)));
        }
        let credentials = self.pull_credentials(pod).await;
        sh.event(pod, who, EventType::Normal, "Pulling", format!("Pulling image \"{image}\""));
        let started = Instant::now();
        let pulled = without_slot(slot, sh.runtime.pull_image(image, &credentials)).await;
        match pulled {
            Ok(info) => {
                sh.image_backoff().reset(&key);
                sh.event(
                    pod,
                    who,
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{image}\" in {:.3}s. Image size: {} bytes.",
                        started.elapsed().as_secs_f64(),
                        info.size_bytes
                    ),
                );
                Ok(())
            }
            Err(e) => {
                sh.image_backoff().record_retry(&key, now);
                let msg = format!("Failed to pull image \"{image}\": {e}");
                sh.event(pod, who, EventType::Warning, "Failed", msg.clone());
                sh.event(pod, who, EventType::Warning, "Failed", "Error: ErrImagePull".into());
                let wait = sh.image_backoff().remaining(&key, now).unwrap_or(RETRY);
                Err(("ErrImagePull".into(), msg, wait + Duration::from_millis(50)))
            }
        }
    }

    /// Docker config JSON of the pod's imagePullSecrets (missing ones are skipped, as
    /// upstream does with a warning).
    async fn pull_credentials(&self, pod: &Pod) -> Vec<Vec<u8>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut out = Vec::new();
        for r in pod.spec.as_ref().and_then(|s| s.image_pull_secrets.as_ref()).into_iter().flatten()
        {
            match self.shared.source.get_secret(ns, &r.name).await {
                Ok(Some(secret)) => {
                    let data = secret.data.unwrap_or_default();
                    if let Some(v) =
                        data.get(".dockerconfigjson").or_else(|| data.get(".dockercfg"))
                    {
                        out.push(v.0.clone());
                    }
                }
                Ok(None) => {
                    tracing::warn!(secret = %r.name, "imagePullSecret not found; pulling without it")
                }
                Err(e) => tracing::warn!(error = %e, "reading an imagePullSecret failed"),
            }
        }
        out
    }

    /// Stops every container of the pod (preStop hooks, SIGTERM, SIGKILL after `grace`)
    /// and its sandboxes.
    async fn terminate(&self, pod: &Pod, grace: Duration) {
        let uid = actions::pod_uid(pod).to_owned();
        self.shared.probes.remove_pod(&uid);
        let (sandboxes, containers) = self.pod_runtime_state(&uid).await;
        let specs = pod_status::specs(pod);
        let deadline = Instant::now() + grace;
        let stops = containers.iter().filter(|c| c.state == ContainerState::Running).map(|c| {
            let spec = specs.get(c.metadata.name.as_str()).map(|(s, init)| ((*s).clone(), *init));
            async move {
                if let Some((spec, init)) = &spec {
                    self.shared.event(
                        pod,
                        Some((&spec.name, *init)),
                        EventType::Normal,
                        "Killing",
                        format!("Stopping container {}", spec.name),
                    );
                    self.pre_stop(pod, spec, c, grace).await;
                }
                let left = stop_timeout(grace, deadline.saturating_duration_since(Instant::now()));
                if let Err(e) = self.shared.runtime.stop_container(&c.id, left).await {
                    tracing::warn!(error = %e, container = %c.id, "stopping a container failed");
                }
            }
        });
        futures::future::join_all(stops).await;
        for s in sandboxes.iter().filter(|s| s.state == PodSandboxState::Ready) {
            if let Err(e) = self.shared.runtime.stop_pod_sandbox(&s.id).await {
                tracing::warn!(error = %e, sandbox = %s.id, "stopping a sandbox failed");
            }
        }
    }

    /// Removes what the pod left on the node: sandboxes, containers, logs, volumes.
    async fn cleanup(&mut self, pod: &Pod) {
        let uid = actions::pod_uid(pod).to_owned();
        let (sandboxes, _) = self.pod_runtime_state(&uid).await;
        for s in &sandboxes {
            if let Err(e) = self.shared.runtime.remove_pod_sandbox(&s.id).await {
                tracing::warn!(error = %e, sandbox = %s.id, "removing a sandbox failed");
            }
        }
        let logs = runtime_config::pod_log_dir(&self.shared.cfg, pod);
        let _ = tokio::fs::remove_dir_all(&logs).await;
        if let Err(e) = self.shared.volumes.teardown(&uid).await {
            tracing::warn!(error = %e, "tearing down volumes failed");
        }
        self.shared.status.forget(&uid);
        self.shared.crash_backoff().forget_prefix(&format!("{uid}/"));
        self.shared.image_backoff().forget_prefix(&format!("{uid}/"));
    }

    /// After termination: the pod's final delete (grace 0, only this uid).
    async fn final_delete(&mut self, pod: &Pod) -> Duration {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or("");
        if !self.deleted_sent {
            // Report the containers as terminated first, as upstream does.
            self.report(pod, None).await;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), ns);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let t = Target { verb: "delete", kind: "Pod", namespace: ns, name };
        match call(t, self.shared.cfg.request_timeout, api.delete(name, &params)).await {
            Ok(_) => self.deleted_sent = true,
            Err(e) if e.status().is_some_and(|s| s.code == 404 || s.code == 409) => {
                self.deleted_sent = true
            }
            Err(e) => tracing::warn!(error = %e, "deleting the pod failed; retrying"),
        }
        RETRY
    }
}

fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Upstream's floor: a container stopped with a grace period gets SIGTERM and at least
/// this long before SIGKILL.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// Seconds the runtime waits after SIGTERM: what is left of `grace` (rounded up), at least
/// [`MIN_GRACE`] unless the grace period is 0 (then SIGKILL at once).
pub fn stop_timeout(grace: Duration, left: Duration) -> u64 {
    if grace.is_zero() {
        return 0;
    }
    let up = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    up.max(MIN_GRACE.as_secs())
}

/// Go's duration formatting for whole seconds and minutes ("10s", "1m20s", "5m0s").
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 { format!("{}m{}s", s / 60, s % 60) } else { format!("{s}s") }
}

async fn run_hook(
    runtime: &dyn rudder_runtime::Runtime,
    h: &LifecycleHandler,
    target: &handlers::Target<'_>,
    budget: Duration,
) -> handlers::Outcome {
    let budget = budget.max(Duration::from_secs(1));
    if let Some(e) = &h.exec {
        handlers::exec(runtime, target, e.command.as_deref().unwrap_or(&[]), budget).await
    } else if let Some(g) = &h.http_get {
        handlers::http_get(target, g, budget).await
    } else if let Some(t) = &h.tcp_socket {
        handlers::tcp(target, t, budget).await
    } else if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(budget)).await;
        Ok(())
    } else {
        Err("hook has no action".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_get_at_least_two_seconds_unless_forced() {
        let s = Duration::from_secs;
        assert_eq!(stop_timeout(s(0), s(0)), 0);
        assert_eq!(stop_timeout(s(1), Duration::from_millis(995)), 2);
        assert_eq!(stop_timeout(s(30), Duration::from_millis(29_001)), 30);
        assert_eq!(stop_timeout(s(30), s(0)), 2);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
    }
}
