//! Values the store hands out: key-values with their revisions, watch events, list pages.

use bytes::Bytes;

use crate::error::{Result, StoreError};

/// The store's global revision: it grows by exactly one per committed write and is the
/// `resourceVersion` that Kubernetes clients see.
pub type Revision = i64;

/// Largest value the store accepts (etcd's default request limit; upstream's object limit).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// Longest key the store accepts.
pub const MAX_KEY_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Created,
    Updated,
    Deleted,
}

/// One committed write, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_type: EventType,
    /// For `Created`/`Updated`: the new value. For `Deleted`: the key with an empty value,
    /// `create_revision` 0 and `mod_revision` the revision of the delete.
    pub kv: KeyValue,
    /// The value before this write (`Updated` and `Deleted`; `None` for `Created`).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// What a successful delete returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the delete itself.
    pub revision: Revision,
    /// The value that was deleted.
    pub prev: KeyValue,
}

/// Options of [`crate::Storage::list`].
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Read at this revision; `None` reads the newest state. Ignored when a continue token
    /// is given (the token carries the revision of the first page).
    pub revision: Option<Revision>,
    /// At most this many items; `None` or 0 means no limit.
    pub limit: Option<usize>,
    /// The token a previous page returned.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The revision the page was read at; every page of one list has the same revision.
    pub revision: Revision,
    /// Present when more items follow.
    pub continue_token: Option<String>,
    /// How many items follow this page (present when `continue_token` is).
    pub remaining_item_count: Option<i64>,
}

/// Checks a key: non-empty, bounded, printable ASCII (so that byte order is string order
/// and prefix ranges are simple in every backend).
pub fn validate_key(key: &str) -> Result<()> {
    let reason = if key.is_empty() {
        "must not be empty"
    } else if key.len() > MAX_KEY_BYTES {
        "longer than 4096 bytes"
    } else if !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
        "must be printable ASCII without spaces"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey { key: key.to_owned(), reason })
}

/// Checks a prefix for list, count and watch: like a key, but may be empty (everything).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() { Ok(()) } else { validate_key(prefix) }
}

pub fn validate_value(key: &str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            key: key.to_owned(),
            size_bytes: value.len(),
            limit_bytes: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

/// The smallest string greater than every key with this prefix, or `None` for the empty
/// prefix (no upper bound). Keys are printable ASCII, so bumping the last byte stays ASCII.
pub fn prefix_end(prefix: &str) -> Option<String> {
    let mut bytes = prefix.as_bytes().to_vec();
    let last = bytes.pop()?;
    bytes.push(last + 1);
    Some(String::from_utf8(bytes).expect("printable ASCII stays ASCII"))
}

pub(crate) fn key_in_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

/// Builds the watch event for one log entry: `created` is false for a delete.
pub(crate) fn event_for(
    key: String,
    revision: Revision,
    live: Option<(Bytes, Revision)>,
    prev: Option<KeyValue>,
) -> Event {
    match live {
        Some((value, create_revision)) => Event {
            event_type: if prev.is_some() { EventType::Updated } else { EventType::Created },
            kv: KeyValue { key, value, create_revision, mod_revision: revision },
            prev,
        },
        None => Event {
            event_type: EventType::Deleted,
            kv: KeyValue { key, value: Bytes::new(), create_revision: 0, mod_revision: revision },
            prev,
        },
    }
}
