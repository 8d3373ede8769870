//! API calls with a bound on how long each may take, mapped to this crate's errors.

use std::future::Future;
use std::time::Duration;

use crate::Error;

/// Bound on one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which object a request is about (for errors).
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub verb: &'static str,
    pub kind: &'static str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Runs `request` with [`REQUEST_TIMEOUT`].
pub async fn call<T>(
    target: Target<'_>,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Api {
            verb: target.verb,
            kind: target.kind,
            namespace: target.namespace.to_owned(),
            name: target.name.to_owned(),
            source: Box::new(source),
        }),
        Err(_) => Err(Error::Timeout {
            verb: target.verb,
            kind: target.kind,
            namespace: target.namespace.to_owned(),
            name: target.name.to_owned(),
            timeout_ms: REQUEST_TIMEOUT.as_millis() as u64,
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
