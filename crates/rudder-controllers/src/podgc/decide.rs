//! The pod garbage collector's decisions (upstream's `gcTerminated`, `gcTerminating`,
//! `gcOrphaned`, `gcUnscheduledTerminating`), as pure functions over the cached pods and
//! nodes.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use rudder_client::ObjectKey;
use rudder_client::informer::key_of;

/// The taint that says a node is out of service (its pods may be force-deleted).
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// Why a pod is force-deleted; the condition message for pods that were not terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Bound to a node that no longer exists.
    Orphaned,
    /// Terminating on a NotReady node tainted out-of-service.
    OutOfService,
    /// Terminating without ever being scheduled.
    UnscheduledTerminating,
    /// One terminated pod too many (oldest first).
    TerminatedOverThreshold,
}

impl Reason {
    /// The DisruptionTarget condition's message upstream writes (None: no condition).
    pub fn condition_message(self) -> Option<&'static str> {
        match self {
            Reason::Orphaned => Some("PodGC: node no longer exists"),
            Reason::OutOfService => Some("PodGC: node is out-of-service"),
            _ => None,
        }
    }
}

/// One pod to force-delete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doomed {
    pub key: ObjectKey,
    pub uid: String,
    pub reason: Reason,
    /// Already Succeeded or Failed (its status is left alone).
    pub terminal: bool,
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

pub fn is_terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

fn doomed(pod: &Pod, reason: Reason) -> Doomed {
    Doomed {
        key: key_of(pod),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        reason,
        terminal: is_terminated(pod),
    }
}

/// Terminated pods beyond `threshold` (<= 0: never), evicted ones first, then oldest first.
pub fn terminated_over_threshold(pods: &[&Pod], threshold: i64) -> Vec<Doomed> {
    if threshold <= 0 {
        return Vec::new();
    }
    let mut terminated: Vec<&Pod> = pods.iter().copied().filter(|p| is_terminated(p)).collect();
    let excess = terminated.len().saturating_sub(threshold as usize);
    if excess == 0 {
        return Vec::new();
    }
    let evicted = |p: &Pod| p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted");
    terminated.sort_by(|a, b| {
        evicted(b)
            .cmp(&evicted(a))
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
            .then_with(|| key_of(*a).cmp(&key_of(*b)))
    });
    terminated
        .into_iter()
        .take(excess)
        .map(|p| doomed(p, Reason::TerminatedOverThreshold))
        .collect()
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn out_of_service(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT && t.effect == "NoExecute"))
}

/// Terminating pods on NotReady nodes tainted out-of-service, and terminating pods that were
/// never scheduled.
pub fn terminating(pods: &[&Pod], nodes: &HashMap<String, &Node>) -> Vec<Doomed> {
    let mut out = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let node = node_name(pod);
        if node.is_empty() {
            out.push(doomed(pod, Reason::UnscheduledTerminating));
        } else if let Some(n) = nodes.get(node)
            && !node_ready(n)
            && out_of_service(n)
        {
            out.push(doomed(pod, Reason::OutOfService));
        }
    }
    out
}

/// Tracks nodes pods are bound to but that the cache does not know, so that they are
/// checked with the API only after a quarantine (a node may just be slow to show up).
#[derive(Debug, Default)]
pub struct Quarantine {
    missing_since: HashMap<String, Timestamp>,
}

impl Quarantine {
    /// Nodes pods are bound to that are missing from `nodes` and have been missing for at
    /// least `quarantine`; nodes that came back are forgotten.
    pub fn expired(
        &mut self,
        pods: &[&Pod],
        nodes: &HashMap<String, &Node>,
        now: Timestamp,
        quarantine: Duration,
    ) -> Vec<String> {
        let missing: HashSet<&str> = pods
            .iter()
            .map(|p| node_name(p))
            .filter(|n| !n.is_empty() && !nodes.contains_key(*n))
            .collect();
        self.missing_since.retain(|n, _| missing.contains(n.as_str()));
        let mut expired = Vec::new();
        for node in missing {
            let since = *self.missing_since.entry(node.to_owned()).or_insert(now);
            if rudder_client::clock::elapsed(since, now) >= quarantine {
                expired.push(node.to_owned());
            }
        }
        expired.sort();
        expired
    }

    /// Forget a node (it turned out to exist).
    pub fn forget(&mut self, node: &str) {
        self.missing_since.remove(node);
    }
}

