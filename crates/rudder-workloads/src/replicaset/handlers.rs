//! Event handlers: they only find which owners a change concerns, note observed creations
//! and deletions in the expectations, and enqueue keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_client::informer::key_of;
use rudder_client::objects::controller_of;
use rudder_client::{Change, Informer, ObjectKey, WorkQueue};

use super::kinds::Replicated;
use crate::expectations::Expectations;
use crate::recent::RecentWrites;

/// The owner a controller reference points at, if it is one of ours and still the same
/// object (same UID).
pub fn resolve<K: Replicated>(
    owners: &Informer<K>,
    namespace: &str,
    r: &OwnerReference,
) -> Option<Arc<K>> {
    if r.kind != K::KIND {
        return None;
    }
    owners.get(namespace, &r.name).filter(|o| o.meta().uid.as_deref() == Some(r.uid.as_str()))
}

/// Owners in `namespace` whose selector matches `labels`.
pub fn selecting<K: Replicated>(
    owners: &Informer<K>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Arc<K>> {
    owners.list_namespace(namespace).into_iter().filter(|o| o.selects(labels)).collect()
}

fn labels(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.labels.clone().unwrap_or_default()
}

#[derive(Clone)]
pub struct Handlers<K: Replicated> {
    pub owners: Arc<Informer<K>>,
    pub queue: Arc<WorkQueue<ObjectKey>>,
    pub expectations: Arc<Expectations>,
    pub written: Arc<RecentWrites<K>>,
}

impl<K: Replicated> Handlers<K> {
    pub fn register(self, pods: &Informer<Pod>) {
        let owner_handlers = self.clone();
        self.owners.add_handler(move |change: &Change<K>| owner_handlers.on_owner(change));
        pods.add_handler(move |change: &Change<Pod>| self.on_pod(change));
    }

    fn on_owner(&self, change: &Change<K>) {
        let key = key_of(&**change.object());
        if let Change::Deleted(_) = change {
            self.expectations.forget(&key);
            self.written.forget(&key);
        }
        self.queue.add(key);
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Added(pod) => self.pod_added(pod),
            Change::Updated { old, new } => self.pod_updated(old, new),
            Change::Deleted(pod) => self.pod_deleted(pod),
        }
    }

    fn pod_added(&self, pod: &Pod) {
        // A pod already being deleted when first seen (say, after a restart) counts as a
        // deletion: its owner should replace it at once.
        if pod.metadata.deletion_timestamp.is_some() {
            return self.pod_deleted(pod);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(r) = controller_of(&pod.metadata) {
            if let Some(owner) = resolve(&self.owners, namespace, r) {
                let key = key_of(&*owner);
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        // An orphan: every owner that could adopt it looks.
        for owner in selecting(&self.owners, namespace, &labels(pod)) {
            self.queue.add(key_of(&*owner));
        }
    }

    fn pod_updated(&self, old: &Pod, new: &Pod) {
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let label_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            // Being deleted: the owner replaces it now rather than when it is finally gone.
            self.pod_deleted(new);
            if label_changed {
                self.pod_deleted(old);
            }
            return;
        }
        let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
        let ref_changed = old_ref != new_ref;
        if ref_changed
            && let Some(r) = old_ref
            && let Some(owner) = resolve(&self.owners, namespace, r)
        {
            self.queue.add(key_of(&*owner));
        }
        if let Some(r) = new_ref {
            if let Some(owner) = resolve(&self.owners, namespace, r) {
                self.queue.add(key_of(&*owner));
            }
            return;
        }
        if label_changed || ref_changed {
            for owner in selecting(&self.owners, namespace, &labels(new)) {
                self.queue.add(key_of(&*owner));
            }
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(r) = controller_of(&pod.metadata) else { return };
        let Some(owner) = resolve(&self.owners, namespace, r) else { return };
        let key = key_of(&*owner);
        self.expectations.deletion_observed(&key, &key_of(pod));
        self.queue.add(key);
    }
}
