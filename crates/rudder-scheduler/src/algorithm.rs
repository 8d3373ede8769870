//! One scheduling cycle, pure: given the snapshot and a pod, find the feasible nodes
//! (checking only as many as upstream's percentageOfNodesToScore asks, starting where the
//! previous cycle stopped), score them and pick the best (ties at random); or explain, in
//! upstream's words, why no node fits.

use crate::FastMap as HashMap;
use std::sync::Arc;

use rand::Rng;

use crate::filters::{self, Plugin, Rejection};
use crate::interpod::{self, InterPodFilterState};
use crate::node_info::NodeInfo;
use crate::pod_info::{NamespaceLabels, PodInfo};
use crate::scores::{self, ScoreWeights};
use crate::snapshot::Snapshot;
use crate::spread::{SpreadFilterState, SpreadScoreState};
use crate::volumes::{self, VolumeFilterState};

/// Upstream: below this many nodes every node is checked.
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// Upstream: the adaptive percentage never goes below this.
const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;

/// The knobs of the pure algorithm.
#[derive(Clone, Debug, PartialEq)]
pub struct AlgorithmConfig {
    /// 0 means upstream's adaptive default (50% - nodes/125, at least 5%).
    pub percentage_of_nodes_to_score: u32,
    pub weights: ScoreWeights,
    /// Weight of existing pods' required affinity terms that select the incoming pod.
    pub hard_pod_affinity_weight: i64,
    /// Spread pods of one owner over hosts and zones when they have no constraints.
    pub system_default_spreading: bool,
}

impl Default for AlgorithmConfig {
    fn default() -> Self {
        AlgorithmConfig {
            percentage_of_nodes_to_score: 0,
            weights: ScoreWeights::default(),
            hard_pod_affinity_weight: 1,
            system_default_spreading: true,
        }
    }
}

