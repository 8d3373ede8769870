//! Event handlers of the Deployment controller: they find which Deployments a change
//! concerns and enqueue their keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_of, selector_matches, selects_nothing};
use rudder_client::{Change, Informer, ObjectKey, WorkQueue};

use super::util::{RECREATE, strategy_type};
use crate::recent::RecentWrites;

/// The Deployment a controller reference points at, if it still is that object.
fn resolve(
    deployments: &Informer<Deployment>,
    namespace: &str,
    r: &OwnerReference,
) -> Option<Arc<Deployment>> {
    if r.kind != "Deployment" {
        return None;
    }
    deployments
        .get(namespace, &r.name)
        .filter(|d| d.metadata.uid.as_deref() == Some(r.uid.as_str()))
}

/// Deployments in `namespace` whose (non-empty) selector matches `labels`.
fn selecting(
    deployments: &Informer<Deployment>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Arc<Deployment>> {
    deployments
        .list_namespace(namespace)
        .into_iter()
        .filter(|d| {
            d.spec.as_ref().is_some_and(|s| {
                !selects_nothing(&s.selector) && selector_matches(&s.selector, labels)
            })
        })
        .collect()
}

#[derive(Clone)]
pub struct Handlers {
    pub deployments: Arc<Informer<Deployment>>,
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub queue: Arc<WorkQueue<ObjectKey>>,
    pub written_deployments: Arc<RecentWrites<Deployment>>,
    pub written_replica_sets: Arc<RecentWrites<ReplicaSet>>,
}

impl Handlers {
    pub fn register(self, pods: &Informer<Pod>) {
        let h = self.clone();
        self.deployments.add_handler(move |change: &Change<Deployment>| {
            let key = key_of(&**change.object());
            if let Change::Deleted(_) = change {
                h.written_deployments.forget(&key);
            }
            h.queue.add(key);
        });
        let h = self.clone();
        self.replica_sets.add_handler(move |change: &Change<ReplicaSet>| h.on_replica_set(change));
        pods.add_handler(move |change: &Change<Pod>| {
            if let Change::Deleted(pod) = change {
                self.pod_deleted(pod);
            }
        });
    }

    fn enqueue(&self, d: &Deployment) {
        self.queue.add(key_of(d));
    }

    fn on_replica_set(&self, change: &Change<ReplicaSet>) {
        let rs = change.object();
        let namespace = rs.metadata.namespace.as_deref().unwrap_or("");
        match change {
            Change::Added(rs) => {
                if let Some(r) = controller_of(&rs.metadata) {
                    if let Some(d) = resolve(&self.deployments, namespace, r) {
                        self.enqueue(&d);
                    }
                    return;
                }
                if rs.metadata.deletion_timestamp.is_some() {
                    return;
                }
                for d in selecting(
                    &self.deployments,
                    namespace,
                    rs.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                ) {
                    self.enqueue(&d);
                }
            }
            Change::Updated { old, new } => {
                let (old_ref, new_ref) =
                    (controller_of(&old.metadata), controller_of(&new.metadata));
                let ref_changed = old_ref != new_ref;
                if ref_changed
                    && let Some(r) = old_ref
                    && let Some(d) = resolve(&self.deployments, namespace, r)
                {
                    self.enqueue(&d);
                }
                if let Some(r) = new_ref {
                    if let Some(d) = resolve(&self.deployments, namespace, r) {
                        self.enqueue(&d);
                    }
                    return;
                }
                if ref_changed || old.metadata.labels != new.metadata.labels {
                    let labels = new.metadata.labels.clone().unwrap_or_default();
                    for d in selecting(&self.deployments, namespace, &labels) {
                        self.enqueue(&d);
                    }
                }
            }
            Change::Deleted(rs) => {
                self.written_replica_sets.forget(&key_of(&**rs));
                if let Some(r) = controller_of(&rs.metadata)
                    && let Some(d) = resolve(&self.deployments, namespace, r)
                {
                    self.enqueue(&d);
                }
            }
        }
    }

    /// A Recreate Deployment waits for its old pods to be gone: a deleted pod may be the
    /// last one.
    fn pod_deleted(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else {
            return;
        };
        let Some(rs) = self
            .replica_sets
            .get(namespace, &r.name)
            .filter(|rs| rs.metadata.uid.as_deref() == Some(r.uid.as_str()))
        else {
            return;
        };
        let Some(dr) = controller_of(&rs.metadata) else { return };
        if let Some(d) = resolve(&self.deployments, namespace, dr)
            && strategy_type(&d) == RECREATE
        {
            self.enqueue(&d);
        }
    }
}
