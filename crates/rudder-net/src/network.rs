//! The node's pod network: one bridge per node, one sandbox (namespaces + veth + address)
//! per pod, and discovery of the sandboxes an earlier run left behind.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::cidr::{CidrError, Ipv4Cidr};
use crate::ipam::{Ipam, IpamError};
use crate::link::{self, LinkError, Netns};
use crate::names::{self, NameError};
use crate::ns::{self, NamespaceError, SandboxNamespaces};

/// Settings of a node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The node bridge (default `rudder0`).
    pub bridge: String,
    /// The node's pod CIDR, e.g. `10.42.0.0/24`; its first host address is the gateway.
    pub pod_cidr: String,
    /// MTU of the bridge and of both ends of every pod veth.
    pub mtu: u32,
    /// The node's network namespace, where the bridge and the host-side veths live: None is
    /// the current (root) one, `Some(file)` a netns file (tests use their own).
    pub node_netns: Option<PathBuf>,
    /// IPAM state (one file per allocated address), e.g. `/var/lib/rudder/net/ipam`.
    pub state_dir: PathBuf,
    /// IPC and UTS namespace files, `<run_dir>/<sandbox id>/{ipc,uts}`, e.g. `/run/rudder/ns`.
    pub run_dir: PathBuf,
    /// Masquerade pod traffic leaving the pod CIDR.
    pub masquerade: bool,
    /// Deadline for every netlink answer and `nft` invocation.
    pub command_timeout_ms: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bridge: "rudder0".into(),
            pod_cidr: "10.42.0.0/24".into(),
            mtu: 1500,
            node_netns: None,
            state_dir: "/var/lib/rudder/net/ipam".into(),
            run_dir: "/run/rudder/ns".into(),
            masquerade: true,
            command_timeout_ms: 10_000,
        }
    }
}

