//! The decisions of one DaemonSet sync without I/O: which nodes need a daemon pod and which
//! pods go (upstream's manage/podsShouldBeOnNode), and the status counts
//! (updateDaemonSetStatus).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::{pod_is_available, pod_is_ready};

use super::backoff::Backoff;
use super::placement::node_should_run_daemon_pod;
use super::util::{by_creation_and_phase, is_pod_updated, target_node_name};

/// A DaemonSet's pods by the node they are for.
pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

/// Groups `pods` by target node (upstream's getNodesToDaemonPods). Terminal pods already
/// being deleted are left out unless `include_deleted_terminal` (the status and the history
/// cleanup count them, the create/delete decisions do not). Pods without a target node are
/// skipped.
pub fn node_pods(pods: &[Arc<Pod>], include_deleted_terminal: bool) -> NodePods {
    let mut by_node = NodePods::new();
    for pod in pods {
        if !include_deleted_terminal
            && is_terminal(pod)
            && pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if let Some(node) = target_node_name(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    by_node
}

/// What a sync knows of the DaemonSet's current revision.
#[derive(Clone, Debug)]
pub struct Current {
    /// The current revision's `controller-revision-hash`.
    pub hash: String,
    /// The template generation annotation.
    pub generation: Option<i64>,
    pub min_ready_seconds: i32,
    /// Whether the strategy allows a second (new) pod next to an old one.
    pub surge: bool,
    /// `<uid>/<observedGeneration>/`, prefix of the failed-pod back-off keys.
    pub backoff_prefix: String,
}

impl Current {
    pub fn of(ds: &DaemonSet, hash: &str) -> Current {
        let uid = ds.metadata.uid.as_deref().unwrap_or("");
        let observed = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
        Current {
            hash: hash.to_owned(),
            generation: super::util::template_generation(ds),
            min_ready_seconds: super::util::min_ready_seconds(ds),
            surge: super::util::allows_surge(ds),
            backoff_prefix: format!("{uid}/{observed}/"),
        }
    }
}

/// The creates and deletes of one manage round.
#[derive(Debug, Default)]
pub struct ManagePlan {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Failed pods among `delete` (Warning FailedDaemonPod), with their node.
    pub failed: Vec<(Arc<Pod>, String)>,
    /// Succeeded pods among `delete` (SucceededDaemonPod), with their node.
    pub succeeded: Vec<(Arc<Pod>, String)>,
    /// Bound pods whose node is not in the cache: deleted once the node is confirmed gone
    /// (upstream leaves them to the pod garbage collector).
    pub on_missing_nodes: Vec<Arc<Pod>>,
    /// Look again this soon: a failed pod waits for its back-off.
    pub retry_after: Option<Duration>,
}

impl ManagePlan {
    fn retry(&mut self, after: Duration) {
        self.retry_after = Some(self.retry_after.map_or(after, |d| d.min(after)));
    }
}

/// The manage decisions for every node (upstream's manage): create where a pod should run
/// and none is, delete failed and succeeded pods (failed ones subject to `backoff`), extra
/// pods (keeping the oldest, or with surge an old/new pair while the new one is not yet
/// available), and pods on nodes that should not run one.
pub fn manage_plan(
    nodes: &[Arc<Node>],
    ds: &DaemonSet,
    by_node: &NodePods,
    current: &Current,
    backoff: &Backoff,
    now: Timestamp,
) -> ManagePlan {
    let mut plan = ManagePlan::default();
    let mut known = BTreeSet::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let placement = node_should_run_daemon_pod(node, ds);
        let pods = by_node.get(&name);
        known.insert(name.clone());
        match pods {
            None if placement.should_run => plan.create_on.push(name),
            Some(pods) if placement.should_continue_running => {
                on_node(&mut plan, &name, placement.should_run, pods, current, backoff, now)
            }
            Some(pods) if !placement.should_continue_running => {
                let live = pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
                plan.delete.extend(live.cloned());
            }
            _ => {}
        }
    }
    for (node, pods) in by_node {
        if known.contains(node) {
            continue;
        }
        for pod in pods {
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if !bound {
                // Never scheduled, and its node is gone: nobody else will delete it.
                plan.delete.push(pod.clone());
            } else if pod.metadata.deletion_timestamp.is_none() {
                plan.on_missing_nodes.push(pod.clone());
            }
        }
    }
    plan
}

/// The pods of one node that should keep running one (upstream's podsShouldBeOnNode, the
/// shouldContinueRunning case).
fn on_node(
    plan: &mut ManagePlan,
    node: &str,
    should_run: bool,
    pods: &[Arc<Pod>],
    current: &Current,
    backoff: &Backoff,
    now: Timestamp,
) {
    let mut running = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match phase(pod) {
            "Failed" => {
                let key = format!("{}{node}", current.backoff_prefix);
                if let Some(wait) = backoff.in_backoff(&key, now) {
                    plan.retry(wait);
                    continue;
                }
                backoff.next(&key, now);
                plan.failed.push((pod.clone(), node.to_owned()));
                plan.delete.push(pod.clone());
            }
            "Succeeded" => {
                plan.succeeded.push((pod.clone(), node.to_owned()));
                plan.delete.push(pod.clone());
            }
            _ => running.push(pod.clone()),
        }
    }
    running.sort_by(|a, b| by_creation_and_phase(a, b));
    if !current.surge {
        // One pod per node: the oldest stays.
        plan.delete.extend(running.iter().skip(1).cloned());
        return;
    }
    if running.len() <= 1 {
        if running.is_empty() && should_run {
            plan.create_on.push(node.to_owned());
        }
        return;
    }
    // Surging: keep the oldest new pod and the oldest old pod; the old one goes once it is not
    // ready or the new one is available.
    let (mut oldest_new, mut oldest_old) = (None, None);
    for pod in &running {
        let slot = if is_pod_updated(pod, &current.hash, current.generation) {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod.clone());
        } else {
            plan.delete.push(pod.clone());
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old)
        && (!pod_is_ready(&old) || pod_is_available(&new, current.min_ready_seconds, now))
    {
        plan.delete.push(old);
    }
}

