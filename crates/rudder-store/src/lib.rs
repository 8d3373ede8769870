//! rudder's store: an MVCC key-value store with one global revision, compare-and-swap
//! writes, paginated snapshot lists and watch, shaped after etcd v3.
//!
//! Backends: [`SqliteStorage`] (the embedded default), [`MemoryStorage`] (tests), and etcd
//! in the `rudder-store-etcd` crate. All pass the same conformance suite
//! (`conformance`, behind the feature of the same name).

pub mod continue_token;
mod error;
mod memory;
mod sqlite;
mod storage;
mod types;
mod watch_hub;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::{Result, StoreError};
pub use memory::MemoryStorage;
pub use sqlite::{SqliteConfig, SqliteStorage};
pub use storage::{Storage, WatchStream};
pub use types::{
    Deleted, Event, EventType, KeyValue, ListOptions, ListPage, MAX_KEY_BYTES, MAX_VALUE_BYTES,
    Revision, prefix_end, validate_key, validate_prefix, validate_value,
};
pub use watch_hub::DEFAULT_WATCH_BUFFER_BATCHES;
