//! Read-modify-writes that start from a stale watch cache: the cache is a hint, the store
//! decides.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use rudder_store::{
    Deleted, KeyValue, ListOptions, ListPage, MemoryStorage, Revision, Storage, WatchStream,
};
use serde_json::{Value, json};

use super::*;
use crate::clock::SystemClock;
use crate::request::parse_target;
use crate::watch_cache::WatchCache;

/// A store whose watches never deliver: a watch cache over it stays at its first list.
struct FrozenWatches(MemoryStorage);

#[async_trait]
impl Storage for FrozenWatches {
    fn backend(&self) -> &'static str {
        "frozen-watches"
    }
    async fn get(&self, key: &str) -> rudder_store::Result<Option<KeyValue>> {
        self.0.get(key).await
    }
    async fn list(&self, prefix: &str, options: ListOptions) -> rudder_store::Result<ListPage> {
        self.0.list(prefix, options).await
    }
    async fn count(&self, prefix: &str) -> rudder_store::Result<i64> {
        self.0.count(prefix).await
    }
    async fn create(&self, key: &str, value: Bytes) -> rudder_store::Result<KeyValue> {
        self.0.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected: Revision,
    ) -> rudder_store::Result<KeyValue> {
        self.0.update(key, value, expected).await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> rudder_store::Result<Deleted> {
        self.0.delete(key, expected).await
    }
    async fn watch(&self, _prefix: &str, _from: Revision) -> rudder_store::Result<WatchStream> {
        Ok(WatchStream::new(futures::stream::pending()))
    }
    async fn compact(&self, revision: Revision) -> rudder_store::Result<()> {
        self.0.compact(revision).await
    }
    async fn current_revision(&self) -> rudder_store::Result<Revision> {
        self.0.current_revision().await
    }
    async fn compacted_revision(&self) -> rudder_store::Result<Revision> {
        self.0.compacted_revision().await
    }
}

fn config_map(v: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": "c", "namespace": "default"}, "data": {"v": v}})
}

async fn stored(store: &dyn Storage, key: &str) -> (String, i64) {
    let kv = store.get(key).await.unwrap().unwrap();
    let obj: Value = serde_json::from_slice(&kv.value).unwrap();
    (obj["data"]["v"].as_str().unwrap().to_owned(), kv.mod_revision)
}

#[tokio::test]
async fn a_stale_cached_copy_never_decides_a_write() {
    let store: Arc<dyn Storage> = Arc::new(FrozenWatches(MemoryStorage::new()));
    let reg = Registry {
        store: store.clone(),
        clock: Arc::new(SystemClock),
        cache: WatchCache::new(store.clone()),
    };
    let t = parse_target("", "v1", &["namespaces", "default", "configmaps", "c"]).unwrap();
    let k = key(t.info, Some("default"), "c");
    let first = store.create(&k, encode(&config_map("1"))).await.unwrap().mod_revision;
    // The cache lists v=1 now and never sees a change after that.
    reg.cache.snapshot(t.info, "/").await.unwrap();
    assert_eq!(reg.cache.cached(t.info, &k).unwrap().revision(), first);
    store.update(&k, encode(&config_map("2")), first).await.unwrap();

    // The compare-and-swap on the cached revision fails; the write is redone from the store.
    let body = serde_json::to_vec(&config_map("3")).unwrap();
    let written = reg.update(&t, &body, &Query::default()).await.unwrap();
    let (v, revision) = stored(&*store, &k).await;
    assert_eq!(v, "3");
    assert_eq!(written.object["metadata"]["resourceVersion"], revision.to_string());
    assert_eq!(written.object["data"]["v"], "3");

    // Equal to the cached copy but not to the stored one: not a no-op.
    let body = serde_json::to_vec(&config_map("1")).unwrap();
    reg.update(&t, &body, &Query::default()).await.unwrap();
    assert_eq!(stored(&*store, &k).await.0, "1");

    // A precondition on the revision the cache still shows is a conflict, decided by the
    // store, and writes nothing.
    let mut stale = config_map("4");
    stale["metadata"]["resourceVersion"] = json!(first.to_string());
    let err = reg.update(&t, &serde_json::to_vec(&stale).unwrap(), &Query::default()).await;
    assert_eq!(err.err().map(|e| e.code), Some(409));
    assert_eq!(stored(&*store, &k).await.0, "1");

    // Deleted behind the cache's back: 404, not a write.
    store.delete(&k, None).await.unwrap();
    let body = serde_json::to_vec(&config_map("5")).unwrap();
    let err = reg.update(&t, &body, &Query::default()).await;
    assert_eq!(err.err().map(|e| e.code), Some(404));
    assert!(store.get(&k).await.unwrap().is_none());
}
