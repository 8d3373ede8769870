//! PodTopologySpread: hard constraints (`DoNotSchedule`) as a filter, soft ones
//! (`ScheduleAnyway`) and the system default spreading as a score. The system default is
//! upstream's: `kubernetes.io/hostname` with maxSkew 3 and `topology.kubernetes.io/zone`
//! with maxSkew 5, over the pods of the same owner (upstream selects them through the
//! owning Service/ReplicaSet/StatefulSet selectors; the owner reference stands for those).

use std::collections::HashMap;
use std::sync::Arc;

use rudder_client::objects::selector_matches;

use crate::filters::{Plugin, Rejection, required_node_affinity_matches, tolerated, pod_tolerations};
use crate::node_info::NodeInfo;
use crate::pod_info::{LABEL_HOSTNAME, LABEL_ZONE, PodInfo, SpreadConstraint};
use crate::snapshot::Snapshot;

pub const REASON_SPREAD: &str = "node(s) didn't match pod topology spread constraints";
pub const REASON_SPREAD_MISSING_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

/// Whether `node` counts for constraint `c` of `pod` (nodeAffinityPolicy and
/// nodeTaintsPolicy).
fn node_included(c: &SpreadConstraint, pod: &PodInfo, node: &NodeInfo) -> bool {
    if c.honor_node_affinity && !required_node_affinity_matches(pod, &node.name, node.labels()) {
        return false;
    }
    if c.honor_node_taints {
        let tolerations = pod_tolerations(pod);
        let blocked = node.facts.taints.iter().any(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated(tolerations, t)
        });
        if blocked {
            return false;
        }
    }
    true
}

fn has_all_keys<'a>(node: &NodeInfo, mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.all(|k| node.labels().contains_key(k))
}

/// The hard constraints' counts: per constraint, matching pods per domain, and the minimum.
#[derive(Clone, Debug)]
pub struct SpreadFilterState {
    pub counts: Vec<HashMap<String, i64>>,
    pub mins: Vec<i64>,
}

impl SpreadFilterState {
    /// `None` when the pod has no hard constraints.
    pub fn compute(pod: &PodInfo, snap: &Snapshot) -> Option<SpreadFilterState> {
        let constraints = &pod.hard_spread;
        if constraints.is_empty() {
            return None;
        }
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        // included[slot][i]: node counts for constraint i
        let mut included: HashMap<usize, Vec<bool>> = HashMap::new();
        for &slot in snap.order() {
            let node = snap.node(slot);
            if !has_all_keys(node, constraints.iter().map(|c| c.topology_key.as_str())) {
                continue;
            }
            let inc: Vec<bool> = constraints.iter().map(|c| node_included(c, pod, node)).collect();
            for (i, c) in constraints.iter().enumerate() {
                if inc[i] {
                    let v = &node.labels()[&c.topology_key];
                    counts[i].entry(v.clone()).or_insert(0);
                }
            }
            included.insert(slot, inc);
        }
        for (slot, existing) in snap.pods_in_namespace(&pod.namespace) {
            let Some(inc) = included.get(&slot) else { continue };
            let node = snap.node(slot);
            for (i, c) in constraints.iter().enumerate() {
                if inc[i] && c.counts(existing, &pod.namespace) {
                    *counts[i].get_mut(&node.labels()[&c.topology_key]).expect("domain") += 1;
                }
            }
        }
        let mut s = SpreadFilterState { mins: vec![0; counts.len()], counts };
        s.refresh_mins();
        Some(s)
    }

    fn refresh_mins(&mut self) {
        self.mins = self.counts.iter().map(|m| m.values().copied().min().unwrap_or(0)).collect();
    }

    /// Accounts for `existing` leaving (`by` -1) or joining (`by` 1) `node` (preemption's
    /// what-if).
    pub fn update_pod(&mut self, existing: &PodInfo, node: &NodeInfo, pod: &PodInfo, by: i64) {
        if !has_all_keys(node, pod.hard_spread.iter().map(|c| c.topology_key.as_str())) {
            return;
        }
        for (i, c) in pod.hard_spread.iter().enumerate() {
            if c.counts(existing, &pod.namespace)
                && node_included(c, pod, node)
                && let Some(n) = self.counts[i].get_mut(&node.labels()[&c.topology_key])
            {
                *n += by;
            }
        }
        self.refresh_mins();
    }

    /// The filter on one node.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        for (i, c) in pod.hard_spread.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Err(Rejection::new(
                    Plugin::PodTopologySpread,
                    true,
                    REASON_SPREAD_MISSING_LABEL,
                ));
            };
            let min = if (self.counts[i].len() as i64) < i64::from(c.min_domains) {
                0
            } else {
                self.mins[i]
            };
            let self_match = i64::from(
                c.selector.as_ref().is_some_and(|s| selector_matches(s, pod.labels())),
            );
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - min > i64::from(c.max_skew) {
                return Err(Rejection::new(Plugin::PodTopologySpread, false, REASON_SPREAD));
            }
        }
        Ok(())
    }
}

/// Which pods a scoring constraint counts.
#[derive(Clone, Debug)]
enum Counted {
    Constraint(SpreadConstraint),
    /// System default: the pods sharing the incoming pod's owner.
    Owner { owner: Arc<str>, max_skew: i32, topology_key: &'static str },
}

impl Counted {
    fn key(&self) -> &str {
        match self {
            Counted::Constraint(c) => &c.topology_key,
            Counted::Owner { topology_key, .. } => topology_key,
        }
    }

