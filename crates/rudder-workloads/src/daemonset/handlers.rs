//! Event handlers of the DaemonSet controller: they only find which DaemonSets a change
//! concerns, note observed pod creations and deletions in the expectations, and enqueue keys
//! (upstream's add/update/delete handlers for DaemonSets, ControllerRevisions, pods and
//! nodes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_of, pod_is_ready, selector_matches, selects_nothing};
use rudder_client::{Change, Informer, ObjectKey, WorkQueue};

use super::placement::node_should_run_daemon_pod;
use crate::expectations::Expectations;
use crate::recent::RecentWrites;

#[derive(Clone)]
pub struct Handlers {
    pub daemon_sets: Arc<Informer<DaemonSet>>,
    pub queue: Arc<WorkQueue<ObjectKey>>,
    pub expectations: Arc<Expectations>,
    pub written: Arc<RecentWrites<DaemonSet>>,
}

/// The DaemonSet a controller reference points at, if it still exists with that uid.
pub fn resolve(
    daemon_sets: &Informer<DaemonSet>,
    namespace: &str,
    r: &OwnerReference,
) -> Option<Arc<DaemonSet>> {
    if r.kind != "DaemonSet" {
        return None;
    }
    daemon_sets
        .get(namespace, &r.name)
        .filter(|ds| ds.metadata.uid.as_deref() == Some(r.uid.as_str()))
}

