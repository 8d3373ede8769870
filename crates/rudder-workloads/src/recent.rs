//! A controller's own recent writes. The informer cache shows a controller's write only once
//! the watch delivered it; a reconcile that runs before that (another event for the same key)
//! would decide from the older copy and fail its precondition, or, for objects it does not
//! write in that reconcile, decide from counts it already changed. Reads therefore go through
//! [`RecentWrites::fresher`], which prefers the written copy while it is newer than the
//! cached one (resourceVersions are the store's revisions: integers that only grow) and
//! drops it once the cache caught up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Resource;
use rudder_client::ObjectKey;
use rudder_client::informer::key_of;

/// Entries beyond this are dropped all at once (they only save a retry).
const LIMIT: usize = 10_000;

/// Objects of one kind this controller wrote, by `(namespace, name)`.
#[derive(Debug)]
pub struct RecentWrites<K> {
    written: Mutex<HashMap<ObjectKey, Arc<K>>>,
}

impl<K> Default for RecentWrites<K> {
    fn default() -> Self {
        RecentWrites { written: Mutex::new(HashMap::new()) }
    }
}

fn revision<K: Resource>(obj: &K) -> Option<u64> {
    obj.meta().resource_version.as_deref()?.parse().ok()
}

impl<K: Resource> RecentWrites<K> {
    /// Remembers what the API server answered to a write.
    pub fn record(&self, obj: K) -> Arc<K> {
        let obj = Arc::new(obj);
        let mut written = self.written.lock().expect("recent writes lock");
        if written.len() >= LIMIT {
            written.clear();
        }
        written.insert(key_of(&*obj), obj.clone());
        obj
    }

    /// The newer of the cached copy and this controller's last write of the same object.
    pub fn fresher(&self, cached: Arc<K>) -> Arc<K> {
        let key = key_of(&*cached);
        let mut written = self.written.lock().expect("recent writes lock");
        let Some(mine) = written.get(&key) else { return cached };
        let same_object = mine.meta().uid == cached.meta().uid;
        match (revision(&**mine), revision(&*cached)) {
            (Some(m), Some(c)) if same_object && m > c => mine.clone(),
            _ => {
                written.remove(&key);
                cached
            }
        }
    }

    /// Forgets an object (it was deleted).
    pub fn forget(&self, key: &ObjectKey) {
        self.written.lock().expect("recent writes lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    fn rs(uid: &str, rv: &str, replicas: i32) -> ReplicaSet {
        let mut rs = ReplicaSet::default();
        rs.metadata.namespace = Some("ns".into());
        rs.metadata.name = Some("a".into());
        rs.metadata.uid = Some(uid.into());
        rs.metadata.resource_version = Some(rv.into());
        rs.spec = Some(Default::default());
        rs.spec.as_mut().unwrap().replicas = Some(replicas);
        rs
    }

    fn replicas(rs: &ReplicaSet) -> i32 {
        rs.spec.as_ref().and_then(|s| s.replicas).unwrap()
    }

    #[test]
    fn prefers_own_newer_write_until_the_cache_catches_up() {
        let w = RecentWrites::default();
        w.record(rs("u1", "10", 3));
        assert_eq!(replicas(&w.fresher(Arc::new(rs("u1", "9", 5)))), 3, "cache is older");
        assert_eq!(replicas(&w.fresher(Arc::new(rs("u1", "11", 4)))), 4, "cache caught up");
        // The entry was dropped: an older cached copy is used as is from now on.
        assert_eq!(replicas(&w.fresher(Arc::new(rs("u1", "9", 5)))), 5);
        w.record(rs("u1", "20", 1));
        assert_eq!(replicas(&w.fresher(Arc::new(rs("u2", "15", 7)))), 7, "recreated object");
    }
}
