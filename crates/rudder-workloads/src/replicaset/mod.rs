//! The ReplicaSet controller (upstream's `pkg/controller/replicaset`): keeps spec.replicas
//! pods of each ReplicaSet's template running. It adopts orphan pods its selector matches,
//! releases pods it owns that no longer match, creates missing pods in slow-start batches
//! (at most `burst_replicas` per round) and deletes surplus pods in upstream's order (not yet
//! scheduled, pending, not ready, ... newest), waits through expectations until its cache has
//! seen its own creates and deletes, and reports replicas, fullyLabeledReplicas,
//! readyReplicas, availableReplicas (minReadySeconds honoured), observedGeneration and the
//! ReplicaFailure condition through `/status`, only when they change.
//!
//! The same logic serves ReplicationControllers ([`crate::replicationcontroller`]).

pub mod handlers;
pub mod kinds;
pub mod status;
pub mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use rudder_client::{Context, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use self::handlers::Handlers;
use self::kinds::Replicated;
use self::sync::Controller;
use crate::expectations::Expectations;
use crate::recent::RecentWrites;

/// Upstream's default number of concurrent ReplicaSet syncs (`--concurrent-replicaset-syncs`).
pub const DEFAULT_WORKERS: usize = 5;
/// Upstream's BurstReplicas: most pods created or deleted for one owner in one round.
pub const DEFAULT_BURST_REPLICAS: usize = 500;

#[derive(Clone, Debug)]
pub struct ReplicaSetConfig {
    /// Owners reconciled at the same time.
    pub workers: usize,
    /// Most pods created or deleted for one owner in one round.
    pub burst_replicas: usize,
}

impl Default for ReplicaSetConfig {
    fn default() -> Self {
        ReplicaSetConfig { workers: DEFAULT_WORKERS, burst_replicas: DEFAULT_BURST_REPLICAS }
    }
}

/// Runs the ReplicaSet controller until `cancel`.
pub async fn run(ctx: Context, config: ReplicaSetConfig, cancel: CancellationToken) {
    run_for::<ReplicaSet>("replicaset", ctx, config, cancel).await
}

/// Runs the controller for owner kind `K` until `cancel`.
pub(crate) async fn run_for<K: Replicated>(
    name: &'static str,
    ctx: Context,
    config: ReplicaSetConfig,
    cancel: CancellationToken,
) {
    let owners = ctx.informers.get::<K>();
    let pods = ctx.informers.get::<Pod>();
    let queue = WorkQueue::new();
    let expectations = Arc::new(Expectations::new(ctx.clock.clone()));
    let written = Arc::new(RecentWrites::default());
    Handlers {
        owners: owners.clone(),
        queue: queue.clone(),
        expectations: expectations.clone(),
        written: written.clone(),
    }
    .register(&pods);
    tokio::select! {
        _ = async { owners.wait_synced().await; pods.wait_synced().await } => {}
        _ = cancel.cancelled() => return,
    }
    tracing::debug!(controller = name, "caches synced; starting workers");
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        recorder: ctx.recorder(K::COMPONENT),
        owners,
        pods,
        expectations,
        written,
        burst_replicas: config.burst_replicas.max(1),
    });
    run_workers(name, queue, config.workers, cancel, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(key).await }
    })
    .await;
}
