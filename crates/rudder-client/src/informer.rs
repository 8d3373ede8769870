//! Shared informers: one watch per resource type feeding an in-memory cache that every
//! control loop in the process reads, plus change handlers that only enqueue keys (the
//! upstream shape). A relist after a broken watch is diffed against the cache so handlers
//! see the deletes they missed.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// `(namespace, name)`; the namespace is empty for cluster-scoped objects.
pub type ObjectKey = (String, String);

pub fn key_of<K: Resource>(obj: &K) -> ObjectKey {
    (obj.meta().namespace.clone().unwrap_or_default(), obj.meta().name.clone().unwrap_or_default())
}

/// What happened to one cached object.
#[derive(Debug)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, for a delete).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// The bound every cached type meets.
pub trait Object:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}
impl<K> Object for K where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
}

/// A watch-fed cache of one resource type.
pub struct Informer<K> {
    objects: RwLock<BTreeMap<ObjectKey, Arc<K>>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> std::fmt::Debug for Informer<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informer").field("type", &std::any::type_name::<K>()).finish()
    }
}

impl<K: Object> Informer<K> {
    /// An informer not fed by anything yet (see [`Informer::run`]); also what tests fill by
    /// hand with [`Informer::apply`] and [`Informer::delete`].
    pub fn new() -> Arc<Self> {
        Arc::new(Informer {
            objects: RwLock::new(BTreeMap::new()),
            handlers: RwLock::new(Vec::new()),
            synced: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Starts feeding the cache from a watch of `api` until `cancel`.
    pub fn start(api: Api<K>, config: watcher::Config, cancel: CancellationToken) -> Arc<Self> {
        let informer = Informer::new();
        let feed = informer.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = feed.run(api, config) => {}
                _ = cancel.cancelled() => {}
            }
        });
        informer
    }

    async fn run(&self, api: Api<K>, config: watcher::Config) {
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        let mut relist: Option<BTreeMap<ObjectKey, Arc<K>>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => relist = Some(BTreeMap::new()),
                Ok(Event::InitApply(obj)) => {
                    if let Some(r) = relist.as_mut() {
                        r.insert(key_of(&obj), Arc::new(obj));
                    }
                }
                Ok(Event::InitDone) => {
                    if let Some(r) = relist.take() {
                        self.replace(r);
                    }
                    self.synced.send_replace(true);
                }
                Ok(Event::Apply(obj)) => self.apply(obj),
                Ok(Event::Delete(obj)) => self.delete(&obj),
                Err(e) => tracing::debug!(
                    resource = std::any::type_name::<K>(),
                    error = %e,
                    "watch failed; retrying with back-off"
                ),
            }
        }
    }

    /// Puts an object into the cache and tells the handlers.
    pub fn apply(&self, obj: K) {
        let obj = Arc::new(obj);
        let old = self.objects.write().expect("informer lock").insert(key_of(&*obj), obj.clone());
        let change = match old {
            Some(old) if old.resource_version() == obj.resource_version() => return,
            Some(old) => Change::Updated { old, new: obj },
            None => Change::Added(obj),
        };
        self.dispatch(&change);
    }

    /// Removes an object from the cache and tells the handlers.
    pub fn delete(&self, obj: &K) {
        let key = key_of(obj);
        let old = self.objects.write().expect("informer lock").remove(&key);
        if let Some(old) = old {
            self.dispatch(&Change::Deleted(old));
        }
    }

    fn replace(&self, fresh: BTreeMap<ObjectKey, Arc<K>>) {
        let old = std::mem::replace(&mut *self.objects.write().expect("informer lock"), fresh);
        let mut changes = Vec::new();
        {
            let now = self.objects.read().expect("informer lock");
            for (key, obj) in now.iter() {
                match old.get(key) {
                    Some(o) if o.resource_version() == obj.resource_version() => {}
                    Some(o) => changes.push(Change::Updated { old: o.clone(), new: obj.clone() }),
                    None => changes.push(Change::Added(obj.clone())),
                }
            }
            for (key, obj) in old.iter() {
                if !now.contains_key(key) {
                    changes.push(Change::Deleted(obj.clone()));
                }
            }
        }
        for change in &changes {
            self.dispatch(change);
        }
    }

    fn dispatch(&self, change: &Change<K>) {
        for handler in self.handlers.read().expect("informer lock").iter() {
            handler(change);
        }
    }

    /// Registers a change handler. Objects already cached are replayed to it as `Added`, so a
    /// handler added late misses nothing. Handlers must be quick: enqueue keys, no I/O.
    pub fn add_handler(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        let mut handlers = self.handlers.write().expect("informer lock");
        for obj in self.list() {
            handler(&Change::Added(obj));
        }
        handlers.push(Box::new(handler));
    }

    /// Waits until the first full list has been cached.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Marks a hand-filled informer as synced (tests).
    pub fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.objects
            .read()
            .expect("informer lock")
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.objects.read().expect("informer lock").values().cloned().collect()
    }

    /// The objects of one namespace (a range of the ordered cache, not a scan).
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let objects = self.objects.read().expect("informer lock");
        let start = (namespace.to_owned(), String::new());
        objects
            .range(start..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.objects.read().expect("informer lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One informer per resource type for a whole process (the controller manager's shared
/// informer factory). Informers start on first use and stop with `cancel`.
#[derive(Clone)]
pub struct Informers {
    client: Client,
    cancel: CancellationToken,
    started: Arc<Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers").finish_non_exhaustive()
    }
}

impl Informers {
    pub fn new(client: Client, cancel: CancellationToken) -> Self {
        Informers { client, cancel, started: Arc::new(Mutex::new(HashMap::new())) }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The process-wide informer of every `K` in the cluster.
    pub fn get<K: Object>(&self) -> Arc<Informer<K>> {
        let mut started = self.started.lock().expect("informers lock");
        let entry = started.entry(TypeId::of::<K>()).or_insert_with(|| {
            let api: Api<K> = Api::all(self.client.clone());
            let informer = Informer::start(api, watcher::Config::default(), self.cancel.clone());
            informer as Arc<dyn Any + Send + Sync>
        });
        entry.clone().downcast::<Informer<K>>().expect("one informer type per TypeId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn pod(ns: &str, name: &str, rv: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.resource_version = Some(rv.into());
        p
    }

    #[test]
    fn handlers_see_adds_updates_deletes_and_relist_diffs() {
        let informer = Informer::<Pod>::new();
        informer.apply(pod("a", "early", "1"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        informer.add_handler(move |c| {
            let kind = match c {
                Change::Added(_) => "add",
                Change::Updated { .. } => "update",
                Change::Deleted(_) => "delete",
            };
            s.lock().unwrap().push(format!("{kind} {}", c.object().name_any()));
        });
        informer.apply(pod("a", "x", "2"));
        informer.apply(pod("a", "x", "2")); // same version: no event
        informer.apply(pod("a", "x", "3"));
        informer.apply(pod("b", "y", "4"));
        informer.delete(&pod("a", "x", "3"));
        let mut fresh = BTreeMap::new();
        let p = pod("b", "y", "5");
        fresh.insert(key_of(&p), Arc::new(p));
        informer.replace(fresh);
        assert_eq!(
            *seen.lock().unwrap(),
            ["add early", "add x", "update x", "add y", "delete x", "update y", "delete early"]
        );
        assert_eq!(informer.list_namespace("b").len(), 1);
        assert!(informer.list_namespace("a").is_empty());
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        informer.add_handler(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(count.load(Ordering::SeqCst), 1, "late handler gets the cached object");
    }
}
