//! The crate's error type and the bound every remote call runs under.

use std::future::Future;
use std::time::Duration;

/// Bound on one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Api {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{0}: timed out")]
    Timeout(&'static str),
    /// Not done yet for a reason that goes away by itself; retried with back-off.
    #[error("{0}")]
    Retry(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// The HTTP status of an API error answer, if this is one.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            Error::Api { source: kube::Error::Api(status), .. } => Some(status.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status_code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        self.status_code() == Some(409)
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api { source: kube::Error::Api(s), .. } if s.reason == "AlreadyExists")
    }
}

/// Runs one API call under [`REQUEST_TIMEOUT`], naming it in the error.
pub async fn call<T>(
    what: &'static str,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, Error> {
    match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(source)) => Err(Error::Api { what, source }),
        Err(_) => Err(Error::Timeout(what)),
    }
}
