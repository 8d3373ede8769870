//! TLS, authentication and authorization. Client certificates are verified against the
//! cluster CA during the handshake (a certificate from another CA ends it); a client
//! without one may connect (for `/healthz`) but gets 401 elsewhere. Authorization is our
//! simplification of upstream's webhook mode: the API server's kubelet client and
//! `system:masters` may do everything, nobody else anything.

use std::sync::Arc;

use axum::http;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;
use crate::cert::ServingCert;

/// The user the API server calls kubelets as (upstream's `--kubelet-client-certificate`
/// convention).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";
/// Members may do anything.
pub const MASTERS_GROUP: &str = "system:masters";

pub(crate) fn server_config(
    serving: &ServingCert,
    client_ca_pem: &[u8],
) -> Result<rustls::ServerConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client_ca_pem) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err(Error::NoClientCa);
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = CertificateDer::pem_slice_iter(serving.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Who is calling: from the verified client certificate (CN = user, O = groups).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn from_certificate(der: &[u8]) -> Option<Identity> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let user = subject.iter_common_name().next()?.as_str().ok()?.to_owned();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        Some(Identity { user, groups })
    }
}

/// The `nodes` subresource upstream's kubelet asks the authorizer about for a path.
fn subresource(path: &str) -> &'static str {
    match path.trim_start_matches('/').split('/').next().unwrap_or("") {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        "checkpoint" => "checkpoint",
        "pods" => "pods",
        _ => "proxy",
    }
}

fn verb(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    }
}

/// Decides a request: `Err((status, body))` for a refused one, with upstream's bodies
/// (`Unauthorized`, `Forbidden (user=..., verb=..., resource=nodes, subresource=...)`).
/// `/healthz` is open to anyone.
pub fn authorize(
    identity: Option<&Identity>,
    method: &http::Method,
    path: &str,
) -> Result<(), (u16, String)> {
    if path == "/healthz" {
        return Ok(());
    }
    let Some(id) = identity else {
        return Err((401, "Unauthorized".to_owned()));
    };
    if id.user == APISERVER_KUBELET_CLIENT || id.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    Err((
        403,
        format!(
            "Forbidden (user={}, verb={}, resource=nodes, subresource={})",
            id.user,
            verb(method),
            subresource(path)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity { user: user.into(), groups: groups.iter().map(|g| (*g).into()).collect() }
    }

    #[test]
    fn who_may_do_what() {
        let get = http::Method::GET;
        let logs = "/containerLogs/default/p/c";
        assert_eq!(authorize(None, &get, "/healthz"), Ok(()));
        assert_eq!(authorize(None, &get, logs), Err((401, "Unauthorized".into())));
        assert_eq!(authorize(Some(&id(APISERVER_KUBELET_CLIENT, &[])), &get, logs), Ok(()));
        assert_eq!(authorize(Some(&id("admin", &["system:masters"])), &get, logs), Ok(()));
        assert_eq!(
            authorize(Some(&id("bob", &["devs"])), &get, logs),
            Err((403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)".into()))
        );
        assert_eq!(
            authorize(Some(&id("bob", &[])), &http::Method::POST, "/exec/ns/p/c").unwrap_err().1,
            "Forbidden (user=bob, verb=create, resource=nodes, subresource=proxy)"
        );
        assert_eq!(
            authorize(Some(&id("bob", &[])), &get, "/metrics/cadvisor").unwrap_err().1,
            "Forbidden (user=bob, verb=get, resource=nodes, subresource=metrics)"
        );
    }
}
