//! The watch cache: per resource, the objects and a window of recent changes in memory, fed
//! by one store watch, so that any number of watchers (and `resourceVersion=0` lists) cost
//! no store reads. Objects are kept as their API JSON ([`CachedObject`]), the bytes watchers
//! are sent, not decoded. Started on first use of a resource; a cache whose store watch
//! fails is dropped (its watchers end and re-watch, like upstream's) and rebuilt on next use.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use bytes::Bytes;

use rudder_api::ResourceInfo;
use rudder_store::{EventType, ListOptions, Storage};
use tokio::sync::broadcast;

use crate::cached_object::CachedObject;
use crate::object;

/// Changes kept for watchers that resume from an older resourceVersion.
const HISTORY: usize = 10_000;
/// Changes a watcher may lag behind before it is ended.
const WATCHER_BUFFER: usize = 4096;

/// One committed change of an object.
#[derive(Debug)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    /// The object after the change (None for a delete).
    pub new: Option<Arc<CachedObject>>,
    /// The object before it (None for a create).
    pub old: Option<Arc<CachedObject>>,
    /// `new` as `PartialObjectMetadata` JSON, made by the first metadata-only watcher that
    /// sends it and shared by the others (the garbage collector watches every resource
    /// that way).
    new_metadata_json: OnceLock<Bytes>,
}

impl Change {
    pub fn new(
        revision: i64,
        key: String,
        new: Option<Arc<CachedObject>>,
        old: Option<Arc<CachedObject>>,
    ) -> Self {
        Change { revision, key, new, old, new_metadata_json: OnceLock::new() }
    }

    /// The new object's JSON, the same bytes for every watcher (None for a delete).
    pub fn new_json(&self) -> Option<&Bytes> {
        self.new.as_deref().map(CachedObject::json)
    }

    /// The new object's `PartialObjectMetadata` JSON, made once for every metadata-only
    /// watcher (None for a delete).
    pub fn new_metadata_json(&self) -> Option<&Bytes> {
        let new = self.new.as_deref()?;
        Some(self.new_metadata_json.get_or_init(|| new.metadata_json()))
    }
}

/// Cached objects with their keys.
pub type Objects = Vec<(String, Arc<CachedObject>)>;

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    /// Everything up to here is applied.
    revision: i64,
    history: VecDeque<Arc<Change>>,
    /// Changes after this revision are all in `history`.
    oldest: i64,
}

struct ResourceCache {
    state: RwLock<State>,
    tx: broadcast::Sender<Arc<Change>>,
    failed: std::sync::atomic::AtomicBool,
}

/// What a watcher gets from the cache.
pub struct Subscription {
    /// For a watch without resourceVersion: the objects now (sorted by key).
    pub initial: Objects,
    /// Changes after the requested revision that are already in the cache.
    pub replay: Vec<Arc<Change>>,
    /// Live changes; changes at or below `skip_through` are to be ignored.
    pub live: broadcast::Receiver<Arc<Change>>,
    pub skip_through: i64,
    /// The revision the initial objects or the replay end at.
    pub revision: i64,
    /// The requested revision is older than the cache's history: the changes from this
    /// revision through `skip_through` are to be read from the store first (then `live`).
    pub history_from: Option<i64>,
}

#[derive(Clone)]
pub struct WatchCache {
    store: Arc<dyn Storage>,
    caches: Arc<Mutex<HashMap<String, Arc<ResourceCache>>>>,
    history: usize,
    watcher_buffer: usize,
}

impl WatchCache {
    pub fn new(store: Arc<dyn Storage>) -> Self {
        Self::with_limits(store, HISTORY, WATCHER_BUFFER)
    }

    /// A cache keeping `history` changes per resource, letting a watcher lag `watcher_buffer`.
    pub fn with_limits(store: Arc<dyn Storage>, history: usize, watcher_buffer: usize) -> Self {
        WatchCache {
            store,
            caches: Arc::default(),
            history: history.max(1),
            watcher_buffer: watcher_buffer.max(1),
        }
    }

    /// The cache under `prefix`, if it is running (started and its feed not failed).
    fn running(&self, prefix: &str) -> Option<Arc<ResourceCache>> {
        let caches = self.caches.lock().expect("caches lock");
        let c = caches.get(prefix)?;
        (!c.failed.load(std::sync::atomic::Ordering::Acquire)).then(|| c.clone())
    }

