//! Starting a kubelet: register the Node, heartbeat, wait for the pod CIDR, build the
//! runtime, serve logs, run the pods; on node shutdown stop them all first.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::runtime::watcher;
use kube::{Api, Client};
use rudder_client::{Clock, Informer, Informers, Recorder};
use rudder_kubelet_inputs::{KubeSource, NodeInfoForVolumes, VolumeManager};
use rudder_runtime::{Runtime, RuntimeError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::KubeletConfig;
use crate::error::KubeletError;
use crate::machine::MachineInfo;
use crate::manager::Manager;
use crate::node::{self, Readiness};
use crate::probes::Probes;
use crate::shared::Shared;
use crate::start_slots::StartSlots;
use crate::status_writer::StatusWriter;

pub type RuntimeFuture =
    Pin<Box<dyn Future<Output = Result<Arc<dyn Runtime>, RuntimeError>> + Send>>;

/// What the kubelet is given besides its configuration.
pub struct KubeletDeps {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    /// Builds the runtime once the Node's pod CIDR is known (the native runtime's network
    /// needs it).
    pub runtime: Box<dyn FnOnce(String) -> RuntimeFuture + Send>,
    /// The cluster CA (PEM) that API server client certificates chain to; with it the
    /// kubelet serves logs on `config.port`.
    pub client_ca_pem: Option<Vec<u8>>,
    /// Runs after a node shutdown removed every pod (e.g. removes the node's bridge).
    pub on_shutdown: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for KubeletDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletDeps").finish_non_exhaustive()
    }
}

/// What a running kubelet reports about itself.
#[derive(Clone, Debug, Default)]
pub struct KubeletState {
    /// The Node was registered.
    pub registered: bool,
    /// The runtime is up and pods are being run.
    pub running: bool,
    /// The log server's address once listening.
    pub server_address: Option<SocketAddr>,
}

/// Runs the kubelet until `cancel` (exit, leaving containers running: a restarted agent
/// adopts them) or `shutdown` (node shutdown: every pod is stopped and reported Failed
/// first). `state` follows its progress.
pub async fn run(
    cfg: KubeletConfig,
    deps: KubeletDeps,
    state: watch::Sender<KubeletState>,
    shutdown: CancellationToken,
    cancel: CancellationToken,
) -> Result<(), KubeletError> {
    let cfg = Arc::new(cfg);
    let inner = cancel.child_token();
    let _stop_all = inner.clone().drop_guard();
    std::fs::create_dir_all(cfg.pods_dir())?;
    std::fs::create_dir_all(&cfg.pod_log_dir)?;
    std::fs::create_dir_all(&cfg.local_path_dir)?;
    let machine = MachineInfo::read(&cfg.root_dir);
    let (readiness_tx, readiness_rx) = watch::channel(Readiness::NotReady(
        "container runtime network not ready: waiting for the node's pod CIDR".into(),
    ));

    // Register (retrying until the API answers).
    let node = loop {
        let readiness = readiness_rx.borrow().clone();
        match node::register(&deps.client, &cfg, &machine, &readiness, deps.clock.now()).await {
            Ok(n) => break n,
            Err(e) => {
                tracing::warn!(error = %e, "registering the node failed; retrying");
                tokio::select! {
                    _ = inner.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    tracing::info!(node = %cfg.node_name, "node registered");
    state.send_modify(|s| s.registered = true);
    tokio::spawn(node::run_lease_loop(
        deps.client.clone(),
        cfg.clone(),
        node.metadata.uid.clone(),
        deps.clock.clone(),
        inner.clone(),
    ));
    tokio::spawn(node::run_status_loop(
        deps.client.clone(),
        cfg.clone(),
        machine.clone(),
        deps.clock.clone(),
        readiness_rx,
        inner.clone(),
    ));

    let cidr = match node::pod_cidr(&node) {
        Some(c) => c,
        None => match node::wait_pod_cidr(&deps.client, &cfg, Duration::from_millis(100), &inner)
            .await
        {
            Some(c) => c,
            None => return Ok(()),
        },
    };
    tracing::info!(pod_cidr = %cidr, "pod CIDR assigned");
    let runtime = (deps.runtime)(cidr).await?;

    let informers = Informers::new(deps.client.clone(), inner.clone());
    let services: Arc<Informer<Service>> = informers.get::<Service>();
    let pods: Arc<Informer<Pod>> = Informer::start(
        Api::all(deps.client.clone()),
        watcher::Config::default().fields(&format!("spec.nodeName={}", cfg.node_name)),
        inner.clone(),
    );

    if let Some(ca) = deps.client_ca_pem.clone() {
        let locator = Arc::new(crate::logs::Logs { pods: pods.clone(), runtime: runtime.clone() });
        let streams =
            Arc::new(crate::streaming::PodStreams { pods: pods.clone(), runtime: runtime.clone() });
        let server = rudder_kubelet_server::serve(
            rudder_kubelet_server::ServerConfig {
                address: SocketAddr::new(IpAddr::from([0, 0, 0, 0]), cfg.port),
                cert_dir: cfg.root_dir.join("pki"),
                node_name: cfg.node_name.clone(),
                hostnames: vec![cfg.node_name.clone()],
                ips: vec![IpAddr::V4(cfg.node_ip), IpAddr::from([127, 0, 0, 1])],
                client_ca_pem: ca,
            },
            locator,
            streams,
            inner.clone(),
        )
        .await
        .map_err(|e| KubeletError::Config(format!("kubelet server: {e}")))?;
        state.send_modify(|s| s.server_address = Some(server.address()));
    }

    let recorder = Recorder::new(deps.client.clone(), "kubelet", deps.clock.clone());
    let node_capacity = node::capacity(&cfg, &machine);
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        client: deps.client.clone(),
        runtime: runtime.clone(),
        recorder: recorder.clone(),
        clock: deps.clock.clone(),
        status: StatusWriter::default(),
        probes: Probes::new(runtime.clone(), recorder),
        volumes: Arc::new(VolumeManager::with_clock(cfg.pods_dir(), deps.clock.clone())),
        source: Arc::new(KubeSource::new(deps.client.clone())),
        services,
        crash_backoff: Mutex::new(Backoff::new(cfg.backoff_initial, cfg.backoff_max)),
        image_backoff: Mutex::new(Backoff::new(cfg.image_backoff_initial, cfg.image_backoff_max)),
        node_info: NodeInfoForVolumes {
            node_name: cfg.node_name.clone(),
            allocatable: node_capacity,
        },
        node_memory_bytes: machine.memory_bytes,
        start_slots: StartSlots::new(cfg.parallel_pod_starts),
    });
    tokio::spawn(shared.status.clone().run(
        deps.client.clone(),
        cfg.request_timeout,
        inner.clone(),
    ));
    let manager = Manager::new(shared.clone(), pods, inner.clone());
    manager.watch_volume_objects(&informers.get::<ConfigMap>(), &informers.get::<Secret>());
    tokio::spawn(manager.clone().run());
    readiness_tx.send_replace(Readiness::Ready);
    state.send_modify(|s| s.running = true);
    tracing::info!(node = %cfg.node_name, runtime = runtime.name(), "kubelet running");

    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = shutdown.cancelled() => {
            tracing::info!("node shutdown: stopping every pod");
            readiness_tx.send_replace(Readiness::ShuttingDown);
            manager.shutdown(cfg.shutdown_grace_period).await;
            if let Some(hook) = deps.on_shutdown
                && let Err(e) = tokio::task::spawn_blocking(hook).await
            {
                tracing::warn!(error = %e, "node shutdown hook failed");
            }
        }
    }
    Ok(())
}
