//! InterPodAffinity: required pod affinity and anti-affinity (the incoming pod's terms and
//! existing pods' anti-affinity against it) as a filter, preferred terms (and existing pods'
//! terms that select the incoming pod) as a score. Counts are per topology pair
//! (`topologyKey`, node label value), computed once per pod before the node loop.

use crate::FastMap as HashMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::filters::{Plugin, Rejection};
use crate::node_info::NodeInfo;
use crate::pod_info::{AffinityTerm, NamespaceLabels, PodInfo};
use crate::snapshot::Snapshot;

pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";

/// Counts per topology key, then per value.
pub type TopologyCounts = HashMap<String, HashMap<String, i64>>;

fn bump(counts: &mut TopologyCounts, key: &str, value: &str, by: i64) {
    let values = counts.entry(key.to_owned()).or_default();
    let n = values.entry(value.to_owned()).or_insert(0);
    *n += by;
    if *n == 0 {
        values.remove(value);
        if values.is_empty() {
            counts.remove(key);
        }
    }
}

fn count_at(counts: &TopologyCounts, key: &str, value: &str) -> i64 {
    counts.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
}

/// The pods that terms with these namespaces could select: only the named namespaces'
/// pods unless a term has a namespaceSelector.
fn candidate_pods<'a>(
    snap: &'a Snapshot,
    terms: impl Iterator<Item = &'a AffinityTerm>,
) -> Vec<(usize, &'a Arc<PodInfo>)> {
    let mut namespaces = BTreeSet::new();
    let mut all = false;
    for t in terms {
        if t.namespace_selector.is_some() {
            all = true;
        }
        namespaces.extend(t.namespaces.iter().map(String::as_str));
    }
    let list: Vec<&str> =
        if all { snap.pod_namespaces().collect() } else { namespaces.into_iter().collect() };
    list.into_iter().flat_map(|ns| snap.pods_in_namespace(ns)).collect()
}

/// What the filter needs, computed once per scheduling cycle.
#[derive(Clone, Debug, Default)]
pub struct InterPodFilterState {
    /// Pairs where existing pods' required anti-affinity terms select the incoming pod.
    pub existing_anti: TopologyCounts,
    /// Pairs holding pods that match all of the incoming pod's required affinity terms.
    pub affinity: TopologyCounts,
    /// Pairs holding pods that one of the incoming pod's anti-affinity terms selects.
    pub anti: TopologyCounts,
}

impl InterPodFilterState {
    /// `None` when neither the pod nor any existing pod has required terms to check.
    pub fn compute(pod: &PodInfo, snap: &Snapshot) -> Option<InterPodFilterState> {
        let own_terms = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !own_terms && snap.anti_affinity_slots().is_empty() {
            return None;
        }
        let ns = &snap.namespaces;
        let mut s = InterPodFilterState::default();
        for &slot in snap.anti_affinity_slots() {
            let node = snap.node(slot);
            for existing in node.pods.iter().filter(|p| !p.required_anti_affinity.is_empty()) {
                s.add_existing(existing, node, pod, ns, 1);
            }
        }
        if own_terms {
            let terms = pod.required_affinity.iter().chain(&pod.required_anti_affinity);
            for (slot, existing) in candidate_pods(snap, terms) {
                s.add_candidate(existing, snap.node(slot), pod, ns, 1);
            }
        }
        Some(s)
    }

    fn add_existing(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        pod: &PodInfo,
        ns: &NamespaceLabels,
        by: i64,
    ) {
        for term in &existing.required_anti_affinity {
            if let Some(v) = node.labels().get(&term.topology_key)
                && term.matches(pod, ns)
            {
                bump(&mut self.existing_anti, &term.topology_key, v, by);
            }
        }
    }

    fn add_candidate(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        pod: &PodInfo,
        ns: &NamespaceLabels,
        by: i64,
    ) {
        let labels = node.labels();
        if !pod.required_affinity.is_empty() && pod.affinity_terms_match(existing, ns) {
            for term in &pod.required_affinity {
                if let Some(v) = labels.get(&term.topology_key) {
                    bump(&mut self.affinity, &term.topology_key, v, by);
                }
            }
        }
        for term in &pod.required_anti_affinity {
            if let Some(v) = labels.get(&term.topology_key)
                && term.matches(existing, ns)
            {
                bump(&mut self.anti, &term.topology_key, v, by);
            }
        }
    }

