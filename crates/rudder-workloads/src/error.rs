//! What a reconcile can fail with. Every failure is retried with the queue's back-off; none
//! is fatal to a controller.

/// One failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed or got no answer in time.
    #[error(transparent)]
    Request(#[from] rudder_client::api::RequestError),
    /// An object this controller must act on is not usable as it is (caught by validation
    /// upstream; reported instead of guessed around).
    #[error("{kind} {namespace}/{name}: {message}")]
    Invalid { kind: &'static str, namespace: String, name: String, message: String },
    /// Adoption is refused: the owner changed or is going away (upstream's RecheckDeletionTimestamp).
    #[error("{kind} {namespace}/{name} cannot adopt: {reason}")]
    CannotAdopt { kind: &'static str, namespace: String, name: String, reason: String },
    /// Several steps failed (the first is shown).
    #[error("{} errors, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Several(Vec<Error>),
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

    /// The API's answer, if the request was answered with an error status.
    pub fn status(&self) -> Option<&kube::core::Status> {
        match self {
            Error::Request(e) => e.status(),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status().is_some_and(|s| s.is_not_found())
    }

    pub fn is_conflict(&self) -> bool {
        self.status().is_some_and(|s| s.is_conflict())
    }

    pub fn is_already_exists(&self) -> bool {
        self.status().is_some_and(|s| s.is_already_exists())
    }

    /// Creating in a namespace that is being deleted: retrying cannot help.
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, Error::Request(e) if e.is_namespace_terminating())
    }

    /// What upstream shows of an error in events and conditions: the API's message when
    /// there is one (`pods "x" is forbidden: ...`), else the whole error.
    pub fn message(&self) -> String {
        match self.status() {
            Some(s) if !s.message.is_empty() => s.message.clone(),
            _ => self.to_string(),
        }
    }
}
