//! What a reconcile can fail with. Every failure is retried with the queue's back-off.

/// One failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed or got no answer in time (through the shared workload helpers).
    #[error(transparent)]
    Api(#[from] rudder_workloads::Error),
    /// The StatefulSet (or one of its revisions) is not usable as it is.
    #[error("StatefulSet {namespace}/{name}: {message}")]
    Invalid { namespace: String, name: String, message: String },
    /// Progress waits on something that is not watched (a claim being deleted).
    #[error("StatefulSet {namespace}/{name}: {message}")]
    Waiting { namespace: String, name: String, message: String },
    /// Several steps failed (the first is shown).
    #[error("{} errors, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Several(Vec<Error>),
}

impl From<rudder_client::api::RequestError> for Error {
    fn from(e: rudder_client::api::RequestError) -> Self {
        Error::Api(e.into())
    }
}

impl Error {
    /// Combines the errors of one step: none, one, or several.
    pub fn aggregate(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Several(errors)),
        }
    }

    fn api(&self) -> Option<&rudder_workloads::Error> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(|e| e.is_not_found())
    }

    pub fn is_conflict(&self) -> bool {
        self.api().is_some_and(|e| e.is_conflict())
    }

    pub fn is_already_exists(&self) -> bool {
        self.api().is_some_and(|e| e.is_already_exists())
    }

    pub fn is_namespace_terminating(&self) -> bool {
        self.api().is_some_and(|e| e.is_namespace_terminating())
    }

    /// What events show of an error: the API's message when there is one.
    pub fn message(&self) -> String {
        match self.api() {
            Some(e) => e.message(),
            None => self.to_string(),
        }
    }
}
