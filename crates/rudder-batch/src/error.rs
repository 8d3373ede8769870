//! What a reconcile can fail with. Every failure is retried with the queue's back-off.

/// One failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request (or a shared pod/claim helper) failed.
    #[error(transparent)]
    Api(#[from] rudder_workloads::Error),
    /// Some pods could not be handled (the first error is shown).
    #[error("{count} pod operations failed, first: {first}")]
    Pods { count: usize, first: Box<Error> },
    /// The object cannot be acted on as it is.
    #[error("{kind} {namespace}/{name}: {message}")]
    Invalid { kind: &'static str, namespace: String, name: String, message: String },
}

impl From<rudder_client::api::RequestError> for Error {
    fn from(e: rudder_client::api::RequestError) -> Self {
        Error::Api(rudder_workloads::Error::Request(e))
    }
}

impl Error {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Api(e) if e.is_not_found())
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api(e) if e.is_already_exists())
    }

    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, Error::Api(e) if e.is_namespace_terminating())
    }

    /// The API's message when there is one, else the whole error.
    pub fn message(&self) -> String {
        match self {
            Error::Api(e) => e.message(),
            other => other.to_string(),
        }
    }

    /// The first of several errors, or `None`.
    pub fn first_of(mut errors: Vec<Error>) -> Option<Error> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            count => Some(Error::Pods { count, first: Box::new(errors.swap_remove(0)) }),
        }
    }
}
