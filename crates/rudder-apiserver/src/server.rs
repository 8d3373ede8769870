//! `rudder server`: opens the store, makes sure the PKI, kubeconfig and default namespaces
//! exist, and serves the API over TLS (HTTP/2 and HTTP/1.1).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use rudder_store::{SqliteConfig, SqliteStorage, Storage};
use rudder_store_etcd::{EtcdConfig, EtcdStorage};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::clock::{Clock, SystemClock};
use crate::handler::{AppState, router};
use crate::pki::{Pki, serving_names};
use crate::registry::Registry;
use crate::request::{Query, parse_target};
use crate::tls::Identity;

/// Where the state lives.
#[derive(Clone, Debug)]
pub enum Datastore {
    /// The embedded SQLite file `<data-dir>/db/state.db`.
    Sqlite,
    /// `etcd://host:port,host:port`.
    Etcd(String),
}

impl std::str::FromStr for Datastore {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "sqlite" {
            Ok(Datastore::Sqlite)
        } else if s.starts_with("etcd://") && EtcdConfig::from_url(s).is_some() {
            Ok(Datastore::Etcd(s.to_owned()))
        } else {
            Err(format!("unknown datastore {s:?}: use sqlite or etcd://host:port[,host:port...]"))
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub port: u16,
    pub datastore: Datastore,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("store: {0}")]
    Store(#[from] rudder_store::StoreError),
    #[error("certificates: {0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

/// What a started server tells its caller.
#[derive(Clone, Debug)]
pub struct Started {
    pub address: SocketAddr,
    pub kubeconfig: PathBuf,
    /// In-process connections to this server (TLS over an in-memory pipe), for the
    /// components `rudder server` runs itself.
    pub local: crate::local::LocalConnector,
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn kubeconfig_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("admin.kubeconfig")
}

async fn open_store(config: &ServerConfig) -> Result<Arc<dyn Storage>, ServerError> {
    Ok(match &config.datastore {
        Datastore::Sqlite => {
            let path = config.data_dir.join("db").join("state.db");
            Arc::new(SqliteStorage::open(SqliteConfig::new(path))?)
        }
        Datastore::Etcd(url) => {
            let etcd = EtcdConfig::from_url(url).expect("validated when parsed");
            Arc::new(EtcdStorage::connect(etcd).await?)
        }
    })
}

/// Creates what every cluster has: the four namespaces and the `kubernetes` Service that
/// points at the API server (port `api_port`).
async fn bootstrap(registry: &Registry, api_port: u16) -> Result<(), ServerError> {
    let q = Query::default();
    let create = |segments: &'static [&'static str], body: serde_json::Value| {
        let q = &q;
        async move {
            let target = parse_target("", "v1", segments).expect("bootstrap route");
            match registry.create(&target, &serde_json::to_vec(&body).expect("JSON"), q).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(ServerError::Bootstrap(format!("{segments:?}: {}", e.message))),
            }
        }
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        create(&["namespaces"], body).await?;
    }
    for (name, value, description) in crate::admission::SYSTEM_PRIORITY_CLASSES {
        let class = serde_json::json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": { "name": name },
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        let target = crate::request::parse_target("scheduling.k8s.io", "v1", &["priorityclasses"])
            .expect("bootstrap route");
        match registry.create(&target, &serde_json::to_vec(&class).expect("JSON"), &q).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(ServerError::Bootstrap(format!("{name}: {}", e.message))),
        }
    }
    // The default StorageClass, unless one of that name exists (a user's edit is kept).
    let classes = crate::request::parse_target("storage.k8s.io", "v1", &["storageclasses"])
        .expect("bootstrap route");
    let class = crate::storage::local_path_class();
    match registry.create(&classes, &serde_json::to_vec(&class).expect("JSON"), &q).await {
        Ok(_) => {}
        Err(e) if e.code == 409 => {}
        Err(e) => {
            return Err(ServerError::Bootstrap(format!(
                "{}: {}",
                crate::storage::LOCAL_PATH_CLASS,
                e.message
            )));
        }
    }
    let kubernetes = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "labels": { "component": "apiserver", "provider": "kubernetes" },
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": crate::service_alloc::KUBERNETES_SERVICE_IP.to_string(),
            "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port }],
        },
    });
    create(&["namespaces", "default", "services"], kubernetes).await
}

