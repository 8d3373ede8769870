//! Names derived from a sandbox id (netns file, host-side veth) and from a pod name
//! (hostname). Everything here is deterministic, so a restarted agent finds what an earlier
//! run created from the sandbox id alone.

use std::path::{Path, PathBuf};

/// Where `ip netns` keeps its namespace files; pod network namespaces live here so
/// `ip -n <name>` and `ip netns exec` work on them.
pub const NETNS_DIR: &str = "/run/netns";

/// Prefix of every pod netns name under [`NETNS_DIR`].
pub const NETNS_PREFIX: &str = "rudder-";

/// Longest accepted sandbox id (the kubelet's CRI ids are 64 hex characters).
pub const MAX_SANDBOX_ID_LEN: usize = 128;

/// Linux interface names are at most 15 bytes (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Longest pod hostname (a DNS label), as upstream's `truncatePodHostnameIfNeeded`.
pub const MAX_HOSTNAME_LEN: usize = 63;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error(
        "invalid sandbox id {0:?}: must be 1-{MAX_SANDBOX_ID_LEN} characters of [A-Za-z0-9_.-], starting with a letter or digit"
    )]
    SandboxId(String),
    #[error(
        "invalid interface name {0:?}: must be 1-{MAX_IFNAME_LEN} characters of [A-Za-z0-9_.-]"
    )]
    Interface(String),
    #[error("invalid hostname {0:?}: must be non-empty printable ASCII without spaces")]
    Hostname(String),
}

/// Sandbox ids become file and namespace names, so they are restricted to a safe alphabet.
pub fn validate_sandbox_id(id: &str) -> Result<(), NameError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_SANDBOX_ID_LEN
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(NameError::SandboxId(id.to_owned())) }
}

/// A Linux interface name we are willing to pass to `ip`.
pub fn validate_interface_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(NameError::Interface(name.to_owned())) }
}

/// `rudder-<sandbox id>`: the pod's netns name under [`NETNS_DIR`]. The whole id is used
/// (not a prefix) so two sandboxes never share a name.
pub fn netns_name(sandbox_id: &str) -> String {
    format!("{NETNS_PREFIX}{sandbox_id}")
}

/// `/run/netns/rudder-<sandbox id>`.
pub fn netns_path(sandbox_id: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(netns_name(sandbox_id))
}

/// The host side of the pod's veth pair: `veth` + 11 hex digits of a 64-bit FNV-1a hash
/// of the sandbox id (15 characters, the interface name limit; 44 bits make a collision
/// between two pods of one node vanishingly unlikely, and one would fail that pod's setup
/// with "File exists" rather than mix two pods up).
pub fn host_veth_name(sandbox_id: &str) -> String {
    let hash = fnv1a64(sandbox_id.as_bytes());
    let hex = format!("{hash:016x}");
    format!("veth{}", &hex[..11])
}

/// Upstream's pod hostname rule: at most 63 characters, and a truncated name does not end
/// with `-` or `.`.
pub fn pod_hostname(name: &str) -> String {
    if name.len() <= MAX_HOSTNAME_LEN {
        return name.to_owned();
    }
    let mut cut = MAX_HOSTNAME_LEN;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    name[..cut].trim_end_matches(['-', '.']).to_owned()
}

/// A hostname we can set with `sethostname` (the kernel allows 64 bytes).
pub fn validate_hostname(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_HOSTNAME_LEN
        && name.bytes().all(|b| b.is_ascii_graphic());
    if ok { Ok(()) } else { Err(NameError::Hostname(name.to_owned())) }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_ids_are_restricted_to_a_path_safe_alphabet() {
        assert!(validate_sandbox_id("0123abcdef").is_ok());
        assert!(validate_sandbox_id("pod_a.b-c").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", "a b", &"a".repeat(129)] {
            assert!(validate_sandbox_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_veth_name_is_deterministic_short_and_distinct() {
        let a = host_veth_name("sandbox-1");
        assert_eq!(a, host_veth_name("sandbox-1"));
        assert_eq!(a.len(), MAX_IFNAME_LEN);
        assert!(a.starts_with("veth"));
        assert!(validate_interface_name(&a).is_ok());
        let names: std::collections::HashSet<_> =
            (0..10_000).map(|i| host_veth_name(&format!("sandbox-{i}"))).collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    fn known_fnv_vector() {
        // FNV-1a 64 of "a" from the reference test vectors.
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn netns_names_use_the_whole_id() {
        assert_eq!(netns_name("abc"), "rudder-abc");
        assert_eq!(netns_path("abc"), PathBuf::from("/run/netns/rudder-abc"));
    }

    #[test]
    fn pod_hostname_truncates_to_63_and_trims_separators() {
        assert_eq!(pod_hostname("web-0"), "web-0");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(&long), "a".repeat(62));
        let exact = "x".repeat(70);
        assert_eq!(pod_hostname(&exact).len(), 63);
    }

    #[test]
    fn hostnames_are_validated() {
        assert!(validate_hostname("web-0").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a b").is_err());
        assert!(validate_hostname(&"a".repeat(64)).is_err());
    }

    #[test]
    fn interface_names_are_validated() {
        assert!(validate_interface_name("rudder0").is_ok());
        assert!(validate_interface_name("").is_err());
        assert!(validate_interface_name("a-name-that-is-too-long").is_err());
        assert!(validate_interface_name("br 0").is_err());
    }
}
