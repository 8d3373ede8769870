//! `rudder`: one binary for the whole system. Subcommands arrive as their components land
//! (see ARCHITECTURE.md).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rudder_apiserver::{Datastore, ServerConfig};

mod agent;
mod control_plane;
mod controllers;
mod duration;
mod image;
mod sim;
mod up;

/// jemalloc instead of glibc's malloc: under the API server's load (many threads, a large
/// heap of short-lived JSON values) glibc's arenas took about 15 % of the server's CPU
/// (BENCHMARKS.md, scheduler at scale, fourth session).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The Kubernetes version rudder's API reports and follows.
const KUBERNETES_VERSION: &str = "v1.33.0";

#[derive(Parser)]
#[command(
    name = "rudder",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/rudder")
}

#[derive(Subcommand)]
enum Command {
    /// Print rudder's version and the Kubernetes API version it implements.
    Version,
    /// Run the API server on the store (HTTPS; writes an admin kubeconfig to the data dir).
    Server {
        /// Where state, certificates and the admin kubeconfig live.
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0")]
        bind_address: IpAddr,
        /// HTTPS port (0 picks a free one).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// `sqlite` (embedded, default) or `etcd://host:port[,host:port...]`.
        #[arg(long, default_value = "sqlite")]
        datastore: Datastore,
        /// Do not run the scheduler in this server.
        #[arg(long)]
        disable_scheduler: bool,
        /// Do not run the controller manager in this server.
        #[arg(long)]
        disable_controller_manager: bool,
        /// The pods' address range, one block per node.
        #[arg(long, default_value = "10.42.0.0/16")]
        cluster_cidr: String,
        /// Prefix length of each node's block of the cluster CIDR.
        #[arg(long, default_value_t = 24)]
        node_cidr_mask_size: u8,
        /// How long a node may stop renewing its Lease before it is marked Unknown.
        #[arg(long, default_value = "40s", value_parser = duration::parse)]
        node_monitor_grace_period: std::time::Duration,
        /// How long pods without their own toleration stay on a NotReady or unreachable
        /// node before they are evicted.
        #[arg(long, default_value_t = 300)]
        default_toleration_seconds: u32,
        /// Do not run a node agent (kubelet) in this server: a control-plane-only server.
        #[arg(long)]
        disable_agent: bool,
        #[command(flatten)]
        node: NodeFlags,
    },
    /// Run a node agent (kubelet with the native runtime) that joins a server.
    Agent {
        /// Node state (images, containers, volumes).
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// A kubeconfig for the node (e.g. from `rudder kubeconfig` on the server).
        #[arg(long)]
        kubeconfig: PathBuf,
        /// The API server URL, overriding the kubeconfig's.
        #[arg(long)]
        server: Option<String>,
        /// A bootstrap token (not supported yet: use --kubeconfig).
        #[arg(long)]
        token: Option<String>,
        #[command(flatten)]
        node: NodeFlags,
    },
    /// Start a single-node cluster in the background and wait until its node is Ready.
    Up {
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Give up after this long.
        #[arg(long, default_value = "60s", value_parser = duration::parse)]
        timeout: std::time::Duration,
        /// More `rudder server` flags.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        server_args: Vec<String>,
    },
    /// Stop the cluster `rudder up` started (pods are stopped cleanly).
    Down {
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Also remove its state and its kubeconfig context.
        #[arg(long)]
        purge: bool,
    },
    /// Report whether the cluster `rudder up` started is running, and its nodes.
    Status {
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Simulated nodes for tests and benchmarks (no kubelet, no containers).
    Sim {
        #[command(subcommand)]
        command: sim::SimCommand,
    },
    /// Print the admin kubeconfig of a server's data dir.
    Kubeconfig {
        #[arg(long, default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// Manage the node's container images (pull, import, list, remove).
    Image {
        /// The node's state directory; images live in `<data-dir>/images`.
        #[arg(long, default_value_os_t = default_data_dir(), global = true)]
        data_dir: PathBuf,
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Internal: the per-container shim (`shim run ...`) and exec helper (`shim exec ...`)
    /// the native runtime starts.
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The node agent's flags (`rudder server` and `rudder agent`).
#[derive(clap::Args, Clone, Debug)]
struct NodeFlags {
    /// The Node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The address the node reports (default: the one of the default route).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// The kubelet's HTTPS port (logs).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    /// Cluster DNS server addresses written into pods' resolv.conf.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<String>,
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Extra node labels, `key=value`.
    #[arg(long = "node-label", value_parser = agent::parse_label)]
    node_labels: Vec<(String, String)>,
    /// The node bridge pods attach to.
    #[arg(long, default_value = "rudder0", hide = true)]
    bridge: String,
    /// Registries (`host:port`) pulled from over plain HTTP.
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Pods the node starts at once (volumes, sandbox, containers); later ones wait their
    /// turn. Default: twice the CPUs.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    parallel_pod_starts: Option<usize>,
}

impl NodeFlags {
    fn options(&self, data_dir: &std::path::Path) -> agent::AgentOptions {
        agent::AgentOptions {
            data_dir: data_dir.to_owned(),
            node_name: self.node_name.clone().unwrap_or_else(agent::default_node_name),
            node_ip: self.node_ip.unwrap_or_else(agent::default_node_ip),
            port: self.kubelet_port,
            cluster_dns: self.cluster_dns.clone(),
            cluster_domain: self.cluster_domain.clone(),
            node_labels: self.node_labels.clone(),
            bridge: self.bridge.clone(),
            insecure_registries: self.insecure_registries.clone(),
            parallel_pod_starts: self.parallel_pod_starts,
        }
    }
}

fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RUDDER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Single-threaded on purpose: no async runtime, no threads (libcontainer forks).
        Command::Shim { args } => std::process::exit(rudder_runtime_native::shim::main(&args)),
        Command::Image { data_dir, command } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(image::run(&data_dir, command))
        }
        Command::Version => {
            println!("rudder {} (Kubernetes {KUBERNETES_VERSION})", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Kubeconfig { data_dir } => {
            let path = rudder_apiserver::server::kubeconfig_path(&data_dir);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!("reading {} (has `rudder server` run with this data dir?)", path.display())
            })?;
            print!("{text}");
            Ok(())
        }
        Command::Sim { command } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RUDDER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(sim::run(command))
        }
        Command::Agent { data_dir, kubeconfig, server, token, node } => {
            if token.is_some() {
                anyhow::bail!(
                    "--token: joining with bootstrap tokens is not supported yet; pass --kubeconfig with a node's kubeconfig"
                );
            }
            init_logging("info");
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut text = std::fs::read_to_string(&kubeconfig)
                    .with_context(|| format!("reading {}", kubeconfig.display()))?;
                let mut kc = kube::config::Kubeconfig::from_yaml(&text)?;
                if let Some(url) = &server {
                    for c in &mut kc.clusters {
                        if let Some(cluster) = c.cluster.as_mut() {
                            cluster.server = Some(url.clone());
                        }
                    }
                    text = serde_saphyr::to_string(&kc)?;
                }
                let ca = kc
                    .clusters
                    .iter()
                    .find_map(|c| c.cluster.as_ref()?.certificate_authority_data.clone())
                    .context("the kubeconfig has no certificate-authority-data")?;
                let ca = base64_decode(&ca)?;
                let client = rudder_client::client_from_kubeconfig_text(&text)?;
                let opts = node.options(&data_dir);
                let (state, _) = tokio::sync::watch::channel(Default::default());
                let shutdown = tokio_util::sync::CancellationToken::new();
                let cancel = tokio_util::sync::CancellationToken::new();
                let task = tokio::spawn(agent::run(
                    opts,
                    client,
                    ca,
                    state,
                    shutdown.clone(),
                    cancel.clone(),
                ));
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate() => {}
                }
                shutdown.cancel();
                let result = tokio::time::timeout(std::time::Duration::from_secs(60), task).await;
                cancel.cancel();
                match result {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Ok(()),
                }
            })
        }
        Command::Up { data_dir, timeout, server_args } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(up::up(&data_dir, &server_args, timeout))
        }
        Command::Down { data_dir, purge } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(up::down(&data_dir, purge, std::time::Duration::from_secs(90)))
        }
        Command::Status { data_dir } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let running = runtime.block_on(up::status(&data_dir))?;
            std::process::exit(if running { 0 } else { 1 });
        }
        Command::Server {
            data_dir,
            bind_address,
            port,
            datastore,
            disable_scheduler,
            disable_controller_manager,
            cluster_cidr,
            node_cidr_mask_size,
            node_monitor_grace_period,
            default_toleration_seconds,
            disable_agent,
            node,
        } => {
            let options = control_plane::ControlPlaneOptions {
                scheduler: !disable_scheduler,
                controller_manager: !disable_controller_manager,
                cluster_cidr,
                node_cidr_mask_size,
                node_monitor_grace_period,
                default_toleration_seconds,
            };
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RUDDER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let config =
                    ServerConfig { data_dir: data_dir.clone(), bind_address, port, datastore };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let mut server = tokio::spawn(rudder_apiserver::run(config, tx));
                let cancel = tokio_util::sync::CancellationToken::new();
                let agent_shutdown = tokio_util::sync::CancellationToken::new();
                let agent_cancel = tokio_util::sync::CancellationToken::new();
                let mut agent_task: Option<tokio::task::JoinHandle<()>> = None;
                let mut control_plane = None;
                if let Ok(started) = rx.await {
                    let url = format!("https://127.0.0.1:{}", started.address.port());
                    let url = if bind_address.is_unspecified() {
                        url
                    } else {
                        format!("https://{}", started.address)
                    };
                    // The leader-election identity exists before the server says it listens.
                    control_plane::identity(&data_dir)?;
                    let cp = control_plane::run(
                        data_dir.clone(),
                        url.clone(),
                        started.local.clone(),
                        options,
                        cancel.clone(),
                    );
                    control_plane = Some(tokio::spawn(async move {
                        if let Err(e) = cp.await {
                            tracing::error!(error = %e, "scheduler and controller manager not started");
                        }
                    }));
                    if !disable_agent {
                        let opts = node.options(&data_dir);
                        let tls = data_dir.join("tls");
                        let user = format!("system:node:{}", opts.node_name);
                        let text = rudder_apiserver::pki::component_kubeconfig(&tls, &url, &user, &["system:nodes"])?;
                        let client = rudder_client::client_from_kubeconfig_text(&text)?;
                        let ca = std::fs::read(tls.join("ca.crt")).context("reading the cluster CA")?;
                        let (state, _) = tokio::sync::watch::channel(Default::default());
                        let (shutdown, stop) = (agent_shutdown.clone(), agent_cancel.clone());
                        let agent = async move {
                            if let Err(e) = agent::run(opts, client, ca, state, shutdown, stop).await {
                                tracing::error!(error = %format!("{e:#}"), "node agent stopped");
                            }
                        };
                        agent_task = Some(on_own_runtime("agent", agent)?);
                    }
                    println!("rudder API server listening on https://{}", started.address);
                    println!("admin kubeconfig: {}", started.kubeconfig.display());
                    println!(
                        "try: KUBECONFIG={} kubectl get namespaces",
                        started.kubeconfig.display()
                    );
                }
                let result = tokio::select! {
                    result = &mut server => result.context("server task")?.context("API server"),
                    _ = tokio::signal::ctrl_c() => Ok(()),
                    _ = terminate() => Ok(()),
                };
                // Node shutdown first (pods stopped while the API still answers), then give
                // the Leases back so another server takes over at once.
                if let Some(task) = agent_task {
                    agent_shutdown.cancel();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(60), task).await;
                    agent_cancel.cancel();
                }
                cancel.cancel();
                if let Some(cp) = control_plane {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cp).await;
                }
                result
            })
        }
    }
}

/// Runs `task` on a tokio runtime of its own, on threads named after `name`; the returned
/// handle completes when the task has. The in-process node agent runs this way: its work
/// (files, processes, netlink; much of it blocking, and slow when the disk is) then never
/// holds up the threads that serve the API, schedule and run the controllers (BENCHMARKS.md:
/// with the disk slow, a 30-pod batch's p50 stalled to 0.9-1.8 s on a shared runtime).
fn on_own_runtime(
    name: &str,
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(format!("{name}-rt"))
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name}'s runtime"))?;
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            runtime.block_on(task);
            // Blocking work still running (a stuck syscall) must not hold up the exit.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            let _ = done.send(());
        })
        .with_context(|| format!("starting the {name}'s thread"))?;
    Ok(tokio::spawn(async move {
        let _ = finished.await;
    }))
}

/// Standard base64 (kubeconfig `*-data` fields).
fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.decode(text.trim())?)
}

/// Resolves on SIGTERM.
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
