//! Event handlers: they only find the StatefulSets a change concerns and enqueue them.
//! Pods go to their controller (or, orphans, to every set whose selector matches them, which
//! may adopt them); claim updates and deletes go to the sets whose selector matches the
//! claim's labels (a claim going away may let a pod be made).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_of, selector_matches, selects_nothing};
use rudder_client::{Change, Informer, ObjectKey, WorkQueue};
use rudder_workloads::recent::RecentWrites;

/// Whether `set`'s selector matches `labels` (an empty selector matches nothing).
pub fn selects(set: &StatefulSet, labels: &BTreeMap<String, String>) -> bool {
    set.spec
        .as_ref()
        .is_some_and(|s| !selects_nothing(&s.selector) && selector_matches(&s.selector, labels))
}

#[derive(Clone)]
pub struct Handlers {
    pub sets: Arc<Informer<StatefulSet>>,
    pub queue: Arc<WorkQueue<ObjectKey>>,
    pub written: Arc<RecentWrites<StatefulSet>>,
}

impl Handlers {
    pub fn register(self, pods: &Informer<Pod>, claims: &Informer<PersistentVolumeClaim>) {
        let on_set = self.clone();
        self.sets.add_handler(move |change: &Change<StatefulSet>| {
            let key = key_of(&**change.object());
            if let Change::Deleted(_) = change {
                on_set.written.forget(&key);
            }
            on_set.queue.add(key);
        });
        let on_pod = self.clone();
        pods.add_handler(move |change: &Change<Pod>| on_pod.on_pod(change));
        let on_claim = self;
        claims.add_handler(move |change: &Change<PersistentVolumeClaim>| {
            if let Change::Added(_) = change {
                return;
            }
            let claim = change.object();
            let namespace = claim.metadata.namespace.as_deref().unwrap_or("");
            let labels = claim.metadata.labels.clone().unwrap_or_default();
            on_claim.enqueue_selecting(namespace, &labels);
        });
    }

    fn enqueue_selecting(&self, namespace: &str, labels: &BTreeMap<String, String>) {
        for set in self.sets.list_namespace(namespace) {
            if selects(&set, labels) {
                self.queue.add(key_of(&*set));
            }
        }
    }

    /// Enqueues the set `pod`'s controller reference points at, if it is one of ours.
    /// Returns whether the pod has a controller at all.
    fn enqueue_controller(&self, pod: &Pod) -> bool {
        let Some(r) = controller_of(&pod.metadata) else { return false };
        if r.kind != "StatefulSet" {
            return true;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(set) = self.sets.get(namespace, &r.name)
            && set.metadata.uid.as_deref() == Some(r.uid.as_str())
        {
            self.queue.add(key_of(&*set));
        }
        true
    }

    fn on_pod(&self, change: &Change<Pod>) {
        let namespace = change.object().metadata.namespace.clone().unwrap_or_default();
        match change {
            Change::Added(pod) | Change::Deleted(pod) => {
                if !self.enqueue_controller(pod) && matches!(change, Change::Added(_)) {
                    self.enqueue_selecting(
                        &namespace,
                        &pod.metadata.labels.clone().unwrap_or_default(),
                    );
                }
            }
            Change::Updated { old, new } => {
                let ref_changed = controller_of(&old.metadata) != controller_of(&new.metadata);
                if ref_changed {
                    self.enqueue_controller(old);
                }
                if !self.enqueue_controller(new)
                    && (ref_changed || old.metadata.labels != new.metadata.labels)
                {
                    self.enqueue_selecting(
                        &namespace,
                        &new.metadata.labels.clone().unwrap_or_default(),
                    );
                }
            }
        }
    }
}