/// How many feasible nodes to look for before scoring (upstream's numFeasibleNodesToFind).
pub fn num_feasible_nodes_to_find(percentage: u32, num_all_nodes: usize) -> usize {
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND || percentage >= 100 {
        return num_all_nodes;
    }
    let pct = if percentage == 0 {
        (50usize.saturating_sub(num_all_nodes / 125)).max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    } else {
        percentage as usize
    };
    (num_all_nodes * pct / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

/// Pods nominated to nodes: preemptors waiting for their victims to leave. Lower- or
/// equal-priority pods see their requests as taken on those nodes.
#[derive(Debug, Default)]
pub struct Nominated {
    by_node: HashMap<Arc<str>, Vec<Arc<PodInfo>>>,
    by_uid: HashMap<Arc<str>, Arc<str>>,
}

impl Nominated {
    pub fn add(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove(&pod.uid);
        let node: Arc<str> = Arc::from(node);
        self.by_uid.insert(pod.uid.clone(), node.clone());
        self.by_node.entry(node).or_default().push(pod);
    }

    pub fn remove(&mut self, uid: &str) -> Option<Arc<str>> {
        let node = self.by_uid.remove(uid)?;
        if let Some(list) = self.by_node.get_mut(&node) {
            list.retain(|p| &*p.uid != uid);
            if list.is_empty() {
                self.by_node.remove(&node);
            }
        }
        Some(node)
    }

    pub fn node_of(&self, uid: &str) -> Option<&Arc<str>> {
        self.by_uid.get(uid)
    }

    pub fn on_node(&self, node: &str) -> &[Arc<PodInfo>] {
        self.by_node.get(node).map(Vec::as_slice).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

/// What one cycle computes once about the pod before looking at nodes.
#[derive(Clone, Debug)]
pub struct CycleState<'a> {
    pub pod: &'a PodInfo,
    pub interpod: Option<InterPodFilterState>,
    pub spread: Option<SpreadFilterState>,
    /// VolumeBinding's PreFilter: `Err` = the pod fits nowhere (the message says why).
    pub volumes: Result<Option<VolumeFilterState>, String>,
}

impl<'a> CycleState<'a> {
    pub fn new(pod: &'a PodInfo, snap: &Snapshot) -> CycleState<'a> {
        CycleState {
            pod,
            interpod: InterPodFilterState::compute(pod, snap),
            spread: SpreadFilterState::compute(pod, snap),
            volumes: volumes::prefilter(pod, snap.volumes.as_ref()),
        }
    }
}

/// Every filter, in upstream's order; the first rejection wins.
pub fn run_filters(
    state: &CycleState<'_>,
    node: &NodeInfo,
    ns: &NamespaceLabels,
) -> Result<(), Rejection> {
    let pod = state.pod;
    filters::node_unschedulable(pod, node)?;
    filters::taint_toleration(pod, node)?;
    filters::node_affinity(pod, node)?;
    if !pod.host_ports.is_empty() {
        filters::node_ports(pod, node)?;
    }
    filters::node_resources_fit(pod, node)?;
    if let Ok(Some(v)) = &state.volumes {
        v.filter(node)?;
    }
    if let Some(spread) = &state.spread {
        spread.filter(pod, node)?;
    }
    if let Some(interpod) = &state.interpod {
        interpod.filter(pod, node, ns)?;
    }
    Ok(())
}

/// The filters with the pods nominated to the node (of at least the pod's priority) counted
/// as if they were there, then without them (upstream's two passes).
pub fn filter_node(
    state: &CycleState<'_>,
    node: &NodeInfo,
    nominated: &Nominated,
    ns: &NamespaceLabels,
) -> Result<(), Rejection> {
    if nominated.is_empty() {
        return run_filters(state, node, ns);
    }
    let pod = state.pod;
    let mut others = nominated
        .on_node(&node.name)
        .iter()
        .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
        .peekable();
    if others.peek().is_some() {
        let mut with = node.clone();
        for p in others {
            with.add_pod(p.clone());
        }
        run_filters(state, &with, ns)?;
    }
    run_filters(state, node, ns)
}

/// Why the pod fits nowhere.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub num_all_nodes: usize,
    /// The nodes checked and rejected, by slot.
    pub rejections: Vec<(usize, Rejection)>,
    /// Nodes not checked because the pod's required node affinity names other nodes.
    pub absent: usize,
    /// A PreFilter rejected the pod for every node (its message replaces the counts).
    pub pre_filter: Option<String>,
}

impl Diagnosis {
    /// The plugins that rejected some node (bits of [`Plugin::bit`]).
    pub fn plugins(&self) -> u16 {
        let mut bits = self.rejections.iter().fold(0, |b, (_, r)| b | r.plugin.bit());
        if self.absent > 0 {
            bits |= Plugin::NodeAffinity.bit();
        }
        bits
    }

    /// Upstream's FitError message, e.g. `0/3 nodes are available: 3 Insufficient cpu.`,
    /// with ` <post_filter>.` appended when preemption has something to say.
    pub fn message(&self, post_filter: Option<&str>) -> String {
        if let Some(pre) = &self.pre_filter {
            let mut msg = format!("0/{} nodes are available: {pre}.", self.num_all_nodes);
            if let Some(post) = post_filter.filter(|p| !p.is_empty()) {
                msg.push_str(&format!(" {post}."));
            }
            return msg;
        }
        let reasons = self
            .rejections
            .iter()
            .flat_map(|(_, r)| r.reasons.iter().map(|s| s.as_ref()))
            .chain(std::iter::repeat_n(REASON_ABSENT, self.absent));
        fit_message(self.num_all_nodes, reasons, post_filter)
    }
}

/// Nodes left out by the pod's node-name affinity.
pub const REASON_ABSENT: &str = "node(s) didn't satisfy plugin(s) [NodeAffinity]";

/// `0/<n> nodes are available: <count reason, ...>.[ <post>.]`, reasons counted and sorted
/// as strings (as upstream does).
pub fn fit_message<'r>(
    num_all_nodes: usize,
    reasons: impl Iterator<Item = &'r str>,
    post_filter: Option<&str>,
) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::default();
    for r in reasons {
        *counts.entry(r).or_insert(0) += 1;
    }
    let mut parts: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{num_all_nodes} nodes are available:");
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    if let Some(post) = post_filter.filter(|p| !p.is_empty()) {
        msg.push_str(&format!(" {post}."));
    }
    msg
}

/// A node was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub node: Arc<str>,
    /// Nodes checked by the filters.
    pub evaluated: usize,
    /// Nodes that passed them.
    pub feasible: usize,
}

#[derive(Clone, Debug)]
pub enum ScheduleError {
    /// The cluster has no nodes (upstream: "no nodes available to schedule pods").
    NoNodes,
    Unschedulable(Diagnosis),
}

/// Mutable state carried from one cycle to the next.
#[derive(Debug, Default)]
pub struct CycleCursor {
    /// Where the next cycle starts checking nodes (upstream's nextStartNodeIndex).
    pub next_start: usize,
}

