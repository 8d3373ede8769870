//! rudder's kube-scheduler: an API client (never the store) that watches Nodes, Pods,
//! PriorityClasses and Namespaces, keeps an incrementally updated snapshot of the cluster,
//! and places every pending pod whose `spec.schedulerName` is its own.
//!
//! The decision is pure (`algorithm`): upstream's default filter plugins (`filters`,
//! `interpod`, `spread`) decide where the pod may go, the score plugins (`scores`, and the
//! scoring halves of `interpod` and `spread`) rank the nodes with upstream's weights,
//! `preemption` picks victims when nothing fits. Around it, `scheduler` is a thin loop: it
//! applies watch events (`events`) to the `snapshot` and the `queue` between cycles, assumes
//! the chosen node at once (the next pod sees its resources taken) and binds in the
//! background (`api`).
//!
//! Entry point: [`run`], or [`Scheduler`] for a [`SchedulerHandle`] (cache sync, counters).

pub mod algorithm;
pub mod api;
pub mod config;
pub mod filters;
pub mod interpod;
pub mod node_info;
pub mod pod_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod scores;
pub mod snapshot;
pub mod spread;
pub mod volumes;

mod events;
mod scheduler;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use config::SchedulerConfig;
pub use scores::ScoreWeights;

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("invalid scheduler configuration: {0}")]
    InvalidConfig(String),
}

/// Counters since start (for benchmarks and tests; not Prometheus metrics yet).
#[derive(Debug, Default)]
pub struct Stats {
    /// Scheduling cycles run.
    pub attempts: AtomicU64,
    /// Bindings the API server accepted.
    pub bound: AtomicU64,
    pub bind_failures: AtomicU64,
    /// Cycles that found no node.
    pub unschedulable: AtomicU64,
    /// Preemptions started.
    pub preemptions: AtomicU64,
    /// Pods in the queue (waiting, backing off, unschedulable or being bound).
    pub queued: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub attempts: u64,
    pub bound: u64,
    pub bind_failures: u64,
    pub unschedulable: u64,
    pub preemptions: u64,
    pub queued: u64,
}

/// Watches a running scheduler: whether its caches are synced, and its counters.
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    synced: watch::Sender<bool>,
    stats: Arc<Stats>,
}

impl SchedulerHandle {
    fn new() -> SchedulerHandle {
        SchedulerHandle { synced: watch::Sender::new(false), stats: Arc::new(Stats::default()) }
    }

    fn mark_synced(&self) {
        self.synced.send_replace(true);
    }

    /// Waits until every informer listed and the scheduler applied what they hold.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        StatsSnapshot {
            attempts: s.attempts.load(Ordering::Relaxed),
            bound: s.bound.load(Ordering::Relaxed),
            bind_failures: s.bind_failures.load(Ordering::Relaxed),
            unschedulable: s.unschedulable.load(Ordering::Relaxed),
            preemptions: s.preemptions.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
        }
    }
}

/// A scheduler not started yet; [`Scheduler::handle`] lets a caller watch it once it runs.
#[derive(Debug)]
pub struct Scheduler {
    ctx: rudder_client::Context,
    config: SchedulerConfig,
    handle: SchedulerHandle,
}

impl Scheduler {
    pub fn new(ctx: rudder_client::Context, config: SchedulerConfig) -> Scheduler {
        Scheduler { ctx, config, handle: SchedulerHandle::new() }
    }

    pub fn handle(&self) -> SchedulerHandle {
        self.handle.clone()
    }

    /// Schedules until `cancel`.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), SchedulerError> {
        if self.config.scheduler_name.is_empty() {
            return Err(SchedulerError::InvalidConfig("scheduler_name is empty".into()));
        }
        if self.config.parallel_binds == 0 {
            return Err(SchedulerError::InvalidConfig("parallel_binds must be at least 1".into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        events::register_handlers(&self.ctx, &tx);
        let stats = self.handle.stats.clone();
        let lp = scheduler::Loop::new(self.ctx, self.config, tx, rx, stats);
        lp.run(&self.handle, cancel).await;
        Ok(())
    }
}

/// Runs the scheduler until `cancel` (see [`Scheduler`] for a handle on it).
pub async fn run(
    ctx: rudder_client::Context,
    config: SchedulerConfig,
    cancel: CancellationToken,
) -> Result<(), SchedulerError> {
    Scheduler::new(ctx, config).run(cancel).await
}

#[cfg(test)]
mod tests;

/// The maps on the scheduling path: std's HashMap with a fast (still randomly seeded) hasher.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
