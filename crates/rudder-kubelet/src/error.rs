//! The kubelet's errors.

use rudder_client::api::RequestError;
use rudder_runtime::RuntimeError;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("container runtime: {0}")]
    Runtime(#[from] RuntimeError),
    #[error("invalid kubelet configuration: {0}")]
    Config(String),
    #[error("node {node:?}: {message}")]
    Node { node: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("stopped")]
    Cancelled,
}
