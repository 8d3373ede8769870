//! DefaultPreemption, pure: for a pod that fits nowhere, find a node where removing
//! lower-priority pods makes it fit, keeping as many of them as possible (the most important
//! first), and choose among such nodes as upstream does. The caller deletes the victims and
//! nominates the pod. PodDisruptionBudgets are not considered.

use std::sync::Arc;

use rand::Rng;

use crate::algorithm::{CycleState, Diagnosis, Nominated, filter_node, fit_message};
use crate::filters::Rejection;
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;
use crate::snapshot::Snapshot;

pub const REASON_NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const REASON_NO_VICTIMS: &str = "No preemption victims found for incoming pod";
pub const MSG_POLICY_NEVER: &str = "not eligible due to preemptionPolicy=Never.";
pub const MSG_TERMINATING: &str = "not eligible due to a terminating pod on the nominated node.";

/// Upstream: a dry run stops after this share of the potential nodes gave candidates...
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// ... or this many, whichever is more.
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

/// A node where preemption would make the pod fit.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: Arc<str>,
    /// The pods to remove, most important first.
    pub victims: Vec<Arc<PodInfo>>,
}

/// What preemption decided.
#[derive(Clone, Debug)]
pub enum PostFilter {
    /// Delete `victims` and nominate the pod to `node`.
    Preempt(Candidate),
    /// Preemption cannot help; the message follows `preemption: ` in the FitError.
    Failed(String),
}

/// Whether the pod may preempt at all (upstream's PodEligibleToPreemptOthers).
pub fn eligibility(
    pod: &PodInfo,
    snap: &Snapshot,
    nominated_node: Option<&str>,
) -> Result<(), String> {
    if pod.preempt_never {
        return Err(MSG_POLICY_NEVER.to_owned());
    }
    if let Some(node) = nominated_node.and_then(|n| snap.node_by_name(n))
        && node.pods.iter().any(|p| p.terminating && p.priority < pod.priority)
    {
        return Err(MSG_TERMINATING.to_owned());
    }
    Ok(())
}

/// Finds the victims on one node: every lower-priority pod removed must make the pod fit,
/// then the most important ones are put back while it still fits.
pub fn select_victims_on_node(
    state: &CycleState<'_>,
    snap: &Snapshot,
    node: &NodeInfo,
    nominated: &Nominated,
) -> Result<Vec<Arc<PodInfo>>, Rejection> {
    let pod = state.pod;
    let ns = &snap.namespaces;
    let mut lower: Vec<Arc<PodInfo>> =
        node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if lower.is_empty() {
        return Err(Rejection::new(
            crate::filters::Plugin::NodeResourcesFit,
            true,
            REASON_NO_VICTIMS,
        ));
    }
    let mut state = state.clone();
    let mut what_if = node.clone();
    for v in &lower {
        what_if.remove_pod(&v.uid);
        if let Some(s) = state.interpod.as_mut() {
            s.update_pod(v, node, pod, ns, -1);
        }
        if let Some(s) = state.spread.as_mut() {
            s.update_pod(v, node, pod, -1);
        }
    }
    filter_node(&state, &what_if, nominated, ns)?;
    lower.sort_by(|a, b| {
        if a.more_important_than(b) {
            std::cmp::Ordering::Less
        } else if b.more_important_than(a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    let mut victims = Vec::new();
    for p in lower {
        what_if.add_pod(p.clone());
        if let Some(s) = state.interpod.as_mut() {
            s.update_pod(&p, node, pod, ns, 1);
        }
        if let Some(s) = state.spread.as_mut() {
            s.update_pod(&p, node, pod, 1);
        }
        if filter_node(&state, &what_if, nominated, ns).is_err() {
            what_if.remove_pod(&p.uid);
            if let Some(s) = state.interpod.as_mut() {
                s.update_pod(&p, node, pod, ns, -1);
            }
            if let Some(s) = state.spread.as_mut() {
                s.update_pod(&p, node, pod, -1);
            }
            victims.push(p);
        }
    }
    Ok(victims)
}

/// Runs preemption for a pod the cycle found unschedulable.
pub fn preempt(
    state: &CycleState<'_>,
    snap: &Snapshot,
    diagnosis: &Diagnosis,
    nominated: &Nominated,
    rng: &mut impl Rng,
) -> PostFilter {
    let num_all = diagnosis.num_all_nodes;
    let potential: Vec<usize> =
        diagnosis.rejections.iter().filter(|(_, r)| !r.unresolvable).map(|(s, _)| *s).collect();
    let not_helpful = num_all - potential.len();
    if potential.is_empty() {
        let reasons = std::iter::repeat_n(REASON_NOT_HELPFUL, num_all);
        return PostFilter::Failed(fit_message(num_all, reasons, None));
    }
    let wanted = (potential.len() * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(potential.len());
    let offset = rng.gen_range(0..potential.len());
    let mut candidates = Vec::new();
    let mut failures: Vec<Rejection> = Vec::new();
    for i in 0..potential.len() {
        let node = snap.node(potential[(offset + i) % potential.len()]);
        match select_victims_on_node(state, snap, node, nominated) {
            Ok(victims) if !victims.is_empty() => {
                candidates.push(Candidate { node: node.name.clone(), victims });
                if candidates.len() >= wanted {
                    break;
                }
            }
            Ok(_) => failures.push(Rejection::new(
                crate::filters::Plugin::NodeResourcesFit,
                true,
                REASON_NO_VICTIMS,
            )),
            Err(r) => failures.push(r),
        }
    }
    if candidates.is_empty() {
        let reasons = failures
            .iter()
            .flat_map(|r| r.reasons.iter().map(|s| s.as_ref()))
            .chain(std::iter::repeat_n(REASON_NOT_HELPFUL, not_helpful));
        return PostFilter::Failed(fit_message(num_all, reasons, None));
    }
    PostFilter::Preempt(pick_one(candidates))
}

/// Upstream's pickOneNodeForPreemption without PDBs: lowest highest-priority victim, then
/// lowest priority sum, then fewest victims, then the latest start among the
/// highest-priority victims, then the first.
pub fn pick_one(mut candidates: Vec<Candidate>) -> Candidate {
    let key = |c: &Candidate| {
        let top = c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
        let sum: i128 =
            c.victims.iter().map(|v| i128::from(v.priority) + i128::from(i32::MAX) + 1).sum();
        let earliest_top =
            c.victims.iter().filter(|v| v.priority == top).filter_map(|v| v.start_time).min();
        (top, sum, c.victims.len(), std::cmp::Reverse(earliest_top))
    };
    let mut best = 0;
    for i in 1..candidates.len() {
        if key(&candidates[i]) < key(&candidates[best]) {
            best = i;
        }
    }
    candidates.swap_remove(best)
}