    /// Accounts for `existing` leaving (`by` -1) or joining (`by` 1) `node` (preemption's
    /// what-if).
    pub fn update_pod(
        &mut self,
        existing: &PodInfo,
        node: &NodeInfo,
        pod: &PodInfo,
        ns: &NamespaceLabels,
        by: i64,
    ) {
        self.add_existing(existing, node, pod, ns, by);
        if *existing.namespace == *pod.namespace
            || pod.required_affinity.iter().chain(&pod.required_anti_affinity).any(|t| {
                t.namespace_selector.is_some()
                    || t.namespaces.iter().any(|n| **n == *existing.namespace)
            })
        {
            self.add_candidate(existing, node, pod, ns, by);
        }
    }

    /// The filter on one node.
    pub fn filter(
        &self,
        pod: &PodInfo,
        node: &NodeInfo,
        ns: &NamespaceLabels,
    ) -> Result<(), Rejection> {
        let labels = node.labels();
        if !pod.required_affinity.is_empty() {
            let mut pods_exist = true;
            for term in &pod.required_affinity {
                let Some(v) = labels.get(&term.topology_key) else {
                    return Err(Rejection::new(Plugin::InterPodAffinity, true, REASON_AFFINITY));
                };
                if count_at(&self.affinity, &term.topology_key, v) <= 0 {
                    pods_exist = false;
                }
            }
            // The first pod of a group with affinity to itself may go anywhere.
            if !(pods_exist || self.affinity.is_empty() && pod.affinity_terms_match(pod, ns)) {
                return Err(Rejection::new(Plugin::InterPodAffinity, true, REASON_AFFINITY));
            }
        }
        for term in &pod.required_anti_affinity {
            if let Some(v) = labels.get(&term.topology_key)
                && count_at(&self.anti, &term.topology_key, v) > 0
            {
                return Err(Rejection::new(Plugin::InterPodAffinity, false, REASON_ANTI_AFFINITY));
            }
        }
        for (key, values) in &self.existing_anti {
            if let Some(v) = labels.get(key)
                && values.get(v).is_some_and(|n| *n > 0)
            {
                return Err(Rejection::new(
                    Plugin::InterPodAffinity,
                    false,
                    REASON_EXISTING_ANTI_AFFINITY,
                ));
            }
        }
        Ok(())
    }
}

fn process_term(
    scores: &mut TopologyCounts,
    term: &AffinityTerm,
    weight: i64,
    target: &PodInfo,
    node: &NodeInfo,
    ns: &NamespaceLabels,
) {
    if let Some(v) = node.labels().get(&term.topology_key)
        && term.matches(target, ns)
    {
        bump(scores, &term.topology_key, v, weight);
    }
}

/// The preferred-terms score: per topology pair, the summed weights; `None` when there is
/// nothing to score (upstream's Skip).
pub fn score_state(pod: &PodInfo, snap: &Snapshot, hard_weight: i64) -> Option<TopologyCounts> {
    let has_preferred =
        !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
    if !has_preferred && snap.affinity_slots().is_empty() {
        return None;
    }
    let ns = &snap.namespaces;
    let mut scores = TopologyCounts::default();
    if has_preferred {
        let terms = pod.preferred_affinity.iter().chain(&pod.preferred_anti_affinity);
        for (slot, existing) in candidate_pods(snap, terms) {
            let node = snap.node(slot);
            for t in &pod.preferred_affinity {
                process_term(&mut scores, t, i64::from(t.weight), existing, node, ns);
            }
            for t in &pod.preferred_anti_affinity {
                process_term(&mut scores, t, -i64::from(t.weight), existing, node, ns);
            }
        }
    }
    // Existing pods' terms that select the incoming pod.
    for &slot in snap.affinity_slots() {
        let node = snap.node(slot);
        for existing in node.pods.iter().filter(|p| p.has_affinity()) {
            if hard_weight > 0 {
                for t in &existing.required_affinity {
                    process_term(&mut scores, t, hard_weight, pod, node, ns);
                }
            }
            for t in &existing.preferred_affinity {
                process_term(&mut scores, t, i64::from(t.weight), pod, node, ns);
            }
            for t in &existing.preferred_anti_affinity {
                process_term(&mut scores, t, -i64::from(t.weight), pod, node, ns);
            }
        }
    }
    if scores.is_empty() { None } else { Some(scores) }
}

/// One node's raw score.
pub fn score(state: &TopologyCounts, node: &NodeInfo) -> i64 {
    let labels = node.labels();
    state.iter().filter_map(|(key, values)| labels.get(key).and_then(|v| values.get(v))).sum()
}

/// Upstream's normalization: `100 * (s - min) / (max - min)`, all zero when flat.
pub fn normalize(scores: &mut [i64]) {
    let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else { return };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 { (100.0 * ((*s - min) as f64 / diff as f64)) as i64 } else { 0 };
    }
}
