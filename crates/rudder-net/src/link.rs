//! Links, addresses, routes, sysctls and nftables rules, through `ip -batch -` and `nft -f
//! -` (one process per step), in the node's or a pod's network namespace.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cidr::Ipv4Cidr;
use crate::cmd::{Cmd, CommandError};
use crate::ns::{NamespaceError, run_in_netns};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("interface {name:?} exists but is a {kind:?}, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("unexpected output from `{command}`: {detail}")]
    Parse { command: String, detail: String },
    #[error("writing sysctl {path:?}: {source}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where and how long `ip`/`nft` run.
#[derive(Debug, Clone)]
pub struct Netns<'a> {
    /// The netns file (None: the current namespace).
    pub path: Option<&'a Path>,
    pub timeout: Duration,
}

impl Netns<'_> {
    fn ip_batch(&self, batch: &str) -> Result<(), LinkError> {
        Cmd::in_netns(self.path, "ip").args(["-batch", "-"]).stdin(batch).run(self.timeout)?;
        Ok(())
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
    let show = Cmd::in_netns(ns.path, "ip").args(["-j", "-d", "link", "show", "dev", bridge]);
    let output = show.output(ns.timeout)?;
    let mut batch = String::new();
    if output.status.success() {
        let kind = link_kind(&output.stdout)
            .map_err(|detail| LinkError::Parse { command: show.display(), detail })?;
        if kind != "bridge" {
            return Err(LinkError::NotABridge { name: bridge.to_owned(), kind });
        }
    } else if output.stderr.contains("does not exist") {
        // STP off (the default) forwards as soon as a port is up; forward_delay 0 makes
        // that explicit.
        batch.push_str(&format!("link add name {bridge} type bridge forward_delay 0\n"));
    } else {
        return Err(CommandError::Failed {
            command: show.display(),
            status: output.status,
            stderr: output.stderr.trim().to_owned(),
        }
        .into());
    }
    batch.push_str(&format!(
        "link set dev {bridge} mtu {mtu}\n\
         addr replace {gateway}/{len} dev {bridge}\n\
         link set dev {bridge} up\n",
        gateway = cidr.gateway(),
        len = cidr.prefix_len(),
    ));
    ns.ip_batch(&batch)
}

/// `info_kind` of the only link in `ip -j -d link show dev X` output ("" if none).
fn link_kind(json: &str) -> Result<String, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let link = value.get(0).ok_or("no link in the output")?;
    Ok(link.pointer("/linkinfo/info_kind").and_then(|k| k.as_str()).unwrap_or_default().to_owned())
}

/// Deletes a link (and, for a veth, its peer); a missing link is fine.
pub fn delete_link(ns: &Netns<'_>, name: &str) -> Result<(), LinkError> {
    let cmd = Cmd::in_netns(ns.path, "ip").args(["link", "del", "dev", name]);
    let output = cmd.output(ns.timeout)?;
    if output.status.success() || output.stderr.contains("Cannot find device") {
        return Ok(());
    }
    Err(CommandError::Failed {
        command: cmd.display(),
        status: output.status,
        stderr: output.stderr.trim().to_owned(),
    }
    .into())
}

/// Whether a link of that name exists in the namespace.
pub fn link_exists(ns: &Netns<'_>, name: &str) -> Result<bool, LinkError> {
    let cmd = Cmd::in_netns(ns.path, "ip").args(["link", "show", "dev", name]);
    let output = cmd.output(ns.timeout)?;
    if output.status.success() {
        return Ok(true);
    }
    if output.stderr.contains("does not exist") {
        return Ok(false);
    }
    Err(CommandError::Failed {
        command: cmd.display(),
        status: output.status,
        stderr: output.stderr.trim().to_owned(),
    }
    .into())
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
    let pod_netns = pod_netns.display();
    node.ip_batch(&format!(
        "link add name {host_veth} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {pod_netns}\n\
         link set dev {host_veth} master {bridge}\n\
         link set dev {host_veth} type bridge_slave hairpin on\n\
         link set dev {host_veth} up\n"
    ))
}

/// The pod side: loopback up, `eth0` with the pod's address, up, default route via the
/// gateway. Runs in the pod netns.
pub fn configure_pod_interfaces(
    pod: &Netns<'_>,
    ip: Ipv4Addr,
    cidr: Ipv4Cidr,
) -> Result<(), LinkError> {
    pod.ip_batch(&format!(
        "link set dev lo up\n\
         addr add {ip}/{len} dev eth0\n\
         link set dev eth0 up\n\
         route add default via {gateway} dev eth0\n",
        len = cidr.prefix_len(),
        gateway = cidr.gateway(),
    ))
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
    fn link_kind_reads_info_kind() {
        let json = r#"[{"ifname":"br0","linkinfo":{"info_kind":"bridge"}}]"#;
        assert_eq!(link_kind(json).unwrap(), "bridge");
        assert_eq!(link_kind(r#"[{"ifname":"eth0"}]"#).unwrap(), "");
        assert!(link_kind("[]").is_err());
        assert!(link_kind("not json").is_err());
    }

    #[test]
    fn nat_table_is_per_bridge() {
        assert_eq!(nat_table_name("rudder0"), "rudder-rudder0");
    }
}
