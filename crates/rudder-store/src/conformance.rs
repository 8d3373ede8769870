//! The conformance suite every backend must pass. A backend's test crate instantiates it
//! with `rudder_store::storage_conformance_tests!(factory)`, where `factory()` returns a
//! fresh, empty store and a guard that keeps its resources alive.
//!
//! Revisions are only ever compared relative to the revision the store starts at, so the
//! suite holds for etcd (which starts at 1) as well as for our own backends (0).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::{Event, EventType, ListOptions, Revision, Storage, StoreError, WatchStream};

/// Generous bound that only turns a hang into a failure; never a pass/fail timing check.
const DEADLINE: Duration = Duration::from_secs(30);

/// Instantiates every conformance case as a `#[tokio::test]` against `$factory`.
#[macro_export]
macro_rules! storage_conformance_tests {
    ($factory:path) => {
        $crate::__storage_conformance_cases!($factory;
            create_get_and_revisions,
            update_is_compare_and_swap,
            concurrent_updates_have_one_winner,
            delete_with_and_without_precondition,
            list_prefix_order_and_count,
            list_pages_read_one_revision,
            list_at_an_old_revision,
            watch_replays_exactly_the_missed_events,
            watch_from_zero_sees_only_new_events,
            watch_filters_by_prefix,
            compaction_bounds_reads_and_watches,
            live_watch_survives_compaction,
            concurrent_writers_never_skip_or_repeat_revisions,
            rejects_oversized_values_and_bad_keys,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_conformance_cases {
    ($factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $factory().await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

pub type Store = Arc<dyn Storage>;

fn v(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn next_event(w: &mut WatchStream) -> Event {
    within("next watch event", w.next()).await.expect("watch ended").expect("watch error")
}

fn keys(items: &[crate::KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn create_get_and_revisions(s: Store) {
    let r0 = s.current_revision().await.unwrap();
    let a = s.create("/t/a", v("1")).await.unwrap();
    assert_eq!(a.mod_revision, r0 + 1);
    assert_eq!(a.create_revision, r0 + 1);
    let b = s.create("/t/b", v("2")).await.unwrap();
    assert_eq!(b.mod_revision, r0 + 2);
    assert_eq!(s.current_revision().await.unwrap(), r0 + 2);

    let got = s.get("/t/a").await.unwrap().unwrap();
    assert_eq!(got, a);
    assert_eq!(got.value, v("1"));
    assert!(s.get("/t/missing").await.unwrap().is_none());

    match s.create("/t/a", v("again")).await {
        Err(StoreError::KeyExists { key }) => assert_eq!(key, "/t/a"),
        other => panic!("expected KeyExists, got {other:?}"),
    }
    // A failed write commits nothing.
    assert_eq!(s.current_revision().await.unwrap(), r0 + 2);
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, v("1"));
}

pub async fn update_is_compare_and_swap(s: Store) {
    let a = s.create("/t/a", v("1")).await.unwrap();
    let a2 = s.update("/t/a", v("2"), a.mod_revision).await.unwrap();
    assert_eq!(a2.mod_revision, a.mod_revision + 1);
    assert_eq!(a2.create_revision, a.create_revision);

    match s.update("/t/a", v("stale"), a.mod_revision).await {
        Err(StoreError::Conflict { expected, current, .. }) => {
            assert_eq!(expected, a.mod_revision);
            assert_eq!(*current.expect("conflict carries the current value"), a2);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s.update("/t/none", v("x"), 1).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(s.get("/t/a").await.unwrap().unwrap().value, v("2"));
    assert_eq!(s.current_revision().await.unwrap(), a2.mod_revision);
}

pub async fn concurrent_updates_have_one_winner(s: Store) {
    let a = s.create("/t/a", v("0")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.update("/t/a", Bytes::from(format!("w{i}")), a.mod_revision).await
        }));
    }
    let mut winners = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(kv) => {
                winners += 1;
                assert_eq!(kv.mod_revision, a.mod_revision + 1);
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(winners, 1);
    assert_eq!(s.current_revision().await.unwrap(), a.mod_revision + 1);
}

pub async fn delete_with_and_without_precondition(s: Store) {
    let a = s.create("/t/a", v("1")).await.unwrap();
    match s.delete("/t/a", Some(a.mod_revision + 100)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(*current.unwrap(), a),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let d = s.delete("/t/a", Some(a.mod_revision)).await.unwrap();
    assert_eq!(d.revision, a.mod_revision + 1);
    assert_eq!(d.prev, a);
    assert!(s.get("/t/a").await.unwrap().is_none());
    match s.delete("/t/a", None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Re-creating starts a new life with a new create revision.
    let again = s.create("/t/a", v("new")).await.unwrap();
    assert_eq!(again.create_revision, d.revision + 1);
    let b = s.create("/t/b", v("b")).await.unwrap();
    let d2 = s.delete("/t/b", None).await.unwrap();
    assert_eq!(d2.prev, b);
}

pub async fn list_prefix_order_and_count(s: Store) {
    for k in ["/r/pods/ns2/x", "/r/pods/ns1/b", "/r/pods/ns1/a", "/r/podsx/ns1/a", "/r/svc/a"] {
        s.create(k, v(k)).await.unwrap();
    }
    let page = s.list("/r/pods/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&page.items), ["/r/pods/ns1/a", "/r/pods/ns1/b", "/r/pods/ns2/x"]);
    assert_eq!(page.revision, s.current_revision().await.unwrap());
    assert!(page.continue_token.is_none());
    assert_eq!(page.items[0].value, v("/r/pods/ns1/a"));
    assert_eq!(s.count("/r/pods/").await.unwrap(), 3);
    assert_eq!(s.count("/r/pods/ns1/").await.unwrap(), 2);
    assert_eq!(s.count("/r/").await.unwrap(), 5);
    assert_eq!(s.count("/nothing/").await.unwrap(), 0);
    let all = s.list("/r/", ListOptions::default()).await.unwrap();
    assert_eq!(all.items.len(), 5);
    s.delete("/r/pods/ns1/a", None).await.unwrap();
    let page = s.list("/r/pods/", ListOptions::default()).await.unwrap();
    assert_eq!(keys(&page.items), ["/r/pods/ns1/b", "/r/pods/ns2/x"]);
}

pub async fn list_pages_read_one_revision(s: Store) {
    for i in 0..10 {
        s.create(&format!("/p/k{i:02}"), v(&format!("v{i}"))).await.unwrap();
    }
    s.create("/q/outside", v("x")).await.unwrap();
    let first = s.list("/p/", ListOptions { limit: Some(3), ..Default::default() }).await.unwrap();
    assert_eq!(keys(&first.items), ["/p/k00", "/p/k01", "/p/k02"]);
    assert_eq!(first.remaining_item_count, Some(7));
    let snapshot = first.revision;

    // Writes between pages must not show up in later pages.
    s.delete("/p/k05", None).await.unwrap();
    s.create("/p/k035", v("new")).await.unwrap();
    let k07 = s.get("/p/k07").await.unwrap().unwrap();
    s.update("/p/k07", v("changed"), k07.mod_revision).await.unwrap();

    let mut seen = keys(&first.items).into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut token = first.continue_token.clone();
    let mut pages = 1;
    while let Some(t) = token {
        let page = s
            .list(
                "/p/",
                ListOptions { limit: Some(3), continue_token: Some(t), ..Default::default() },
            )
            .await
            .unwrap();
        assert_eq!(page.revision, snapshot, "every page reads the first page's revision");
        for kv in &page.items {
            if kv.key == "/p/k07" {
                assert_eq!(kv.value, v("v7"), "page shows the value at the snapshot");
            }
        }
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        token = page.continue_token;
        pages += 1;
    }
    assert_eq!(pages, 4);
    let expected: Vec<String> = (0..10).map(|i| format!("/p/k{i:02}")).collect();
    assert_eq!(seen, expected);

    // A fresh list sees the new state.
    let now = s.list("/p/", ListOptions::default()).await.unwrap();
    assert!(now.revision > snapshot);
    assert_eq!(now.items.len(), 10);
    assert!(keys(&now.items).contains(&"/p/k035"));
    assert!(!keys(&now.items).contains(&"/p/k05"));

    match s
        .list("/p/", ListOptions { continue_token: Some("garbage".into()), ..Default::default() })
        .await
    {
        Err(StoreError::InvalidContinue { .. }) => {}
        other => panic!("expected InvalidContinue, got {other:?}"),
    }
}

pub async fn list_at_an_old_revision(s: Store) {
    let a = s.create("/o/a", v("a1")).await.unwrap();
    s.create("/o/b", v("b1")).await.unwrap();
    let at = s.current_revision().await.unwrap();
    s.update("/o/a", v("a2"), a.mod_revision).await.unwrap();
    s.delete("/o/b", None).await.unwrap();
    s.create("/o/c", v("c1")).await.unwrap();

    let old =
        s.list("/o/", ListOptions { revision: Some(at), ..Default::default() }).await.unwrap();
    assert_eq!(old.revision, at);
    assert_eq!(keys(&old.items), ["/o/a", "/o/b"]);
    assert_eq!(old.items[0].value, v("a1"));
    assert_eq!(old.items[0].mod_revision, a.mod_revision);

    let paged = s
        .list("/o/", ListOptions { revision: Some(at), limit: Some(1), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(keys(&paged.items), ["/o/a"]);
    assert_eq!(paged.remaining_item_count, Some(1));

    let current = s.current_revision().await.unwrap();
    match s.list("/o/", ListOptions { revision: Some(current + 10), ..Default::default() }).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

pub async fn watch_replays_exactly_the_missed_events(s: Store) {
    let a = s.create("/w/a", v("1")).await.unwrap();
    let from = a.mod_revision + 1;
    let a2 = s.update("/w/a", v("2"), a.mod_revision).await.unwrap();
    let b = s.create("/w/b", v("b")).await.unwrap();
    let d = s.delete("/w/a", None).await.unwrap();
    let mut w = s.watch("/w/", from).await.unwrap();

    let e1 = next_event(&mut w).await;
    assert_eq!(e1.event_type, EventType::Updated);
    assert_eq!(e1.kv, a2);
    assert_eq!(e1.prev.as_ref(), Some(&a));
    let e2 = next_event(&mut w).await;
    assert_eq!(e2.event_type, EventType::Created);
    assert_eq!(e2.kv, b);
    assert!(e2.prev.is_none());
    let e3 = next_event(&mut w).await;
    assert_eq!(e3.event_type, EventType::Deleted);
    assert_eq!(e3.revision(), d.revision);
    assert_eq!(e3.kv.key, "/w/a");
    assert_eq!(e3.prev.as_ref(), Some(&a2));

    // Then live events, in order, continuing the revision sequence.
    let c = s.create("/w/c", v("c")).await.unwrap();
    let b2 = s.update("/w/b", v("b2"), b.mod_revision).await.unwrap();
    let e4 = next_event(&mut w).await;
    assert_eq!((e4.event_type, e4.kv.clone()), (EventType::Created, c));
    let e5 = next_event(&mut w).await;
    assert_eq!((e5.event_type, e5.kv.clone()), (EventType::Updated, b2));
    assert_eq!(e5.prev.map(|p| p.value), Some(v("b")));

    // A second watcher from the very first write sees the whole history.
    let mut all = s.watch("/w/", a.mod_revision).await.unwrap();
    let mut revisions = Vec::new();
    for _ in 0..6 {
        revisions.push(next_event(&mut all).await.revision());
    }
    let first = a.mod_revision;
    assert_eq!(revisions, (first..first + 6).collect::<Vec<_>>());
}

pub async fn watch_from_zero_sees_only_new_events(s: Store) {
    s.create("/z/old", v("old")).await.unwrap();
    let mut w = s.watch("/z/", 0).await.unwrap();
    let n = s.create("/z/new", v("new")).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, n);
}

pub async fn watch_filters_by_prefix(s: Store) {
    let start = s.current_revision().await.unwrap() + 1;
    let mut pods = s.watch("/f/pods/", start).await.unwrap();
    let mut everything = s.watch("", start).await.unwrap();
    s.create("/f/services/a", v("s")).await.unwrap();
    s.create("/f/podsx/a", v("x")).await.unwrap();
    let p = s.create("/f/pods/a", v("p")).await.unwrap();
    assert_eq!(next_event(&mut pods).await.kv, p);
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(next_event(&mut everything).await.kv.key);
    }
    assert_eq!(all, ["/f/services/a", "/f/podsx/a", "/f/pods/a"]);
    // Nothing else is pending for the pods watcher.
    let q = s.create("/f/pods/b", v("q")).await.unwrap();
    assert_eq!(next_event(&mut pods).await.kv, q);
}

pub async fn compaction_bounds_reads_and_watches(s: Store) {
    let a = s.create("/c/a", v("a1")).await.unwrap();
    let b = s.create("/c/b", v("b1")).await.unwrap();
    let a2 = s.update("/c/a", v("a2"), a.mod_revision).await.unwrap();
    s.delete("/c/b", None).await.unwrap();
    let at = s.current_revision().await.unwrap();
    let a3 = s.update("/c/a", v("a3"), a2.mod_revision).await.unwrap();
    let c = s.create("/c/c", v("c1")).await.unwrap();

    s.compact(at).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), at);

    match s.list("/c/", ListOptions { revision: Some(at - 1), ..Default::default() }).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at_page =
        s.list("/c/", ListOptions { revision: Some(at), ..Default::default() }).await.unwrap();
    assert_eq!(keys(&at_page.items), ["/c/a"]);
    assert_eq!(at_page.items[0], a2);
    let now = s.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items, vec![a3.clone(), c.clone()]);

    match s.watch("/c/", b.mod_revision).await {
        Err(StoreError::Compacted { .. }) => {}
        Ok(mut w) => match within("compacted watch", w.next()).await {
            Some(Err(StoreError::Compacted { .. })) => {}
            other => panic!("expected a Compacted error from the watch, got {other:?}"),
        },
        Err(e) => panic!("expected Compacted, got {e}"),
    }
    // History after the compaction point replays in full, prev values included.
    let mut w = s.watch("/c/", at + 1).await.unwrap();
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a3);
    assert_eq!(e.prev, Some(a2));
    assert_eq!(next_event(&mut w).await.kv, c);

    match s.compact(at).await {
        Err(StoreError::Compacted { .. }) => {}
        other => panic!("expected Compacted for a repeated compaction, got {other:?}"),
    }
    let current = s.current_revision().await.unwrap();
    match s.compact(current + 5).await {
        Err(StoreError::FutureRevision { .. }) => {}
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    // Compacting everything keeps the live state readable.
    s.compact(current).await.unwrap();
    let now = s.list("/c/", ListOptions::default()).await.unwrap();
    assert_eq!(now.items, vec![a3, c]);
}

pub async fn live_watch_survives_compaction(s: Store) {
    let a = s.create("/l/a", v("1")).await.unwrap();
    let mut w = s.watch("/l/", a.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, a);
    let a2 = s.update("/l/a", v("2"), a.mod_revision).await.unwrap();
    s.compact(a2.mod_revision).await.unwrap();
    let a3 = s.update("/l/a", v("3"), a2.mod_revision).await.unwrap();
    assert_eq!(next_event(&mut w).await.kv, a2);
    let e = next_event(&mut w).await;
    assert_eq!(e.kv, a3);
    assert_eq!(e.prev, Some(a2));
}

pub async fn concurrent_writers_never_skip_or_repeat_revisions(s: Store) {
    // 24 * (36 + 3 deletes) = 936 writes: fewer than a watcher may buffer (1024 batches),
    // so the watch, read only at the end, cannot lag.
    const WRITERS: usize = 24;
    const WRITES: usize = 36;
    let start = s.current_revision().await.unwrap() + 1;
    let mut w = s.watch("/cw/", start).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..WRITERS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            let key = format!("/cw/{t:03}");
            let mut kv = s.create(&key, v("0")).await.unwrap();
            revisions.push(kv.mod_revision);
            for i in 1..WRITES {
                if i % 10 == 0 {
                    let d = s.delete(&key, Some(kv.mod_revision)).await.unwrap();
                    revisions.push(d.revision);
                    kv = s.create(&key, Bytes::from(format!("{i}"))).await.unwrap();
                } else {
                    kv =
                        s.update(&key, Bytes::from(format!("{i}")), kv.mod_revision).await.unwrap();
                }
                revisions.push(kv.mod_revision);
            }
            revisions
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let revisions = t.await.unwrap();
        assert!(revisions.windows(2).all(|p| p[0] < p[1]), "one writer's revisions increase");
        all.extend(revisions);
    }
    let total = all.len();
    let unique: BTreeSet<Revision> = all.into_iter().collect();
    assert_eq!(unique.len(), total, "no revision handed out twice");
    let expected: BTreeSet<Revision> = (start..start + total as Revision).collect();
    assert_eq!(unique, expected, "revisions are gap-free");
    assert_eq!(s.current_revision().await.unwrap(), start + total as Revision - 1);

    let mut seen = Vec::with_capacity(total);
    while seen.len() < total {
        seen.push(next_event(&mut w).await.revision());
    }
    assert_eq!(
        seen,
        expected.into_iter().collect::<Vec<_>>(),
        "the watch sees every write in order"
    );
}

pub async fn rejects_oversized_values_and_bad_keys(s: Store) {
    let big = Bytes::from(vec![b'x'; crate::MAX_VALUE_BYTES + 1]);
    match s.create("/big/a", big.clone()).await {
        Err(StoreError::ValueTooLarge { size_bytes, .. }) => {
            assert_eq!(size_bytes, crate::MAX_VALUE_BYTES + 1)
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let fits = Bytes::from(vec![b'y'; crate::MAX_VALUE_BYTES]);
    let kv = s.create("/big/b", fits.clone()).await.unwrap();
    assert_eq!(s.get("/big/b").await.unwrap().unwrap().value, fits);
    match s.update("/big/b", big, kv.mod_revision).await {
        Err(StoreError::ValueTooLarge { .. }) => {}
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    for bad in ["", "has space", "tab\t", "é"] {
        match s.create(bad, v("x")).await {
            Err(StoreError::InvalidKey { .. }) => {}
            other => panic!("expected InvalidKey for {bad:?}, got {other:?}"),
        }
    }
    assert!(s.get("/big/a").await.unwrap().is_none());
}
