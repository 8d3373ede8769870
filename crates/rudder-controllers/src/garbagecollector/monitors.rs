//! One watch per deletable resource, each turning objects into graph nodes as they arrive
//! (metadata only), and discovery run again now and then to follow resources that appear or
//! go away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::graph::{GraphEvent, ObjectSummary, OwnerRef, Uid};
use super::{IGNORED_RESOURCES, Shared};
use crate::discovery::{ServedResource, ServedResources};
use crate::error::Error;
use crate::meta::{MetaObject, has_finalizer};

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

struct Monitor {
    cancel: CancellationToken,
    synced: watch::Receiver<bool>,
}

pub(crate) struct Monitors {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    running: HashMap<(String, String), Monitor>,
    next_index: u32,
}

/// Whether the garbage collector watches `r`.
pub fn is_collectable(r: &ServedResource) -> bool {
    r.preferred
        && r.supports_all(&["list", "watch", "delete"])
        && !IGNORED_RESOURCES.iter().any(|(g, p)| *g == r.resource.group && *p == r.resource.plural)
}

impl Monitors {
    pub fn new(shared: Arc<Shared>, cancel: CancellationToken) -> Self {
        Monitors { shared, cancel, running: HashMap::new(), next_index: 0 }
    }

    /// Runs discovery and starts (or stops) watches to match it.
    pub async fn resync(&mut self) -> Result<(), Error> {
        let served = ServedResources::discover(&self.shared.client).await?;
        let wanted: Vec<ServedResource> =
            served.preferred().filter(|r| is_collectable(r)).cloned().collect();
        *self.shared.resources.write().expect("resources lock") = served;
        let keys: HashSet<(String, String)> =
            wanted.iter().map(|r| (r.resource.group.clone(), r.resource.plural.clone())).collect();
        self.running.retain(|key, monitor| {
            let keep = keys.contains(key);
            if !keep {
                tracing::info!(resource = ?key, "garbage collector: resource no longer served");
                monitor.cancel.cancel();
            }
            keep
        });
        for r in wanted {
            let key = (r.resource.group.clone(), r.resource.plural.clone());
            if self.running.contains_key(&key) {
                continue;
            }
            let cancel = self.cancel.child_token();
            let (tx, rx) = watch::channel(false);
            let index = self.next_index;
            self.next_index += 1;
            let shared = self.shared.clone();
            let stop = cancel.clone();
            tracing::debug!(resource = %r.qualified_name(), "garbage collector: watching");
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = monitor(shared, r, index, tx) => {}
                }
            });
            self.running.insert(key, Monitor { cancel, synced: rx });
        }
        Ok(())
    }

    /// Waits until every watch has listed once.
    pub async fn wait_synced(&self) {
        for monitor in self.running.values() {
            let mut rx = monitor.synced.clone();
            let _ = rx.wait_for(|s| *s).await;
        }
    }
}

async fn monitor(
    shared: Arc<Shared>,
    served: ServedResource,
    index: u32,
    synced: watch::Sender<bool>,
) {
    // Metadata only (`as=PartialObjectMetadata`), as upstream's collector watches: owners,
    // finalizers and deletion marks are all it reads.
    let api: Api<PartialObjectMeta<MetaObject>> =
        Api::all_with(shared.client.clone(), &served.resource);
    let api_version: Arc<str> = served.resource.api_version.as_str().into();
    let kind: Arc<str> = served.resource.kind.as_str().into();
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    let mut seen: Option<HashSet<Uid>> = None;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => seen = Some(HashSet::new()),
            Ok(Event::InitApply(obj)) => {
                if let Some(s) = summarize(&obj.metadata, index, &api_version, &kind) {
                    if let Some(seen) = seen.as_mut() {
                        seen.insert(s.identity.uid.clone());
                    }
                    shared.apply(GraphEvent::Upsert(s));
                }
            }
            Ok(Event::InitDone) => {
                let seen = seen.take().unwrap_or_default();
                shared.apply(GraphEvent::Resync { resource: index, seen });
                synced.send_replace(true);
            }
            Ok(Event::Apply(obj)) => {
                if let Some(s) = summarize(&obj.metadata, index, &api_version, &kind) {
                    shared.apply(GraphEvent::Upsert(s));
                }
            }
            Ok(Event::Delete(obj)) => {
                if let Some(s) = summarize(&obj.metadata, index, &api_version, &kind) {
                    shared.apply(GraphEvent::Delete(s));
                }
            }
            Err(e) => tracing::debug!(
                resource = %served.qualified_name(),
                error = %e,
                "garbage collector: watch failed; retrying"
            ),
        }
    }
}

/// The graph's view of one object (`None` without a uid).
pub fn summarize(
    meta: &ObjectMeta,
    resource: u32,
    api_version: &Arc<str>,
    kind: &Arc<str>,
) -> Option<ObjectSummary> {
    let uid: Uid = meta.uid.as_deref().filter(|u| !u.is_empty())?.into();
    Some(ObjectSummary {
        identity: super::graph::Identity {
            api_version: api_version.clone(),
            kind: kind.clone(),
            namespace: meta.namespace.as_deref().unwrap_or_default().into(),
            name: meta.name.as_deref().unwrap_or_default().into(),
            uid,
        },
        resource,
        owners: meta.owner_references.iter().flatten().map(owner_ref).collect(),
        being_deleted: meta.deletion_timestamp.is_some(),
        foreground: has_finalizer(meta, FOREGROUND_FINALIZER),
        orphan: has_finalizer(meta, ORPHAN_FINALIZER),
    })
}

pub fn owner_ref(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> OwnerRef {
    OwnerRef {
        uid: r.uid.as_str().into(),
        api_version: r.api_version.as_str().into(),
        kind: r.kind.as_str().into(),
        name: r.name.as_str().into(),
        block_owner_deletion: r.block_owner_deletion == Some(true),
        controller: r.controller == Some(true),
    }
}
