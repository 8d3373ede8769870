//! The store's errors. The API server maps each variant onto a Kubernetes `Status`
//! (`KeyExists` -> 409 AlreadyExists, `NotFound` -> 404, `Conflict` -> 409 Conflict,
//! `Compacted` -> 410 Gone, `ValueTooLarge` -> 413/422, `Unavailable` -> 503).

use crate::types::{KeyValue, Revision};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {key:?} already exists")]
    KeyExists { key: String },

    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// A compare-and-swap precondition failed. `current` is the value the store holds now
    /// (None if the key is absent), so callers can retry against it.
    #[error("conflict on key {key:?}: expected mod revision {expected}, found {}", current.as_ref().map_or(0, |kv| kv.mod_revision))]
    Conflict { key: String, expected: Revision, current: Option<Box<KeyValue>> },

    /// The requested revision is older than the oldest revision the store still keeps.
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted { requested: Revision, compacted: Revision },

    /// The requested revision is newer than anything the store has written.
    #[error("revision {requested} is in the future (current revision: {current})")]
    FutureRevision { requested: Revision, current: Revision },

    #[error(
        "value for key {key:?} is {size_bytes} bytes, larger than the limit of {limit_bytes} bytes"
    )]
    ValueTooLarge { key: String, size_bytes: usize, limit_bytes: usize },

    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    #[error("invalid continue token: {reason}")]
    InvalidContinue { reason: String },

    /// A watcher did not keep up with the writers and was ended so that it does not slow
    /// them down; the client should re-list and watch again.
    #[error("watcher fell behind by more than {buffered_batches} buffered batches and was ended")]
    WatchLagged { buffered_batches: usize },

    #[error("store unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable { message: message.into(), source: Some(source.into()) }
    }

    pub(crate) fn closed() -> Self {
        StoreError::Unavailable { message: "the store is shut down".into(), source: None }
    }

    /// The remote store ended an operation (for network backends).
    pub fn closed_by_peer(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), source: None }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::unavailable("sqlite", e)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
