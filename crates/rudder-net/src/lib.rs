//! Pod sandboxes and pod networking for rudder's native runtime.
//!
//! There is no pause container: each pod sandbox is a network, an IPC and a UTS namespace
//! held by bind mounts on files ([`ns`]), which containers join by path. The network
//! namespace lives in `/run/netns/rudder-<sandbox id>`, so `ip -n` and `ip netns exec`
//! work on it.
//!
//! On the node ([`Network`]): a bridge (default `rudder0`) holding the first address of the
//! node's pod CIDR, one veth pair per pod (host end `veth<11 hex>` on the bridge with
//! hairpin on, pod end `eth0`), addresses from a persistent allocator ([`ipam`]), and
//! masquerading of pod traffic that leaves the pod CIDR (nftables table
//! `ip rudder-<bridge>`). The node's network namespace is configurable, so tests build
//! whole nodes inside namespaces of their own.
//!
//! [`files`] renders the per-pod `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
//!
//! Everything blocks (syscalls, rtnetlink requests made in-process ([`netlink`]), and one
//! short `nft` invocation per node, each with a deadline);
//! async callers use `spawn_blocking`. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN).

pub mod cidr;
pub mod cmd;
pub mod files;
pub mod ipam;
pub mod link;
pub mod names;
pub mod netlink;
pub mod network;
pub mod ns;

pub use cidr::Ipv4Cidr;
pub use network::{Network, NetworkConfig, NetworkError, PodNetwork};
pub use ns::{SandboxNamespaces, run_in_netns};
