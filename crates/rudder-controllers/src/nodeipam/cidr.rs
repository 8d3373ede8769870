//! An IPv4 CIDR and the set of node subnets carved from the cluster CIDR (upstream's
//! `cidrset`): the next free subnet is searched from after the last one handed out, so a
//! released subnet is not reused at once.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Most subnets one cluster CIDR may be split into (upstream: a mask at most 16 bits longer).
const MAX_SUBNET_BITS: u8 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    /// The network address (host bits zero).
    pub network: Ipv4Addr,
    pub prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR address: {0}")]
    Parse(String),
    #[error(
        "node CIDR mask size {mask} must be between the cluster prefix {cluster} and 32, and at most {MAX_SUBNET_BITS} bits longer"
    )]
    Mask { cluster: u8, mask: u8 },
    #[error("CIDR {0} is outside the cluster CIDR {1}")]
    OutOfRange(Ipv4Cidr, Ipv4Cidr),
}

fn mask_bits(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

impl Ipv4Cidr {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Parse(format!("{addr}/{prefix}")));
        }
        Ok(Ipv4Cidr { network: Ipv4Addr::from(u32::from(addr) & mask_bits(prefix)), prefix })
    }

    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        other.prefix >= self.prefix
            && u32::from(other.network) & mask_bits(self.prefix) == u32::from(self.network)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| CidrError::Parse(s.to_owned()))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::Parse(s.to_owned()))?;
        let prefix: u8 = prefix.parse().map_err(|_| CidrError::Parse(s.to_owned()))?;
        Ipv4Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The node subnets of one cluster CIDR, used or free.
#[derive(Clone, Debug)]
pub struct CidrSet {
    cluster: Ipv4Cidr,
    mask: u8,
    used: Vec<bool>,
    used_count: usize,
    next_candidate: usize,
}

impl CidrSet {
    pub fn new(cluster: Ipv4Cidr, mask: u8) -> Result<Self, CidrError> {
        if mask < cluster.prefix || mask > 32 || mask - cluster.prefix > MAX_SUBNET_BITS {
            return Err(CidrError::Mask { cluster: cluster.prefix, mask });
        }
        let count = 1usize << (mask - cluster.prefix);
        Ok(CidrSet { cluster, mask, used: vec![false; count], used_count: 0, next_candidate: 0 })
    }

    pub fn capacity(&self) -> usize {
        self.used.len()
    }

    pub fn used(&self) -> usize {
        self.used_count
    }

    fn subnet(&self, index: usize) -> Ipv4Cidr {
        let step = 1u64 << (32 - u32::from(self.mask));
        let network = u64::from(u32::from(self.cluster.network)) + index as u64 * step;
        Ipv4Cidr { network: Ipv4Addr::from(network as u32), prefix: self.mask }
    }

    /// The subnet indexes `cidr` covers.
    fn range(&self, cidr: &Ipv4Cidr) -> Result<(usize, usize), CidrError> {
        if !self.cluster.contains(cidr) && !cidr.contains(&self.cluster) {
            return Err(CidrError::OutOfRange(*cidr, self.cluster));
        }
        let shift = 32 - u32::from(self.mask);
        let base = u32::from(self.cluster.network);
        if cidr.prefix <= self.cluster.prefix {
            return Ok((0, self.used.len() - 1));
        }
        let first = ((u32::from(cidr.network) - base) >> shift) as usize;
        let span = if cidr.prefix < self.mask { 1usize << (self.mask - cidr.prefix) } else { 1 };
        Ok((first, first + span - 1))
    }

    /// Hands out the next free subnet, `None` when every one is used.
    pub fn allocate_next(&mut self) -> Option<Ipv4Cidr> {
        let n = self.used.len();
        for offset in 0..n {
            let i = (self.next_candidate + offset) % n;
            if !self.used[i] {
                self.used[i] = true;
                self.used_count += 1;
                self.next_candidate = (i + 1) % n;
                return Some(self.subnet(i));
            }
        }
        None
    }

