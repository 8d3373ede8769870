//! Talking to one OCI distribution registry for one repository, through `oci-client`:
//! manifests (digest-verified, size-bounded), small blobs into memory, layer blobs into files
//! (sha256 verified as they stream, resumed with a range request after a transient failure),
//! every request under a timeout and retried with capped exponential back-off.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use tokio::io::AsyncWriteExt;

use crate::credentials::Auth;
use crate::digest::{Digest, Hasher};
use crate::manifest::{Descriptor, MAX_DOCUMENT_BYTES};
use crate::progress::{Progress, ProgressEvent};
use crate::reference::ImageRef;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: authentication failed (unauthorized) for {repository}")]
    Unauthorized { registry: String, repository: String },
    #[error("{what} not found in {registry}")]
    NotFound { registry: String, what: String },
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("{what}: no answer within {timeout_ms} ms")]
    Timeout { what: String, timeout_ms: u64 },
    #[error("{what} is larger than {limit_bytes} bytes")]
    TooLarge { what: String, limit_bytes: u64 },
    #[error("{what}: {message} (after {attempts} attempts)")]
    Transient { what: String, message: String, attempts: u32 },
    #[error("{what}: {message}")]
    Protocol { what: String, message: String },
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Worth another attempt (network trouble, 5xx, 429, timeouts).
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transient { .. } | RegistryError::Timeout { .. })
    }
}

/// Capped exponential back-off: attempt `n` (from 1) waits `initial * 2^(n-1)`, at most
/// `max`. Deterministic (no jitter): one node rarely hammers one registry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 4, initial_backoff_ms: 250, max_backoff_ms: 5_000 }
    }
}

impl RetryPolicy {
    pub fn backoff_ms(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt.saturating_sub(1)).unwrap_or(u64::MAX);
        self.initial_backoff_ms.saturating_mul(factor).min(self.max_backoff_ms)
    }
}

/// Network settings of pulls.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Registries (`host:port`) reached over plain HTTP; every other one over HTTPS.
    pub insecure_registries: Vec<String>,
    pub connect_timeout_ms: u64,
    /// Bound on one manifest or small-blob request, and on the silence between two reads of
    /// a layer download.
    pub request_timeout_ms: u64,
    pub retry: RetryPolicy,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_registries: Vec::new(),
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            retry: RetryPolicy::default(),
        }
    }
}

/// oci-client's reqwest has no built-in crypto provider: use ring's, once per process.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Fails only if another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) struct Registry {
    client: oci_client::Client,
    image: ImageRef,
    auth: oci_client::secrets::RegistryAuth,
    options: Arc<RegistryOptions>,
}

