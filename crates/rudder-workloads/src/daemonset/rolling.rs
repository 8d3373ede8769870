//! The RollingUpdate decisions without I/O (upstream's rollingUpdate): which old pods to
//! delete, and with maxSurge on which nodes to start a new pod next to the old one.
//!
//! Without surge, old pods are deleted while fewer than maxUnavailable nodes are unavailable
//! (an old pod that is not available is replaced at once), and the manage step creates the
//! new ones. With surge, a new pod is started next to each old one (at most maxSurge waiting
//! at a time, at once where the old pod is not available) and the old pod is deleted when
//! the new one is available.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::pod_is_available;

use super::manage::{Current, NodePods};
use super::placement::node_should_run_daemon_pod;
use super::util::{is_pod_updated, surge_count, unavailable_count};

/// What one rolling-update step does.
#[derive(Debug, Default, PartialEq)]
pub struct RollingPlan {
    pub delete: Vec<Arc<Pod>>,
    pub create_on: Vec<String>,
}

/// The surge and unavailability allowances for `desired` nodes (upstream's
/// updatedDesiredNodeCounts): both 0 means 1 unavailable.
pub fn allowances(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let max_unavailable = unavailable_count(ds, desired)
        .map_err(|e| format!("invalid value for MaxUnavailable: {e}"))?;
    let max_surge =
        surge_count(ds, desired).map_err(|e| format!("invalid value for MaxSurge: {e}"))?;
    if desired > 0 && max_unavailable == 0 && max_surge == 0 {
        return Ok((0, 1));
    }
    Ok((max_surge, max_unavailable))
}

/// The new and the old pod of one node (either may be missing).
pub type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The new and the old pod of a node, ignoring pods being deleted; `None` when there are two
/// of a kind (the manage step prunes those first).
pub fn updated_pods_on_node(pods: &[Arc<Pod>], current: &Current) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_pod_updated(pod, &current.hash, current.generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod.clone());
    }
    Some((new, old))
}

/// One rolling-update step. `by_node` leaves out deleted terminal pods.
pub fn rolling_plan(
    nodes: &[Arc<Node>],
    ds: &DaemonSet,
    by_node: &NodePods,
    current: &Current,
    now: Timestamp,
) -> Result<RollingPlan, String> {
    let mut by_node = by_node.clone();
    let mut should_run = BTreeMap::new();
    let mut desired = 0;
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let run = node_should_run_daemon_pod(node, ds).should_run;
        should_run.insert(name.clone(), run);
        if run {
            desired += 1;
            by_node.entry(name).or_default();
        }
    }
    let (max_surge, max_unavailable) = allowances(ds, desired)?;
    let available = |p: &Pod| pod_is_available(p, current.min_ready_seconds, now);
    let mut plan = RollingPlan::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some(pair) = updated_pods_on_node(pods, current) else {
                unavailable += 1;
                continue;
            };
            match pair {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(&old) {
                        replacements.push(old);
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete = replacements;
        plan.delete.extend(candidates.into_iter().take(room));
        return Ok(plan);
    }

    let mut surging = 0;
    let mut available_nodes = 0;
    let mut allowed_new = Vec::new();
    let mut candidate_new = Vec::new();
    let mut should_not_run_old = Vec::new();
    for (node, pods) in &by_node {
        let Some((new, old)) = updated_pods_on_node(pods, current) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.as_ref().or(new.as_ref())
            && available(p)
        {
            available_nodes += 1;
        }
        let runs_here = should_run.get(node).copied().unwrap_or(false);
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(&old) {
                    if runs_here {
                        allowed_new.push(node.clone());
                    } else {
                        plan.delete.push(old);
                    }
                } else if !runs_here {
                    should_not_run_old.push(old);
                } else if surging < max_surge {
                    candidate_new.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(&new) {
                    plan.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes that should no longer run one go only while enough others are available.
    let deletable = (available_nodes - desired).max(0) as usize;
    plan.delete.extend(should_not_run_old.into_iter().take(deletable));
    let room = (max_surge - surging).max(0) as usize;
    plan.create_on = allowed_new;
    plan.create_on.extend(candidate_new.into_iter().take(room));
    Ok(plan)
}
