//! Accepting connections (TLS, the caller's identity from its client certificate, HTTP/1.1
//! and HTTP/2 with upgrades for the streaming endpoints to come) and the routes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::Error;
use crate::locator::LogLocator;
use crate::options::LogOptions;
use crate::portforward_route::serve_port_forward;
use crate::reader::{FollowTiming, LogReader};
use crate::stream_routes::{Verb, serve_stream};
use crate::streams::Streams;
use crate::tls::{Identity, authorize};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; further ones wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// Output chunks buffered between a log reader and its connection.
const LOG_CHANNEL_CHUNKS: usize = 8;

/// Where and as whom the kubelet serves.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `0.0.0.0:10250` in a cluster; tests use `127.0.0.1:0` and read
    /// [`BoundServer::address`].
    pub address: SocketAddr,
    /// Holds `kubelet.crt` and `kubelet.key` (generated when absent).
    pub cert_dir: PathBuf,
    pub node_name: String,
    /// More DNS names for the generated serving certificate (the node name is always in).
    pub hostnames: Vec<String>,
    /// Addresses for the generated serving certificate.
    pub ips: Vec<IpAddr>,
    /// The cluster CA (PEM): client certificates must chain to it.
    pub client_ca_pem: Vec<u8>,
}

/// A running server.
#[derive(Debug)]
pub struct BoundServer {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl BoundServer {
    /// The address the server listens on (with the port the system chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Waits until the server stopped accepting (after its cancellation token fired).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

struct AppState {
    locator: Arc<dyn LogLocator>,
    streams: Arc<dyn Streams>,
    cancel: CancellationToken,
}

/// A plain-text answer (what upstream's kubelet sends for errors).
pub(crate) fn text(status: u16, body: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body.into()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn router(state: Arc<AppState>) -> Router {
    let not_implemented = |what: &'static str| {
        any(
            move || async move { text(501, format!("{what} is not implemented by this kubelet yet")) },
        )
    };
    Router::new()
        .route("/healthz", get(|| async { text(200, "ok") }))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/exec/{namespace}/{pod}/{container}", any(exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", any(exec))
        .route("/attach/{namespace}/{pod}/{container}", any(attach))
        .route("/attach/{namespace}/{pod}/{uid}/{container}", any(attach))
        .route("/portForward/{namespace}/{pod}", any(port_forward))
        .route("/portForward/{namespace}/{pod}/{uid}", any(port_forward))
        .route("/run/{*rest}", not_implemented("run"))
        .fallback(|| async { text(404, "404 page not found") })
        .with_state(state)
}

async fn exec(
    State(state): State<Arc<AppState>>,
    path: Path<HashMap<String, String>>,
    query: RawQuery,
    req: Request<Body>,
) -> Response {
    serve_stream(Verb::Exec, state.streams.clone(), path, query, req).await
}

async fn attach(
    State(state): State<Arc<AppState>>,
    path: Path<HashMap<String, String>>,
    query: RawQuery,
    req: Request<Body>,
) -> Response {
    serve_stream(Verb::Attach, state.streams.clone(), path, query, req).await
}

async fn port_forward(
    State(state): State<Arc<AppState>>,
    path: Path<HashMap<String, String>>,
    req: Request<Body>,
) -> Response {
    serve_port_forward(state.streams.clone(), path, req).await
}

/// `GET /containerLogs/{namespace}/{pod}/{container}`.
async fn container_logs(
    State(state): State<Arc<AppState>>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let opts = match LogOptions::from_query(query.as_deref().unwrap_or(""), SystemTime::now()) {
        Ok(opts) => opts,
        Err(e) => {
            tracing::debug!(error = %e, "containerLogs query refused");
            return text(e.status(), e.body());
        }
    };
    let file = match state.locator.locate(&namespace, &pod, &container, opts.previous).await {
        Ok(file) => file,
        Err(e) => return text(e.status(), e.to_string()),
    };
    let reader = match LogReader::open(&file.path, &opts).await {
        Ok(reader) => reader,
        Err(e) => {
            return text(400, format!("failed to open log file {:?}: {e}", file.path.display()));
        }
    };
    tracing::debug!(%namespace, %pod, %container, follow = opts.follow, "serving container logs");
    let (tx, rx) = mpsc::channel::<Bytes>(LOG_CHANNEL_CHUNKS);
    let (locator, cancel) = (state.locator.clone(), state.cancel.clone());
    tokio::spawn(async move {
        let timing = FollowTiming::default();
        if let Err(e) = reader.run(&file.container_id, &*locator, &tx, &cancel, timing).await {
            tracing::warn!(path = %file.path.display(), error = %e, "reading container logs");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Binds `config.address` and serves until `cancel` fires. Generates the serving
/// certificate on first use (see the crate docs).
pub async fn serve(
    config: ServerConfig,
    locator: Arc<dyn LogLocator>,
    streams: Arc<dyn Streams>,
    cancel: CancellationToken,
) -> Result<BoundServer, Error> {
    let serving =
        crate::cert::ensure(&config.cert_dir, &config.node_name, &config.hostnames, &config.ips)?;
    let tls = crate::tls::server_config(&serving, &config.client_ca_pem)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(config.address)
        .await
        .map_err(|source| Error::Io { what: format!("binding {}", config.address), source })?;
    let address = listener
        .local_addr()
        .map_err(|source| Error::Io { what: "local address".into(), source })?;
    let app = router(Arc::new(AppState { locator, streams, cancel: cancel.clone() }));
    tracing::info!(%address, node = %config.node_name, "kubelet server serving");
    let task = tokio::spawn(accept_loop(listener, acceptor, app, cancel));
    Ok(BoundServer { address, task })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = cancel.cancelled() => return,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let identity = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|c| Identity::from_certificate(c.as_ref()));
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let decision = authorize(identity.as_ref(), req.method(), req.uri().path());
                    let app = app.clone();
                    async move {
                        match decision {
                            Ok(()) => app.oneshot(req.map(Body::new)).await,
                            Err((status, body)) => Ok(text(status, body)),
                        }
                    }
                });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                _ = cancel.cancelled() => {}
            }
        });
    }
}