/// Schedules one pod: filter, score, select.
pub fn schedule_pod(
    snap: &Snapshot,
    pod: &PodInfo,
    nominated_node: Option<&str>,
    nominated: &Nominated,
    cfg: &AlgorithmConfig,
    cursor: &mut CycleCursor,
    rng: &mut impl Rng,
) -> Result<Scheduled, ScheduleError> {
    let all = snap.order();
    if all.is_empty() {
        return Err(ScheduleError::NoNodes);
    }
    let ns = &snap.namespaces;
    let state = CycleState::new(pod, snap);
    if let Err(msg) = &state.volumes {
        // Every node is rejected alike, and preemption cannot help.
        let rejection = Rejection::new(Plugin::VolumeBinding, true, msg.clone());
        return Err(ScheduleError::Unschedulable(Diagnosis {
            num_all_nodes: all.len(),
            rejections: all.iter().map(|&slot| (slot, rejection.clone())).collect(),
            absent: 0,
            pre_filter: Some(msg.clone()),
        }));
    }
    // A preemptor goes back to its nominated node when it fits there now.
    if let Some(slot) = nominated_node.and_then(|n| snap.slot_of(n))
        && filter_node(&state, snap.node(slot), nominated, ns).is_ok()
    {
        return Ok(Scheduled { node: snap.node(slot).name.clone(), evaluated: 1, feasible: 1 });
    }
    let mut diagnosis = Diagnosis { num_all_nodes: all.len(), ..Diagnosis::default() };
    let pinned: Option<Vec<usize>> = filters::required_node_names(pod)
        .map(|names| names.iter().filter_map(|n| snap.slot_of(n)).collect());
    let (candidates, to_find, rotate) = match &pinned {
        Some(slots) => {
            diagnosis.absent = all.len() - slots.len();
            (slots.as_slice(), slots.len(), false)
        }
        None => {
            (all, num_feasible_nodes_to_find(cfg.percentage_of_nodes_to_score, all.len()), true)
        }
    };
    let start = if rotate { cursor.next_start % candidates.len().max(1) } else { 0 };
    let mut feasible: Vec<usize> = Vec::with_capacity(to_find.min(candidates.len()));
    let mut processed = 0;
    for i in 0..candidates.len() {
        let slot = candidates[(start + i) % candidates.len()];
        processed += 1;
        match filter_node(&state, snap.node(slot), nominated, ns) {
            Ok(()) => {
                feasible.push(slot);
                if feasible.len() >= to_find {
                    break;
                }
            }
            Err(r) => diagnosis.rejections.push((slot, r)),
        }
    }
    if rotate {
        cursor.next_start = (start + processed) % candidates.len();
    }
    let evaluated = processed;
    match feasible.len() {
        0 => Err(ScheduleError::Unschedulable(diagnosis)),
        1 => Ok(Scheduled { node: snap.node(feasible[0]).name.clone(), evaluated, feasible: 1 }),
        n => {
            let totals = score_nodes(snap, pod, &feasible, cfg);
            let best = select_host(&totals, rng);
            Ok(Scheduled { node: snap.node(feasible[best]).name.clone(), evaluated, feasible: n })
        }
    }
}

/// The weighted sum of every score plugin for each candidate.
pub fn score_nodes(
    snap: &Snapshot,
    pod: &PodInfo,
    candidates: &[usize],
    cfg: &AlgorithmConfig,
) -> Vec<i64> {
    let w = &cfg.weights;
    let mut totals = vec![0i64; candidates.len()];
    let add = |totals: &mut Vec<i64>, weight: i64, scores: &[i64]| {
        for (t, s) in totals.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    let per_node = |f: &dyn Fn(&NodeInfo) -> i64| -> Vec<i64> {
        candidates.iter().map(|&s| f(snap.node(s))).collect()
    };
    add(&mut totals, w.node_resources_fit, &per_node(&|n| scores::least_allocated(pod, n)));
    if scores::balanced_allocation_applies(pod) {
        add(
            &mut totals,
            w.balanced_allocation,
            &per_node(&|n| scores::balanced_allocation(pod, n)),
        );
    }
    if !scores::preferred_terms(pod).is_empty() {
        let mut raw = per_node(&|n| scores::node_affinity_preferred(pod, n));
        scores::default_normalize(&mut raw, false);
        add(&mut totals, w.node_affinity, &raw);
    }
    let mut taints = if candidates.iter().any(|&s| snap.node(s).has_prefer_no_schedule) {
        per_node(&|n| scores::taint_toleration(pod, n))
    } else {
        vec![0; candidates.len()]
    };
    scores::default_normalize(&mut taints, true);
    add(&mut totals, w.taint_toleration, &taints);
    if let Some(spread) =
        SpreadScoreState::compute(pod, snap, candidates, cfg.system_default_spreading)
    {
        let mut raw = spread.scores(pod, snap, candidates);
        spread.normalize(&mut raw);
        add(&mut totals, w.pod_topology_spread, &raw);
    }
    if let Some(topology) = interpod::score_state(pod, snap, cfg.hard_pod_affinity_weight) {
        let mut raw = per_node(&|n| interpod::score(&topology, n));
        interpod::normalize(&mut raw);
        add(&mut totals, w.inter_pod_affinity, &raw);
    }
    totals
}

/// The index of the highest total; ties broken uniformly at random (reservoir sampling).
pub fn select_host(totals: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 0u32;
    for (i, &t) in totals.iter().enumerate() {
        if i == 0 || t > totals[best] {
            best = i;
            ties = 1;
        } else if t == totals[best] {
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}