/// The counts `kubectl get ds` and `kubectl rollout status` read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub desired_number_scheduled: i32,
    pub current_number_scheduled: i32,
    pub number_misscheduled: i32,
    pub number_ready: i32,
    pub updated_number_scheduled: i32,
    pub number_available: i32,
    pub number_unavailable: i32,
}

/// Upstream's updateDaemonSetStatus counts; `by_node` includes deleted terminal pods. The
/// oldest pod of a node stands for it.
pub fn status_counts(
    nodes: &[Arc<Node>],
    ds: &DaemonSet,
    by_node: &NodePods,
    current: &Current,
    now: Timestamp,
) -> StatusCounts {
    let mut c = StatusCounts::default();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let placement = node_should_run_daemon_pod(node, ds);
        let pods = by_node.get(name).filter(|p| !p.is_empty());
        if !placement.should_run {
            if pods.is_some() {
                c.number_misscheduled += 1;
            }
            continue;
        }
        c.desired_number_scheduled += 1;
        let Some(pods) = pods else { continue };
        c.current_number_scheduled += 1;
        let mut sorted = pods.clone();
        sorted.sort_by(|a, b| by_creation_and_phase(a, b));
        let pod = &sorted[0];
        if pod_is_ready(pod) {
            c.number_ready += 1;
            if pod_is_available(pod, current.min_ready_seconds, now) {
                c.number_available += 1;
            }
        }
        if is_pod_updated(pod, &current.hash, current.generation) {
            c.updated_number_scheduled += 1;
        }
    }
    c.number_unavailable = c.desired_number_scheduled - c.number_available;
    c
}
