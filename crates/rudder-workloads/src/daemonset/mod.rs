//! The DaemonSet controller (upstream's `pkg/controller/daemon`): one pod of a DaemonSet's
//! template on every node that should run it (nodeSelector, required node affinity,
//! taints tolerated; `placement`), each pod pinned to its node by a required node affinity
//! `metadata.name In [node]` that the scheduler honours, with the daemon tolerations
//! (not-ready/unreachable NoExecute, pressure and unschedulable NoSchedule, and
//! network-unavailable for hostNetwork pods).
//!
//! A reconcile claims the DaemonSet's pods (adopting orphans its selector matches, releasing
//! those it no longer matches), records the template in a ControllerRevision (`revisions`,
//! on the shared [`crate::history`] helpers), then, once its last creates and deletes were
//! observed: creates missing pods, deletes pods on nodes that should not run one, surplus
//! pods, succeeded pods and failed pods (with a per-node back-off; `manage`), takes one
//! RollingUpdate step (maxUnavailable, maxSurge; `rolling`) unless the strategy is
//! OnDelete, deletes old revisions beyond revisionHistoryLimit, and writes the status
//! `kubectl get ds` and `kubectl rollout status` read.
//!
//! Departure from upstream: pods bound to a node that no longer exists are deleted here
//! (after a read confirms the node is gone) rather than left to the pod garbage collector,
//! which rudder does not have.

pub mod backoff;
pub mod handlers;
pub mod manage;
pub mod placement;
pub mod revisions;
pub mod rolling;
pub mod sync;
pub mod util;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use rudder_client::{Context, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use self::backoff::Backoff;
use self::handlers::Handlers;
use self::sync::Controller;
use crate::expectations::Expectations;
use crate::recent::RecentWrites;

/// Upstream's default number of concurrent DaemonSet syncs (`--concurrent-daemonset-syncs`).
pub const DEFAULT_WORKERS: usize = 2;
/// Upstream's BurstReplicas for DaemonSets: most pods created or deleted in one round.
pub const DEFAULT_BURST_REPLICAS: usize = 250;
/// How often idle failed-pod back-off entries are dropped.
const BACKOFF_GC_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct DaemonSetConfig {
    /// DaemonSets reconciled at the same time.
    pub workers: usize,
    /// Most pods created or deleted for one DaemonSet in one round.
    pub burst_replicas: usize,
}

impl Default for DaemonSetConfig {
    fn default() -> Self {
        DaemonSetConfig { workers: DEFAULT_WORKERS, burst_replicas: DEFAULT_BURST_REPLICAS }
    }
}

/// Runs the DaemonSet controller until `cancel`.
pub async fn run(ctx: Context, config: DaemonSetConfig, cancel: CancellationToken) {
    let daemon_sets = ctx.informers.get::<DaemonSet>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let queue = WorkQueue::new();
    let expectations = Arc::new(Expectations::new(ctx.clock.clone()));
    let written = Arc::new(RecentWrites::default());
    Handlers {
        daemon_sets: daemon_sets.clone(),
        queue: queue.clone(),
        expectations: expectations.clone(),
        written: written.clone(),
    }
    .register(&revisions, &pods, &nodes);
    tokio::select! {
        _ = async {
            daemon_sets.wait_synced().await;
            revisions.wait_synced().await;
            pods.wait_synced().await;
            nodes.wait_synced().await;
        } => {}
        _ = cancel.cancelled() => return,
    }
    tracing::debug!(controller = "daemonset", "caches synced; starting workers");
    let backoff = Arc::new(Backoff::default());
    let gc = {
        let (backoff, clock, cancel) = (backoff.clone(), ctx.clock.clone(), cancel.clone());
        async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF_GC_INTERVAL) => backoff.gc(clock.now()),
                    _ = cancel.cancelled() => return,
                }
            }
        }
    };
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        recorder: ctx.recorder("daemonset-controller"),
        daemon_sets,
        revisions,
        pods,
        nodes,
        expectations,
        written,
        written_revisions: Arc::new(RecentWrites::default()),
        backoff,
        burst_replicas: config.burst_replicas.max(1),
    });
    let workers = run_workers("daemonset", queue, config.workers, cancel, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(key).await }
    });
    tokio::join!(workers, gc);
}
