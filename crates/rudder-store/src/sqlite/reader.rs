//! Read queries, each on a pooled read-only connection inside one snapshot.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row};

use crate::continue_token;
use crate::error::{Result, StoreError};
use crate::types::{Event, KeyValue, ListOptions, ListPage, Revision, event_for, prefix_end};

use super::schema::read_meta;

/// Upper bound for key-range queries; "\x7f" is above every printable-ASCII key.
fn range_end(prefix: &str) -> String {
    prefix_end(prefix).unwrap_or_else(|| "\u{7f}".to_owned())
}

fn kv_from_row(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

pub(super) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(conn
        .prepare_cached(
            "SELECT l.key, l.value, l.create_revision, l.revision
             FROM current c JOIN log l ON l.revision = c.revision WHERE c.key = ?1",
        )?
        .query_row([key], kv_from_row)
        .optional()?)
}

pub(super) fn count(conn: &Connection, prefix: &str) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT count(*) FROM current WHERE key >= ?1 AND key < ?2")?
        .query_row([prefix, &range_end(prefix)], |r| r.get(0))?)
}

pub(super) fn list(conn: &mut Connection, prefix: &str, options: &ListOptions) -> Result<ListPage> {
    let tx = conn.transaction()?;
    let meta = read_meta(&tx)?;
    let (current, compacted) = (meta.revision, meta.compacted);
    let (revision, start) = match &options.continue_token {
        Some(token) => {
            let c = continue_token::decode(prefix, token)?;
            (c.revision, c.start)
        }
        None => (options.revision.filter(|r| *r > 0).unwrap_or(current), prefix.to_owned()),
    };
    if revision > current {
        return Err(StoreError::FutureRevision { requested: revision, current });
    }
    if revision < compacted {
        return Err(StoreError::Compacted { requested: revision, compacted });
    }
    let end = range_end(prefix);
    let limit = options.limit.filter(|l| *l > 0).map_or(-1, |l| l as i64);
    let items: Vec<KeyValue> = if revision == current {
        tx.prepare_cached(
            "SELECT l.key, l.value, l.create_revision, l.revision
             FROM current c JOIN log l ON l.revision = c.revision
             WHERE c.key >= ?1 AND c.key < ?2 ORDER BY c.key LIMIT ?3",
        )?
        .query_map(rusqlite::params![start, end, limit], kv_from_row)?
        .collect::<rusqlite::Result<_>>()?
    } else {
        tx.prepare_cached(
            "SELECT l.key, l.value, l.create_revision, l.revision
             FROM (SELECT key, max(revision) AS r FROM log
                   WHERE key >= ?1 AND key < ?2 AND revision <= ?3 GROUP BY key) v
             JOIN log l ON l.revision = v.r
             WHERE l.deleted = 0 ORDER BY v.key LIMIT ?4",
        )?
        .query_map(rusqlite::params![start, end, revision, limit], kv_from_row)?
        .collect::<rusqlite::Result<_>>()?
    };
    let mut page = ListPage { items, revision, continue_token: None, remaining_item_count: None };
    if limit > 0 && page.items.len() as i64 == limit {
        let last = page.items.last().expect("limit >= 1").key.clone();
        let remaining: i64 = if revision == current {
            tx.prepare_cached("SELECT count(*) FROM current WHERE key > ?1 AND key < ?2")?
                .query_row([&last, &end], |r| r.get(0))?
        } else {
            tx.prepare_cached(
                "SELECT count(*) FROM
                   (SELECT key, max(revision) AS r FROM log
                    WHERE key > ?1 AND key < ?2 AND revision <= ?3 GROUP BY key) v
                 JOIN log l ON l.revision = v.r WHERE l.deleted = 0",
            )?
            .query_row(rusqlite::params![last, end, revision], |r| r.get(0))?
        };
        if remaining > 0 {
            page.continue_token = Some(continue_token::encode(prefix, &last, revision));
            page.remaining_item_count = Some(remaining);
        }
    }
    tx.finish()?;
    Ok(page)
}

pub(super) fn read_events(
    conn: &mut Connection,
    prefix: &str,
    from: Revision,
    to: Revision,
    limit: usize,
) -> Result<Vec<Event>> {
    let tx = conn.transaction()?;
    let compacted = read_meta(&tx)?.compacted;
    if from <= compacted {
        return Err(StoreError::Compacted { requested: from, compacted });
    }
    let events = tx
        .prepare_cached(
            "SELECT l.revision, l.key, l.deleted, l.create_revision, l.value,
                    p.revision, p.create_revision, p.value
             FROM log l LEFT JOIN log p ON p.revision = l.prev_revision AND l.prev_revision > 0
             WHERE l.revision >= ?1 AND l.revision <= ?2 AND l.key >= ?3 AND l.key < ?4
             ORDER BY l.revision LIMIT ?5",
        )?
        .query_map(rusqlite::params![from, to, prefix, range_end(prefix), limit as i64], |r| {
            let revision: Revision = r.get(0)?;
            let key: String = r.get(1)?;
            let deleted: bool = r.get(2)?;
            let live = if deleted {
                None
            } else {
                Some((Bytes::from(r.get::<_, Vec<u8>>(4)?), r.get::<_, Revision>(3)?))
            };
            let prev = match r.get::<_, Option<Revision>>(5)? {
                Some(prev_revision) => Some(KeyValue {
                    key: key.clone(),
                    value: Bytes::from(r.get::<_, Vec<u8>>(7)?),
                    create_revision: r.get(6)?,
                    mod_revision: prev_revision,
                }),
                None => None,
            };
            Ok(event_for(key, revision, live, prev))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    tx.finish()?;
    Ok(events)
}
