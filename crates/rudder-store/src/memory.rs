//! The in-memory backend: the same MVCC model as the SQLite backend (an append-only log of
//! versions plus an index of live keys), held in maps. For fast tests of higher layers.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::continue_token;
use crate::error::{Result, StoreError};
use crate::storage::{Storage, WatchStream};
use crate::types::{
    Deleted, Event, KeyValue, ListOptions, ListPage, Revision, event_for, prefix_end, validate_key,
    validate_prefix, validate_value,
};
use crate::watch_hub::{DEFAULT_WATCH_BUFFER_BATCHES, EventLog, WatchHub};

struct Row {
    key: String,
    /// `None` for a delete (a tombstone).
    value: Option<Bytes>,
    create_revision: Revision,
    /// Mod revision of the live version this write replaced, 0 if none.
    prev_revision: Revision,
}

#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    log: BTreeMap<Revision, Row>,
    /// Every retained log revision per key, ascending.
    versions: BTreeMap<String, Vec<Revision>>,
    /// Live keys and their mod revision.
    current: BTreeMap<String, Revision>,
}

impl State {
    fn kv(&self, revision: Revision) -> Option<KeyValue> {
        let row = self.log.get(&revision)?;
        Some(KeyValue {
            key: row.key.clone(),
            value: row.value.clone()?,
            create_revision: row.create_revision,
            mod_revision: revision,
        })
    }

    fn append(&mut self, row: Row) -> Event {
        self.revision += 1;
        let revision = self.revision;
        let prev = (row.prev_revision > 0).then(|| self.kv(row.prev_revision)).flatten();
        match row.value {
            Some(_) => self.current.insert(row.key.clone(), revision),
            None => self.current.remove(&row.key),
        };
        self.versions.entry(row.key.clone()).or_default().push(revision);
        let event = event_for(
            row.key.clone(),
            revision,
            row.value.clone().map(|v| (v, row.create_revision)),
            prev,
        );
        self.log.insert(revision, row);
        event
    }

    fn remove_row(&mut self, revision: Revision) {
        if let Some(row) = self.log.remove(&revision)
            && let Some(versions) = self.versions.get_mut(&row.key)
        {
            versions.retain(|r| *r != revision);
            if versions.is_empty() {
                self.versions.remove(&row.key);
            }
        }
    }

    /// The live version of `key` at `revision`, if any.
    fn visible_at(&self, key: &str, revision: Revision) -> Option<KeyValue> {
        let versions = self.versions.get(key)?;
        let index = versions.partition_point(|r| *r <= revision);
        let mod_revision = *versions.get(index.checked_sub(1)?)?;
        self.kv(mod_revision)
    }
}

/// The in-memory backend. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryStorage {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    hub: Arc<WatchHub>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    pub fn new() -> Self {
        MemoryStorage {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                hub: WatchHub::new(0, DEFAULT_WATCH_BUFFER_BATCHES),
            }),
        }
    }

    /// Runs one write under the lock and publishes its event before releasing it, so that
    /// watchers see events in revision order.
    fn write<T>(&self, f: impl FnOnce(&mut State) -> Result<(T, Event)>) -> Result<T> {
        let mut state = self.inner.state.lock().expect("memory store lock");
        let (out, event) = f(&mut state)?;
        self.inner.hub.publish(std::slice::from_ref(&event));
        Ok(out)
    }
}

