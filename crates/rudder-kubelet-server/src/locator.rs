//! What the server needs from the kubelet to serve logs: where a container's CRI log file
//! is, and whether that container still runs (to know when `follow` ends).

use std::path::PathBuf;

use async_trait::async_trait;

/// A container instance's log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// The CRI-format log file (`<RFC3339Nano> <stdout|stderr> <F|P> <content>` lines).
    pub path: PathBuf,
    /// The runtime's id of the container instance that writes it; handed back to
    /// [`LogLocator::is_running`] while following.
    pub container_id: String,
}

/// Why there are no logs to serve. The messages are upstream's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// 404 `pod "p" does not exist` (the pod is not on this node).
    #[error("pod {pod:?} does not exist")]
    PodNotFound { pod: String },
    /// 404 `container "c" not found in pod "p"` (no such container in the pod's spec).
    #[error("container {container:?} not found in pod {pod:?}")]
    ContainerNotFound { pod: String, container: String },
    /// 400 with the message as given: the container exists in the spec but has no log to
    /// show, e.g. upstream's `previous terminated container "c" in pod "p" not found`,
    /// `container "c" in pod "p" is waiting to start: ContainerCreating`, `container "c" in
    /// pod "p" is not available` (see [`LocateError::previous_not_found`] and friends).
    #[error("{0}")]
    Unavailable(String),
}

impl LocateError {
    pub fn status(&self) -> u16 {
        match self {
            LocateError::PodNotFound { .. } | LocateError::ContainerNotFound { .. } => 404,
            LocateError::Unavailable(_) => 400,
        }
    }

    /// `previous=true` but the container has not terminated before.
    pub fn previous_not_found(container: &str, pod: &str) -> Self {
        LocateError::Unavailable(format!(
            "previous terminated container {container:?} in pod {pod:?} not found"
        ))
    }

    /// The container has not started yet; `reason` is its waiting reason
    /// (`ContainerCreating`, `PodInitializing`, `ImagePullBackOff`, ...).
    pub fn waiting_to_start(container: &str, pod: &str, reason: &str) -> Self {
        LocateError::Unavailable(format!(
            "container {container:?} in pod {pod:?} is waiting to start: {reason}"
        ))
    }

    /// The kubelet knows no status for the container.
    pub fn not_available(container: &str, pod: &str) -> Self {
        LocateError::Unavailable(format!("container {container:?} in pod {pod:?} is not available"))
    }
}

/// Implemented by the kubelet.
#[async_trait]
pub trait LogLocator: Send + Sync + 'static {
    /// The log file of `container` in pod `namespace/pod`: the running (or else the last
    /// terminated) instance, or with `previous` the instance before the current one.
    async fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LocateError>;

    /// Whether the container instance `container_id` is still running. `follow` polls it
    /// (about once a second, only while the file has no new lines) and ends once it is
    /// false and the file is drained. An unknown id is not running.
    async fn is_running(&self, container_id: &str) -> bool;
}
