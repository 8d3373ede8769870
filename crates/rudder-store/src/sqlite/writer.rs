//! The single writer thread: group commit, event publication and compaction.
//!
//! Requests queue on a bounded channel. The writer takes everything queued (up to
//! `max_batch`), applies the requests in one transaction (each gets its own revision;
//! a failed precondition fails only that request), commits once — one fsync for the whole
//! batch — and only then answers the requests and publishes their events. Compaction runs
//! in bounded chunks inside the same transactions, so it never stalls writers for long.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Result, StoreError};
use crate::types::{Deleted, Event, KeyValue, Revision, event_for};
use crate::watch_hub::WatchHub;

use super::schema::read_meta;

pub(super) enum WriteOp {
    Create { key: String, value: Bytes },
    Update { key: String, value: Bytes, expected: Revision },
    Delete { key: String, expected: Option<Revision> },
    Compact { revision: Revision },
}

pub(super) enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
    Compacted,
}

pub(super) struct WriteRequest {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteOutcome>>,
}

/// How much history the writer keeps before compacting on its own.
#[derive(Clone, Debug)]
pub(super) struct Retention {
    pub revisions: i64,
    pub duration: Duration,
    pub chunk_rows: i64,
}

pub(super) struct Writer {
    conn: Connection,
    hub: Arc<WatchHub>,
    max_batch: usize,
    retention: Retention,
    revision: Revision,
    /// Compaction point as recorded in `meta` (reads below it fail).
    compacted: Revision,
    /// Rows up to here have been processed by compaction.
    compact_scanned: Revision,
    /// (when, revision) samples for time-based retention, oldest first.
    samples: VecDeque<(Instant, Revision)>,
    compact_waiters: Vec<(Revision, oneshot::Sender<Result<WriteOutcome>>)>,
}

impl Writer {
    pub fn new(
        conn: Connection,
        hub: Arc<WatchHub>,
        max_batch: usize,
        retention: Retention,
    ) -> Result<Self> {
        let meta = read_meta(&conn)?;
        Ok(Writer {
            conn,
            hub,
            max_batch: max_batch.max(1),
            retention,
            revision: meta.revision,
            compacted: meta.compacted,
            compact_scanned: meta.compact_scanned,
            samples: VecDeque::new(),
            compact_waiters: Vec::new(),
        })
    }

    /// Runs until every sender is gone and the queue is drained.
    pub fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        loop {
            let mut batch = Vec::new();
            if self.compact_scanned < self.compacted {
                // Compaction is underway: keep going even when no writes arrive.
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(mpsc::error::TryRecvError::Empty) => {}
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            } else {
                match rx.blocking_recv() {
                    Some(req) => batch.push(req),
                    None => return,
                }
            }
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let start_revision = self.revision;
        let start_compacted = self.compacted;
        let start_scanned = self.compact_scanned;
        let mut results = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let outcome = (|| -> Result<()> {
            let tx =
                self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for req in &batch {
                let result = apply(&tx, &req.op, &mut self.revision, &mut self.compacted);
                if let Ok((_, Some(event))) = &result {
                    events.push(event.clone());
                }
                results.push(result.map(|(outcome, _)| outcome));
            }
            plan_compaction(&mut self.samples, &self.retention, self.revision, &mut self.compacted);
            let finished = compact_chunk(
                &tx,
                &mut self.compact_scanned,
                self.compacted,
                self.retention.chunk_rows,
            )?;
            if finished {
                tx.execute_batch("PRAGMA incremental_vacuum(2000)")?;
            }
            tx.prepare_cached(
                "UPDATE meta SET revision = ?1, compacted = ?2, compact_scanned = ?3 WHERE id = 1",
            )?
            .execute([self.revision, self.compacted, self.compact_scanned])?;
            tx.commit()?;
            Ok(())
        })();
        if let Err(e) = outcome {
            tracing::error!(error = %e, "sqlite write batch failed; rolled back");
            self.revision = start_revision;
            self.compacted = start_compacted;
            self.compact_scanned = start_scanned;
            for req in batch {
                let _ = req.reply.send(Err(StoreError::Unavailable {
                    message: format!("write failed: {e}"),
                    source: None,
                }));
            }
            return;
        }
        self.hub.publish(&events);
        for (req, result) in batch.into_iter().zip(results) {
            match (&req.op, result) {
                (WriteOp::Compact { revision }, Ok(_)) => {
                    self.compact_waiters.push((*revision, req.reply));
                }
                (_, result) => {
                    let _ = req.reply.send(result);
                }
            }
        }
        let scanned = self.compact_scanned;
        let (done, pending): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.compact_waiters).into_iter().partition(|(r, _)| *r <= scanned);
        for (_, reply) in done {
            let _ = reply.send(Ok(WriteOutcome::Compacted));
        }
        self.compact_waiters = pending;
    }
}