#[async_trait]
impl EventLog for Inner {
    async fn read_events(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let state = self.state.lock().expect("memory store lock");
        if from <= state.compacted {
            return Err(StoreError::Compacted { requested: from, compacted: state.compacted });
        }
        Ok(state
            .log
            .range(from..=to)
            .filter(|(_, row)| row.key.starts_with(prefix))
            .take(limit)
            .map(|(revision, row)| {
                let prev = (row.prev_revision > 0).then(|| state.kv(row.prev_revision)).flatten();
                let live = row.value.clone().map(|v| (v, row.create_revision));
                event_for(row.key.clone(), *revision, live, prev)
            })
            .collect())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.state.lock().expect("memory store lock").compacted)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let state = self.inner.state.lock().expect("memory store lock");
        Ok(state.current.get(key).and_then(|r| state.kv(*r)))
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let state = self.inner.state.lock().expect("memory store lock");
        let (revision, start) = match &options.continue_token {
            Some(token) => {
                let c = continue_token::decode(prefix, token)?;
                (c.revision, c.start)
            }
            None => {
                (options.revision.filter(|r| *r > 0).unwrap_or(state.revision), prefix.to_owned())
            }
        };
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision < state.compacted {
            return Err(StoreError::Compacted { requested: revision, compacted: state.compacted });
        }
        let end = prefix_end(prefix);
        let upper = end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        let range = (Bound::Included(start.as_str()), upper);
        let mut matching: Box<dyn Iterator<Item = KeyValue>> = if revision == state.revision {
            Box::new(state.current.range::<str, _>(range).filter_map(|(_, r)| state.kv(*r)))
        } else {
            Box::new(
                state
                    .versions
                    .range::<str, _>(range)
                    .filter_map(|(k, _)| state.visible_at(k, revision)),
            )
        };
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let items: Vec<KeyValue> = matching.by_ref().take(limit).collect();
        let remaining = matching.count() as i64;
        let continue_token = (remaining > 0).then(|| {
            continue_token::encode(prefix, &items.last().expect("limit >= 1").key, revision)
        });
        Ok(ListPage {
            items,
            revision,
            remaining_item_count: continue_token.as_ref().map(|_| remaining),
            continue_token,
        })
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        validate_prefix(prefix)?;
        let state = self.inner.state.lock().expect("memory store lock");
        Ok(state.current.keys().filter(|k| k.starts_with(prefix)).count() as i64)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        self.write(|state| {
            if state.current.contains_key(key) {
                return Err(StoreError::KeyExists { key: key.to_owned() });
            }
            let create_revision = state.revision + 1;
            let row =
                Row { key: key.to_owned(), value: Some(value), create_revision, prev_revision: 0 };
            let event = state.append(row);
            Ok((event.kv.clone(), event))
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        self.write(|state| {
            let current = state.current.get(key).and_then(|r| state.kv(*r));
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.to_owned() });
            };
            if current.mod_revision != expected_mod_revision {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected: expected_mod_revision,
                    current: Some(Box::new(current)),
                });
            }
            let row = Row {
                key: key.to_owned(),
                value: Some(value),
                create_revision: current.create_revision,
                prev_revision: current.mod_revision,
            };
            let event = state.append(row);
            Ok((event.kv.clone(), event))
        })
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate_key(key)?;
        self.write(|state| {
            let current = state.current.get(key).and_then(|r| state.kv(*r));
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.to_owned() });
            };
            if let Some(expected) = expected_mod_revision
                && expected != current.mod_revision
            {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: Some(Box::new(current)),
                });
            }
            let row = Row {
                key: key.to_owned(),
                value: None,
                create_revision: 0,
                prev_revision: current.mod_revision,
            };
            let event = state.append(row);
            Ok((Deleted { revision: event.revision(), prev: current }, event))
        })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let log: Arc<dyn EventLog> = self.inner.clone();
        self.inner.hub.watch(prefix, from_revision.max(0), log).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.inner.state.lock().expect("memory store lock");
        if revision > state.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: state.revision,
            });
        }
        if revision <= state.compacted {
            return Err(StoreError::Compacted { requested: revision, compacted: state.compacted });
        }
        // Every superseded version is the `prev_revision` of exactly one later write, and a
        // tombstone is never needed once compacted: drop both for writes up to `revision`.
        let writes: Vec<(Revision, Revision, bool)> = state
            .log
            .range(state.compacted + 1..=revision)
            .map(|(r, row)| (*r, row.prev_revision, row.value.is_none()))
            .collect();
        for (r, prev_revision, is_delete) in writes {
            if prev_revision > 0 {
                state.remove_row(prev_revision);
            }
            if is_delete {
                state.remove_row(r);
            }
        }
        state.compacted = revision;
        Ok(())
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.inner.state.lock().expect("memory store lock").revision)
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.state.lock().expect("memory store lock").compacted)
    }
}