    /// Marks `cidr` (and every subnet it covers) used.
    pub fn occupy(&mut self, cidr: &Ipv4Cidr) -> Result<(), CidrError> {
        let (first, last) = self.range(cidr)?;
        for used in &mut self.used[first..=last] {
            if !*used {
                *used = true;
                self.used_count += 1;
            }
        }
        Ok(())
    }

    /// Frees `cidr` (and every subnet it covers).
    pub fn release(&mut self, cidr: &Ipv4Cidr) -> Result<(), CidrError> {
        let (first, last) = self.range(cidr)?;
        for used in &mut self.used[first..=last] {
            if *used {
                *used = false;
                self.used_count -= 1;
            }
        }
        Ok(())
    }

    pub fn is_used(&self, cidr: &Ipv4Cidr) -> bool {
        self.range(cidr).is_ok_and(|(first, last)| self.used[first..=last].iter().all(|u| *u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_normalizes() {
        assert_eq!(cidr("10.42.3.7/16").to_string(), "10.42.0.0/16");
        assert!("10.42.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.42.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!("x/8".parse::<Ipv4Cidr>().is_err());
        assert!(cidr("10.42.0.0/16").contains(&cidr("10.42.7.0/24")));
        assert!(!cidr("10.42.0.0/16").contains(&cidr("10.43.0.0/24")));
    }

    #[test]
    fn hands_out_subnets_in_order_never_twice_and_not_released_ones_at_once() {
        let mut set = CidrSet::new(cidr("10.42.0.0/16"), 24).unwrap();
        assert_eq!(set.capacity(), 256);
        assert_eq!(set.allocate_next(), Some(cidr("10.42.0.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.42.1.0/24")));
        set.occupy(&cidr("10.42.2.0/24")).unwrap();
        assert_eq!(set.allocate_next(), Some(cidr("10.42.3.0/24")));
        set.release(&cidr("10.42.0.0/24")).unwrap();
        assert_eq!(set.allocate_next(), Some(cidr("10.42.4.0/24")), "search goes on from the last");
        assert_eq!(set.used(), 4);
        assert!(set.is_used(&cidr("10.42.2.0/24")));
        assert!(!set.is_used(&cidr("10.42.0.0/24")));
    }

    #[test]
    fn exhaustion_and_wraparound() {
        let mut set = CidrSet::new(cidr("10.0.0.0/30"), 31).unwrap();
        assert_eq!(set.allocate_next(), Some(cidr("10.0.0.0/31")));
        assert_eq!(set.allocate_next(), Some(cidr("10.0.0.2/31")));
        assert_eq!(set.allocate_next(), None);
        set.release(&cidr("10.0.0.0/31")).unwrap();
        assert_eq!(set.allocate_next(), Some(cidr("10.0.0.0/31")), "wraps around");
    }

    #[test]
    fn occupying_larger_smaller_and_foreign_cidrs() {
        let mut set = CidrSet::new(cidr("10.42.0.0/16"), 24).unwrap();
        set.occupy(&cidr("10.42.0.0/23")).unwrap();
        assert_eq!(set.used(), 2);
        set.occupy(&cidr("10.42.5.128/25")).unwrap();
        assert!(set.is_used(&cidr("10.42.5.0/24")));
        assert_eq!(set.used(), 3);
        assert!(matches!(set.occupy(&cidr("10.99.0.0/24")), Err(CidrError::OutOfRange(..))));
        set.occupy(&cidr("10.42.0.0/23")).unwrap();
        assert_eq!(set.used(), 3, "occupying twice changes nothing");
        assert!(CidrSet::new(cidr("10.0.0.0/8"), 25).is_err(), "too many subnets");
        assert!(CidrSet::new(cidr("10.42.0.0/16"), 15).is_err());
    }
}
