//! `rudder`: one binary for the whole system. Subcommands arrive as their components land
//! (see ARCHITECTURE.md).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rudder_apiserver::{Datastore, ServerConfig};

mod control_plane;
mod controllers;
mod duration;
mod image;
mod sim;

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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        // Single-threaded on purpose: no async runtime, no threads (libcontainer forks).
        Command::Shim { args } => std::process::exit(rudder_runtime_native::shim::main(&args)),
        Command::Image { data_dir, command } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(image::run(&data_dir.join("images"), command))
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
                let mut control_plane = None;
                if let Ok(started) = rx.await {
                    let url = format!("https://127.0.0.1:{}", started.address.port());
                    let url = if bind_address.is_unspecified() {
                        url
                    } else {
                        format!("https://{}", started.address)
                    };
                    let cp = control_plane::run(data_dir.clone(), url, options, cancel.clone());
                    control_plane = Some(tokio::spawn(async move {
                        if let Err(e) = cp.await {
                            tracing::error!(error = %e, "scheduler and controller manager not started");
                        }
                    }));
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
                // Give the Leases back so another server takes over at once.
                cancel.cancel();
                if let Some(cp) = control_plane {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), cp).await;
                }
                result
            })
        }
    }
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
