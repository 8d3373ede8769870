//! Parsed records kept in memory while their file is unchanged. The kubelet asks for the
//! sandboxes and containers of a pod on every pass over it, and the runtime answers from
//! its record files; parsing every record of the node for every pass made a batch of 30
//! pod starts spend a sixth of the agent's CPU in JSON. A cached record is reused only
//! while a `stat` of its file shows the same inode, size and modification time, so a
//! record rewritten by anyone (records are replaced by rename, which gives a new inode) is
//! read again.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;

/// More cached records than this and the cache starts over (records of removed containers
/// that nobody asked for again would otherwise stay forever).
const MAX_ENTRIES: usize = 4096;

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Stamp {
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

pub struct RecordCache<T> {
    entries: Mutex<HashMap<PathBuf, (Stamp, Arc<T>)>>,
}

impl<T> Default for RecordCache<T> {
    fn default() -> Self {
        RecordCache { entries: Mutex::default() }
    }
}

impl<T: DeserializeOwned> RecordCache<T> {
    /// The record in `path`; None if the file does not exist.
    pub fn read(&self, path: &Path) -> io::Result<Option<Arc<T>>> {
        let stamp = match fs::metadata(path) {
            Ok(meta) => Stamp::of(&meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(path);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some((cached, value)) = self.lock().get(path)
            && *cached == stamp
        {
            return Ok(Some(value.clone()));
        }
        // Stamped before reading: a file replaced in between is cached under the old
        // stamp, which the next read sees differ, and reads again.
        let Some(value) = crate::layout::read_json::<T>(path)? else {
            self.forget(path);
            return Ok(None);
        };
        let value = Arc::new(value);
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(path.to_owned(), (stamp, value.clone()));
        Ok(Some(value))
    }

    /// Drops what is cached for `path` and under it (a removed record or directory).
    pub fn forget(&self, path: &Path) {
        self.lock().retain(|p, _| !p.starts_with(path));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (Stamp, Arc<T>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What never changes about a record while it exists (a sandbox's labels, the sandbox a
/// container belongs to), by id. Listing one pod's sandboxes or one sandbox's containers
/// passes over everyone else's ids with this instead of a `stat` and a record each: the
/// kubelet lists on every pass over every pod, so that was quadratic in the node's pods.
/// Ids are random and never reused, so an entry can only be stale for an id that is gone,
/// and a listing starts from the ids on disk.
pub struct Facts<V> {
    entries: Mutex<HashMap<String, V>>,
}

impl<V> Default for Facts<V> {
    fn default() -> Self {
        Facts { entries: Mutex::default() }
    }
}

impl<V: Clone> Facts<V> {
    pub fn get(&self, id: &str) -> Option<V> {
        self.lock().get(id).cloned()
    }

    pub fn insert(&self, id: &str, value: V) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(id) {
            entries.clear();
        }
        entries.insert(id.to_owned(), value);
    }

    /// Records `make()` for `id` unless something is recorded already.
    pub fn remember(&self, id: &str, make: impl FnOnce() -> V) {
        if !self.lock().contains_key(id) {
            self.insert(id, make());
        }
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, V>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Rec {
        n: u32,
    }

    #[test]
    fn a_record_is_parsed_once_and_read_again_once_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let cache = RecordCache::<Rec>::default();
        assert!(cache.read(&path).unwrap().is_none());

        crate::layout::write_json(&path, &serde_json::json!({"n": 1})).unwrap();
        let first = cache.read(&path).unwrap().unwrap();
        assert_eq!(*first, Rec { n: 1 });
        assert!(Arc::ptr_eq(&first, &cache.read(&path).unwrap().unwrap()), "parsed again");

        // Same size, rewritten at once (possibly within the same mtime tick): the rename
        // gives the file a new inode.
        crate::layout::write_json(&path, &serde_json::json!({"n": 2})).unwrap();
        assert_eq!(*cache.read(&path).unwrap().unwrap(), Rec { n: 2 });

        fs::remove_file(&path).unwrap();
        assert!(cache.read(&path).unwrap().is_none());
        assert!(cache.lock().is_empty());
    }

    #[test]
    fn facts_are_kept_by_id_until_forgotten_and_bounded() {
        let facts = Facts::<u32>::default();
        assert_eq!(facts.get("a"), None);
        facts.remember("a", || 1);
        facts.remember("a", || 2);
        assert_eq!(facts.get("a"), Some(1));
        facts.forget("a");
        assert_eq!(facts.get("a"), None);
        for i in 0..MAX_ENTRIES + 1 {
            facts.insert(&i.to_string(), 0);
        }
        assert!(facts.lock().len() <= MAX_ENTRIES);
    }

    #[test]
    fn forgetting_a_directory_drops_the_records_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RecordCache::<Rec>::default();
        for sub in ["a", "b"] {
            fs::create_dir(dir.path().join(sub)).unwrap();
            let path = dir.path().join(sub).join("r.json");
            crate::layout::write_json(&path, &serde_json::json!({"n": 3})).unwrap();
            cache.read(&path).unwrap().unwrap();
        }
        cache.forget(&dir.path().join("a"));
        let left: Vec<PathBuf> = cache.lock().keys().cloned().collect();
        assert_eq!(left, vec![dir.path().join("b/r.json")]);
    }
}
