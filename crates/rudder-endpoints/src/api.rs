//! API calls with a bound on how long each may take, mapped to this crate's errors.

use std::future::Future;
use std::time::Duration;

use crate::Error;

/// Bound on one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

pub use rudder_client::api::{Target, delete_exactly};

/// Runs `request` with [`REQUEST_TIMEOUT`].
pub async fn call<T>(
    target: Target<'_>,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    Ok(rudder_client::api::call(target, REQUEST_TIMEOUT, request).await?)
}
