//! `rudder sim nodes`: simulated nodes (see the rudder-sim crate) against any cluster.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use rudder_sim::{SimConfig, SimNodes};
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum SimCommand {
    /// Run K simulated nodes (no kubelet, no containers) until interrupted.
    Nodes(NodesArgs),
}

#[derive(Args)]
pub struct NodesArgs {
    /// How many nodes (named `<prefix>-0` ...).
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Node name prefix.
    #[arg(long, default_value = "sim-node")]
    prefix: String,
    /// Explicit node names instead of `--count`/`--prefix` (repeatable).
    #[arg(long = "node-name")]
    node_names: Vec<String>,
    /// Kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Capacity, e.g. `cpu=8`, `memory=32Gi`, `pods=110`, `nvidia.com/gpu=1` (repeatable).
    #[arg(long = "capacity")]
    capacity: Vec<String>,
    /// Node label `key=value` (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Taint `key[=value]:Effect` of newly registered nodes (repeatable).
    #[arg(long = "taint")]
    taints: Vec<String>,
    /// Zones assigned round-robin as `topology.kubernetes.io/zone` (comma separated).
    #[arg(long, value_delimiter = ',')]
    zones: Vec<String>,
    /// From a pod being bound to its containers running, e.g. `10ms`.
    #[arg(long)]
    ready_delay: Option<String>,
    /// How long containers of Never/OnFailure pods run before exiting 0, e.g. `1s`; `0`:
    /// until deleted.
    #[arg(long)]
    succeed_after: Option<String>,
    /// Lease renewal period, e.g. `10s`.
    #[arg(long)]
    heartbeat_interval: Option<String>,
}

fn config(args: &NodesArgs) -> anyhow::Result<SimConfig> {
    let mut config = SimConfig::with_count(args.count);
    config.prefix = args.prefix.clone();
    config.names = args.node_names.clone();
    for c in &args.capacity {
        config.set_capacity(c)?;
    }
    for l in &args.labels {
        config.add_label(l)?;
    }
    for t in &args.taints {
        config.add_taint(t)?;
    }
    config.zones = args.zones.clone();
    if let Some(d) = &args.ready_delay {
        config.ready_delay = rudder_sim::parse_duration(d)?;
    }
    if let Some(d) = &args.succeed_after {
        let d = rudder_sim::parse_duration(d)?;
        config.succeed_after = (!d.is_zero()).then_some(d);
    }
    if let Some(d) = &args.heartbeat_interval {
        config.heartbeat_interval = rudder_sim::parse_duration(d)?;
    }
    config.validate()?;
    Ok(config)
}

pub async fn run(command: SimCommand) -> anyhow::Result<()> {
    let SimCommand::Nodes(args) = command;
    let config = config(&args)?;
    let client = match &args.kubeconfig {
        Some(path) => rudder_client::client_from_kubeconfig_file(path)?,
        None => kube::Client::try_default().await.context("no kubeconfig (use --kubeconfig)")?,
    };
    let cancel = CancellationToken::new();
    let sim = SimNodes::start(client, config, cancel.clone()).await?;
    sim.wait_registered().await?;
    println!("{} simulated nodes registered: {}", sim.registered(), summary(&sim.node_names()));
    tokio::signal::ctrl_c().await?;
    cancel.cancel();
    Ok(())
}

fn summary(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [first, .., last] if names.len() > 3 => format!("{first} .. {last}"),
        many => many.join(", "),
    }
}