    fn max_skew(&self) -> i32 {
        match self {
            Counted::Constraint(c) => c.max_skew,
            Counted::Owner { max_skew, .. } => *max_skew,
        }
    }

    fn included(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        match self {
            Counted::Constraint(c) => node_included(c, pod, node),
            // default policies: honor node affinity, ignore taints
            Counted::Owner { .. } => {
                required_node_affinity_matches(pod, &node.name, node.labels())
            }
        }
    }

    fn count_on(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        match self {
            Counted::Constraint(c) => {
                node.pods.iter().filter(|p| c.counts(p, &pod.namespace)).count() as i64
            }
            Counted::Owner { owner, .. } => i64::from(node.owner_count(owner)),
        }
    }
}

/// The soft constraints' (or the system default's) state for scoring.
#[derive(Debug)]
pub struct SpreadScoreState {
    constraints: Vec<Counted>,
    /// Per candidate (index into the scored nodes): left out of scoring.
    ignored: Vec<bool>,
    /// Per constraint (not hostname): matching pods per domain.
    counts: Vec<HashMap<String, i64>>,
    weights: Vec<f64>,
}

impl SpreadScoreState {
    /// `None` when there is nothing to score (no soft constraints and no owner).
    pub fn compute(
        pod: &PodInfo,
        snap: &Snapshot,
        candidates: &[usize],
        system_default: bool,
    ) -> Option<SpreadScoreState> {
        let explicit = !pod.hard_spread.is_empty() || !pod.soft_spread.is_empty();
        let constraints: Vec<Counted> = if explicit {
            pod.soft_spread.iter().cloned().map(Counted::Constraint).collect()
        } else if system_default && let Some(owner) = &pod.owner_uid {
            vec![
                Counted::Owner { owner: owner.clone(), max_skew: 3, topology_key: LABEL_HOSTNAME },
                Counted::Owner { owner: owner.clone(), max_skew: 5, topology_key: LABEL_ZONE },
            ]
        } else {
            Vec::new()
        };
        if constraints.is_empty() {
            return None;
        }
        let require_all = explicit;
        let mut ignored = vec![false; candidates.len()];
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for (ci, &slot) in candidates.iter().enumerate() {
            let node = snap.node(slot);
            if require_all && !has_all_keys(node, constraints.iter().map(Counted::key)) {
                ignored[ci] = true;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.key() != LABEL_HOSTNAME {
                    let v = node.labels().get(c.key()).cloned().unwrap_or_default();
                    counts[i].entry(v).or_insert(0);
                }
            }
        }
        let scored = ignored.iter().filter(|i| !**i).count();
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.key() == LABEL_HOSTNAME { scored } else { counts[i].len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        // Domain counts over every node, through the indexes rather than a scan.
        let mut add = |i: usize, c: &Counted, node: &NodeInfo, n: i64| {
            if require_all && !has_all_keys(node, constraints.iter().map(Counted::key)) {
                return;
            }
            if !c.included(pod, node) {
                return;
            }
            let v = node.labels().get(c.key()).map(String::as_str).unwrap_or("");
            if let Some(count) = counts[i].get_mut(v) {
                *count += n;
            }
        };
        for (i, c) in constraints.iter().enumerate() {
            if c.key() == LABEL_HOSTNAME {
                continue;
            }
            match c {
                Counted::Owner { owner, .. } => {
                    for (&slot, &n) in snap.owner_slots(owner).into_iter().flatten() {
                        add(i, c, snap.node(slot), i64::from(n));
                    }
                }
                Counted::Constraint(sc) => {
                    for (slot, existing) in snap.pods_in_namespace(&pod.namespace) {
                        if sc.counts(existing, &pod.namespace) {
                            add(i, c, snap.node(slot), 1);
                        }
                    }
                }
            }
        }
        Some(SpreadScoreState { constraints, ignored, counts, weights })
    }

    /// Raw scores of the candidates (lower is better before normalizing).
    pub fn scores(&self, pod: &PodInfo, snap: &Snapshot, candidates: &[usize]) -> Vec<i64> {
        candidates
            .iter()
            .enumerate()
            .map(|(ci, &slot)| {
                if self.ignored[ci] {
                    return 0;
                }
                let node = snap.node(slot);
                let mut score = 0.0;
                for (i, c) in self.constraints.iter().enumerate() {
                    let Some(v) = node.labels().get(c.key()) else { continue };
                    let count = if c.key() == LABEL_HOSTNAME {
                        c.count_on(pod, node)
                    } else {
                        self.counts[i].get(v).copied().unwrap_or(0)
                    };
                    score += count as f64 * self.weights[i] + f64::from(c.max_skew() - 1);
                }
                score.round() as i64
            })
            .collect()
    }

    /// Upstream's normalization: fewer matching pods scores higher; ignored nodes score 0.
    pub fn normalize(&self, scores: &mut [i64]) {
        let live = || scores.iter().zip(&self.ignored).filter(|(_, ig)| !**ig).map(|(s, _)| *s);
        let min = live().min().unwrap_or(0);
        let max = live().max().unwrap_or(0);
        for (s, ignored) in scores.iter_mut().zip(&self.ignored) {
            *s = if *ignored {
                0
            } else if max == 0 {
                100
            } else {
                100 * (max + min - *s) / max
            };
        }
    }
}
