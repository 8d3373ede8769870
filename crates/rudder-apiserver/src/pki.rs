//! The cluster's certificates: a CA generated on first start, the API server's serving
//! certificate, and client certificates (the admin's: CN admin, O system:masters; later one
//! per component). Everything lives as PEM files under `<data-dir>/tls/` and is reused on
//! later starts; the serving certificate is re-issued when its host names change.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug)]
pub struct CertPair {
    pub cert_pem: String,
    pub key_pem: String,
}

#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertPair,
    pub serving: CertPair,
    pub admin: CertPair,
    /// The client certificate the API server presents to kubelets (CN
    /// `kube-apiserver-kubelet-client`, O `system:masters`), `apiserver-kubelet-client.crt|.key`.
    pub kubelet_client: CertPair,
    /// The key service-account tokens are signed with (ECDSA P-256, PKCS#8 PEM),
    /// `service-account.key`.
    pub service_account_key_pem: String,
}

/// The file (without extension) of the API server's kubelet client certificate.
pub const KUBELET_CLIENT_FILE: &str = "apiserver-kubelet-client";
/// Its common name (upstream kubeadm's).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// The file of the service-account signing key.
pub const SERVICE_ACCOUNT_KEY_FILE: &str = "service-account.key";

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io { path: path.to_owned(), source }),
    }
}

/// Writes `contents` to `path` atomically (temp file, fsync, rename), readable by the owner only.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| PkiError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn load_pair(dir: &Path, name: &str) -> Result<Option<CertPair>, PkiError> {
    let cert = read(&dir.join(format!("{name}.crt")))?;
    let key = read(&dir.join(format!("{name}.key")))?;
    Ok(match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(CertPair { cert_pem, key_pem }),
        _ => None,
    })
}

fn store_pair(dir: &Path, name: &str, pair: &CertPair) -> Result<(), PkiError> {
    write_private(&dir.join(format!("{name}.key")), &pair.key_pem)?;
    write_private(&dir.join(format!("{name}.crt")), &pair.cert_pem)
}

fn generate_ca() -> Result<CertPair, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "rudder-ca");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params.self_signed(&key)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a certificate signed by `ca`.
pub fn issue(
    ca: &CertPair,
    common_name: &str,
    organizations: &[&str],
    sans: Vec<String>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertPair, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(sans)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    for o in organizations {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// The names the serving certificate covers.
pub fn serving_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "::1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.43.0.1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_owned();
        if !host.is_empty() {
            // The host's own addresses, as its resolver knows them (/etc/hosts or DNS).
            use std::net::ToSocketAddrs;
            if let Ok(addrs) = (host.as_str(), 0).to_socket_addrs() {
                for a in addrs {
                    names.push(a.ip().to_string());
                }
            }
            names.push(host);
        }
    }
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The client certificate of a component (CN `user`, O `groups`), issued by the CA under
/// `tls_dir` on first use and kept as `<tls_dir>/<user with ':' as '-'>.crt|.key`.
pub fn component_certificate(
    tls_dir: &Path,
    user: &str,
    groups: &[&str],
) -> Result<CertPair, PkiError> {
    let file = user.replace(':', "-");
    if let Some(pair) = load_pair(tls_dir, &file)? {
        return Ok(pair);
    }
    let ca = load_pair(tls_dir, "ca")?.ok_or_else(|| PkiError::Io {
        path: tls_dir.join("ca.crt"),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no cluster CA"),
    })?;
    let pair = issue(&ca, user, groups, vec![], ExtendedKeyUsagePurpose::ClientAuth)?;
    store_pair(tls_dir, &file, &pair)?;
    Ok(pair)
}

/// A kubeconfig for a component: its own client certificate (see
/// [`component_certificate`]) and the cluster CA, pointing at `server_url`.
pub fn component_kubeconfig(
    tls_dir: &Path,
    server_url: &str,
    user: &str,
    groups: &[&str],
) -> Result<String, PkiError> {
    let pair = component_certificate(tls_dir, user, groups)?;
    let ca = read(&tls_dir.join("ca.crt"))?.unwrap_or_default();
    Ok(crate::kubeconfig::render_user("rudder", user, server_url, &ca, &pair))
}

impl Pki {
    /// Loads the certificates under `dir`, generating whatever is missing.
    pub fn ensure(dir: &Path, serving_sans: Vec<String>) -> Result<Self, PkiError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| PkiError::Io { path: dir.to_owned(), source })?;
        let ca = match load_pair(dir, "ca")? {
            Some(ca) => ca,
            None => {
                let ca = generate_ca()?;
                store_pair(dir, "ca", &ca)?;
                ca
            }
        };
        let sans_file = dir.join("serving.names");
        let wanted = serving_sans.join("\n");
        let serving = match (load_pair(dir, "serving")?, read(&sans_file)?) {
            (Some(pair), Some(names)) if names == wanted => pair,
            _ => {
                let pair = issue(
                    &ca,
                    "rudder-apiserver",
                    &[],
                    serving_sans,
                    ExtendedKeyUsagePurpose::ServerAuth,
                )?;
                store_pair(dir, "serving", &pair)?;
                write_private(&sans_file, &wanted)?;
                pair
            }
        };
        let admin = match load_pair(dir, "admin")? {
            Some(pair) => pair,
            None => {
                let pair = issue(
                    &ca,
                    "admin",
                    &["system:masters"],
                    vec![],
                    ExtendedKeyUsagePurpose::ClientAuth,
                )?;
                store_pair(dir, "admin", &pair)?;
                pair
            }
        };
        let kubelet_client = match load_pair(dir, KUBELET_CLIENT_FILE)? {
            Some(pair) => pair,
            None => {
                let pair = issue(
                    &ca,
                    KUBELET_CLIENT_USER,
                    &["system:masters"],
                    vec![],
                    ExtendedKeyUsagePurpose::ClientAuth,
                )?;
                store_pair(dir, KUBELET_CLIENT_FILE, &pair)?;
                pair
            }
        };
        let sa_path = dir.join(SERVICE_ACCOUNT_KEY_FILE);
        let service_account_key_pem = match read(&sa_path)? {
            Some(pem) => pem,
            None => {
                let pem = KeyPair::generate()?.serialize_pem();
                write_private(&sa_path, &pem)?;
                pem
            }
        };
        Ok(Pki { dir: dir.to_owned(), ca, serving, admin, kubelet_client, service_account_key_pem })
    }
}
