//! The `Storage` trait: a narrow, etcd-v3-shaped MVCC key-value interface.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::Result;
use crate::types::{Deleted, Event, KeyValue, ListOptions, ListPage, Revision};

/// Every backend implements this; everything above the store writes through it.
///
/// Semantics shared by all backends (checked by the conformance suite):
/// - every successful create, update and delete commits exactly one new revision, one
///   greater than the previous one, and returns it;
/// - an acknowledged write is durable (for persistent backends);
/// - a list reads one consistent snapshot; all pages of a paginated list read the same
///   revision, until that revision is compacted;
/// - a watch delivers every matching event with revision >= `from_revision`, in order,
///   exactly once, with the previous value for updates and deletes.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The backend's name, e.g. "sqlite".
    fn backend(&self) -> &'static str;

    /// The newest value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix` in key order, at the newest revision or at
    /// `options.revision`, one page at a time.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage>;

    /// How many keys start with `prefix` now.
    async fn count(&self, prefix: &str) -> Result<i64>;

    /// Creates `key`; fails with `KeyExists` if it is present.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of `key` if its mod revision is `expected_mod_revision`; fails
    /// with `Conflict` (carrying the current value) otherwise, `NotFound` if absent.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes `key`, if `expected_mod_revision` is `None` or matches.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Events for keys under `prefix` from `from_revision` (inclusive) on: first the
    /// history, then live events. `from_revision` 0 means "only what happens from now".
    /// Fails with `Compacted` if that history is gone.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream>;

    /// Forgets history older than `revision`: afterwards lists at revisions below it and
    /// watches from revisions at or below it fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision of the newest committed write.
    async fn current_revision(&self) -> Result<Revision>;

    /// The oldest revision that can still be listed (the last compaction point).
    async fn compacted_revision(&self) -> Result<Revision>;
}

/// A stream of watch events. It ends after yielding an error (compaction, a watcher that
/// fell too far behind, the store going away); dropping it cancels the watch.
pub struct WatchStream {
    inner: Pin<Box<dyn Stream<Item = Result<Event>> + Send>>,
}

impl WatchStream {
    pub fn new(stream: impl Stream<Item = Result<Event>> + Send + 'static) -> Self {
        WatchStream { inner: Box::pin(stream) }
    }

    /// The next event; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        self.inner.next().await
    }
}

impl Stream for WatchStream {
    type Item = Result<Event>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatchStream")
    }
}
