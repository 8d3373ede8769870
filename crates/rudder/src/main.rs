//! `rudder`: one binary for the whole system. Subcommands arrive as their components land
//! (see ARCHITECTURE.md).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use rudder_apiserver::{Datastore, ServerConfig};

mod image;

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
        Command::Server { data_dir, bind_address, port, datastore } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RUDDER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(async {
                let config = ServerConfig { data_dir, bind_address, port, datastore };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let server = tokio::spawn(rudder_apiserver::run(config, tx));
                if let Ok(started) = rx.await {
                    println!("rudder API server listening on https://{}", started.address);
                    println!("admin kubeconfig: {}", started.kubeconfig.display());
                    println!(
                        "try: KUBECONFIG={} kubectl get namespaces",
                        started.kubeconfig.display()
                    );
                }
                tokio::select! {
                    result = server => result.context("server task")?.context("API server"),
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })
        }
    }
}
