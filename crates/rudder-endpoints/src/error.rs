//! What a reconcile of either controller can fail with. Every failure is retried with the
//! queue's back-off; none is fatal to the controller.

/// One failed reconcile step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed or got no answer in time.
    #[error(transparent)]
    Request(#[from] rudder_client::api::RequestError),
    /// The informer cache does not show a write this controller already made; the reconcile
    /// is retried once the watch caught up (upstream's stale-informer-cache error).
    #[error("{kind} informer cache is out of date for Service {namespace}/{name}")]
    StaleCache { kind: &'static str, namespace: String, name: String },
    /// Pods were left out because the Node they are bound to is not known (yet).
    #[error(
        "skipping Pod {namespace}/{pod} for Service {namespace}/{service}: Node {node} not found"
    )]
    NodeNotFound { namespace: String, pod: String, service: String, node: String },
    /// Several steps failed (the first is shown).
    #[error("{} errors, first: {}", .0.len(), .0.first().map(ToString::to_string).unwrap_or_default())]
    Several(Vec<Error>),
}

impl Error {
    /// Combines the errors of one reconcile: none, one, or several.
    pub(crate) fn aggregate(mut errors: Vec<Error>) -> Result<(), Error> {
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

    pub fn is_already_exists(&self) -> bool {
        self.status().is_some_and(|s| s.is_already_exists() || s.code == 409)
    }

    /// Creating in a namespace that is being deleted: retrying cannot help.
    pub fn is_namespace_terminating(&self) -> bool {
        matches!(self, Error::Request(e) if e.is_namespace_terminating())
    }
}
