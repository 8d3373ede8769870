//! API calls with a bound on how long each may take, and an error that names the request
//! (verb, kind, namespace/name). Controllers wrap this in their own error enums.

use std::future::Future;
use std::time::Duration;

/// Which object a request is about (for errors).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub verb: &'static str,
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request was answered with an error.
    #[error("{verb} {kind} {namespace}/{name}: {source}")]
    Api {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The request got no answer in time.
    #[error("{verb} {kind} {namespace}/{name}: no answer within {timeout_ms} ms")]
    Timeout {
        verb: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        timeout_ms: u64,
    },
}

impl RequestError {
    /// The API's answer, if the request was answered with an error status.
    pub fn status(&self) -> Option<&kube::core::Status> {
        match self {
            RequestError::Api { source, .. } => match &**source {
                kube::Error::Api(status) => Some(status),
                _ => None,
            },
            RequestError::Timeout { .. } => None,
        }
    }

    /// Creating in a namespace that is being deleted: retrying cannot help.
    pub fn is_namespace_terminating(&self) -> bool {
        self.status().is_some_and(|s| {
            s.details
                .iter()
                .flat_map(|d| d.causes.iter())
                .any(|c| c.reason == "NamespaceTerminating")
                || s.message.contains("because it is being terminated")
        })
    }
}

/// Runs `request` with `timeout`, naming `target` in the error.
pub async fn call<T>(
    target: Target<'_>,
    timeout: Duration,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, RequestError> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(RequestError::Api {
            verb: target.verb,
            kind: target.kind,
            namespace: target.namespace.to_owned(),
            name: target.name.to_owned(),
            source: Box::new(source),
        }),
        Err(_) => Err(RequestError::Timeout {
            verb: target.verb,
            kind: target.kind,
            namespace: target.namespace.to_owned(),
            name: target.name.to_owned(),
            timeout_ms: timeout.as_millis() as u64,
        }),
    }
}

/// Delete options that only delete the version that was looked at.
pub fn delete_exactly(
    uid: Option<&str>,
    resource_version: Option<&str>,
) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: uid.map(str::to_owned),
            resource_version: resource_version.map(str::to_owned),
        }),
        ..kube::api::DeleteParams::default()
    }
}
