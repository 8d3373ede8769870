//! The node's container runtime interface, shaped after the Kubernetes CRI: pod sandboxes
//! (the namespaces and network a pod's containers share) and containers inside them, exec,
//! and CRI-format log files. The kubelet talks only to [`Runtime`].
//!
//! Two implementations: `rudder-runtime-native` (real Linux containers through youki's
//! libcontainer, one shim process per container) and [`simulated::SimulatedRuntime`]
//! (no processes at all: containers "run" in memory with scripted exits), used by kubelet
//! unit tests and scale benchmarks.

pub mod logs;
pub mod simulated;
mod types;

pub use types::*;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("pod sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    #[error("image {0:?} not present on the node")]
    ImageNotPresent(String),
    #[error("pulling image {image:?}: {message}")]
    ImagePull { image: String, message: String },
    #[error("container {id:?} is {state:?}; {action} needs it {needed}")]
    WrongState { id: String, state: ContainerState, action: &'static str, needed: &'static str },
    #[error("invalid container config: {0}")]
    InvalidConfig(String),
    #[error("{0} is not supported by this runtime")]
    Unsupported(&'static str),
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout { what: String, timeout_ms: u64 },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What the kubelet needs from a container runtime. Every method is idempotent where CRI's
/// is (stopping a stopped sandbox, removing a removed container succeed).
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// A short name for status output ("native", "simulated").
    fn name(&self) -> &'static str;

    // ---- images ----
    /// Makes the image present (pulling it with the given docker-config-JSON credentials)
    /// and returns its id (manifest digest).
    async fn pull_image(&self, image: &str, credentials: &[Vec<u8>]) -> Result<ImageInfo>;
    /// The image if present, by reference or id.
    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>>;
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    async fn remove_image(&self, image: &str) -> Result<()>;

    // ---- pod sandboxes ----
    /// Creates the pod's namespaces and network; returns the sandbox id.
    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String>;
    /// Stops every container of the sandbox (grace period 0: the kubelet stops containers
    /// gracefully before) and releases its network.
    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    /// Removes the sandbox and all its containers. Succeeds if it is already gone.
    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()>;
    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus>;
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>>;
    /// The sandboxes labelled `key` = `value` (the CRI's label filter; the kubelet asks for
    /// one pod's by its UID label). Runtimes that can pass over the others without reading
    /// them override this.
    async fn list_pod_sandboxes_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<PodSandboxStatus>> {
        let mut all = self.list_pod_sandboxes().await?;
        all.retain(|s| s.labels.get(key).map(String::as_str) == Some(value));
        Ok(all)
    }

    // ---- containers ----
    /// Prepares a container (rootfs, spec) in a sandbox; it does not run yet.
    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        sandbox: &PodSandboxConfig,
    ) -> Result<String>;
    async fn start_container(&self, container_id: &str) -> Result<()>;
    /// SIGTERM (or the image's stop signal), then SIGKILL after `timeout_s`.
    async fn stop_container(&self, container_id: &str, timeout_s: u64) -> Result<()>;
    async fn remove_container(&self, container_id: &str) -> Result<()>;
    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus>;
    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>>;

    // ---- streaming ----
    /// Runs a command in a running container and collects its output.
    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout_s: u64,
    ) -> Result<ExecResult>;
    /// Starts a command in a running container with streamed stdio (TTY or not).
    async fn exec(&self, container_id: &str, request: &ExecRequest) -> Result<ExecSession>;
    /// Attaches to a running container's main process (`kubectl attach`, `run -it`).
    async fn attach(&self, container_id: &str, request: &AttachRequest) -> Result<AttachSession>;
    /// Connects to `port` on the pod's loopback, inside its network namespace
    /// (`kubectl port-forward`).
    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<BoxStream>;
}
