//! Behaviour specific to the SQLite backend: durability across reopen, the single-process
//! lock, slow watchers, and bounded history under update churn.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rudder_store::{ListOptions, SqliteConfig, SqliteStorage, Storage, StoreError};

fn config(dir: &tempfile::TempDir) -> SqliteConfig {
    SqliteConfig::new(dir.path().join("state.db"))
}

fn file_bytes(dir: &tempfile::TempDir) -> u64 {
    ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_revision_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStorage::open(config(&dir)).unwrap();
    let a = store.create("/k/a", Bytes::from_static(b"1")).await.unwrap();
    let a2 = store.update("/k/a", Bytes::from_static(b"2"), a.mod_revision).await.unwrap();
    store.create("/k/b", Bytes::from_static(b"b")).await.unwrap();
    store.delete("/k/b", None).await.unwrap();
    let revision = store.current_revision().await.unwrap();
    drop(store);

    let store = SqliteStorage::open(config(&dir)).unwrap();
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.get("/k/a").await.unwrap(), Some(a2));
    assert!(store.get("/k/b").await.unwrap().is_none());
    let next = store.create("/k/c", Bytes::from_static(b"c")).await.unwrap();
    assert_eq!(next.mod_revision, revision + 1, "revisions continue after reopen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStorage::open(config(&dir)).unwrap();
    match SqliteStorage::open(config(&dir)) {
        Err(StoreError::Unavailable { message, .. }) => {
            assert!(message.contains("in use"), "{message}")
        }
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("a second writer on the same file must be refused"),
    }
    drop(first);
    SqliteStorage::open(config(&dir)).expect("reopen after the first is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_ended_without_blocking_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.watch_buffer_batches = 4;
    let store = SqliteStorage::open(cfg).unwrap();
    let mut slow = store.watch("/s/", 1).await.unwrap();
    // Sequential writes: one commit (one batch) each, far more than the slow watcher
    // buffers. A writer waiting on the watcher would hang here.
    tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..200 {
            store.create(&format!("/s/{i:03}"), Bytes::from_static(b"x")).await.unwrap();
        }
    })
    .await
    .expect("writers are not held up by a watcher that does not read");
    let mut delivered = 0;
    loop {
        match slow.next().await {
            Some(Ok(_)) => delivered += 1,
            Some(Err(StoreError::WatchLagged { buffered_batches })) => {
                assert_eq!(buffered_batches, 4);
                break;
            }
            other => panic!("expected WatchLagged, got {other:?}"),
        }
    }
    assert!(delivered < 200, "the slow watcher got {delivered} events before it was ended");
    assert!(slow.next().await.is_none(), "the stream ends after the error");
    drop(slow);
    assert_eq!(store.watcher_count(), 0);
    // The client recovers the way Kubernetes clients do: watch again from where it was.
    let mut again = store.watch("/s/", 1).await.unwrap();
    for expected in 1..=200 {
        assert_eq!(again.next().await.unwrap().unwrap().revision(), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_churn_keeps_history_and_file_bounded() {
    // Lease-renewal style churn: few keys, many updates. Without compaction the log would
    // hold all 40,000 versions of 1 KiB (40+ MiB).
    const KEYS: usize = 50;
    const ROUNDS: usize = 800;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.retain_revisions = 1000;
    cfg.compact_chunk_rows = 500;
    let store = Arc::new(SqliteStorage::open(cfg).unwrap());
    let value = Bytes::from(vec![b'l'; 1024]);
    let mut tasks = Vec::new();
    for k in 0..KEYS {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/leases/node-{k}");
            let mut kv = store.create(&key, value.clone()).await.unwrap();
            for _ in 0..ROUNDS {
                kv = store.update(&key, value.clone(), kv.mod_revision).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let current = store.current_revision().await.unwrap();
    assert_eq!(current, (KEYS * (ROUNDS + 1)) as i64);
    let compacted = store.compacted_revision().await.unwrap();
    assert!(
        current - compacted <= 2000,
        "history bounded: current {current}, compacted {compacted}"
    );
    let live = store.list("/leases/", ListOptions::default()).await.unwrap();
    assert_eq!(live.items.len(), KEYS);
    let bytes = file_bytes(&dir);
    assert!(bytes < 16 * 1024 * 1024, "database and WAL hold {bytes} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_based_retention_compacts_old_history() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&dir);
    cfg.retain_revisions = i64::MAX / 2;
    cfg.retain_duration = Duration::ZERO;
    let store = SqliteStorage::open(cfg).unwrap();
    let mut kv = store.create("/t/a", Bytes::from_static(b"0")).await.unwrap();
    for i in 0..1100 {
        kv = store.update("/t/a", Bytes::from(format!("{i}")), kv.mod_revision).await.unwrap();
    }
    let compacted = store.compacted_revision().await.unwrap();
    assert!(compacted >= 1000, "zero retention time compacts history (compacted: {compacted})");
    assert_eq!(store.get("/t/a").await.unwrap(), Some(kv));
    match store.watch("/t/", 1).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
}
