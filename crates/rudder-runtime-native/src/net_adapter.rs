//! The pod network from `rudder-net` as the runtime's [`NetworkProvider`].

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rudder_net::Network;
use rudder_net::files::{DnsConfig, HostAlias, HostsConfig};
use rudder_runtime::{PodSandboxConfig, Result, RuntimeError};

use crate::providers::{NetworkProvider, PodNetworkInfo};

/// Wraps a [`Network`] (whose node side — bridge, forwarding, masquerade — is set up by
/// [`NetworkAdapter::new`]).
#[derive(Debug)]
pub struct NetworkAdapter {
    network: Network,
}

fn net_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Internal(format!("pod network: {e}"))
}

impl NetworkAdapter {
    pub fn new(network: Network) -> Result<Self> {
        network.ensure_node().map_err(net_err)?;
        Ok(NetworkAdapter { network })
    }

    pub fn network(&self) -> &Network {
        &self.network
    }
}

impl NetworkProvider for NetworkAdapter {
    fn setup(&self, sandbox_id: &str, hostname: &str) -> Result<PodNetworkInfo> {
        let pod = self.network.setup_pod(sandbox_id, hostname).map_err(net_err)?;
        Ok(PodNetworkInfo { netns: pod.netns, ipc_ns: pod.ipc_ns, uts_ns: pod.uts_ns, ip: pod.ip })
    }

    fn teardown(&self, sandbox_id: &str) -> Result<()> {
        self.network.teardown_pod(sandbox_id).map_err(net_err)
    }

    fn write_pod_files(
        &self,
        dir: &Path,
        config: &PodSandboxConfig,
        ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        write_pod_files(dir, config, ip)
    }
}

/// /etc/hosts, /etc/resolv.conf and /etc/hostname for a pod. Without a pod IP (host
/// network) no hosts file is written (the image's stays). Without DNS settings the node's
/// resolv.conf is copied (dnsPolicy `Default`).
pub fn write_pod_files(dir: &Path, config: &PodSandboxConfig, ip: Option<Ipv4Addr>) -> Result<()> {
    let domain =
        if config.cluster_domain.is_empty() { "cluster.local" } else { &config.cluster_domain };
    let mut servers = Vec::new();
    for s in &config.dns.servers {
        servers.push(s.parse::<IpAddr>().map_err(|_| {
            RuntimeError::InvalidConfig(format!("DNS server {s:?} is not an IP address"))
        })?);
    }
    let dns = DnsConfig {
        nameservers: servers,
        searches: config.dns.searches.clone(),
        options: config.dns.options.clone(),
    };
    let hostname = rudder_net::names::pod_hostname(&config.hostname);
    if dns.nameservers.is_empty() && dns.searches.is_empty() {
        let node = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        rudder_net::files::write_atomic(&dir.join("resolv.conf"), &node).map_err(net_err)?;
    } else {
        rudder_net::files::write_resolv_conf(&dir.join("resolv.conf"), &dns).map_err(net_err)?;
    }
    rudder_net::files::write_hostname(&dir.join("hostname"), &hostname).map_err(net_err)?;
    if let Some(ip) = ip {
        let hosts = HostsConfig {
            pod_ips: vec![IpAddr::V4(ip)],
            hostname,
            subdomain: config.subdomain.clone(),
            namespace: config.metadata.namespace.clone(),
            cluster_domain: domain.to_owned(),
            host_aliases: config
                .host_aliases
                .iter()
                .map(|a| HostAlias { ip: a.ip.clone(), hostnames: a.hostnames.clone() })
                .collect(),
        };
        rudder_net::files::write_hosts(&dir.join("hosts"), &hosts).map_err(net_err)?;
    }
    Ok(())
}
