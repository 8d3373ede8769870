//! A runtime without processes: sandboxes get addresses from a pod CIDR, containers "run"
//! in memory until stopped or until their scripted exit. For kubelet unit tests and scale
//! benchmarks, never a substitute for proving the native runtime.
//!
//! Scripted exits, per container, through annotations on the container config:
//! - `sim.rudder.dev/exit-after-ms`: the container exits this long after it starts
//!   (tokio time, so tests can pause and advance it);
//! - `sim.rudder.dev/exit-code`: its exit code (default 0).
//!
//! Tests can also end a container at once with [`SimulatedRuntime::exit_container`].

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::{
    AttachRequest, AttachSession, BoxStream, ContainerConfig, ContainerMetadata, ContainerState,
    ContainerStatus, ExecRequest, ExecResult, ExecSession, ImageInfo, PodSandboxConfig,
    PodSandboxState, PodSandboxStatus, Result, Runtime, RuntimeError,
};

pub const EXIT_AFTER_MS_ANNOTATION: &str = "sim.rudder.dev/exit-after-ms";
pub const EXIT_CODE_ANNOTATION: &str = "sim.rudder.dev/exit-code";

#[derive(Debug)]
struct Sandbox {
    status: PodSandboxStatus,
}

#[derive(Debug)]
struct Container {
    status: ContainerStatus,
    exit_after_ms: Option<u64>,
    exit_code: i32,
}