/// The address other machines and pods reach this server at: the bind address when one is
/// given, else the address of the interface that routes outwards (no packet is sent), else
/// loopback.
fn advertise_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() {
        return bind;
    }
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// The `kubernetes` Service's Endpoints and EndpointSlice: this server's address and port
/// (upstream's API server keeps them too). Rewritten on every start.
async fn kubernetes_endpoints(
    registry: &Registry,
    address: IpAddr,
    port: u16,
) -> Result<(), ServerError> {
    let q = Query::default();
    let endpoints = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": { "name": "kubernetes", "namespace": "default",
                      "labels": { "endpointslice.kubernetes.io/skip-mirror": "true" } },
        "subsets": [{
            "addresses": [{ "ip": address.to_string() }],
            "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
        }],
    });
    let slice = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": { "name": "kubernetes", "namespace": "default",
                      "labels": { "kubernetes.io/service-name": "kubernetes" } },
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{ "addresses": [address.to_string()], "conditions": { "ready": true } }],
        "ports": [{ "name": "https", "port": port, "protocol": "TCP" }],
    });
    for (group, segments, body) in [
        ("", ["namespaces", "default", "endpoints"], endpoints),
        ("discovery.k8s.io", ["namespaces", "default", "endpointslices"], slice),
    ] {
        let version = "v1";
        let collection = parse_target(group, version, &segments).expect("bootstrap route");
        let bytes = serde_json::to_vec(&body).expect("JSON");
        match registry.create(&collection, &bytes, &q).await {
            Ok(_) => {}
            Err(e) if e.code == 409 => {
                let mut one = segments.to_vec();
                one.push("kubernetes");
                let target = parse_target(group, version, &one).expect("bootstrap route");
                registry.update(&target, &bytes, &q).await.map_err(|e| {
                    ServerError::Bootstrap(format!("kubernetes endpoints: {}", e.message))
                })?;
            }
            Err(e) => {
                return Err(ServerError::Bootstrap(format!("kubernetes endpoints: {}", e.message)));
            }
        }
    }
    Ok(())
}

/// Runs the API server until the process ends. `started` is told once it serves.
pub async fn run(
    config: ServerConfig,
    started: tokio::sync::oneshot::Sender<Started>,
) -> Result<(), ServerError> {
    let io = |what: String| move |source| ServerError::Io { what, source };
    std::fs::create_dir_all(&config.data_dir)
        .map_err(io(format!("creating {}", config.data_dir.display())))?;
    let store = open_store(&config).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cache = crate::watch_cache::WatchCache::new(store.clone());
    let registry = Registry { store, clock, cache };

    let mut extra = Vec::new();
    if !config.bind_address.is_unspecified() {
        extra.push(config.bind_address.to_string());
    }
    let pki = Pki::ensure(&config.data_dir.join("tls"), serving_names(&extra))?;
    let listener = TcpListener::bind((config.bind_address, config.port))
        .await
        .map_err(io(format!("binding {}:{}", config.bind_address, config.port)))?;
    let address = listener.local_addr().map_err(io("local address".into()))?;
    bootstrap(&registry, address.port()).await?;
    kubernetes_endpoints(&registry, advertise_address(config.bind_address), address.port()).await?;
    let client_host = if config.bind_address.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        config.bind_address.to_string()
    };
    let server_url = format!("https://{client_host}:{}", address.port());
    let kubeconfig = kubeconfig_path(&config.data_dir);
    let rendered = crate::kubeconfig::render("rudder", &server_url, &pki.ca.cert_pem, &pki.admin);
    crate::pki::write_private(&kubeconfig, &rendered)?;

    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(crate::tls::server_config(&pki)?));
    let kubelet = crate::kubelet_client::KubeletClient::new(&pki.kubelet_client)?;
    let tokens = crate::token_request::TokenSigner::from_pem(&pki.service_account_key_pem)
        .map_err(|e| ServerError::Bootstrap(e.to_string()))?;
    let state = Arc::new(AppState {
        registry,
        server_address: format!("{client_host}:{}", address.port()),
        kubelet,
        tokens,
    });
    let app = router(state);
    let (local, mut local_pipes) = crate::local::LocalConnector::new();
    let _ = started.send(Started { address, kubeconfig, local });
    tracing::info!(%address, "API server serving");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    tokio::spawn(serve_connection(tcp, peer.to_string(), tls.clone(), app.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(pipe) = local_pipes.recv() => {
                tokio::spawn(serve_connection(pipe, "in-process".into(), tls.clone(), app.clone()));
            }
        }
    }
}

/// Serves one connection (TCP or in-process): the TLS handshake, the client certificate's
/// identity, then HTTP/2 or HTTP/1.1 with upgrades until the client goes.
async fn serve_connection<IO>(
    io: IO,
    peer: String,
    tls: tokio_rustls::TlsAcceptor,
    app: axum::Router,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(io)).await {
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
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            if let Some(id) = &identity {
                req.extensions_mut().insert(id.clone());
            }
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
