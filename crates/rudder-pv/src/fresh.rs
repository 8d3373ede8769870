//! An informer's cache plus the objects this process wrote itself and the watch has not
//! delivered yet (upstream's PV controller updates its own cache after each write): the
//! next decision sees its own last write, so it does not bind one volume twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Resource, ResourceExt};
use rudder_client::informer::{Informer, Object, ObjectKey, key_of};

fn revision<K: Resource>(obj: &K) -> u64 {
    obj.meta().resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

pub(crate) struct Fresh<K> {
    informer: Arc<Informer<K>>,
    written: Mutex<HashMap<ObjectKey, Arc<K>>>,
}

impl<K: Object> Fresh<K> {
    pub(crate) fn new(informer: Arc<Informer<K>>) -> Arc<Self> {
        Arc::new(Fresh { informer, written: Mutex::new(HashMap::new()) })
    }

    pub(crate) fn informer(&self) -> &Arc<Informer<K>> {
        &self.informer
    }

    /// Remembers an object as written by us.
    pub(crate) fn wrote(&self, obj: K) -> Arc<K> {
        let obj = Arc::new(obj);
        self.written.lock().expect("fresh lock").insert(key_of(&*obj), obj.clone());
        obj
    }

    /// Forgets what we wrote about a deleted object.
    pub(crate) fn deleted(&self, key: &ObjectKey) {
        self.written.lock().expect("fresh lock").remove(key);
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let cached = self.informer.get(namespace, name);
        let key = (namespace.to_owned(), name.to_owned());
        let mut written = self.written.lock().expect("fresh lock");
        match (cached, written.get(&key)) {
            (Some(c), Some(w)) if revision(&**w) > revision(&*c) => Some(w.clone()),
            (Some(c), Some(_)) => {
                written.remove(&key);
                Some(c)
            }
            (Some(c), None) => Some(c),
            // Written by us, deleted meanwhile or not seen yet: the informer's delete
            // handler clears deleted ones, so this one is new.
            (None, w) => w.cloned(),
        }
    }

    pub(crate) fn list(&self) -> Vec<Arc<K>> {
        let mut all: Vec<Arc<K>> = self.informer.list();
        let written = self.written.lock().expect("fresh lock");
        if written.is_empty() {
            return all;
        }
        for obj in all.iter_mut() {
            if let Some(w) = written.get(&key_of(&**obj))
                && revision(&**w) > revision(&**obj)
            {
                *obj = w.clone();
            }
        }
        for (key, w) in written.iter() {
            if self.informer.get(&key.0, &key.1).is_none() {
                all.push(w.clone());
            }
        }
        all.sort_by_key(|o| o.name_any());
        all
    }
}