#[derive(Debug, Default)]
struct State {
    sandboxes: HashMap<String, Sandbox>,
    containers: HashMap<String, Container>,
    images: BTreeMap<String, ImageInfo>,
    next_host: u32,
    free_hosts: Vec<u32>,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SimulatedRuntime {
    state: Arc<Mutex<State>>,
    network: Ipv4Addr,
    prefix_len: u8,
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl SimulatedRuntime {
    /// A runtime handing out pod IPs from `network/prefix_len` (e.g. 10.42.0.0/24).
    pub fn new(network: Ipv4Addr, prefix_len: u8) -> Self {
        SimulatedRuntime {
            state: Arc::new(Mutex::new(State { next_host: 2, ..State::default() })),
            network,
            prefix_len,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ends a running container now with `exit_code`.
    pub fn exit_container(&self, container_id: &str, exit_code: i32) -> Result<()> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(container_id)
            .ok_or_else(|| RuntimeError::ContainerNotFound(container_id.to_owned()))?;
        finish(&mut c.status, exit_code, "");
        Ok(())
    }

    fn allocate_ip(st: &mut State, network: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(prefix_len));
        let host = match st.free_hosts.pop() {
            Some(h) => h,
            None if st.next_host < size - 1 => {
                st.next_host += 1;
                st.next_host - 1
            }
            None => return Err(RuntimeError::Internal("pod CIDR exhausted".into())),
        };
        Ok(Ipv4Addr::from(u32::from(network) + host))
    }

    fn release_ip(st: &mut State, network: Ipv4Addr, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            st.free_hosts.insert(0, u32::from(ip) - u32::from(network));
        }
    }
}

fn finish(status: &mut ContainerStatus, exit_code: i32, reason: &str) {
    if status.state != ContainerState::Running {
        return;
    }
    status.state = ContainerState::Exited;
    status.exit_code = exit_code;
    status.finished_at_ns = now_ns();
    status.reason = if !reason.is_empty() {
        reason.to_owned()
    } else if exit_code == 0 {
        "Completed".to_owned()
    } else {
        "Error".to_owned()
    };
}

#[async_trait]
impl Runtime for SimulatedRuntime {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn pull_image(&self, image: &str, _credentials: &[Vec<u8>]) -> Result<ImageInfo> {
        let mut st = self.lock();
        let info = st.images.entry(image.to_owned()).or_insert_with(|| ImageInfo {
            id: format!("sha256:{:064x}", rand::random::<u128>()),
            repo_tags: vec![image.to_owned()],
            repo_digests: vec![],
            size_bytes: 0,
        });
        Ok(info.clone())
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(self.lock().images.get(image).cloned())
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.lock().images.remove(image);
        Ok(())
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let mut st = self.lock();
        let ip = if config.host_network {
            None
        } else {
            Some(Self::allocate_ip(&mut st, self.network, self.prefix_len)?.to_string())
        };
        let id = new_id();
        st.sandboxes.insert(
            id.clone(),
            Sandbox {
                status: PodSandboxStatus {
                    id: id.clone(),
                    metadata: config.metadata.clone(),
                    state: PodSandboxState::Ready,
                    created_at_ns: now_ns(),
                    ip,
                    labels: config.labels.clone(),
                    annotations: config.annotations.clone(),
                },
            },
        );
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut st = self.lock();
        let State { sandboxes, containers, .. } = &mut *st;
        let Some(sb) = sandboxes.get_mut(sandbox_id) else {
            return Ok(());
        };
        for c in containers.values_mut() {
            if c.status.sandbox_id == sandbox_id {
                finish(&mut c.status, 137, "Error");
            }
        }
        sb.status.state = PodSandboxState::NotReady;
        if let Some(ip) = sb.status.ip.take() {
            Self::release_ip(&mut st, self.network, &ip);
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        self.stop_pod_sandbox(sandbox_id).await?;
        let mut st = self.lock();
        st.containers.retain(|_, c| c.status.sandbox_id != sandbox_id);
        st.sandboxes.remove(sandbox_id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        self.lock()
            .sandboxes
            .get(sandbox_id)
            .map(|s| s.status.clone())
            .ok_or_else(|| RuntimeError::SandboxNotFound(sandbox_id.to_owned()))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        Ok(self.lock().sandboxes.values().map(|s| s.status.clone()).collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let mut st = self.lock();
        if !st.sandboxes.contains_key(sandbox_id) {
            return Err(RuntimeError::SandboxNotFound(sandbox_id.to_owned()));
        }
        let image_ref = st
            .images
            .get(&config.image)
            .map(|i| i.id.clone())
            .ok_or_else(|| RuntimeError::ImageNotPresent(config.image.clone()))?;
        let parse = |key: &str| config.annotations.get(key).and_then(|v| v.parse::<i64>().ok());
        let id = new_id();
        st.containers.insert(
            id.clone(),
            Container {
                exit_after_ms: parse(EXIT_AFTER_MS_ANNOTATION).map(|v| v.max(0) as u64),
                exit_code: parse(EXIT_CODE_ANNOTATION).unwrap_or(0) as i32,
                status: ContainerStatus {
                    id: id.clone(),
                    sandbox_id: sandbox_id.to_owned(),
                    metadata: ContainerMetadata {
                        name: config.metadata.name.clone(),
                        attempt: config.metadata.attempt,
                    },
                    state: ContainerState::Created,
                    created_at_ns: now_ns(),
                    started_at_ns: 0,
                    finished_at_ns: 0,
                    exit_code: 0,
                    reason: String::new(),
                    message: String::new(),
                    image: config.image.clone(),
                    image_ref,
                    log_path: None,
                    labels: config.labels.clone(),
                    annotations: config.annotations.clone(),
                },
            },
        );
        Ok(id)
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let exit = {
            let mut st = self.lock();
            let c = st
                .containers
                .get_mut(container_id)
                .ok_or_else(|| RuntimeError::ContainerNotFound(container_id.to_owned()))?;
            if c.status.state != ContainerState::Created {
                return Err(RuntimeError::WrongState {
                    id: container_id.to_owned(),
                    state: c.status.state,
                    action: "start",
                    needed: "Created",
                });
            }
            c.status.state = ContainerState::Running;
            c.status.started_at_ns = now_ns();
            c.exit_after_ms.map(|ms| (ms, c.exit_code))
        };
        if let Some((ms, code)) = exit {
            let this = self.clone();
            let id = container_id.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                let _ = this.exit_container(&id, code);
            });
        }
        Ok(())
    }