/// DaemonSets of `namespace` whose (non-empty) selector matches `labels`.
pub fn selecting(
    daemon_sets: &Informer<DaemonSet>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Arc<DaemonSet>> {
    daemon_sets
        .list_namespace(namespace)
        .into_iter()
        .filter(|ds| {
            ds.spec.as_ref().is_some_and(|s| {
                !selects_nothing(&s.selector) && selector_matches(&s.selector, labels)
            })
        })
        .collect()
}

fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// Whether a node update changes nothing a DaemonSet looks at: the same conditions are True
/// and nothing but the conditions and resourceVersion changed (upstream's
/// shouldIgnoreNodeUpdate; heartbeats only move condition times).
pub fn ignore_node_update(old: &Node, new: &Node) -> bool {
    let trues = |n: &Node| {
        let mut t: Vec<String> = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter(|c| c.status == "True")
            .map(|c| c.type_.clone())
            .collect();
        t.sort();
        t
    };
    if trues(old) != trues(new) {
        return false;
    }
    let strip = |n: &Node| {
        let mut n = n.clone();
        n.metadata.resource_version = None;
        n.metadata.managed_fields = None;
        if let Some(s) = n.status.as_mut() {
            s.conditions = None;
        }
        n
    };
    strip(old) == strip(new)
}

impl Handlers {
    pub fn register(
        self,
        revisions: &Informer<ControllerRevision>,
        pods: &Informer<Pod>,
        nodes: &Informer<Node>,
    ) {
        let h = self.clone();
        self.daemon_sets.add_handler(move |c: &Change<DaemonSet>| h.on_daemon_set(c));
        let h = self.clone();
        revisions.add_handler(move |c: &Change<ControllerRevision>| h.on_revision(c));
        let h = self.clone();
        pods.add_handler(move |c: &Change<Pod>| h.on_pod(c));
        nodes.add_handler(move |c: &Change<Node>| self.on_node(c));
    }

    fn forget(&self, key: &ObjectKey) {
        self.expectations.forget(key);
        self.written.forget(key);
    }

    fn on_daemon_set(&self, change: &Change<DaemonSet>) {
        let key = key_of(&**change.object());
        match change {
            Change::Deleted(_) => self.forget(&key),
            Change::Updated { old, new } if old.metadata.uid != new.metadata.uid => {
                self.forget(&key)
            }
            _ => {}
        }
        self.queue.add(key);
    }

    fn enqueue(&self, ds: &DaemonSet) {
        self.queue.add(key_of(ds));
    }

    fn on_revision(&self, change: &Change<ControllerRevision>) {
        let namespace = change.object().metadata.namespace.clone().unwrap_or_default();
        let (old, new) = match change {
            Change::Added(r) => (None, r),
            Change::Updated { old, new } => (Some(old), new),
            Change::Deleted(r) => {
                if let Some(ds) = controller_of(&r.metadata)
                    .and_then(|c| resolve(&self.daemon_sets, &namespace, c))
                {
                    self.enqueue(&ds);
                }
                return;
            }
        };
        let old_ref = old.and_then(|o| controller_of(&o.metadata));
        let new_ref = controller_of(&new.metadata);
        if old.is_some()
            && old_ref != new_ref
            && let Some(ds) = old_ref.and_then(|r| resolve(&self.daemon_sets, &namespace, r))
        {
            self.enqueue(&ds);
        }
        if let Some(r) = new_ref {
            if let Some(ds) = resolve(&self.daemon_sets, &namespace, r) {
                self.enqueue(&ds);
            }
            return;
        }
        let changed =
            old.is_none_or(|o| o.metadata.labels != new.metadata.labels || old_ref != new_ref);
        if changed {
            for ds in selecting(&self.daemon_sets, &namespace, &labels(&new.metadata)) {
                self.enqueue(&ds);
            }
        }
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Added(pod) => self.pod_added(pod),
            Change::Updated { old, new } => self.pod_updated(old, new),
            Change::Deleted(pod) => self.pod_deleted(pod),
        }
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return self.pod_deleted(pod);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(r) = controller_of(&pod.metadata) {
            if let Some(ds) = resolve(&self.daemon_sets, namespace, r) {
                let key = key_of(&*ds);
                self.expectations.creation_observed(&key);
                self.queue.add(key);
            }
            return;
        }
        for ds in selecting(&self.daemon_sets, namespace, &labels(&pod.metadata)) {
            self.enqueue(&ds);
        }
    }

    fn pod_updated(&self, old: &Pod, new: &Pod) {
        if new.metadata.deletion_timestamp.is_some() {
            return self.pod_deleted(new);
        }
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
        if old_ref != new_ref
            && let Some(ds) = old_ref.and_then(|r| resolve(&self.daemon_sets, namespace, r))
        {
            self.enqueue(&ds);
        }
        if let Some(r) = new_ref {
            let Some(ds) = resolve(&self.daemon_sets, namespace, r) else { return };
            self.enqueue(&ds);
            let min_ready = super::util::min_ready_seconds(&ds);
            if min_ready > 0 && !pod_is_ready(old) && pod_is_ready(new) {
                // Available minReadySeconds from now (plus a second against skew).
                self.queue.add_after(key_of(&*ds), Duration::from_secs(min_ready as u64 + 1));
            }
            return;
        }
        if old.metadata.labels != new.metadata.labels || old_ref != new_ref {
            for ds in selecting(&self.daemon_sets, namespace, &labels(&new.metadata)) {
                self.enqueue(&ds);
            }
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let Some(r) = controller_of(&pod.metadata) else { return };
        let Some(ds) = resolve(&self.daemon_sets, namespace, r) else { return };
        let key = key_of(&*ds);
        self.expectations.deletion_observed(&key, &key_of(pod));
        self.queue.add(key);
    }

    fn on_node(&self, change: &Change<Node>) {
        match change {
            Change::Added(node) => {
                for ds in self.daemon_sets.list() {
                    if node_should_run_daemon_pod(node, &ds).should_run {
                        self.enqueue(&ds);
                    }
                }
            }
            Change::Updated { old, new } => {
                if ignore_node_update(old, new) {
                    return;
                }
                for ds in self.daemon_sets.list() {
                    if node_should_run_daemon_pod(old, &ds) != node_should_run_daemon_pod(new, &ds)
                    {
                        self.enqueue(&ds);
                    }
                }
            }
            // Upstream waits for the pod garbage collector to delete the node's pods; here
            // the DaemonSets look at once (their pods there go, their counts drop).
            Change::Deleted(_) => {
                for ds in self.daemon_sets.list() {
                    self.enqueue(&ds);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn heartbeats_are_ignored_but_condition_flips_and_spec_changes_are_not() {
        let node = |ready: &str, beat: &str, unschedulable: bool| -> Node {
            serde_json::from_value(json!({
                "metadata": { "name": "n", "resourceVersion": beat },
                "spec": { "unschedulable": unschedulable },
                "status": { "conditions": [{
                    "type": "Ready", "status": ready, "lastHeartbeatTime": format!("2024-01-01T00:00:0{beat}Z"),
                }] },
            }))
            .unwrap()
        };
        assert!(ignore_node_update(&node("True", "1", false), &node("True", "2", false)));
        assert!(!ignore_node_update(&node("True", "1", false), &node("False", "2", false)));
        assert!(!ignore_node_update(&node("True", "1", false), &node("True", "2", true)));
    }
}
