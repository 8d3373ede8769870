//! PodTopologySpread: hard constraints (`DoNotSchedule`) as a filter, soft ones
//! (`ScheduleAnyway`) and the system default spreading as a score. The system default is
//! upstream's: `kubernetes.io/hostname` with maxSkew 3 and `topology.kubernetes.io/zone`
//! with maxSkew 5, over the pods of the same owner (upstream selects them through the
//! owning Service/ReplicaSet/StatefulSet selectors; the owner reference stands for those).

use crate::FastMap as HashMap;

use rudder_client::objects::selector_matches;

use crate::filters::{
    Plugin, Rejection, pod_tolerations, required_node_affinity_matches, tolerated,
};
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
    keys.all(|k| node.label(k).is_some())
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
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::default(); constraints.len()];
        // included[slot][i]: node counts for constraint i
        let mut included: HashMap<usize, Vec<bool>> = HashMap::default();
        for &slot in snap.order() {
            let node = snap.node(slot);
            if !has_all_keys(node, constraints.iter().map(|c| c.topology_key.as_str())) {
                continue;
            }
            let inc: Vec<bool> = constraints.iter().map(|c| node_included(c, pod, node)).collect();
            for (i, c) in constraints.iter().enumerate() {
                if inc[i] {
                    let v = node.label(&c.topology_key).unwrap_or_default();
                    counts[i].entry(v.to_owned()).or_insert(0);
                }
            }
            included.insert(slot, inc);
        }
        for (slot, existing) in snap.pods_in_namespace(&pod.namespace) {
            let Some(inc) = included.get(&slot) else { continue };
            let node = snap.node(slot);
            for (i, c) in constraints.iter().enumerate() {
                if inc[i]
                    && c.counts(existing, &pod.namespace)
                    && let Some(n) = node.label(&c.topology_key).and_then(|v| counts[i].get_mut(v))
                {
                    *n += 1;
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
                && let Some(n) = node.label(&c.topology_key).and_then(|v| self.counts[i].get_mut(v))
            {
                *n += by;
            }
        }
        self.refresh_mins();
    }

    /// The filter on one node.
    pub fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        for (i, c) in pod.hard_spread.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
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
            let self_match =
                i64::from(c.selector.as_ref().is_some_and(|s| selector_matches(s, pod.labels())));
            let matching = self.counts[i].get(value).copied().unwrap_or(0);
            if matching + self_match - min > i64::from(c.max_skew) {
                return Err(Rejection::new(Plugin::PodTopologySpread, false, REASON_SPREAD));
            }
        }
        Ok(())
    }
}

/// A topology key, with the two every node carries cached on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Hostname,
    Zone,
    Other,
}

impl KeyKind {
    fn of(key: &str) -> KeyKind {
        match key {
            LABEL_HOSTNAME => KeyKind::Hostname,
            LABEL_ZONE => KeyKind::Zone,
            _ => KeyKind::Other,
        }
    }
}

/// One scoring constraint: an explicit soft constraint, or the system default over the
/// pods of the incoming pod's owner.
#[derive(Clone, Debug)]
struct Scored<'a> {
    key: &'a str,
    kind: KeyKind,
    max_skew: i32,
    /// `None` for the system default (owner-based).
    constraint: Option<&'a SpreadConstraint>,
    /// System default: the slots holding the owner's pods, with how many.
    owner_slots: Option<&'a HashMap<usize, u32>>,
    owner: Option<&'a str>,
}

impl<'a> Scored<'a> {
    fn value<'n>(&self, node: &'n NodeInfo) -> Option<&'n str> {
        match self.kind {
            KeyKind::Hostname => node.hostname.as_deref(),
            KeyKind::Zone => node.zone.as_deref(),
            KeyKind::Other => node.facts.labels.get(self.key).map(String::as_str),
        }
    }

    fn included(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        match self.constraint {
            Some(c) => node_included(c, pod, node),
            // default policies: honor node affinity, ignore taints
            None => required_node_affinity_matches(pod, &node.name, node.labels()),
        }
    }

    /// Matching pods on one node (the hostname constraint's count).
    fn count_on(&self, pod: &PodInfo, slot: usize, node: &NodeInfo) -> i64 {
        match self.constraint {
            Some(c) => node.pods.iter().filter(|p| c.counts(p, &pod.namespace)).count() as i64,
            None => self.owner_slots.and_then(|m| m.get(&slot)).map_or(0, |n| i64::from(*n)),
        }
    }
}