    async fn stop_container(&self, container_id: &str, _timeout_s: u64) -> Result<()> {
        let mut st = self.lock();
        let c = st
            .containers
            .get_mut(container_id)
            .ok_or_else(|| RuntimeError::ContainerNotFound(container_id.to_owned()))?;
        // A stopped simulated process "handles" SIGTERM: exit code 143.
        finish(&mut c.status, 143, "Error");
        Ok(())
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        self.lock().containers.remove(container_id);
        Ok(())
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        self.lock()
            .containers
            .get(container_id)
            .map(|c| c.status.clone())
            .ok_or_else(|| RuntimeError::ContainerNotFound(container_id.to_owned()))
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| sandbox_id.is_none_or(|s| c.status.sandbox_id == s))
            .map(|c| c.status.clone())
            .collect())
    }

    async fn exec_sync(
        &self,
        _container_id: &str,
        _command: &[String],
        _timeout_s: u64,
    ) -> Result<ExecResult> {
        Err(RuntimeError::Unsupported("exec in a simulated container"))
    }

    async fn exec(&self, _container_id: &str, _request: &ExecRequest) -> Result<ExecSession> {
        Err(RuntimeError::Unsupported("exec in a simulated container"))
    }

    async fn attach(&self, _container_id: &str, _request: &AttachRequest) -> Result<AttachSession> {
        Err(RuntimeError::Unsupported("attach to a simulated container"))
    }

    async fn port_forward(&self, _sandbox_id: &str, _port: u16) -> Result<BoxStream> {
        Err(RuntimeError::Unsupported("port-forward to a simulated pod"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: crate::PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid: name.into(),
                attempt: 0,
            },
            hostname: name.into(),
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn containers_run_and_exit_as_scripted() {
        let rt = SimulatedRuntime::new(Ipv4Addr::new(10, 42, 0, 0), 24);
        let sb = rt.run_pod_sandbox(&pod("a")).await.unwrap();
        let sb2 = rt.run_pod_sandbox(&pod("b")).await.unwrap();
        let ip1 = rt.pod_sandbox_status(&sb).await.unwrap().ip.unwrap();
        let ip2 = rt.pod_sandbox_status(&sb2).await.unwrap().ip.unwrap();
        assert_eq!(ip1, "10.42.0.2");
        assert_ne!(ip1, ip2);

        let mut cfg = ContainerConfig { image: "busybox".into(), ..Default::default() };
        let err = rt.create_container(&sb, &cfg, &pod("a")).await.unwrap_err();
        assert!(matches!(err, RuntimeError::ImageNotPresent(_)), "{err}");
        rt.pull_image("busybox", &[]).await.unwrap();
        cfg.annotations.insert(EXIT_AFTER_MS_ANNOTATION.into(), "5000".into());
        cfg.annotations.insert(EXIT_CODE_ANNOTATION.into(), "3".into());
        let c = rt.create_container(&sb, &cfg, &pod("a")).await.unwrap();
        rt.start_container(&c).await.unwrap();
        assert_eq!(rt.container_status(&c).await.unwrap().state, ContainerState::Running);
        tokio::time::sleep(std::time::Duration::from_millis(5001)).await;
        let st = rt.container_status(&c).await.unwrap();
        assert_eq!(
            (st.state, st.exit_code, st.reason.as_str()),
            (ContainerState::Exited, 3, "Error")
        );
        assert!(rt.start_container(&c).await.is_err(), "an exited container cannot start again");

        rt.remove_pod_sandbox(&sb).await.unwrap();
        assert!(rt.list_containers(None).await.unwrap().is_empty());
        assert!(rt.pod_sandbox_status(&sb).await.is_err());
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }
}
