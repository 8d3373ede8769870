//! Locks of the store, good across processes (the agent and a `rudder image` command share
//! one root) and within one:
//! - the lease lock `<root>/lock`: every pull and import holds it shared for its whole run,
//!   garbage collection holds it exclusively, so gc never sees the layers of an image that
//!   is not recorded yet;
//! - the table lock `<root>/refs.lock`, exclusive around every read-modify-write of records
//!   and names (short);
//! - per-layer locks in the process, so two pulls sharing a layer download and unpack it
//!   once (across processes the atomic rename of a finished layer keeps this correct, only
//!   not deduplicated).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

pub(crate) struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    /// Blocks until the lock is held.
    pub fn acquire(path: &Path, exclusive: bool) -> Result<FileLock, StoreError> {
        let file = open(path)?;
        let arg = if exclusive { FlockArg::LockExclusive } else { FlockArg::LockShared };
        let lock =
            Flock::lock(file, arg).map_err(|(_, errno)| StoreError::io(path, errno.into()))?;
        Ok(FileLock { _lock: lock })
    }

    /// The lock if it is free now, else None.
    pub fn try_acquire(path: &Path, exclusive: bool) -> Result<Option<FileLock>, StoreError> {
        let file = open(path)?;
        let arg =
            if exclusive { FlockArg::LockExclusiveNonblock } else { FlockArg::LockSharedNonblock };
        match Flock::lock(file, arg) {
            Ok(lock) => Ok(Some(FileLock { _lock: lock })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(StoreError::io(path, errno.into())),
        }
    }

    /// Acquires on a blocking thread (for async callers).
    pub async fn acquire_async(path: &Path, exclusive: bool) -> Result<FileLock, StoreError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || FileLock::acquire(&path, exclusive))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn open(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// In-process mutexes by key, removed from the map when nobody holds or waits for them.
#[derive(Default)]
pub(crate) struct KeyLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_owned()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        KeyGuard { locks: self, key: key.to_owned(), guard: Some(guard) }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody waits.
        if map.get(&self.key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.key);
        }
    }
}
