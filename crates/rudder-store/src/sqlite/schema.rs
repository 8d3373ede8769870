//! The SQLite file layout.
//!
//! - `log`: one row per committed write, keyed by its revision: the value written (empty for
//!   a delete), the key's create revision, and `prev_revision`, the mod revision of the live
//!   version it replaced (0 if none). Watch history and reads at old revisions come from here.
//! - `current`: the live keys and the revision of their newest value (a pointer into `log`),
//!   so that reads of the newest state never scan history.
//! - `meta`: the newest revision, the compaction point (reads below it fail) and how far
//!   compaction has processed the log, updated in every write transaction so that they are
//!   consistent with the rows a reader sees in its snapshot.

use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::types::Revision;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS current (
    key TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    compact_scanned INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, revision, compacted, compact_scanned) VALUES (1, 0, 0, 0);
";

/// Settings every connection shares.
fn common_pragmas(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "foreign_keys", false)?;
    conn.pragma_update(None, "cache_size", -16_384)?; // KiB
    Ok(())
}

/// Opens the writer's connection and makes sure the schema exists.
pub(super) fn open_writer(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    common_pragmas(&conn)?;
    // Must be set before the first table is created to take effect; harmless afterwards.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(crate::StoreError::Unavailable {
            message: format!("sqlite refused WAL mode (got {mode})"),
            source: None,
        });
    }
    // FULL in WAL mode: every commit fsyncs the WAL, so an acknowledged write is durable.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Keep the WAL file from staying large after a burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

pub(super) fn open_reader(path: &std::path::Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    common_pragmas(&conn)?;
    Ok(conn)
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Meta {
    pub revision: Revision,
    pub compacted: Revision,
    pub compact_scanned: Revision,
}

pub(super) fn read_meta(conn: &Connection) -> Result<Meta> {
    let meta = conn
        .prepare_cached("SELECT revision, compacted, compact_scanned FROM meta WHERE id = 1")?
        .query_row([], |r| {
            Ok(Meta { revision: r.get(0)?, compacted: r.get(1)?, compact_scanned: r.get(2)? })
        })
        .optional()?;
    Ok(meta.unwrap_or_default())
}
