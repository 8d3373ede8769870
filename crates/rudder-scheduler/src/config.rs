//! The scheduler's configuration (the parts of upstream's KubeSchedulerConfiguration that
//! apply), with upstream's defaults.

use std::time::Duration;

use crate::algorithm::AlgorithmConfig;
use crate::scores::ScoreWeights;

#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// Pods whose `spec.schedulerName` is this are ours (`default-scheduler`).
    pub scheduler_name: String,
    /// Share of the nodes to find feasible before scoring; 0 = upstream's adaptive default
    /// (50% - nodes/125, at least 5%, at least 100 nodes).
    pub percentage_of_nodes_to_score: u32,
    /// Most bindings in flight at once; the scheduling loop waits when all are taken.
    pub parallel_binds: usize,
    /// Bound on one API call (binding, status patch, victim deletion).
    pub api_timeout: Duration,
    /// First back-off after a failed binding (upstream podInitialBackoffSeconds: 1 s)...
    pub pod_initial_backoff: Duration,
    /// ... doubling up to this (podMaxBackoffSeconds: 10 s).
    pub pod_max_backoff: Duration,
    /// An unschedulable pod gets another try after this long even if nothing relevant
    /// happened (podMaxInUnschedulablePodsDuration: 5 min).
    pub pod_max_in_unschedulable_pods_duration: Duration,
    /// How often unschedulable pods are checked against that duration (upstream: 30 s).
    pub unschedulable_flush_period: Duration,
    /// Preempt lower-priority pods for pods that fit nowhere (DefaultPreemption).
    pub preemption: bool,
    /// Seed for tie-breaking and preemption's random offset; `None` seeds from entropy.
    pub rng_seed: Option<u64>,
    pub weights: ScoreWeights,
    /// InterPodAffinity's hardPodAffinityWeight (1).
    pub hard_pod_affinity_weight: i64,
    /// Spread pods of one owner over hosts and zones when they have no spread constraints
    /// (upstream's system default constraints).
    pub system_default_spreading: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".to_owned(),
            percentage_of_nodes_to_score: 0,
            parallel_binds: 64,
            api_timeout: Duration::from_secs(30),
            pod_initial_backoff: Duration::from_secs(1),
            pod_max_backoff: Duration::from_secs(10),
            pod_max_in_unschedulable_pods_duration: Duration::from_secs(300),
            unschedulable_flush_period: Duration::from_secs(30),
            preemption: true,
            rng_seed: None,
            weights: ScoreWeights::default(),
            hard_pod_affinity_weight: 1,
            system_default_spreading: true,
        }
    }
}

impl SchedulerConfig {
    pub fn algorithm(&self) -> AlgorithmConfig {
        AlgorithmConfig {
            percentage_of_nodes_to_score: self.percentage_of_nodes_to_score,
            weights: self.weights,
            hard_pod_affinity_weight: self.hard_pod_affinity_weight,
            system_default_spreading: self.system_default_spreading,
        }
    }
}
