//! API clients from kubeconfigs (files or text), with timeouts on every request.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("client: {0}")]
    Client(#[from] kube::Error),
}

/// Bound on connecting to the API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one request's reads (a watch is bounded by its own timeoutSeconds, which is
/// shorter than this).
pub const READ_TIMEOUT: Duration = Duration::from_secs(330);

fn client_from(kubeconfig: Kubeconfig) -> Result<Client, ClientError> {
    let config = tokio_config(kubeconfig)?;
    Ok(Client::try_from(config)?)
}

fn tokio_config(kubeconfig: Kubeconfig) -> Result<Config, ClientError> {
    // `from_custom_kubeconfig` is async only for exec plugins, which ours never use; run it
    // to completion here so callers can build clients from sync code too.
    let mut config = futures::executor::block_on(Config::from_custom_kubeconfig(
        kubeconfig,
        &KubeConfigOptions::default(),
    ))?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    Ok(config)
}

/// A client for the kubeconfig in `text` (YAML).
pub fn client_from_kubeconfig_text(text: &str) -> Result<Client, ClientError> {
    client_from(Kubeconfig::from_yaml(text)?)
}

/// A client for the kubeconfig file at `path`.
pub fn client_from_kubeconfig_file(path: &Path) -> Result<Client, ClientError> {
    client_from(Kubeconfig::read_from(path)?)
}
