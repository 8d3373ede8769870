//! IPv4 CIDR blocks: the node's pod CIDR, its gateway and its allocatable range.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Narrowest pod CIDR: a /30 has a network, a gateway, one pod and a broadcast address.
pub const MAX_PREFIX_LEN: u8 = 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected an IPv4 network like 10.42.0.0/24")]
    Syntax(String),
    #[error("invalid CIDR {cidr:?}: prefix length must be at most {MAX_PREFIX_LEN}")]
    TooNarrow { cidr: String },
    #[error("invalid CIDR {cidr:?}: host bits are set (did you mean {network}?)")]
    HostBits { cidr: String, network: String },
}

/// An IPv4 network: address with no host bits set, and prefix length <= 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Cidr {
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    fn mask(&self) -> u32 {
        // A /0 would shift by 32, which overflows.
        u32::MAX.checked_shl(32 - u32::from(self.prefix_len)).unwrap_or(0)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// The first host address: the bridge's address, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The first address handed to pods (the one after the gateway).
    pub fn first_pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 2)
    }

    /// The last address handed to pods (the one before the broadcast address).
    pub fn last_pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.broadcast()) - 1)
    }

    /// How many addresses pods can get.
    pub fn pod_capacity(&self) -> u32 {
        u32::from(self.last_pod_ip()) - u32::from(self.first_pod_ip()) + 1
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// Whether `ip` may be given to a pod: inside the block and not the network, gateway or
    /// broadcast address.
    pub fn is_pod_ip(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip >= u32::from(self.first_pod_ip()) && ip <= u32::from(self.last_pod_ip())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let prefix_len: u8 = len.parse().map_err(|_| syntax())?;
        if prefix_len > 32 {
            return Err(syntax());
        }
        if prefix_len > MAX_PREFIX_LEN {
            return Err(CidrError::TooNarrow { cidr: text.to_owned() });
        }
        let cidr = Ipv4Cidr { network: addr, prefix_len };
        let network = Ipv4Addr::from(u32::from(addr) & cidr.mask());
        if network != addr {
            return Err(CidrError::HostBits {
                cidr: text.to_owned(),
                network: format!("{network}/{prefix_len}"),
            });
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_24_addresses() {
        let cidr: Ipv4Cidr = "10.42.0.0/24".parse().unwrap();
        assert_eq!(cidr.to_string(), "10.42.0.0/24");
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 42, 0, 1));
        assert_eq!(cidr.first_pod_ip(), Ipv4Addr::new(10, 42, 0, 2));
        assert_eq!(cidr.last_pod_ip(), Ipv4Addr::new(10, 42, 0, 254));
        assert_eq!(cidr.broadcast(), Ipv4Addr::new(10, 42, 0, 255));
        assert_eq!(cidr.pod_capacity(), 253);
        assert!(cidr.contains(Ipv4Addr::new(10, 42, 0, 255)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 42, 1, 0)));
        assert!(!cidr.is_pod_ip(cidr.network()));
        assert!(!cidr.is_pod_ip(cidr.gateway()));
        assert!(!cidr.is_pod_ip(cidr.broadcast()));
        assert!(cidr.is_pod_ip(Ipv4Addr::new(10, 42, 0, 77)));
    }

    #[test]
    fn slash_30_has_one_pod_address() {
        let cidr: Ipv4Cidr = "192.168.1.4/30".parse().unwrap();
        assert_eq!(cidr.pod_capacity(), 1);
        assert_eq!(cidr.first_pod_ip(), Ipv4Addr::new(192, 168, 1, 6));
    }

    #[test]
    fn bad_cidrs_are_refused() {
        for bad in ["10.42.0.0", "10.42.0.0/", "10.42.0.0/33", "10.42.0/24", "x/24", "1.2.3.4/+8"] {
            assert!(matches!(bad.parse::<Ipv4Cidr>(), Err(CidrError::Syntax(_))), "{bad}");
        }
        assert!(matches!("10.0.0.0/31".parse::<Ipv4Cidr>(), Err(CidrError::TooNarrow { .. })));
        assert_eq!(
            "10.42.0.1/24".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits {
                cidr: "10.42.0.1/24".into(),
                network: "10.42.0.0/24".into()
            })
        );
    }

    #[test]
    fn slash_zero_does_not_overflow() {
        let cidr: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(cidr.broadcast(), Ipv4Addr::BROADCAST);
        assert!(cidr.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }
}
