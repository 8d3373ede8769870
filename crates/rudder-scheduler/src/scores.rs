//! Upstream's per-node score plugins that need only the pod and the node (0-100 each after
//! normalizing), and the normalizations they share.

use crate::filters::{intolerable_prefer_no_schedule, node_selector_term_matches};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const MAX_NODE_SCORE: i64 = 100;

/// Score weights of the default plugins (upstream's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreWeights {
    pub taint_toleration: i64,
    pub node_affinity: i64,
    pub node_resources_fit: i64,
    pub pod_topology_spread: i64,
    pub inter_pod_affinity: i64,
    pub balanced_allocation: i64,
}

impl Default for ScoreWeights {
    fn default() -> Self {
        ScoreWeights {
            taint_toleration: 3,
            node_affinity: 2,
            node_resources_fit: 1,
            pod_topology_spread: 2,
            inter_pod_affinity: 2,
            balanced_allocation: 1,
        }
    }
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

/// NodeResourcesFit, LeastAllocated strategy (cpu and memory, weight 1 each), over the
/// non-zero requests: emptier nodes score higher.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = &node.facts.allocatable;
    let pairs = [
        (node.non_zero_milli_cpu + pod.non_zero_milli_cpu, alloc.milli_cpu),
        (node.non_zero_memory + pod.non_zero_memory, alloc.memory),
    ];
    let mut total = 0;
    let mut weights = 0;
    for (requested, capacity) in pairs {
        if capacity == 0 {
            continue;
        }
        total += least_requested(requested, capacity);
        weights += 1;
    }
    if weights == 0 { 0 } else { total / weights }
}

/// Whether BalancedAllocation scores this pod at all (upstream skips pods requesting
/// neither cpu nor memory).
pub fn balanced_allocation_applies(pod: &PodInfo) -> bool {
    pod.requests.milli_cpu != 0 || pod.requests.memory != 0
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory would be used in the same
/// proportion score higher (`(1 - std) * 100` over the used fractions, actual requests).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let alloc = &node.facts.allocatable;
    let pairs = [
        (node.requested.milli_cpu + pod.requests.milli_cpu, alloc.milli_cpu),
        (node.requested.memory + pod.requests.memory, alloc.memory),
    ];
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, capacity)| *capacity != 0)
        .map(|(requested, capacity)| (*requested as f64 / *capacity as f64).min(1.0))
        .collect();
    let std = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

/// NodeAffinity (score): the summed weights of the preferred terms the node matches.
pub fn node_affinity_preferred(pod: &PodInfo, node: &NodeInfo) -> i64 {
    preferred_terms(pod)
        .iter()
        .filter(|t| {
            t.weight != 0 && node_selector_term_matches(&t.preference, &node.name, node.labels())
        })
        .map(|t| i64::from(t.weight))
        .sum()
}

pub fn preferred_terms(pod: &PodInfo) -> &[k8s_openapi::api::core::v1::PreferredSchedulingTerm] {
    pod.spec()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref())
        .unwrap_or_default()
}

/// TaintToleration (score, before normalizing): the number of PreferNoSchedule taints the
/// pod does not tolerate.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> i64 {
    if !node.has_prefer_no_schedule {
        return 0;
    }
    intolerable_prefer_no_schedule(pod, node)
}

/// Upstream's DefaultNormalizeScore: scale to 0-100 by the maximum; `reverse` flips it (so
/// fewer is better). All-zero scores become 0 (or 100 reversed).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}