/// Pods bound to `node` (which no longer exists).
pub fn orphaned_on(pods: &[&Pod], node: &str) -> Vec<Doomed> {
    pods.iter().filter(|p| node_name(p) == node).map(|p| doomed(p, Reason::Orphaned)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, phase: &str, created: i64, deleting: bool) -> Pod {
        let mut p = json!({
            "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                          "creationTimestamp": Timestamp::from_second(1_700_000_000 + created).unwrap().to_string() },
            "spec": { "nodeName": node, "containers": [] },
            "status": { "phase": phase },
        });
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    fn node(name: &str, ready: bool, oos: bool) -> Node {
        let mut n = json!({
            "metadata": { "name": name },
            "spec": {},
            "status": { "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" } }] },
        });
        if oos {
            n["spec"]["taints"] = json!([{ "key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute" }]);
        }
        serde_json::from_value(n).unwrap()
    }

    fn names(d: &[Doomed]) -> Vec<&str> {
        d.iter().map(|d| d.key.1.as_str()).collect()
    }

    #[test]
    fn terminated_pods_over_the_threshold_go_evicted_then_oldest_first() {
        let mut evicted = pod("evicted", "n", "Failed", 9, false);
        evicted.status.as_mut().unwrap().reason = Some("Evicted".into());
        let pods = [
            pod("new", "n", "Succeeded", 5, false),
            pod("old", "n", "Failed", 1, false),
            pod("running", "n", "Running", 0, false),
            pod("mid", "n", "Succeeded", 3, false),
            evicted,
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert!(terminated_over_threshold(&refs, 4).is_empty());
        assert!(terminated_over_threshold(&refs, 0).is_empty(), "0 disables");
        let d = terminated_over_threshold(&refs, 2);
        assert_eq!(names(&d), ["evicted", "old"]);
        assert_eq!(d[0].uid, "uid-evicted");
        assert_eq!(d[0].reason, Reason::TerminatedOverThreshold);
        assert_eq!(names(&terminated_over_threshold(&refs, 1)), ["evicted", "old", "mid"]);
    }

    #[test]
    fn terminating_pods_unscheduled_or_on_out_of_service_not_ready_nodes() {
        let pods = [
            pod("unscheduled", "", "Pending", 0, true),
            pod("oos", "down", "Running", 0, true),
            pod("oos-not-deleting", "down", "Running", 0, false),
            pod("ready-node", "up-oos", "Running", 0, true),
            pod("not-ready-no-taint", "down-plain", "Running", 0, true),
        ];
        let nodes = [
            node("down", false, true),
            node("up-oos", true, true),
            node("down-plain", false, false),
        ];
        let map: HashMap<String, &Node> =
            nodes.iter().map(|n| (n.metadata.name.clone().unwrap(), n)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let d = terminating(&refs, &map);
        assert_eq!(names(&d), ["unscheduled", "oos"]);
        assert_eq!(d[0].reason, Reason::UnscheduledTerminating);
        assert_eq!(d[1].reason, Reason::OutOfService);
    }

    #[test]
    fn missing_nodes_are_quarantined_before_their_pods_go() {
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).unwrap();
        let pods = [pod("a", "gone", "Running", 0, false), pod("b", "here", "Running", 0, false)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let here = node("here", true, false);
        let mut nodes: HashMap<String, &Node> = HashMap::new();
        nodes.insert("here".into(), &here);
        let mut q = Quarantine::default();
        let quarantine = Duration::from_secs(40);
        assert!(q.expired(&refs, &nodes, t(0), quarantine).is_empty());
        assert!(q.expired(&refs, &nodes, t(39), quarantine).is_empty());
        assert_eq!(q.expired(&refs, &nodes, t(40), quarantine), ["gone"]);
        assert_eq!(names(&orphaned_on(&refs, "gone")), ["a"]);
        // The node shows up: forgotten, and the quarantine starts over if it goes again.
        let gone = node("gone", true, false);
        nodes.insert("gone".into(), &gone);
        assert!(q.expired(&refs, &nodes, t(41), quarantine).is_empty());
        nodes.remove("gone");
        assert!(q.expired(&refs, &nodes, t(42), quarantine).is_empty());
        assert_eq!(Reason::Orphaned.condition_message(), Some("PodGC: node no longer exists"));
    }
}
