//! The StatefulSet controller (upstream's `pkg/controller/statefulset`, apps/v1 as of
//! Kubernetes 1.33): pods with stable identities `<set>-<ordinal>` (from `spec.ordinals.start`),
//! hostname = pod name and subdomain = `spec.serviceName`, labels
//! `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index` and
//! `controller-revision-hash`; one PersistentVolumeClaim per volumeClaimTemplate and ordinal
//! (`<template>-<set>-<ordinal>`) created before its pod and kept when the pod goes, with
//! ownerReferences following `persistentVolumeClaimRetentionPolicy`.
//!
//! - `OrderedReady`: one pod at a time, 0..n-1 up (each after its predecessors are Running,
//!   Ready and available for minReadySeconds), n-1..0 down, nothing while a pod is unhealthy.
//!   `Parallel`: everything at once (slow-start batches).
//! - Revisions: ControllerRevisions `<set>-<hash>` whose data is upstream's patch
//!   `{"spec":{"template":{...,"$patch":"replace"}}}` (what `kubectl rollout undo` applies),
//!   numbered 1, 2, ...; a return to an earlier template renumbers that revision; history
//!   beyond revisionHistoryLimit that no pod uses is deleted ([`history`]).
//! - `RollingUpdate` (partition; maxUnavailable when [`StatefulSetConfig::max_unavailable`],
//!   upstream's MaxUnavailableStatefulSet gate) replaces pods from the highest ordinal down;
//!   `OnDelete` only creates deleted pods at the update revision.
//! - Failed (and succeeded) pods are deleted and created again.
//! - Status: replicas, readyReplicas, availableReplicas, currentReplicas, updatedReplicas,
//!   currentRevision, updateRevision, observedGeneration, collisionCount.
//!
//! Decisions are pure ([`pods`], [`claims`], [`history`], [`plan`]); [`control`] and [`sync`]
//! do the I/O around them.

pub mod claims;
pub mod control;
pub mod error;
pub mod handlers;
pub mod history;
pub mod plan;
pub mod pods;
pub mod sync;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use rudder_client::{Context, WorkQueue, run_workers};
use rudder_workloads::recent::RecentWrites;
use tokio_util::sync::CancellationToken;

pub use error::Error;

/// Upstream's component name for events.
pub const COMPONENT: &str = "statefulset-controller";
/// Upstream's default `--concurrent-statefulset-syncs`.
pub const DEFAULT_WORKERS: usize = 5;

#[derive(Clone, Debug)]
pub struct StatefulSetConfig {
    /// StatefulSets reconciled at the same time.
    pub workers: usize,
    /// Honour `spec.updateStrategy.rollingUpdate.maxUnavailable` (upstream's
    /// MaxUnavailableStatefulSet feature gate, off by default in 1.33: one pod at a time).
    pub max_unavailable: bool,
}

impl Default for StatefulSetConfig {
    fn default() -> Self {
        StatefulSetConfig { workers: DEFAULT_WORKERS, max_unavailable: false }
    }
}

/// Runs the StatefulSet controller until `cancel`.
pub async fn run(ctx: Context, config: StatefulSetConfig, cancel: CancellationToken) {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let queue = WorkQueue::new();
    let written = Arc::new(RecentWrites::default());
    handlers::Handlers { sets: sets.clone(), queue: queue.clone(), written: written.clone() }
        .register(&pods, &claims);
    tokio::select! {
        _ = async {
            sets.wait_synced().await;
            pods.wait_synced().await;
            claims.wait_synced().await;
            revisions.wait_synced().await;
        } => {}
        _ = cancel.cancelled() => return,
    }
    tracing::debug!("statefulset: caches synced; starting workers");
    let controller = Arc::new(sync::Controller {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        recorder: ctx.recorder(COMPONENT),
        sets,
        pods,
        claims,
        revisions,
        written,
        max_unavailable: config.max_unavailable,
    });
    run_workers("statefulset", queue, config.workers, cancel, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(key).await }
    })
    .await;
}
