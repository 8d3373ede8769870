//! The scheduler and the controller manager inside `rudder server`. Each is an API client
//! with its own identity (client certificate CN `system:kube-scheduler` /
//! `system:kube-controller-manager`, issued by the cluster CA), talks to the API over HTTPS
//! like any other client, and runs only while it holds its Lease (`kube-system/kube-scheduler`,
//! `kube-system/kube-controller-manager`), so with several servers one of each is active.
//! Their connections to this server's API go over an in-memory pipe instead of loopback TCP
//! (`rudder_apiserver::local`), with the same TLS and certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rudder_apiserver::local::LocalConnector;
use rudder_client::{Context, LeaderElectionConfig, LeaderElector, SystemClock};
use tokio_util::sync::CancellationToken;

/// What `rudder server` flags choose for the control loops.
#[derive(Clone, Debug)]
pub struct ControlPlaneOptions {
    pub scheduler: bool,
    pub controller_manager: bool,
    /// Pod CIDR of the cluster, cut into one range per node.
    pub cluster_cidr: String,
    pub node_cidr_mask_size: u8,
    /// How long a node's Lease may go unrenewed before the node is marked Unknown.
    pub node_monitor_grace_period: Duration,
    /// How long pods without their own toleration stay on a NotReady or unreachable node
    /// before they are evicted.
    pub default_toleration_seconds: u32,
}

/// This server's identity in leader election: `<hostname>_<id>`, where the id is random and
/// kept in the data dir, so a restarted server takes its own Lease back at once and two
/// servers never share one.
pub fn identity(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        _ => {
            let id: String = (0..16).map(|_| format!("{:x}", rand::random::<u8>() & 15)).collect();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    Ok(format!("{}_{id}", host.trim()))
}

fn component_client(
    tls_dir: &Path,
    server_url: &str,
    local: &LocalConnector,
    user: &str,
) -> anyhow::Result<kube::Client> {
    let text = rudder_apiserver::pki::component_kubeconfig(tls_dir, server_url, user, &[])
        .with_context(|| format!("certificate for {user}"))?;
    Ok(rudder_client::client_over(&text, local.clone())?)
}

/// Runs the enabled components (each under leader election) until `cancel`.
pub async fn run(
    data_dir: PathBuf,
    server_url: String,
    local: LocalConnector,
    options: ControlPlaneOptions,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let tls = data_dir.join("tls");
    let identity = identity(&data_dir)?;
    let mut tasks = tokio::task::JoinSet::new();
    if options.scheduler {
        let client = component_client(&tls, &server_url, &local, "system:kube-scheduler")?;
        let elector = LeaderElector::new(
            client.clone(),
            LeaderElectionConfig::new("kube-scheduler", &identity),
            Arc::new(SystemClock),
        );
        tasks.spawn(elector.run(cancel.clone(), move |leading: CancellationToken| {
            let ctx = Context::new(client.clone(), leading.clone());
            async move {
                let config = rudder_scheduler::SchedulerConfig::default();
                if let Err(e) = rudder_scheduler::run(ctx, config, leading).await {
                    tracing::error!(error = %e, "scheduler stopped");
                }
            }
        }));
    }
    if options.controller_manager {
        let client = component_client(&tls, &server_url, &local, "system:kube-controller-manager")?;
        let elector = LeaderElector::new(
            client.clone(),
            LeaderElectionConfig::new("kube-controller-manager", &identity),
            Arc::new(SystemClock),
        );
        let options = options.clone();
        tasks.spawn(elector.run(cancel.clone(), move |leading: CancellationToken| {
            let ctx = Context::new(client.clone(), leading.clone());
            controller_manager(ctx, options.clone(), leading)
        }));
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Every controller, sharing one set of informers, until `cancel`.
async fn controller_manager(ctx: Context, options: ControlPlaneOptions, cancel: CancellationToken) {
    let mut set = tokio::task::JoinSet::new();
    crate::controllers::spawn_all(&mut set, &ctx, &options, &cancel);
    while set.join_next().await.is_some() {}
}