/// Whether the pod restricts nodes by nodeSelector or required node affinity.
fn has_required_node_affinity(pod: &PodInfo) -> bool {
    pod.spec().is_some_and(|s| {
        s.node_selector.as_ref().is_some_and(|m| !m.is_empty())
            || s.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .is_some_and(|na| na.required_during_scheduling_ignored_during_execution.is_some())
    })
}

/// The soft constraints' (or the system default's) state for scoring.
#[derive(Debug)]
pub struct SpreadScoreState<'a> {
    constraints: Vec<Scored<'a>>,
    /// Per candidate (index into the scored nodes): left out of scoring.
    ignored: Vec<bool>,
    /// Per constraint (not hostname): matching pods per domain.
    counts: Vec<HashMap<&'a str, i64>>,
    weights: Vec<f64>,
}

impl<'a> SpreadScoreState<'a> {
    /// `None` when there is nothing to score (no soft constraints and no owner).
    pub fn compute(
        pod: &'a PodInfo,
        snap: &'a Snapshot,
        candidates: &[usize],
        system_default: bool,
    ) -> Option<SpreadScoreState<'a>> {
        let explicit = !pod.hard_spread.is_empty() || !pod.soft_spread.is_empty();
        let constraints: Vec<Scored<'a>> = if explicit {
            pod.soft_spread
                .iter()
                .map(|c| Scored {
                    key: &c.topology_key,
                    kind: KeyKind::of(&c.topology_key),
                    max_skew: c.max_skew,
                    constraint: Some(c),
                    owner_slots: None,
                    owner: None,
                })
                .collect()
        } else if system_default && let Some(owner) = &pod.owner_uid {
            let owner_slots = snap.owner_slots(owner);
            [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
                .into_iter()
                .map(|(key, max_skew)| Scored {
                    key,
                    kind: KeyKind::of(key),
                    max_skew,
                    constraint: None,
                    owner_slots,
                    owner: Some(owner),
                })
                .collect()
        } else {
            Vec::new()
        };
        if constraints.is_empty() {
            return None;
        }
        let require_all = explicit;
        let has_all = |node: &NodeInfo| constraints.iter().all(|c| c.value(node).is_some());
        let mut ignored = vec![false; candidates.len()];
        let mut counts: Vec<HashMap<&'a str, i64>> = vec![HashMap::default(); constraints.len()];
        for (ci, &slot) in candidates.iter().enumerate() {
            let node = snap.node(slot);
            if require_all && !has_all(node) {
                ignored[ci] = true;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.kind != KeyKind::Hostname {
                    counts[i].entry(c.value(node).unwrap_or("")).or_insert(0);
                }
            }
        }
        let scored = ignored.iter().filter(|i| !**i).count();
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.kind == KeyKind::Hostname { scored } else { counts[i].len() };
                ((size + 2) as f64).ln()
            })
            .collect();
        // Domain counts over every node, through the indexes rather than a scan.
        let restricted = has_required_node_affinity(pod);
        for (i, c) in constraints.iter().enumerate() {
            if c.kind == KeyKind::Hostname {
                continue;
            }
            let mut add = |node: &'a NodeInfo, n: i64| {
                if (require_all && !has_all(node)) || !c.included(pod, node) {
                    return;
                }
                if let Some(count) = counts[i].get_mut(c.value(node).unwrap_or("")) {
                    *count += n;
                }
            };
            match (c.constraint, c.owner) {
                (None, Some(owner)) if !restricted && c.kind == KeyKind::Zone => {
                    // every node counts: the per-zone index has the answer
                    for (zone, &n) in snap.owner_zones(owner).into_iter().flatten() {
                        if let Some(count) = counts[i].get_mut(&**zone) {
                            *count += i64::from(n);
                        }
                    }
                }
                (None, _) => {
                    for (&slot, &n) in c.owner_slots.into_iter().flatten() {
                        add(snap.node(slot), i64::from(n));
                    }
                }
                (Some(sc), _) => {
                    for (slot, existing) in snap.pods_in_namespace(&pod.namespace) {
                        if sc.counts(existing, &pod.namespace) {
                            add(snap.node(slot), 1);
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
                    let Some(v) = c.value(node) else { continue };
                    let count = if c.kind == KeyKind::Hostname {
                        c.count_on(pod, slot, node)
                    } else {
                        self.counts[i].get(v).copied().unwrap_or(0)
                    };
                    score += count as f64 * self.weights[i] + f64::from(c.max_skew - 1);
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