/// What a pod's containers need to join its sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The network namespace file (`/run/netns/rudder-<sandbox id>`).
    pub netns: PathBuf,
    /// The IPC namespace file.
    pub ipc_ns: PathBuf,
    /// The UTS namespace file (hostname set).
    pub uts_ns: PathBuf,
    /// The pod's address on `eth0`.
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    /// The host side of the pod's veth pair, in the node netns.
    pub host_veth: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Cidr(#[from] CidrError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("sandbox {0:?} already exists; tear it down first")]
    SandboxExists(String),
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A node's pod network. Every method blocks (netlink requests, `nft` and other syscalls); call
/// it from `spawn_blocking` in async code. Methods may be called from several threads.
#[derive(Debug)]
pub struct Network {
    cfg: NetworkConfig,
    cidr: Ipv4Cidr,
    ipam: Ipam,
    /// Whether `/run/netns` and `run_dir` were made shared mount points by this instance.
    mounts_ready: Mutex<bool>,
}

impl Network {
    /// Checks the configuration and opens the IPAM state; touches no network setting.
    pub fn new(cfg: NetworkConfig) -> Result<Self, NetworkError> {
        names::validate_interface_name(&cfg.bridge)?;
        if !(68..=65535).contains(&cfg.mtu) {
            return Err(NetworkError::Config(format!("mtu {} is not in 68..=65535", cfg.mtu)));
        }
        if cfg.command_timeout_ms == 0 {
            return Err(NetworkError::Config("command_timeout_ms must be positive".into()));
        }
        if !cfg.run_dir.is_absolute() {
            return Err(NetworkError::Config(format!("run_dir {:?} is not absolute", cfg.run_dir)));
        }
        let cidr: Ipv4Cidr = cfg.pod_cidr.parse()?;
        let ipam = Ipam::open(&cfg.state_dir, cidr)?;
        Ok(Network { cfg, cidr, ipam, mounts_ready: Mutex::new(false) })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.gateway()
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.command_timeout_ms)
    }

    fn node(&self) -> Netns<'_> {
        Netns { path: self.cfg.node_netns.as_deref(), timeout: self.timeout() }
    }

    /// Prepares the node: `net.ipv4.ip_forward=1`, the bridge with the gateway address, up,
    /// and the masquerade table (`ip rudder-<bridge>`), or its removal when masquerade is
    /// off. Idempotent; call it at agent start.
    pub fn ensure_node(&self) -> Result<(), NetworkError> {
        let node = self.node();
        link::enable_ip_forward(&node)?;
        link::ensure_bridge(&node, &self.cfg.bridge, self.cidr, self.cfg.mtu)?;
        link::sync_masquerade(&node, &self.cfg.bridge, self.cidr, self.cfg.masquerade)?;
        Ok(())
    }

    /// Removes the bridge and the masquerade table (pods should be torn down first; their
    /// veths go with the bridge's ports). Idempotent.
    pub fn teardown_node(&self) -> Result<(), NetworkError> {
        let node = self.node();
        link::delete_link(&node, &self.cfg.bridge)?;
        link::sync_masquerade(&node, &self.cfg.bridge, self.cidr, false)?;
        Ok(())
    }

    /// The namespace files of a sandbox (whether or not they exist).
    pub fn sandbox_namespaces(&self, sandbox_id: &str) -> Result<SandboxNamespaces, NetworkError> {
        names::validate_sandbox_id(sandbox_id)?;
        let dir = self.sandbox_dir(sandbox_id);
        Ok(SandboxNamespaces {
            net: names::netns_path(sandbox_id),
            ipc: dir.join("ipc"),
            uts: dir.join("uts"),
        })
    }

    fn sandbox_dir(&self, sandbox_id: &str) -> PathBuf {
        self.cfg.run_dir.join(sandbox_id)
    }

    /// Creates the sandbox of a pod: network, IPC and UTS namespaces held by bind mounts,
    /// the hostname (`hostname` truncated to 63 characters as upstream does), an address
    /// from IPAM, and a veth pair from the bridge to the pod's `eth0` with a default route
    /// via the gateway. [`Network::ensure_node`] must have run.
    ///
    /// Fails with [`NetworkError::SandboxExists`] if the sandbox exists (use
    /// [`Network::pod_network`] to re-adopt one). On any other failure, what was created is
    /// removed again before the error is returned.
    pub fn setup_pod(&self, sandbox_id: &str, hostname: &str) -> Result<PodNetwork, NetworkError> {
        let paths = self.sandbox_namespaces(sandbox_id)?;
        let hostname = names::pod_hostname(hostname);
        names::validate_hostname(&hostname)?;
        self.ensure_mounts()?;
        // The sandbox directory is created first and removed last: it marks the sandbox
        // for [`Network::list_pods`] while anything of it exists, and creating it is what
        // decides, atomically, that this call owns the sandbox id.
        let dir = self.sandbox_dir(sandbox_id);
        if paths.net.exists() {
            return Err(NetworkError::SandboxExists(sandbox_id.to_owned()));
        }
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetworkError::SandboxExists(sandbox_id.to_owned()));
            }
            Err(source) => {
                return Err(NetworkError::Io {
                    what: "creating sandbox directory",
                    path: dir,
                    source,
                });
            }
        }
        let span = tracing::debug_span!("setup_pod", sandbox_id);
        let _enter = span.enter();
        match self.create_sandbox(sandbox_id, &hostname, &paths) {
            Ok(pod) => {
                tracing::debug!(ip = %pod.ip, veth = %pod.host_veth, "pod network ready");
                Ok(pod)
            }
            Err(err) => {
                if let Err(cleanup) = self.teardown_pod(sandbox_id) {
                    tracing::warn!(error = %cleanup, "cleaning up after a failed pod setup");
                }
                Err(err)
            }
        }
    }

    fn create_sandbox(
        &self,
        sandbox_id: &str,
        hostname: &str,
        paths: &SandboxNamespaces,
    ) -> Result<PodNetwork, NetworkError> {
        let ip = self.ipam.allocate(sandbox_id)?;
        ns::create(paths, hostname)?;
        let host_veth = names::host_veth_name(sandbox_id);
        link::add_pod_veth(&self.node(), &host_veth, &paths.net, &self.cfg.bridge, self.cfg.mtu)?;
        let pod = Netns { path: Some(&paths.net), timeout: self.timeout() };
        link::configure_pod_interfaces(&pod, ip, self.cidr)?;
        Ok(self.pod_network_from(paths, ip, host_veth))
    }

    fn pod_network_from(
        &self,
        paths: &SandboxNamespaces,
        ip: Ipv4Addr,
        host_veth: String,
    ) -> PodNetwork {
        PodNetwork {
            netns: paths.net.clone(),
            ipc_ns: paths.ipc.clone(),
            uts_ns: paths.uts.clone(),
            ip,
            prefix_len: self.cidr.prefix_len(),
            gateway: self.cidr.gateway(),
            host_veth,
        }
    }

    /// Removes everything of a sandbox: the host veth (and with it the pod's `eth0`), the
    /// namespace mounts and files, the address, the sandbox directory. Whatever is missing
    /// is skipped, so this is idempotent and cleans up half-created sandboxes; every step
    /// is attempted and the first error is returned.
    pub fn teardown_pod(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        let paths = self.sandbox_namespaces(sandbox_id)?;
        let span = tracing::debug_span!("teardown_pod", sandbox_id);
        let _enter = span.enter();
        let mut first_error: Option<NetworkError> = None;
        let mut note = |result: Result<(), NetworkError>| {
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        };
        // Deleting the host end removes the pair synchronously; destroying the netns alone
        // would also do it, but asynchronously in the kernel.
        let veth = names::host_veth_name(sandbox_id);
        note(link::delete_link(&self.node(), &veth).map_err(Into::into));
        note(ns::remove(&paths).map_err(Into::into));
        note(self.ipam.release(sandbox_id).map(drop).map_err(Into::into));
        let dir = self.sandbox_dir(sandbox_id);
        note(match fs::remove_dir(&dir) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                Err(NetworkError::Io { what: "deleting sandbox directory", path: dir, source: err })
            }
            _ => Ok(()),
        });
        first_error.map_or(Ok(()), Err)
    }

    /// The sandboxes of which anything exists (namespace files or an address), sorted: a
    /// restarted agent re-adopts those it knows ([`Network::pod_network`]) and tears down
    /// the others.
    pub fn list_pods(&self) -> Result<Vec<String>, NetworkError> {
        let mut ids: Vec<String> =
            self.ipam.allocations()?.into_iter().map(|a| a.sandbox_id).collect();
        match fs::read_dir(&self.cfg.run_dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|source| NetworkError::Io {
                        what: "listing",
                        path: self.cfg.run_dir.clone(),
                        source,
                    })?;
                    let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if names::validate_sandbox_id(&name).is_ok()
                        && entry.file_type().is_ok_and(|t| t.is_dir())
                    {
                        ids.push(name);
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(NetworkError::Io {
                    what: "listing",
                    path: self.cfg.run_dir.clone(),
                    source,
                });
            }
        }
        ids.retain(|id| names::validate_sandbox_id(id).is_ok());
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The network of an existing, complete sandbox (all three namespaces mounted, an
    /// address allocated, the host veth present); None if any part is missing, in which
    /// case the sandbox should be torn down.
    pub fn pod_network(&self, sandbox_id: &str) -> Result<Option<PodNetwork>, NetworkError> {
        let paths = self.sandbox_namespaces(sandbox_id)?;
        let Some(ip) = self.ipam.lookup(sandbox_id)? else { return Ok(None) };
        if ![&paths.net, &paths.ipc, &paths.uts].iter().all(|p| ns::is_namespace_mounted(p)) {
            return Ok(None);
        }
        let host_veth = names::host_veth_name(sandbox_id);
        if !link::link_exists(&self.node(), &host_veth)? {
            return Ok(None);
        }
        Ok(Some(self.pod_network_from(&paths, ip, host_veth)))
    }

    /// Makes `/run/netns` and `run_dir` (a tmpfs) shared mount points (once per instance).
    fn ensure_mounts(&self) -> Result<(), NetworkError> {
        let mut ready = self.mounts_ready.lock().unwrap_or_else(|e| e.into_inner());
        if !*ready {
            ns::ensure_shared_mountpoint(Path::new(names::NETNS_DIR))?;
            ns::ensure_shared_tmpfs(&self.cfg.run_dir)?;
            *ready = true;
        }
        Ok(())
    }
}
