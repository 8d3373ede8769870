//! The pod garbage collector (upstream's `podgc` PodGCController). Every `period` it looks at
//! the cached pods and nodes and force-deletes (grace period 0, the pod's uid as
//! precondition):
//!
//! - pods bound to a node that no longer exists, once the node has been missing from the
//!   cache for `quarantine` and a GET confirms it is gone;
//! - terminating pods on a NotReady node tainted `node.kubernetes.io/out-of-service`;
//! - terminating pods that were never scheduled;
//! - terminated (Succeeded/Failed) pods beyond `terminated_pod_gc_threshold`, evicted ones
//!   and then the oldest first.
//!
//! A pod that is not yet terminal is first marked Failed (with a `DisruptionTarget`
//! condition, reason `DeletionByPodGC`, for the node-related cases), as upstream does.

pub mod decide;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use rudder_client::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use decide::{Doomed, Quarantine};

/// Deletes in flight at once (upstream deletes terminated pods 20 at a time).
const CONCURRENT_DELETES: usize = 20;

#[derive(Clone, Debug)]
pub struct PodGcConfig {
    /// Terminated pods kept before the oldest are deleted (upstream
    /// `--terminated-pod-gc-threshold`, 12500; <= 0 never deletes terminated pods).
    pub terminated_pod_gc_threshold: i64,
    /// How long a node must be missing before its pods are deleted (upstream's 40 s).
    pub quarantine: Duration,
    /// How often the pods are looked at (upstream's 20 s).
    pub period: Duration,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            terminated_pod_gc_threshold: 12_500,
            quarantine: Duration::from_secs(40),
            period: Duration::from_secs(20),
        }
    }
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: PodGcConfig, cancel: CancellationToken) {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { pods.wait_synced().await; nodes.wait_synced().await } => {}
    }
    let mut quarantine = Quarantine::default();
    loop {
        let pass = gc_pass(&ctx, &config, &mut quarantine);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = pass => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(config.period) => {}
        }
    }
}

/// One look at every pod.
async fn gc_pass(ctx: &Context, config: &PodGcConfig, quarantine: &mut Quarantine) {
    let pods: Vec<Arc<Pod>> = ctx.informers.get::<Pod>().list();
    let nodes: Vec<Arc<Node>> = ctx.informers.get::<Node>().list();
    let pod_refs: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
    let node_map: HashMap<String, &Node> =
        nodes.iter().map(|n| (n.metadata.name.clone().unwrap_or_default(), &**n)).collect();

    let mut doomed =
        decide::terminated_over_threshold(&pod_refs, config.terminated_pod_gc_threshold);
    for node in quarantine.expired(&pod_refs, &node_map, ctx.clock.now(), config.quarantine) {
        let api: Api<Node> = Api::all(ctx.client.clone());
        match call("get node", api.get_opt(&node)).await {
            Ok(None) => doomed.extend(decide::orphaned_on(&pod_refs, &node)),
            Ok(Some(_)) => quarantine.forget(&node),
            Err(e) => tracing::debug!(%node, error = %e, "podgc: node not checked"),
        }
    }
    doomed.extend(decide::terminating(&pod_refs, &node_map));
    let mut seen = std::collections::HashSet::new();
    doomed.retain(|d| seen.insert(d.key.clone()));
    if doomed.is_empty() {
        return;
    }
    let client = ctx.client.clone();
    let now = ctx.clock.now();
    futures::stream::iter(doomed)
        .for_each_concurrent(CONCURRENT_DELETES, |d| {
            let client = client.clone();
            async move {
                match force_delete(&client, &d, now).await {
                    Ok(()) => {
                        tracing::info!(namespace = %d.key.0, pod = %d.key.1, reason = ?d.reason, "podgc: force-deleted pod")
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %d.key.0, pod = %d.key.1, error = %e, "podgc: deleting pod failed")
                    }
                }
            }
        })
        .await;
}

/// Marks a pod that is not terminal Failed, then deletes it with grace 0 and its uid as
/// precondition (upstream's `markFailedAndDeletePodWithCondition`).
async fn force_delete(
    client: &kube::Client,
    d: &Doomed,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &d.key.0);
    if !d.terminal {
        let mut status = json!({ "phase": "Failed" });
        if let Some(message) = d.reason.condition_message() {
            status["conditions"] = json!([{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByPodGC",
                "message": message,
                "lastTransitionTime": now.to_string(),
            }]);
        }
        let patch = json!({ "metadata": { "uid": d.uid }, "status": status });
        match call(
            "mark pod failed",
            api.patch_status(&d.key.1, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if e.status_code() == Some(422) => return Ok(()), // another pod now
            Err(e) => return Err(e),
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: Some(d.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    match call("force delete pod", api.delete(&d.key.1, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}
