//! The API server's client for kubelets (upstream's `KubeletClientConfig`): HTTPS with the
//! API server's own client certificate (`pki::KUBELET_CLIENT_USER`), without verifying the
//! kubelet's serving certificate (upstream's behaviour without
//! `--kubelet-certificate-authority`: kubelets serve self-signed certificates), HTTP/1.1,
//! a bound on connecting and on waiting for the response head, none on the body (follow
//! streams for as long as both sides keep the connection).

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;

use crate::object;
use crate::pki::CertPair;
use crate::status::ApiError;

/// Bound on TCP connect plus TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on waiting for the kubelet's response head.
pub const RESPONSE_HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// The kubelet's port when the node does not say (upstream's default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// How much of an error answer is read to report it.
const MAX_ERROR_BODY_BYTES: usize = 50_000;

#[derive(Clone)]
pub struct KubeletClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

/// Accepts any server certificate; still checks the handshake signatures.
#[derive(Debug)]
struct AnyServerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where a node's kubelet listens: the first InternalIP, else ExternalIP, else Hostname of
/// `status.addresses`, and `status.daemonEndpoints.kubeletEndpoint.Port` (default 10250).
pub fn kubelet_address(node: &Value) -> Option<(String, u16)> {
    let addresses = object::path(node, "status.addresses").and_then(Value::as_array)?;
    let host = ["InternalIP", "ExternalIP", "Hostname"].iter().find_map(|wanted| {
        addresses
            .iter()
            .find(|a| a["type"].as_str() == Some(wanted))
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
    })?;
    let port = object::path(node, "status.daemonEndpoints.kubeletEndpoint.Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .map_or(DEFAULT_KUBELET_PORT, |p| p as u16);
    Some((host.to_owned(), port))
}

impl KubeletClient {
    pub fn new(client_cert: &CertPair) -> Result<Self, crate::tls::TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = CertificateDer::pem_slice_iter(client_cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(client_cert.key_pem.as_bytes())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCertificate(provider)))
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(KubeletClient { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// GET `path_and_query` from the kubelet at `host:port`. A 2xx answer is returned with
    /// its body still streaming; anything else becomes an [`ApiError`] with the kubelet's
    /// code and message.
    pub async fn get(
        &self,
        host: &str,
        port: u16,
        path_and_query: &str,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let request = hyper::Request::get(path_and_query)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
        let response = self.send(host, port, request).await?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(error_from(response).await)
    }

    /// Sends `request` (its path and query, method and headers; Host and User-Agent are set
    /// here) to the kubelet at `host:port` on a connection of its own that may be upgraded
    /// (exec, attach, port-forward): the answer comes back whatever its status.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        mut request: hyper::Request<http_body_util::Empty<bytes::Bytes>>,
    ) -> Result<hyper::Response<Incoming>, ApiError> {
        let path_and_query = request.uri().to_string();
        let unavailable = |what: String| {
            ApiError::new(
                502,
                "BadGateway",
                format!("Get \"https://{}{path_and_query}\": {what}", authority(host, port)),
            )
        };
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((host, port))
                .await
                .map_err(|e| unavailable(format!("dial tcp: {e}")))?;
            let _ = tcp.set_nodelay(true);
            let name = match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(host.to_owned())
                    .map_err(|e| unavailable(format!("invalid host: {e}")))?,
            };
            self.tls
                .connect(name, tcp)
                .await
                .map_err(|e| unavailable(format!("remote error: tls: {e}")))
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unavailable("dial tcp: i/o timeout".into()))??;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended with an error");
            }
        });
        let headers = request.headers_mut();
        if let Ok(v) = hyper::header::HeaderValue::from_str(&authority(host, port)) {
            headers.insert(hyper::header::HOST, v);
        }
        headers.insert(
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static("rudder-apiserver"),
        );
        tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| unavailable("timeout awaiting response headers".into()))?
            .map_err(|e| unavailable(e.to_string()))
    }
}

fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// A kubelet's error answer as an API error: its code, and its message (a `Status`'s
/// message, or the text it sent).
pub async fn error_from(response: hyper::Response<Incoming>) -> ApiError {
    use http_body_util::BodyExt;
    let code = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY_BYTES);
    let body = tokio::time::timeout(RESPONSE_HEAD_TIMEOUT, limited.collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or(text);
    let reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    let message = if message.is_empty() {
        format!("the kubelet answered {code} without a message")
    } else {
        message
    };
    ApiError::new(code, reason, message)
}
