//! The Deployment controller (upstream's `pkg/controller/deployment`): runs a Deployment's
//! pods through ReplicaSets named `<deployment>-<pod-template-hash>`, one per template,
//! with revisions (`deployment.kubernetes.io/revision`, history on rollback), the desired
//! and max replicas annotations, and the Deployment's own annotations copied over (so
//! `kubernetes.io/change-cause` shows in `kubectl rollout history`).
//!
//! A reconcile claims the Deployment's ReplicaSets (adopting orphans its selector matches,
//! releasing those it no longer matches), then: status only while the Deployment is being
//! deleted; pause bookkeeping (Progressing DeploymentPaused/DeploymentResumed); scaling,
//! proportional across ReplicaSets mid-rollout, when paused or when spec.replicas changed;
//! else one step of its strategy, RollingUpdate (maxSurge/maxUnavailable) or Recreate;
//! cleanup of old ReplicaSets beyond revisionHistoryLimit once complete; and the status
//! `kubectl rollout status` reads, with Available and Progressing (progressDeadlineSeconds,
//! checked again when the deadline passes).

pub mod handlers;
pub mod new_rs;
pub mod progress;
pub mod recreate;
pub mod rolling;
pub mod scale;
pub mod sync;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use rudder_client::{Context, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use self::handlers::Handlers;
use self::sync::Controller;
use crate::recent::RecentWrites;

/// Upstream's default number of concurrent Deployment syncs (`--concurrent-deployment-syncs`).
pub const DEFAULT_WORKERS: usize = 5;

#[derive(Clone, Debug)]
pub struct DeploymentConfig {
    /// Deployments reconciled at the same time.
    pub workers: usize,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig { workers: DEFAULT_WORKERS }
    }
}

/// Runs the Deployment controller until `cancel`.
pub async fn run(ctx: Context, config: DeploymentConfig, cancel: CancellationToken) {
    let deployments = ctx.informers.get::<Deployment>();
    let replica_sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let queue = WorkQueue::new();
    let written_deployments = Arc::new(RecentWrites::default());
    let written_replica_sets = Arc::new(RecentWrites::default());
    Handlers {
        deployments: deployments.clone(),
        replica_sets: replica_sets.clone(),
        queue: queue.clone(),
        written_deployments: written_deployments.clone(),
        written_replica_sets: written_replica_sets.clone(),
    }
    .register(&pods);
    tokio::select! {
        _ = async {
            deployments.wait_synced().await;
            replica_sets.wait_synced().await;
            pods.wait_synced().await;
        } => {}
        _ = cancel.cancelled() => return,
    }
    tracing::debug!(controller = "deployment", "caches synced; starting workers");
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        recorder: ctx.recorder("deployment-controller"),
        deployments,
        replica_sets,
        pods,
        written_deployments,
        written_replica_sets,
    });
    run_workers("deployment", queue, config.workers, cancel, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(key).await }
    })
    .await;
}
