//! The embedded default backend: one SQLite file in WAL mode, a single writer thread with
//! group commit (see `writer`), pooled read-only connections (see `reader`) and push-based
//! watch through the shared hub.

mod reader;
mod schema;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::storage::{Storage, WatchStream};
use crate::types::{
    Deleted, Event, KeyValue, ListOptions, ListPage, Revision, validate_key, validate_prefix,
    validate_value,
};
use crate::watch_hub::{DEFAULT_WATCH_BUFFER_BATCHES, EventLog, WatchHub};

use writer::{Retention, WriteOp, WriteOutcome, WriteRequest, Writer};

/// Settings of the SQLite backend. `SqliteConfig::new(path)` gives the defaults.
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub path: PathBuf,
    /// History older than this many revisions is compacted away.
    pub retain_revisions: i64,
    /// History older than this is compacted away.
    pub retain_duration: Duration,
    /// Read-only connections for concurrent reads.
    pub readers: usize,
    /// Most writes committed together in one transaction (one fsync).
    pub max_batch: usize,
    /// Writes that may wait for the writer; more callers wait for room (back-pressure).
    pub queue_depth: usize,
    /// Batches a watcher may have queued before it is ended as too slow.
    pub watch_buffer_batches: usize,
    /// Log rows compaction processes per write transaction.
    pub compact_chunk_rows: i64,
}

impl SqliteConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteConfig {
            path: path.into(),
            retain_revisions: 100_000,
            retain_duration: Duration::from_secs(5 * 60),
            readers: 4,
            max_batch: 1024,
            queue_depth: 8192,
            watch_buffer_batches: DEFAULT_WATCH_BUFFER_BATCHES,
            compact_chunk_rows: 5000,
        }
    }
}

/// The SQLite backend. Cheap to clone; the writer stops when the last clone is dropped.
#[derive(Clone)]
pub struct SqliteStorage {
    inner: Arc<Inner>,
}

struct Inner {
    writes: Option<mpsc::Sender<WriteRequest>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    hub: Arc<WatchHub>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it and exit; joining releases the file lock
        // before a reopen of the same file.
        self.writes.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    /// Runs `f` on an idle read connection on the blocking pool.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let _permit = self.permits.acquire().await.map_err(|_| StoreError::closed())?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = this.idle.lock().expect("reader pool lock").pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => schema::open_reader(&this.path)?,
            };
            let result = f(&mut conn);
            this.idle.lock().expect("reader pool lock").push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::unavailable("sqlite read task failed", e))?
    }
}

/// The watch history, read through the pool.
struct ReaderLog(Arc<Readers>);

#[async_trait]
impl EventLog for ReaderLog {
    async fn read_events(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let prefix = prefix.to_owned();
        self.0.with(move |conn| reader::read_events(conn, &prefix, from, to, limit)).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.0.with(|conn| Ok(schema::read_meta(conn)?.compacted)).await
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file and starts its writer thread.
    /// Fails if another process has the same file open.
    pub fn open(config: SqliteConfig) -> Result<Self> {
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::unavailable(format!("creating {}", dir.display()), e))?;
        }
        let lock = lock_file(&config.path)?;
        let conn = schema::open_writer(&config.path)?;
        let meta = schema::read_meta(&conn)?;
        let hub = WatchHub::new(meta.revision, config.watch_buffer_batches);
        let retention = Retention {
            revisions: config.retain_revisions.max(1),
            duration: config.retain_duration,
            chunk_rows: config.compact_chunk_rows,
        };
        let writer = Writer::new(conn, hub.clone(), config.max_batch, retention)?;
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                writer.run(rx);
                drop(lock);
            })
            .map_err(|e| StoreError::unavailable("spawning the sqlite writer", e))?;
        let readers = Arc::new(Readers {
            path: config.path.clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(config.readers.max(1)),
        });
        Ok(SqliteStorage {
            inner: Arc::new(Inner {
                writes: Some(tx),
                writer_thread: Some(writer_thread),
                readers,
                hub,
            }),
        })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        let (reply, response) = oneshot::channel();
        let writes = self.inner.writes.as_ref().ok_or_else(StoreError::closed)?;
        writes.send(WriteRequest { op, reply }).await.map_err(|_| StoreError::closed())?;
        response.await.map_err(|_| StoreError::closed())?
    }

    /// Watchers currently registered (for tests and metrics).
    pub fn watcher_count(&self) -> usize {
        self.inner.hub.watcher_count()
    }
}

/// Holds an exclusive lock on `<db>.lock` for as long as the file is open.
fn lock_file(path: &Path) -> Result<File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file =
        File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| {
            StoreError::unavailable(format!("opening {}", Path::new(&lock_path).display()), e)
        })?;
    file.try_lock().map_err(|e| {
        StoreError::unavailable(format!("{} is in use by another process", path.display()), e)
    })?;
    Ok(file)
}

fn put(outcome: WriteOutcome) -> KeyValue {
    match outcome {
        WriteOutcome::Put(kv) => kv,
        _ => unreachable!("create and update answer with Put"),
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        validate_key(key)?;
        let key = key.to_owned();
        self.inner.readers.with(move |conn| reader::get(conn, &key)).await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListPage> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.inner.readers.with(move |conn| reader::list(conn, &prefix, &options)).await
    }

    async fn count(&self, prefix: &str) -> Result<i64> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.inner.readers.with(move |conn| reader::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        self.write(WriteOp::Create { key: key.to_owned(), value }).await.map(put)
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        validate_key(key)?;
        validate_value(key, &value)?;
        let op = WriteOp::Update { key: key.to_owned(), value, expected: expected_mod_revision };
        self.write(op).await.map(put)
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate_key(key)?;
        let op = WriteOp::Delete { key: key.to_owned(), expected: expected_mod_revision };
        match self.write(op).await? {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            _ => unreachable!("delete answers with Deleted"),
        }
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<WatchStream> {
        validate_prefix(prefix)?;
        let log: Arc<dyn EventLog> = Arc::new(ReaderLog(self.inner.readers.clone()));
        self.inner.hub.watch(prefix, from_revision.max(0), log).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.inner.readers.with(|conn| Ok(schema::read_meta(conn)?.revision)).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.readers.with(|conn| Ok(schema::read_meta(conn)?.compacted)).await
    }
}
