//! What the server needs from the kubelet for exec, attach and port-forward: a running
//! container's streams and a connection into a pod, located by pod and container name.

use async_trait::async_trait;
use rudder_runtime::{
    AttachRequest, AttachSession, BoxStream, ExecRequest, ExecSession, RuntimeError,
};

use crate::locator::LocateError;

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// No such pod or container (404), or nothing to stream from yet (400).
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// The request cannot be served as asked (400), e.g. stdin of a container made without.
    #[error("{0}")]
    BadRequest(String),
    /// The runtime failed (500).
    #[error("{0}")]
    Runtime(String),
}

impl StreamError {
    pub fn status(&self) -> u16 {
        match self {
            StreamError::Locate(e) => e.status(),
            StreamError::BadRequest(_) => 400,
            StreamError::Runtime(_) => 500,
        }
    }
}

impl From<RuntimeError> for StreamError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::InvalidConfig(m) => StreamError::BadRequest(m),
            e @ (RuntimeError::WrongState { .. } | RuntimeError::Unsupported(_)) => {
                StreamError::BadRequest(e.to_string())
            }
            other => StreamError::Runtime(other.to_string()),
        }
    }
}

/// Implemented by the kubelet.
#[async_trait]
pub trait Streams: Send + Sync + 'static {
    /// Runs a command in the running container `container` of pod `namespace/pod`.
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession, StreamError>;

    /// Attaches to the main process of the running container `container`.
    async fn attach(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        request: &AttachRequest,
    ) -> Result<AttachSession, StreamError>;

    /// Connects to `port` on the pod's loopback.
    async fn port_forward(
        &self,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<BoxStream, StreamError>;
}
