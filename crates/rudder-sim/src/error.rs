//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A flag-style value that does not parse (`--label`, `--taint`, `--resource`, ...).
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue { what: &'static str, value: String, reason: String },
    /// A configuration that cannot work as a whole (no nodes, duplicate names, ...).
    #[error("invalid simulated node configuration: {0}")]
    Config(String),
    /// A node name that is not one of ours.
    #[error("{0:?} is not a simulated node of this process")]
    UnknownNode(String),
    /// An API request failed.
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// An API request did not answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The simulation was stopped (cancelled or dropped) before what was awaited happened.
    #[error("the simulated nodes were stopped")]
    Stopped,
}

impl SimError {
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Self {
        SimError::InvalidValue { what, value: value.to_owned(), reason: reason.into() }
    }

    pub(crate) fn api(what: impl Into<String>, source: kube::Error) -> Self {
        SimError::Api { what: what.into(), source: Box::new(source) }
    }

    /// The server's message for a failed API request, if it answered.
    pub fn api_message(&self) -> Option<&str> {
        match self {
            SimError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(&s.message),
                _ => None,
            },
            _ => None,
        }
    }

    /// The HTTP status code of a failed API request, if the server answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            SimError::Api { source, .. } => match source.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Runs `fut` with a deadline, mapping its error and the timeout into [`SimError`].
pub(crate) async fn call<T>(
    what: impl FnOnce() -> String,
    timeout: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, SimError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(SimError::api(what(), e)),
        Err(_) => Err(SimError::Timeout(what())),
    }
}