    /// The cache of `info` (all namespaces), started if needed.
    async fn cache(
        &self,
        info: &ResourceInfo,
    ) -> Result<Arc<ResourceCache>, rudder_store::StoreError> {
        let prefix = object::prefix(info, None);
        if let Some(c) = self.running(&prefix) {
            return Ok(c);
        }
        // List one consistent snapshot, page by page.
        let mut objects = BTreeMap::new();
        let mut token = None;
        let revision = loop {
            let page = self
                .store
                .list(
                    &prefix,
                    ListOptions { limit: Some(500), continue_token: token.take(), revision: None },
                )
                .await?;
            for kv in &page.items {
                if let Ok(o) = CachedObject::from_kv(kv) {
                    objects.insert(kv.key.clone(), Arc::new(o));
                }
            }
            match page.continue_token {
                Some(t) => token = Some(t),
                None => break page.revision,
            }
        };
        let mut events = self.store.watch(&prefix, revision + 1).await?;
        let (tx, _) = broadcast::channel(self.watcher_buffer);
        let history = self.history;
        let cache = Arc::new(ResourceCache {
            state: RwLock::new(State {
                objects,
                revision,
                history: VecDeque::new(),
                oldest: revision,
            }),
            tx,
            failed: Default::default(),
        });
        {
            let mut caches = self.caches.lock().expect("caches lock");
            if let Some(existing) = caches.get(&prefix)
                && !existing.failed.load(std::sync::atomic::Ordering::Acquire)
            {
                return Ok(existing.clone()); // another request started it meanwhile
            }
            caches.insert(prefix.clone(), cache.clone());
        }
        let feeding = cache.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                let Ok(event) = event else { break };
                let revision = event.revision();
                let new = match event.event_type {
                    EventType::Deleted => None,
                    _ => CachedObject::from_kv(&event.kv).ok().map(Arc::new),
                };
                {
                    let mut state = feeding.state.write().expect("cache lock");
                    let old = state.objects.get(&event.kv.key).cloned();
                    match &new {
                        Some(v) => state.objects.insert(event.kv.key.clone(), v.clone()),
                        None => state.objects.remove(&event.kv.key),
                    };
                    let change = Arc::new(Change::new(revision, event.kv.key.clone(), new, old));
                    state.revision = revision;
                    state.history.push_back(change.clone());
                    while state.history.len() > history {
                        if let Some(dropped) = state.history.pop_front() {
                            state.oldest = dropped.revision;
                        }
                    }
                    // Sent under the lock, so a new subscriber sees each change exactly once:
                    // in its replay or live.
                    let _ = feeding.tx.send(change);
                }
            }
            feeding.failed.store(true, std::sync::atomic::Ordering::Release);
            tracing::warn!("watch cache feed ended; it is rebuilt on next use");
        });
        Ok(cache)
    }

    /// Subscribes to `info`'s changes: from now with the current objects (`from` None), or
    /// after revision `from`. None if the cache no longer holds the changes after `from`.
    pub async fn subscribe(
        &self,
        info: &ResourceInfo,
        from: Option<i64>,
    ) -> Result<Subscription, rudder_store::StoreError> {
        let cache = self.cache(info).await?;
        let state = cache.state.read().expect("cache lock");
        let live = cache.tx.subscribe();
        Ok(match from {
            None => Subscription {
                initial: state.objects.iter().map(|(k, o)| (k.clone(), o.clone())).collect(),
                replay: Vec::new(),
                live,
                skip_through: state.revision,
                revision: state.revision,
                history_from: None,
            },
            // Older than the history kept here (a watcher that lists from the store before
            // the cache starts, or one far behind): the store has the history up to the
            // cache's point, the cache everything after it.
            Some(after) if after < state.oldest => Subscription {
                initial: Vec::new(),
                replay: Vec::new(),
                live,
                skip_through: state.revision,
                revision: after,
                history_from: Some(after + 1),
            },
            Some(after) => Subscription {
                initial: Vec::new(),
                replay: state.history.iter().filter(|c| c.revision > after).cloned().collect(),
                live,
                skip_through: state.revision.max(after),
                revision: state.revision.max(after),
                history_from: None,
            },
        })
    }

    /// The cached object at `key` (its revision is its mod revision), when `info`'s cache
    /// is running (it is not started for this). May lag the store: a hint for a
    /// compare-and-swap.
    pub fn cached(&self, info: &ResourceInfo, key: &str) -> Option<Arc<CachedObject>> {
        let cache = self.running(&object::prefix(info, None))?;
        let object = cache.state.read().expect("cache lock").objects.get(key)?.clone();
        Some(object)
    }

    /// The objects under `prefix` now, and the revision they are at (for
    /// `resourceVersion=0` lists).
    pub async fn snapshot(
        &self,
        info: &ResourceInfo,
        prefix: &str,
    ) -> Result<(Objects, i64), rudder_store::StoreError> {
        let cache = self.cache(info).await?;
        let state = cache.state.read().expect("cache lock");
        let objects = state
            .objects
            .range::<str, _>((std::ops::Bound::Included(prefix), std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        Ok((objects, state.revision))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rudder_store::{MemoryStorage, SqliteConfig, SqliteStorage};
    use serde_json::json;

    use super::*;

    fn cms() -> &'static ResourceInfo {
        rudder_api::resources::find("", "v1", "configmaps").unwrap()
    }

    async fn put(store: &dyn Storage, name: &str, value: &str) -> i64 {
        let key = object::key(cms(), Some("default"), name);
        let body =
            json!({"metadata": {"name": name, "namespace": "default"}, "data": {"v": value}});
        let bytes = Bytes::from(serde_json::to_vec(&body).unwrap());
        match store.get(&key).await.unwrap() {
            Some(kv) => store.update(&key, bytes, kv.mod_revision).await.unwrap().mod_revision,
            None => store.create(&key, bytes).await.unwrap().mod_revision,
        }
    }

    async fn next(sub: &mut Subscription) -> Arc<Change> {
        tokio::time::timeout(std::time::Duration::from_secs(30), sub.live.recv())
            .await
            .unwrap()
            .unwrap()
    }

    #[tokio::test]
    async fn snapshot_then_every_change_once_and_replay_after_a_revision() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        put(&*store, "a", "1").await;
        let cache = WatchCache::new(store.clone());
        let mut now = cache.subscribe(cms(), None).await.unwrap();
        assert_eq!(now.initial.len(), 1);
        let r2 = put(&*store, "b", "2").await;
        let r3 = put(&*store, "a", "3").await;
        let c = next(&mut now).await;
        assert_eq!((c.revision, c.old.is_none()), (r2, true));
        let c = next(&mut now).await;
        assert_eq!(c.revision, r3);
        assert_eq!(c.old.as_ref().unwrap().value().unwrap()["data"]["v"], "1");
        assert_eq!(c.new.as_ref().unwrap().value().unwrap()["data"]["v"], "3");
        // Resuming after r2 replays exactly the change at r3.
        let resumed = cache.subscribe(cms(), Some(r2)).await.unwrap();
        assert_eq!(resumed.replay.iter().map(|c| c.revision).collect::<Vec<_>>(), vec![r3]);
        let (objects, revision) =
            cache.snapshot(cms(), &object::prefix(cms(), None)).await.unwrap();
        assert_eq!((objects.len(), revision), (2, r3));
    }

    #[tokio::test]
    async fn history_is_bounded_and_older_revisions_come_from_the_store() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let first = put(&*store, "a", "0").await;
        let cache = WatchCache::with_limits(store.clone(), 3, 64);
        let mut live = cache.subscribe(cms(), None).await.unwrap();
        for i in 1..=5 {
            put(&*store, "a", &i.to_string()).await;
        }
        for _ in 0..5 {
            next(&mut live).await;
        }
        let old = cache.subscribe(cms(), Some(first)).await.unwrap();
        assert_eq!(
            (old.history_from, old.replay.len(), old.skip_through),
            (Some(first + 1), 0, first + 5),
            "older than the window: from the store up to the cache's revision"
        );
        let recent = cache.subscribe(cms(), Some(first + 2)).await.unwrap();
        assert_eq!((recent.history_from, recent.replay.len()), (None, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watchers_share_one_store_watch() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStorage::open(SqliteConfig::new(dir.path().join("db"))).unwrap();
        let store: Arc<dyn Storage> = Arc::new(sqlite.clone());
        let cache = WatchCache::new(store.clone());
        let mut subs = Vec::new();
        for _ in 0..50 {
            subs.push(cache.subscribe(cms(), None).await.unwrap());
        }
        assert_eq!(sqlite.watcher_count(), 1);
        let r = put(&*store, "x", "1").await;
        for sub in &mut subs {
            assert_eq!(next(sub).await.revision, r);
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_so() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let cache = WatchCache::with_limits(store.clone(), 100, 2);
        let mut slow = cache.subscribe(cms(), None).await.unwrap();
        let mut fast = cache.subscribe(cms(), None).await.unwrap();
        for i in 0..5 {
            put(&*store, "a", &i.to_string()).await;
            next(&mut fast).await;
        }
        match slow.live.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert!(n >= 3),
            other => panic!("expected Lagged, got {other:?}"),
        }
    }
}