impl Registry {
    pub fn new(
        options: Arc<RegistryOptions>,
        image: &ImageRef,
        auth: Option<&Auth>,
    ) -> Result<Self, RegistryError> {
        install_crypto_provider();
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
            connect_timeout: Some(Duration::from_millis(options.connect_timeout_ms)),
            read_timeout: Some(Duration::from_millis(options.request_timeout_ms)),
            platform_resolver: None,
            user_agent: concat!("rudder/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| RegistryError::Protocol {
            what: "creating the registry client".into(),
            message: e.to_string(),
        })?;
        let auth = auth.map_or(oci_client::secrets::RegistryAuth::Anonymous, Auth::to_oci);
        Ok(Registry { client, image: image.clone(), auth, options })
    }

    fn reference(&self, digest: Option<&Digest>) -> oci_client::Reference {
        match digest {
            Some(d) => self.image.to_oci().clone_with_digest(d.to_string()),
            None => self.image.to_oci(),
        }
    }

    /// Runs `op` under the request timeout, retrying transient failures.
    async fn retrying<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let timeout_ms = self.options.request_timeout_ms;
        let policy = self.options.retry;
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout(Duration::from_millis(timeout_ms), op()).await {
                Ok(r) => r,
                Err(_) => Err(RegistryError::Timeout { what: what.to_owned(), timeout_ms }),
            };
            match result {
                Err(e) if e.is_transient() && attempt < policy.attempts.max(1) => {
                    tracing::debug!(what, attempt, error = %e, "retrying");
                    tokio::time::sleep(Duration::from_millis(policy.backoff_ms(attempt))).await;
                    attempt += 1;
                }
                Err(RegistryError::Transient { what, message, .. }) => {
                    return Err(RegistryError::Transient { what, message, attempts: attempt });
                }
                other => return other,
            }
        }
    }

    /// The manifest (or index) the reference names, or `digest` in the same repository;
    /// its bytes and verified digest.
    pub async fn manifest(
        &self,
        digest: Option<&Digest>,
    ) -> Result<(bytes::Bytes, Digest), RegistryError> {
        let reference = self.reference(digest);
        let what = format!("manifest {}", reference.whole());
        let accepted = [
            crate::manifest::DOCKER_MANIFEST,
            crate::manifest::DOCKER_MANIFEST_LIST,
            crate::manifest::OCI_MANIFEST,
            crate::manifest::OCI_INDEX,
        ];
        let (r, w, accepted) = (&reference, &what, &accepted);
        let (body, _) = self
            .retrying(&what, move || async move {
                self.client
                    .pull_manifest_raw(r, &self.auth, accepted)
                    .await
                    .map_err(|e| self.map_error(w, e))
            })
            .await?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(RegistryError::TooLarge { what, limit_bytes: MAX_DOCUMENT_BYTES as u64 });
        }
        // oci-client checked the body against the Docker-Content-Digest header and the
        // reference's digest; we compute ours, which is what names the content here.
        let actual = Digest::of(&body);
        if let Some(expected) = digest.or(self.image.digest.as_ref())
            && &actual != expected
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok((body, actual))
    }

    /// A small blob (an image config), verified, at most `limit_bytes`.
    pub async fn small_blob(
        &self,
        desc: &Descriptor,
        limit_bytes: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {}", desc.digest);
        if desc.size < 0 || desc.size as u64 > limit_bytes {
            return Err(RegistryError::TooLarge { what, limit_bytes });
        }
        let expected = Digest::parse(&desc.digest)
            .map_err(|e| RegistryError::Protocol { what: what.clone(), message: e.to_string() })?;
        let w = &what;
        let bytes = self
            .retrying(&what, move || async move {
                let mut stream = self
                    .client
                    .pull_blob_stream(&self.reference(None), &oci_descriptor(desc))
                    .await
                    .map_err(|e| self.map_error(w, e))?;
                let mut out = Vec::new();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| self.map_io_error(w, e))?;
                    if out.len() + chunk.len() > limit_bytes as usize {
                        return Err(RegistryError::TooLarge { what: w.clone(), limit_bytes });
                    }
                    out.extend_from_slice(&chunk);
                }
                Ok(out)
            })
            .await?;
        Digest::of(&bytes).verify(&expected, &what).map_err(|e| mismatch(&what, e))?;
        Ok(bytes)
    }

    /// Downloads a layer blob into `path` (created or resumed), verifying its digest; a
    /// transient failure resumes from the bytes already on disk with a range request.
    pub async fn blob_to_file(
        &self,
        desc: &Descriptor,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<(), RegistryError> {
        let what = format!("layer {}", desc.digest);
        let expected = Digest::parse(&desc.digest)
            .map_err(|e| RegistryError::Protocol { what: what.clone(), message: e.to_string() })?;
        let size_bytes = desc.size.max(0) as u64;
        let io_err = |source| RegistryError::Io { path: path.display().to_string(), source };
        let mut file = tokio::fs::File::create(path).await.map_err(io_err)?;
        let mut hasher = Hasher::default();
        let mut done_bytes = 0u64;
        let policy = self.options.retry;
        let idle_ms = self.options.request_timeout_ms;
        let mut attempt = 1;
        loop {
            progress.on_event(&ProgressEvent::LayerStarted { digest: &desc.digest, size_bytes });
            let result = self
                .download(desc, &mut file, &mut hasher, &mut done_bytes, progress, idle_ms)
                .await;
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < policy.attempts.max(1) => {
                    let error = e.to_string();
                    progress.on_event(&ProgressEvent::LayerRetry {
                        digest: &desc.digest,
                        attempt,
                        error: &error,
                    });
                    tokio::time::sleep(Duration::from_millis(policy.backoff_ms(attempt))).await;
                    attempt += 1;
                }
                Err(RegistryError::Transient { what, message, .. }) => {
                    return Err(RegistryError::Transient { what, message, attempts: attempt });
                }
                Err(e) => return Err(e),
            }
        }
        file.flush().await.map_err(io_err)?;
        file.sync_all().await.map_err(io_err)?;
        if done_bytes != size_bytes {
            return Err(RegistryError::Protocol {
                what,
                message: format!("got {done_bytes} bytes, the manifest says {size_bytes}"),
            });
        }
        hasher.finish().verify(&expected, &what).map_err(|e| mismatch(&what, e))
    }

    /// One download attempt from `done_bytes` on (a range request when resuming; a full
    /// answer to it restarts the file and the hash).
    async fn download(
        &self,
        desc: &Descriptor,
        file: &mut tokio::fs::File,
        hasher: &mut Hasher,
        done_bytes: &mut u64,
        progress: &dyn Progress,
        idle_ms: u64,
    ) -> Result<(), RegistryError> {
        use oci_client::client::BlobResponse;
        let what = format!("layer {}", desc.digest);
        let io_err = |source| RegistryError::Io { path: what.clone(), source };
        let reference = self.reference(None);
        let request = async {
            if *done_bytes == 0 {
                self.client
                    .pull_blob_stream(&reference, &oci_descriptor(desc))
                    .await
                    .map(|s| (s, true))
            } else {
                match self
                    .client
                    .pull_blob_stream_partial(&reference, &oci_descriptor(desc), *done_bytes, None)
                    .await?
                {
                    BlobResponse::Full(s) => Ok((s, true)),
                    BlobResponse::Partial(s) => Ok((s, false)),
                }
            }
        };
        let (mut stream, full) = tokio::time::timeout(Duration::from_millis(idle_ms), request)
            .await
            .map_err(|_| RegistryError::Timeout { what: what.clone(), timeout_ms: idle_ms })?
            .map_err(|e| self.map_error(&what, e))?;
        if full && *done_bytes > 0 {
            use tokio::io::AsyncSeekExt;
            file.set_len(0).await.map_err(io_err)?;
            file.seek(std::io::SeekFrom::Start(0)).await.map_err(io_err)?;
            *hasher = Hasher::default();
            *done_bytes = 0;
        }
        let size_bytes = desc.size.max(0) as u64;
        loop {
            let next = tokio::time::timeout(Duration::from_millis(idle_ms), stream.next())
                .await
                .map_err(|_| RegistryError::Timeout { what: what.clone(), timeout_ms: idle_ms })?;
            let Some(chunk) = next else { return Ok(()) };
            let chunk = chunk.map_err(|e| self.map_io_error(&what, e))?;
            if *done_bytes + chunk.len() as u64 > size_bytes {
                return Err(RegistryError::TooLarge { what, limit_bytes: size_bytes });
            }
            file.write_all(&chunk).await.map_err(io_err)?;
            hasher.update(&chunk);
            *done_bytes += chunk.len() as u64;
            progress.on_event(&ProgressEvent::LayerBytes {
                digest: &desc.digest,
                done_bytes: *done_bytes,
                size_bytes,
            });
        }
    }

    fn map_io_error(&self, what: &str, e: std::io::Error) -> RegistryError {
        let digest =
            e.get_ref().and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>());
        match digest {
            Some(oci_client::errors::DigestError::VerificationError { expected, actual }) => {
                RegistryError::DigestMismatch {
                    what: what.to_owned(),
                    expected: expected.clone(),
                    actual: actual.clone(),
                }
            }
            _ => RegistryError::Transient {
                what: what.to_owned(),
                message: e.to_string(),
                attempts: 1,
            },
        }
    }

    fn map_error(&self, what: &str, e: OciDistributionError) -> RegistryError {
        let unauthorized = || RegistryError::Unauthorized {
            registry: self.image.registry.clone(),
            repository: self.image.repository.clone(),
        };
        let not_found =
            || RegistryError::NotFound { registry: self.image.registry.clone(), what: what.into() };
        let transient = |message: String| RegistryError::Transient {
            what: what.to_owned(),
            message,
            attempts: 1,
        };
        match e {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    unauthorized()
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    not_found()
                } else if codes.contains(&&OciErrorCode::Toomanyrequests) {
                    transient(envelope.to_string())
                } else {
                    RegistryError::Protocol { what: what.into(), message: envelope.to_string() }
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                401 | 403 => unauthorized(),
                404 => not_found(),
                408 | 429 | 500..=599 => transient(format!("HTTP {code}: {message}")),
                _ => RegistryError::Protocol {
                    what: what.into(),
                    message: format!("HTTP {code}: {message}"),
                },
            },
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => RegistryError::DigestMismatch { what: what.into(), expected, actual },
            OciDistributionError::RequestError(r) => transient(error_chain(&r)),
            OciDistributionError::IoError(io) => self.map_io_error(what, io),
            other => RegistryError::Protocol { what: what.into(), message: other.to_string() },
        }
    }
}

fn mismatch(what: &str, e: crate::digest::DigestError) -> RegistryError {
    match e {
        crate::digest::DigestError::Mismatch { expected, actual, .. } => {
            RegistryError::DigestMismatch { what: what.to_owned(), expected, actual }
        }
        other => RegistryError::Protocol { what: what.to_owned(), message: other.to_string() },
    }
}

/// `reqwest` hides the useful part (connection refused, ...) in its source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn oci_descriptor(d: &Descriptor) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy { attempts: 10, initial_backoff_ms: 100, max_backoff_ms: 1_000 };
        let delays: Vec<u64> = (1..=6).map(|a| p.backoff_ms(a)).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(p.backoff_ms(200), 1_000);
    }
}