/// Moves the compaction point forward when history exceeds the retention bounds.
fn plan_compaction(
    samples: &mut VecDeque<(Instant, Revision)>,
    retention: &Retention,
    revision: Revision,
    compacted: &mut Revision,
) {
    let now = Instant::now();
    let sample_due =
        samples.back().is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1));
    if sample_due || retention.duration.is_zero() {
        samples.push_back((now, revision));
    }
    let mut target = revision - retention.revisions;
    while let Some((at, sampled)) = samples.front().copied() {
        if now.duration_since(at) < retention.duration {
            break;
        }
        target = target.max(sampled);
        samples.pop_front();
    }
    let step = retention.revisions.clamp(1, 1000);
    if target - *compacted >= step {
        *compacted = target;
    }
}

/// Applies one request inside the batch transaction. Returns the outcome and the event
/// to publish once the batch is committed.
fn apply(
    tx: &Transaction<'_>,
    op: &WriteOp,
    revision: &mut Revision,
    compacted: &mut Revision,
) -> Result<(WriteOutcome, Option<Event>)> {
    match op {
        WriteOp::Create { key, value } => {
            if current(tx, key)?.is_some() {
                return Err(StoreError::KeyExists { key: key.clone() });
            }
            let rev = *revision + 1;
            insert_log(tx, rev, key, false, rev, 0, value)?;
            tx.prepare_cached("INSERT INTO current (key, revision) VALUES (?1, ?2)")?
                .execute(rusqlite::params![key, rev])?;
            *revision = rev;
            let event = event_for(key.clone(), rev, Some((value.clone(), rev)), None);
            Ok((WriteOutcome::Put(event.kv.clone()), Some(event)))
        }
        WriteOp::Update { key, value, expected } => {
            let cur = current(tx, key)?.ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
            if cur.mod_revision != *expected {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: Some(Box::new(cur)),
                });
            }
            let rev = *revision + 1;
            insert_log(tx, rev, key, false, cur.create_revision, cur.mod_revision, value)?;
            tx.prepare_cached("UPDATE current SET revision = ?2 WHERE key = ?1")?
                .execute(rusqlite::params![key, rev])?;
            *revision = rev;
            let live = Some((value.clone(), cur.create_revision));
            let event = event_for(key.clone(), rev, live, Some(cur));
            Ok((WriteOutcome::Put(event.kv.clone()), Some(event)))
        }
        WriteOp::Delete { key, expected } => {
            let cur = current(tx, key)?.ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
            if let Some(expected) = expected
                && cur.mod_revision != *expected
            {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: Some(Box::new(cur)),
                });
            }
            let rev = *revision + 1;
            insert_log(tx, rev, key, true, 0, cur.mod_revision, &Bytes::new())?;
            tx.prepare_cached("DELETE FROM current WHERE key = ?1")?.execute([key])?;
            *revision = rev;
            let event = event_for(key.clone(), rev, None, Some(cur.clone()));
            Ok((WriteOutcome::Deleted(Deleted { revision: rev, prev: cur }), Some(event)))
        }
        WriteOp::Compact { revision: target } => {
            if *target > *revision {
                return Err(StoreError::FutureRevision { requested: *target, current: *revision });
            }
            if *target <= *compacted {
                return Err(StoreError::Compacted { requested: *target, compacted: *compacted });
            }
            *compacted = *target;
            Ok((WriteOutcome::Compacted, None))
        }
    }
}

fn current(tx: &Transaction<'_>, key: &str) -> Result<Option<KeyValue>> {
    Ok(tx
        .prepare_cached(
            "SELECT l.value, l.create_revision, l.revision
             FROM current c JOIN log l ON l.revision = c.revision WHERE c.key = ?1",
        )?
        .query_row([key], |r| {
            Ok(KeyValue {
                key: key.to_owned(),
                value: Bytes::from(r.get::<_, Vec<u8>>(0)?),
                create_revision: r.get(1)?,
                mod_revision: r.get(2)?,
            })
        })
        .optional()?)
}

fn insert_log(
    tx: &Transaction<'_>,
    revision: Revision,
    key: &str,
    deleted: bool,
    create_revision: Revision,
    prev_revision: Revision,
    value: &[u8],
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (revision, key, deleted, create_revision, prev_revision, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        revision,
        key,
        deleted,
        create_revision,
        prev_revision,
        value
    ])?;
    Ok(())
}

/// Processes up to `chunk_rows` log rows in `(scanned, target]`: every write there makes the
/// version it replaced unreachable, and a delete's own tombstone is unreachable too.
/// Returns true when it reached `target` in this call.
fn compact_chunk(
    tx: &Transaction<'_>,
    scanned: &mut Revision,
    target: Revision,
    chunk_rows: i64,
) -> Result<bool> {
    if *scanned >= target {
        return Ok(false);
    }
    let upto = target.min(*scanned + chunk_rows.max(1));
    tx.prepare_cached(
        "DELETE FROM log WHERE revision IN (
            SELECT prev_revision FROM log
            WHERE revision > ?1 AND revision <= ?2 AND prev_revision > 0)",
    )?
    .execute([*scanned, upto])?;
    tx.prepare_cached("DELETE FROM log WHERE revision > ?1 AND revision <= ?2 AND deleted = 1")?
        .execute([*scanned, upto])?;
    *scanned = upto;
    Ok(upto == target)
}
