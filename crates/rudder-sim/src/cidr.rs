//! IPv4 CIDRs and the per-node pod address allocator (pure logic).
//!
//! Pod addresses come from the node's `spec.podCIDR` (set by the node IPAM controller). When a
//! node has none, the simulator carves the node's own subnet from the cluster CIDR the way
//! the IPAM controller does (the i-th `/node_cidr_mask_size` block for node i). The first
//! address of a subnet (network) and the second (the bridge gateway on a real node) are never
//! handed out, nor is the last (broadcast).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use crate::error::SimError;

/// `a.b.c.d/len`, normalized to its network address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, SimError> {
        if prefix_len > 32 {
            return Err(SimError::invalid(
                "CIDR",
                &format!("{addr}/{prefix_len}"),
                "prefix length above 32",
            ));
        }
        let mask = mask(prefix_len);
        Ok(Ipv4Cidr { network: Ipv4Addr::from(u32::from(addr) & mask), prefix_len })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// How many addresses the block holds.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// The address `offset` places into the block, if it is inside.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        if offset >= self.size() {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network).wrapping_add(offset as u32)))
    }

    /// The `index`-th subnet of `/subnet_len`, wrapping around when the block holds fewer
    /// (so a fallback never fails; with too many nodes for the cluster CIDR, subnets repeat).
    pub fn subnet(&self, subnet_len: u8, index: u64) -> Ipv4Cidr {
        let subnet_len = subnet_len.clamp(self.prefix_len, 32);
        let count = 1u64 << (subnet_len - self.prefix_len);
        let step = 1u64 << (32 - u32::from(subnet_len));
        let offset = (index % count) * step;
        Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(self.network).wrapping_add(offset as u32)),
            prefix_len: subnet_len,
        }
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix_len)) }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| SimError::invalid("CIDR", s, "expected a.b.c.d/len"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| {
            SimError::invalid("CIDR", s, "not an IPv4 address (IPv6 is not simulated)")
        })?;
        let len: u8 = len.parse().map_err(|_| SimError::invalid("CIDR", s, "bad prefix length"))?;
        Ipv4Cidr::new(addr, len)
    }
}

/// Pod addresses in use on one node, with a cursor so a freed address is not handed out
/// again at once (like host-local IPAM).
#[derive(Debug, Default)]
pub(crate) struct PodIpAllocator {
    used: HashSet<Ipv4Addr>,
    cursor: u64,
}

impl PodIpAllocator {
    /// The next free address of `cidr` (skipping network, gateway and broadcast).
    pub fn allocate(&mut self, cidr: Ipv4Cidr) -> Option<Ipv4Addr> {
        let size = cidr.size();
        if size < 4 {
            return None;
        }
        let first = 2u64;
        let usable = size - 3;
        for step in 0..usable {
            let offset = first + (self.cursor + step) % usable;
            let Some(ip) = cidr.nth(offset) else { continue };
            if self.used.insert(ip) {
                self.cursor = (self.cursor + step + 1) % usable;
                return Some(ip);
            }
        }
        None
    }

    /// Marks `ip` as used (a pod adopted after a restart keeps its address).
    pub fn reserve(&mut self, ip: Ipv4Addr) {
        self.used.insert(ip);
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.used.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_normalizes_and_carves() {
        let c: Ipv4Cidr = "10.42.3.7/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.42.0.0/16");
        assert!(c.contains("10.42.255.1".parse().unwrap()));
        assert!(!c.contains("10.43.0.1".parse().unwrap()));
        assert_eq!(c.subnet(24, 0).to_string(), "10.42.0.0/24");
        assert_eq!(c.subnet(24, 5).to_string(), "10.42.5.0/24");
        assert_eq!(c.subnet(24, 256).to_string(), "10.42.0.0/24", "wraps around");
        assert!("10.42.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("fd00::/64".parse::<Ipv4Cidr>().is_err());
    }

    #[test]
    fn allocator_skips_reserved_and_does_not_reuse_at_once() {
        let cidr: Ipv4Cidr = "10.0.0.0/29".parse().unwrap(); // .2 .. .6 usable
        let mut a = PodIpAllocator::default();
        a.reserve("10.0.0.3".parse().unwrap());
        let got: Vec<_> = std::iter::from_fn(|| a.allocate(cidr)).collect();
        let want: Vec<Ipv4Addr> = ["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(got, want);
        assert_eq!(a.allocate(cidr), None, "exhausted");
        a.release("10.0.0.4".parse().unwrap());
        a.release("10.0.0.2".parse().unwrap());
        // The cursor moved past .6: the next address is the lowest freed one after it.
        assert_eq!(a.allocate(cidr), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(a.allocate(cidr), Some("10.0.0.4".parse().unwrap()));
        assert_eq!(a.in_use(), 5);
    }
}
