//! Links, addresses and routes (rtnetlink, in-process, see [`crate::netlink`]), sysctls,
//! and nftables rules (`nft -f -`, once per node), in the node's or a pod's network
//! namespace.

use std::fs::{self, File};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cidr::Ipv4Cidr;
use crate::cmd::{Cmd, CommandError};
use crate::netlink::{self, NetlinkError, RtnlSocket};
use crate::ns::{NamespaceError, run_in_netns};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    #[error("interface {name:?} exists but is a {kind:?}, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("writing sysctl {path:?}: {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where, and with which deadline, links are changed (rtnetlink) and `nft` runs.
#[derive(Debug, Clone)]
pub struct Netns<'a> {
    /// The netns file (None: the current namespace).
    pub path: Option<&'a Path>,
    pub timeout: Duration,
}

impl Netns<'_> {
    /// A netlink socket in this namespace.
    fn socket(&self) -> Result<RtnlSocket, LinkError> {
        RtnlSocket::open(self.path, self.timeout)
    }
}

/// Creates the bridge if missing (refusing an interface of that name that is not a
/// bridge), gives it `gateway/prefix_len`, sets its MTU and brings it up. Idempotent.
pub fn ensure_bridge(
    ns: &Netns<'_>,
    bridge: &str,
    cidr: Ipv4Cidr,
    mtu: u32,
) -> Result<(), LinkError> {
    let mut socket = ns.socket()?;
    match socket.link(bridge)? {
        Some(link) => {
            let kind = netlink::link_kind(&link);
            if kind != "bridge" {
                return Err(LinkError::NotABridge { name: bridge.to_owned(), kind });
            }
        }
        // STP off (the default) forwards as soon as a port is up; forward_delay 0 makes
        // that explicit.
        None => socket.add_bridge(bridge)?,
    }
    socket.set_mtu(bridge, mtu)?;
    let index = socket.link_index(bridge)?;
    socket.add_address(index, cidr.gateway(), cidr.prefix_len(), true)?;
    socket.set_up(bridge)?;
    Ok(())
}

/// Deletes a link (and, for a veth, its peer); a missing link is fine.
pub fn delete_link(ns: &Netns<'_>, name: &str) -> Result<(), LinkError> {
    ns.socket()?.delete_link(name)?;
    Ok(())
}

/// Whether a link of that name exists in the namespace.
pub fn link_exists(ns: &Netns<'_>, name: &str) -> Result<bool, LinkError> {
    Ok(ns.socket()?.link(name)?.is_some())
}

/// The node side of a pod's link: a veth pair whose peer is created directly inside the pod
/// netns as `eth0`, the host end attached to the bridge with hairpin mode on, and up.
pub fn add_pod_veth(
    node: &Netns<'_>,
    host_veth: &str,
    pod_netns: &Path,
    bridge: &str,
    mtu: u32,
) -> Result<(), LinkError> {
    let pod_ns_file = File::open(pod_netns).map_err(|source| NamespaceError::Io {
        what: "opening netns",
        path: pod_netns.to_path_buf(),
        source,
    })?;
    let mut socket = node.socket()?;
    socket.add_veth(host_veth, "eth0", mtu, &pod_ns_file)?;
    socket.set_master(host_veth, bridge)?;
    socket.set_bridge_port_hairpin(host_veth)?;
    socket.set_up(host_veth)?;
    Ok(())
}

/// The pod side: loopback up, `eth0` with the pod's address, up, default route via the
/// gateway. Runs in the pod netns.
pub fn configure_pod_interfaces(
    pod: &Netns<'_>,
    ip: Ipv4Addr,
    cidr: Ipv4Cidr,
) -> Result<(), LinkError> {
    let mut socket = pod.socket()?;
    socket.set_up("lo")?;
    let eth0 = socket.link_index("eth0")?;
    socket.add_address(eth0, ip, cidr.prefix_len(), false)?;
    socket.set_up("eth0")?;
    socket.add_default_route(eth0, cidr.gateway())?;
    Ok(())
}

/// Sets `net.ipv4.ip_forward=1` in the namespace (the file under /proc/sys/net belongs to
/// the namespace of the thread that opens it).
pub fn enable_ip_forward(ns: &Netns<'_>) -> Result<(), LinkError> {
    let path = PathBuf::from("/proc/sys/net/ipv4/ip_forward");
    run_in_netns(ns.path, || {
        if fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
            return Ok(());
        }
        fs::write(&path, "1\n").map_err(|source| LinkError::Sysctl { path: path.clone(), source })
    })?
}

/// The nftables table holding this bridge's rules: `ip rudder-<bridge>`.
pub fn nat_table_name(bridge: &str) -> String {
    format!("rudder-{bridge}")
}

/// Installs (or, with `enabled` false, removes) masquerading of pod traffic that leaves the
/// pod CIDR, in its own table, replaced atomically in one nft transaction.
pub fn sync_masquerade(
    ns: &Netns<'_>,
    bridge: &str,
    cidr: Ipv4Cidr,
    enabled: bool,
) -> Result<(), LinkError> {
    let table = nat_table_name(bridge);
    // Declaring then deleting the table makes the delete succeed whether or not it existed.
    let mut script = format!("table ip {table}\ndelete table ip {table}\n");
    if enabled {
        script.push_str(&format!(
            "table ip {table} {{\n\
             \tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tip saddr {cidr} ip daddr != {cidr} masquerade\n\
             \t}}\n\
             }}\n"
        ));
    }
    Cmd::in_netns(ns.path, "nft").args(["-f", "-"]).stdin(script).run(ns.timeout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_table_is_per_bridge() {
        assert_eq!(nat_table_name("rudder0"), "rudder-rudder0");
    }
}
