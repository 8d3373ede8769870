//! The kubelet's serving certificate. Like upstream's kubelet without `--tls-cert-file`:
//! kept as `<cert_dir>/kubelet.crt` and `kubelet.key`, and when they are absent generated
//! once (a throwaway CA `<node>-ca@<unix time>` signs a serving certificate for the node's
//! names and addresses; `kubelet.crt` holds both, leaf first), valid for a year. The API
//! server does not verify it (as upstream's does not by default).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

pub const KUBELET_CERT_FILE: &str = "kubelet.crt";
pub const KUBELET_KEY_FILE: &str = "kubelet.key";

const VALIDITY: Duration = Duration::from_secs(365 * 86_400);

/// A certificate chain and its key, PEM encoded.
#[derive(Clone, Debug)]
pub(crate) struct ServingCert {
    pub chain_pem: String,
    pub key_pem: String,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

/// Writes atomically (temporary file, fsync, rename) with the given mode.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let what = || format!("writing {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(what()))?;
    f.write_all(contents.as_bytes()).map_err(io(what()))?;
    f.sync_all().map_err(io(what()))?;
    std::fs::rename(&tmp, path).map_err(io(what()))
}

/// The UTC calendar date `offset_days` from `now`.
fn date(now: SystemTime, offset_days: i64) -> (i32, u8, u8) {
    let days = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 / 86_400;
    let (y, m, d) = crate::timestamp::civil_from_days(days + offset_days);
    (y as i32, m as u8, d as u8)
}

/// Generates the serving certificate for `node_name`, covering `node_name`, `hostnames`
/// and `ips`.
pub(crate) fn generate(
    node_name: &str,
    hostnames: &[String],
    ips: &[IpAddr],
    now: SystemTime,
) -> Result<ServingCert, Error> {
    let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (from, until) = (date(now, -1), date(now, VALIDITY.as_secs() as i64 / 86_400));

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, format!("{node_name}-ca@{unix}"));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    ca.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::from_params(&ca, &ca_key);

    let mut names: Vec<String> = vec![node_name.to_owned()];
    names.extend(hostnames.iter().cloned());
    names.extend(ips.iter().map(IpAddr::to_string));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(names)?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(DnType::CommonName, format!("{node_name}@{unix}"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    leaf.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let leaf_cert = leaf.signed_by(&key, &issuer)?;
    Ok(ServingCert {
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
    })
}

/// Loads `<dir>/kubelet.crt|kubelet.key`, generating and storing them when either is absent.
pub(crate) fn ensure(
    dir: &Path,
    node_name: &str,
    hostnames: &[String],
    ips: &[IpAddr],
) -> Result<ServingCert, Error> {
    let (cert_path, key_path) = (dir.join(KUBELET_CERT_FILE), dir.join(KUBELET_KEY_FILE));
    if let (Some(chain_pem), Some(key_pem)) =
        (read_optional(&cert_path)?, read_optional(&key_path)?)
    {
        return Ok(ServingCert { chain_pem, key_pem });
    }
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let cert = generate(node_name, hostnames, ips, SystemTime::now())?;
    write_file(&key_path, &cert.key_pem, 0o600)?;
    write_file(&cert_path, &cert.chain_pem, 0o644)?;
    tracing::info!(path = %cert_path.display(), "generated a self-signed kubelet serving certificate");
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let ips = ["10.0.0.7".parse().unwrap()];
        let first = ensure(dir.path(), "node-a", &["node-a.example".into()], &ips).unwrap();
        assert_eq!(first.chain_pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
        let again = ensure(dir.path(), "node-a", &[], &[]).unwrap();
        assert_eq!(first.chain_pem, again.chain_pem);
        assert_eq!(first.key_pem, again.key_pem);
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(dir.path().join(KUBELET_KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(first.chain_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("node-a.example")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("0a:00:00:07")), "{names:?}");
        let cn = leaf.subject().iter_common_name().next().unwrap().as_str().unwrap().to_owned();
        assert!(cn.starts_with("node-a@"), "{cn}");
        let validity = leaf.validity();
        let span = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert!((365 * 86_400..=367 * 86_400).contains(&span), "{span}");
    }
}
