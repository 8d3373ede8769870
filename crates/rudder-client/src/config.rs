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

/// A client for the kubeconfig in `text` that opens its connections with `connector` (a
/// hyper connector: a `tower::Service<Uri>` giving a byte stream) instead of TCP. Everything
/// above the stream is as for any other client: the kubeconfig's TLS and credentials, its
/// server URL, the same read timeout.
pub fn client_over<H>(text: &str, connector: H) -> Result<Client, ClientError>
where
    H: tower::Service<http::Uri> + Clone + Send + Sync + 'static,
    H::Response: hyper_util::client::legacy::connect::Connection
        + hyper::rt::Read
        + hyper::rt::Write
        + Send
        + Unpin
        + 'static,
    H::Future: Send + 'static,
    H::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use kube::client::ConfigExt as _;
    let config = tokio_config(Kubeconfig::from_yaml(text)?)?;
    let https = config.rustls_https_connector_with_connector(connector)?;
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, kube::client::Body>(timed);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(http);
    Ok(kube::client::ClientBuilder::new(service, config.default_namespace).build())
}
