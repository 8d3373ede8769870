//! The per-pod `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` files, written on the
//! node and bind-mounted into every container of the pod by the runtime.
//!
//! Contents follow the kubelet (managed hosts file) and containerd (resolv.conf). The DNS
//! policy is the caller's business: for `ClusterFirst` it passes the cluster DNS service
//! and the `<ns>.svc.<domain> svc.<domain> <domain>` search list, for `Default` the node's
//! resolver settings, for `None` the pod's `dnsConfig`.
//!
//! Every file is written atomically: a temporary file in the same directory, then a rename.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Conventional file names inside a pod's directory.
pub const HOSTS_FILE: &str = "hosts";
pub const RESOLV_CONF_FILE: &str = "resolv.conf";
pub const HOSTNAME_FILE: &str = "hostname";

const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid {field} {value:?}: must be non-empty and contain no whitespace")]
    Invalid { field: &'static str, value: String },
}

/// A pod's `spec.hostAliases` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

/// What goes into a pod's managed hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    /// The pod's addresses (`status.podIPs`).
    pub pod_ips: Vec<IpAddr>,
    /// The pod's hostname (`spec.hostname` or the pod name, truncated to 63).
    pub hostname: String,
    /// `spec.subdomain`; when set, the FQDN `<hostname>.<subdomain>.<namespace>.svc.<domain>`
    /// is listed before the hostname.
    pub subdomain: Option<String>,
    pub namespace: String,
    /// The cluster domain, `cluster.local` by default.
    pub cluster_domain: String,
    pub host_aliases: Vec<HostAlias>,
}

/// What goes into a pod's resolv.conf.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsConfig {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    /// Options as written, e.g. `ndots:5`.
    pub options: Vec<String>,
}

impl DnsConfig {
    /// `ClusterFirst`: the cluster DNS service, the namespace's search list, `ndots:5`.
    pub fn cluster_first(nameserver: IpAddr, namespace: &str, cluster_domain: &str) -> Self {
        DnsConfig {
            nameservers: vec![nameserver],
            searches: vec![
                format!("{namespace}.svc.{cluster_domain}"),
                format!("svc.{cluster_domain}"),
                cluster_domain.to_owned(),
            ],
            options: vec!["ndots:5".to_owned()],
        }
    }
}

/// The managed hosts file, byte for byte as the kubelet writes it.
pub fn render_hosts(config: &HostsConfig) -> Result<String, FilesError> {
    check_token("hostname", &config.hostname)?;
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    let hostname = &config.hostname;
    match config.subdomain.as_deref().filter(|s| !s.is_empty()) {
        Some(subdomain) => {
            check_token("subdomain", subdomain)?;
            check_token("namespace", &config.namespace)?;
            check_token("cluster domain", &config.cluster_domain)?;
            let domain = format!("{subdomain}.{}.svc.{}", config.namespace, config.cluster_domain);
            for ip in &config.pod_ips {
                out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
            }
        }
        None => {
            for ip in &config.pod_ips {
                out.push_str(&format!("{ip}\t{hostname}\n"));
            }
        }
    }
    if !config.host_aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in &config.host_aliases {
            check_token("hostAliases ip", &alias.ip)?;
            for name in &alias.hostnames {
                check_token("hostAliases hostname", name)?;
            }
            out.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.join("\t")));
        }
    }
    Ok(out)
}

/// resolv.conf: `search`, then one `nameserver` line each, then `options` (containerd's
/// order). Empty parts are left out.
pub fn render_resolv_conf(config: &DnsConfig) -> Result<String, FilesError> {
    let mut out = String::new();
    for search in &config.searches {
        check_token("search domain", search)?;
    }
    for option in &config.options {
        check_token("DNS option", option)?;
    }
    if !config.searches.is_empty() {
        out.push_str(&format!("search {}\n", config.searches.join(" ")));
    }
    for nameserver in &config.nameservers {
        out.push_str(&format!("nameserver {nameserver}\n"));
    }
    if !config.options.is_empty() {
        out.push_str(&format!("options {}\n", config.options.join(" ")));
    }
    Ok(out)
}

/// Writes the managed hosts file to `path`, atomically.
pub fn write_hosts(path: &Path, config: &HostsConfig) -> Result<(), FilesError> {
    write_atomic(path, render_hosts(config)?.as_bytes())
}

/// Writes resolv.conf to `path`, atomically.
pub fn write_resolv_conf(path: &Path, config: &DnsConfig) -> Result<(), FilesError> {
    write_atomic(path, render_resolv_conf(config)?.as_bytes())
}

/// Writes `<hostname>\n` to `path`, atomically.
pub fn write_hostname(path: &Path, hostname: &str) -> Result<(), FilesError> {
    check_token("hostname", hostname)?;
    write_atomic(path, format!("{hostname}\n").as_bytes())
}

/// Writes all three files into `dir` (created if missing) under their conventional names
/// ([`HOSTS_FILE`], [`RESOLV_CONF_FILE`], [`HOSTNAME_FILE`]).
pub fn write_pod_files(dir: &Path, hosts: &HostsConfig, dns: &DnsConfig) -> Result<(), FilesError> {
    fs::create_dir_all(dir).map_err(|source| FilesError::Io {
        what: "creating",
        path: dir.to_path_buf(),
        source,
    })?;
    write_hosts(&dir.join(HOSTS_FILE), hosts)?;
    write_resolv_conf(&dir.join(RESOLV_CONF_FILE), dns)?;
    write_hostname(&dir.join(HOSTNAME_FILE), &hosts.hostname)
}

