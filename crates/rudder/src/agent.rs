//! The node agent: the kubelet over the native runtime (youki's libcontainer, rudder-net's
//! bridge, the node's image store), in `rudder server` (default) or as `rudder agent`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rudder_images::store::{ImageStore, StoreOptions};
use rudder_kubelet::{KubeletConfig, KubeletDeps, KubeletState, RuntimeFuture};
use rudder_runtime::Runtime;
use rudder_runtime_native::image_adapter::ImageStoreAdapter;
use rudder_runtime_native::layout::Layout;
use rudder_runtime_native::net_adapter::NetworkAdapter;
use rudder_runtime_native::{NativeRuntime, ShimCommand};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the agent flags choose.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Node state: images in `<data_dir>/images`, everything else in `<data_dir>/agent`.
    pub data_dir: PathBuf,
    pub node_name: String,
    pub node_ip: Ipv4Addr,
    pub port: u16,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub node_labels: Vec<(String, String)>,
    /// The node bridge (`rudder0`).
    pub bridge: String,
    /// Registries pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Pods started at once (None: the kubelet's default).
    pub parallel_pod_starts: Option<usize>,
}

/// The host's name, lower-cased (upstream's default node name).
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "rudder-node".into())
}

/// The address of the interface that carries the default route, else loopback.
pub fn default_node_ip() -> Ipv4Addr {
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("192.0.2.1:9")?;
            s.local_addr()
        })
        .ok()
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        })
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

fn network_config(data_dir: &Path, bridge: &str, pod_cidr: &str) -> rudder_net::NetworkConfig {
    rudder_net::NetworkConfig {
        bridge: bridge.to_owned(),
        pod_cidr: pod_cidr.to_owned(),
        state_dir: data_dir.join("agent/net/ipam"),
        run_dir: run_dirs(data_dir)[0].clone(),
        ..Default::default()
    }
}

fn native_runtime(
    data_dir: &Path,
    bridge: &str,
    pod_cidr: &str,
    insecure_registries: Vec<String>,
) -> anyhow::Result<Arc<dyn Runtime>> {
    let agent = data_dir.join("agent");
    let network = rudder_net::Network::new(network_config(data_dir, bridge, pod_cidr))
        .context("pod network")?;
    let mut options = store_options(data_dir);
    options.registry.insecure_registries = insecure_registries;
    let store = Arc::new(ImageStore::open(images_dir(data_dir), options).context("image store")?);
    let runtime = NativeRuntime::new(
        Layout::new(agent.join("runtime"), run_dirs(data_dir)[1].clone()),
        ShimCommand { program: std::env::current_exe()?, prefix_args: vec!["shim".into()] },
        Arc::new(ImageStoreAdapter::new(store)),
        Arc::new(NetworkAdapter::new(network)?),
    )?;
    Ok(Arc::new(runtime))
}

/// Runs the kubelet until `cancel` (containers keep running) or `shutdown` (pods stopped).
pub async fn run(
    options: AgentOptions,
    client: kube::Client,
    client_ca_pem: Vec<u8>,
    state: watch::Sender<KubeletState>,
    shutdown: CancellationToken,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut cfg =
        KubeletConfig::new(&options.node_name, options.node_ip, options.data_dir.join("agent"));
    cfg.port = options.port;
    cfg.cluster_dns = options.cluster_dns.clone();
    cfg.cluster_domain = options.cluster_domain.clone();
    cfg.node_labels.extend(options.node_labels.iter().cloned());
    if let Some(n) = options.parallel_pod_starts {
        cfg.parallel_pod_starts = n;
    }
    let data_dir = options.data_dir.clone();
    let bridge = options.bridge.clone();
    let insecure = options.insecure_registries.clone();
    // The node network, once known, so that a node shutdown can remove it (bridge, nft).
    let node_network: Arc<std::sync::Mutex<Option<rudder_net::NetworkConfig>>> = Arc::default();
    let network_slot = node_network.clone();
    let node_run_dirs = run_dirs(&options.data_dir);
    let make_runtime = move |cidr: String| -> RuntimeFuture {
        *network_slot.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(network_config(&data_dir, &bridge, &cidr));
        Box::pin(async move {
            tokio::task::spawn_blocking(move || native_runtime(&data_dir, &bridge, &cidr, insecure))
                .await
                .map_err(|e| rudder_runtime::RuntimeError::Internal(e.to_string()))?
                .map_err(|e| rudder_runtime::RuntimeError::Internal(format!("{e:#}")))
        })
    };
    // Released local-path volumes of this node are removed here (the node owns the disk).
    let reclaimer = rudder_pv::localpath::run_node_reclaimer(
        rudder_client::Context::new(client.clone(), cancel.clone()),
        options.node_name.clone(),
        options.data_dir.join("agent/storage"),
        cancel.clone(),
    );
    tokio::spawn(reclaimer);
    let deps = KubeletDeps {
        client,
        clock: Arc::new(rudder_client::SystemClock),
        runtime: Box::new(make_runtime),
        client_ca_pem: Some(client_ca_pem),
        on_shutdown: Some(Box::new(move || {
            let cfg = node_network.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(cfg) = cfg {
                let removed = rudder_net::Network::new(cfg).and_then(|n| n.teardown_node());
                if let Err(e) = removed {
                    tracing::warn!(error = %e, "removing the node network failed");
                }
            }
            // Every sandbox is gone by now: the runtime's and the namespaces' run dirs
            // (tmpfs mounts) go too.
            for dir in &node_run_dirs {
                rudder_runtime_native::layout::remove_run_dir_if_empty(dir);
            }
        })),
    };
    rudder_kubelet::run(cfg, deps, state, shutdown, cancel).await.context("kubelet")
}

/// The node's image store.
pub fn images_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("images")
}

/// How the node's image store is opened, by the agent and by `rudder image`: with the
/// runtime's pins (on tmpfs), which gc must respect whoever runs it.
pub fn store_options(data_dir: &Path) -> StoreOptions {
    StoreOptions {
        pins_dir: Some(rudder_runtime_native::layout::pins_dir(&run_dirs(data_dir)[1])),
        ..Default::default()
    }
}

/// The node's runtime directories under /run (what `rudder down --purge` removes).
pub fn run_dirs(data_dir: &Path) -> [PathBuf; 2] {
    rudder_runtime_native::layout::node_run_dirs(data_dir)
}

/// `k=v` into a pair.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}
