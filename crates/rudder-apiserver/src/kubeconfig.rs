//! Admin kubeconfig files for kubectl and client libraries.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::pki::CertPair;

/// A kubeconfig with one cluster, one user (a client certificate) and one context, all
/// named `context`.
pub fn render(context: &str, server_url: &str, ca_pem: &str, user: &CertPair) -> String {
    render_user(context, &format!("{context}-admin"), server_url, ca_pem, user)
}

/// A kubeconfig with one cluster and context named `context` and one user `user_name`.
pub fn render_user(
    context: &str,
    user_name: &str,
    server_url: &str,
    ca_pem: &str,
    user: &CertPair,
) -> String {
    let b64 = |s: &str| STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {context}
  cluster:
    server: {server_url}
    certificate-authority-data: {ca}
users:
- name: {user_name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {context}
  context:
    cluster: {context}
    user: {user_name}
current-context: {context}
preferences: {{}}
",
        ca = b64(ca_pem),
        cert = b64(&user.cert_pem),
        key = b64(&user.key_pem),
    )
}