/// Writes `content` to a temporary file next to `path`, flushes it, and renames it over
/// `path`: readers see the old file or the new one, never a partial one.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), FilesError> {
    let io_err = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| FilesError::Io { what, path, source }
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        file.write_all(content).map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("renaming onto", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn check_token(field: &'static str, value: &str) -> Result<(), FilesError> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FilesError::Invalid { field, value: value.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts_config() -> HostsConfig {
        HostsConfig {
            pod_ips: vec!["10.42.0.5".parse().unwrap()],
            hostname: "web-0".into(),
            subdomain: None,
            namespace: "default".into(),
            cluster_domain: "cluster.local".into(),
            host_aliases: Vec::new(),
        }
    }

    const LOCALHOST_LINES: &str = "# Kubernetes-managed hosts file.\n\
        127.0.0.1\tlocalhost\n\
        ::1\tlocalhost ip6-localhost ip6-loopback\n\
        fe00::0\tip6-localnet\n\
        fe00::0\tip6-mcastprefix\n\
        fe00::1\tip6-allnodes\n\
        fe00::2\tip6-allrouters\n";

    #[test]
    fn hosts_without_subdomain() {
        let text = render_hosts(&hosts_config()).unwrap();
        assert_eq!(text, format!("{LOCALHOST_LINES}10.42.0.5\tweb-0\n"));
    }

    #[test]
    fn hosts_with_subdomain_lists_the_fqdn_first() {
        let mut config = hosts_config();
        config.subdomain = Some("web".into());
        config.namespace = "shop".into();
        let text = render_hosts(&config).unwrap();
        assert_eq!(
            text,
            format!("{LOCALHOST_LINES}10.42.0.5\tweb-0.web.shop.svc.cluster.local\tweb-0\n")
        );
    }

    #[test]
    fn hosts_with_aliases() {
        let mut config = hosts_config();
        config.host_aliases = vec![
            HostAlias { ip: "127.0.0.1".into(), hostnames: vec!["foo.local".into(), "bar".into()] },
            HostAlias { ip: "10.1.2.3".into(), hostnames: vec!["baz.remote".into()] },
        ];
        let text = render_hosts(&config).unwrap();
        assert!(text.ends_with(
            "10.42.0.5\tweb-0\n\n# Entries added by HostAliases.\n\
             127.0.0.1\tfoo.local\tbar\n10.1.2.3\tbaz.remote\n"
        ));
    }

    #[test]
    fn hosts_refuses_injected_lines() {
        let mut config = hosts_config();
        config.host_aliases =
            vec![HostAlias { ip: "1.2.3.4".into(), hostnames: vec!["a\n6.6.6.6 evil".into()] }];
        assert!(matches!(render_hosts(&config), Err(FilesError::Invalid { .. })));
    }

    #[test]
    fn resolv_conf_cluster_first() {
        let dns = DnsConfig::cluster_first("10.43.0.10".parse().unwrap(), "shop", "cluster.local");
        assert_eq!(
            render_resolv_conf(&dns).unwrap(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 10.43.0.10\n\
             options ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_several_nameservers_and_no_search() {
        let dns = DnsConfig {
            nameservers: vec!["1.1.1.1".parse().unwrap(), "2001:db8::1".parse().unwrap()],
            searches: Vec::new(),
            options: vec!["ndots:2".into(), "edns0".into()],
        };
        assert_eq!(
            render_resolv_conf(&dns).unwrap(),
            "nameserver 1.1.1.1\nnameserver 2001:db8::1\noptions ndots:2 edns0\n"
        );
    }

    #[test]
    fn files_are_written_into_the_pod_directory_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().join("pod");
        let dns =
            DnsConfig::cluster_first("10.43.0.10".parse().unwrap(), "default", "cluster.local");
        write_pod_files(&pod_dir, &hosts_config(), &dns).unwrap();
        assert_eq!(fs::read_to_string(pod_dir.join(HOSTNAME_FILE)).unwrap(), "web-0\n");
        assert!(fs::read_to_string(pod_dir.join(HOSTS_FILE)).unwrap().ends_with("\tweb-0\n"));
        assert!(fs::read_to_string(pod_dir.join(RESOLV_CONF_FILE)).unwrap().contains("ndots:5"));
        // Rewriting replaces the file (a new inode) and leaves no temporary file behind.
        let before = std::os::unix::fs::MetadataExt::ino(
            &fs::metadata(pod_dir.join(HOSTNAME_FILE)).unwrap(),
        );
        write_hostname(&pod_dir.join(HOSTNAME_FILE), "web-1").unwrap();
        let after = std::os::unix::fs::MetadataExt::ino(
            &fs::metadata(pod_dir.join(HOSTNAME_FILE)).unwrap(),
        );
        assert_ne!(before, after);
        assert_eq!(fs::read_to_string(pod_dir.join(HOSTNAME_FILE)).unwrap(), "web-1\n");
        let names: Vec<_> =
            fs::read_dir(&pod_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
