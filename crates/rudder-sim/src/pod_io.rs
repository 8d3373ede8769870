//! The pod engine's I/O: the one Pod watch (all bound pods, filtered to our nodes) that feeds
//! it, and the status writes and deletions it dispatches (each with a deadline).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{DeleteParams, Patch, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{EngineMsg, PodKey, Work};
use crate::error::call;
use crate::pod_info::PodInfo;
use crate::shared::Shared;
use crate::unread;

/// How a dispatched write ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    Written,
    /// 404, or the uid did not match (409 on delete, 422 on a status patch): the pod we
    /// meant is gone.
    Gone,
    /// Anything else (timeouts, 409s, 5xx): retry later.
    Failed,
}

/// Issues pod writes as short-lived tasks; the engine bounds how many are in flight.
#[derive(Clone)]
pub(crate) enum PodWriter {
    Api {
        client: Client,
        timeout: Duration,
    },
    /// Tests: the writes are recorded, and the test answers them.
    #[cfg(test)]
    Record(mpsc::UnboundedSender<Recorded>),
}

/// A write the engine asked for (tests).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Recorded {
    pub slot: u32,
    pub generation: u32,
    pub work: Work,
    pub name: String,
    pub status: Option<PodStatus>,
}

impl std::fmt::Debug for PodWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodWriter").finish_non_exhaustive()
    }
}

fn outcome<T>(result: Result<T, crate::SimError>, what: &str) -> WriteOutcome {
    match result {
        Ok(_) => WriteOutcome::Written,
        Err(e) => match e.status_code() {
            Some(404) => WriteOutcome::Gone,
            Some(409) if what == "delete" => WriteOutcome::Gone,
            // The uid in a status patch is immutable: a pod of that name with another uid.
            Some(422) if e.api_message().is_some_and(|m| m.contains("metadata.uid")) => {
                WriteOutcome::Gone
            }
            _ => {
                tracing::debug!(error = %e, "pod {what} failed; will retry");
                WriteOutcome::Failed
            }
        },
    }
}

impl PodWriter {
    pub fn new(client: Client, timeout: Duration) -> Self {
        PodWriter::Api { client, timeout }
    }

    /// Patches `status` onto the pod (strategic merge: conditions merge by type, so others'
    /// conditions such as readiness gates stay), carrying the uid as upstream's kubelet does:
    /// the API server refuses the patch (422) if the pod of that name has another uid.
    #[allow(clippy::too_many_arguments)]
    pub fn write_status(
        &self,
        slot: u32,
        generation: u32,
        namespace: String,
        name: String,
        uid: String,
        status: PodStatus,
        done: mpsc::UnboundedSender<EngineMsg>,
    ) {
        let (client, timeout) = match self {
            PodWriter::Api { client, timeout } => (client.clone(), *timeout),
            #[cfg(test)]
            PodWriter::Record(tx) => {
                let _ = tx.send(Recorded {
                    slot,
                    generation,
                    work: Work::Status,
                    name,
                    status: Some(status),
                });
                return;
            }
        };
        tokio::spawn(async move {
            let patch = serde_json::json!({ "metadata": { "uid": uid }, "status": status });
            let result = call(
                || format!("writing the status of pod {namespace}/{name}"),
                timeout,
                unread::patch::<Pod>(
                    &client,
                    Some(&namespace),
                    &name,
                    Some("status"),
                    &Patch::Strategic(patch),
                ),
            )
            .await;
            let outcome = outcome(result, "status write");
            let _ = done.send(EngineMsg::Done { slot, generation, work: Work::Status, outcome });
        });
    }

    /// Finishes a deletion the way a kubelet does once the containers are gone: grace period
    /// 0 with the pod's uid as precondition.
    pub fn delete(
        &self,
        slot: u32,
        generation: u32,
        namespace: String,
        name: String,
        uid: String,
        done: mpsc::UnboundedSender<EngineMsg>,
    ) {
        let (client, timeout) = match self {
            PodWriter::Api { client, timeout } => (client.clone(), *timeout),
            #[cfg(test)]
            PodWriter::Record(tx) => {
                let _ =
                    tx.send(Recorded { slot, generation, work: Work::Delete, name, status: None });
                return;
            }
        };
        let api: Api<Pod> = Api::namespaced(client, &namespace);
        tokio::spawn(async move {
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                ..DeleteParams::default()
            };
            let result = call(
                || format!("deleting pod {namespace}/{name}"),
                timeout,
                api.delete(&name, &params),
            )
            .await;
            let outcome = outcome(result, "delete");
            let _ = done.send(EngineMsg::Done { slot, generation, work: Work::Delete, outcome });
        });
    }
}

fn ours(shared: &Shared, pod: &Pod) -> Option<PodInfo> {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    let index = *shared.by_name.get(node)?;
    PodInfo::of(pod, index)
}

fn key(pod: &Pod) -> PodKey {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Watches every bound pod (`spec.nodeName!=`) and tells the engine about those on our
/// nodes, until `cancel`. Relists (after a broken watch) end with the set of our pods so the
/// engine forgets the ones deleted meanwhile.
pub(crate) async fn watch_pods(
    shared: Arc<Shared>,
    client: Client,
    events: mpsc::Sender<EngineMsg>,
    cancel: CancellationToken,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut relist: Option<HashSet<PodKey>> = None;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let msg = match event {
            Ok(Event::Init) => {
                relist = Some(HashSet::new());
                None
            }
            Ok(Event::InitApply(pod)) => ours(&shared, &pod).map(|info| {
                if let Some(r) = relist.as_mut() {
                    r.insert(key(&pod));
                }
                EngineMsg::Applied(Box::new(info))
            }),
            Ok(Event::InitDone) => relist.take().map(EngineMsg::Relisted),
            Ok(Event::Apply(pod)) => {
                ours(&shared, &pod).map(|info| EngineMsg::Applied(Box::new(info)))
            }
            Ok(Event::Delete(pod)) => ours(&shared, &pod).map(|info| EngineMsg::Deleted {
                namespace: info.namespace,
                name: info.name,
                uid: info.uid,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "pod watch failed; retrying with back-off");
                None
            }
        };
        if let Some(msg) = msg {
            tokio::select! {
                _ = cancel.cancelled() => return,
                sent = events.send(msg) => if sent.is_err() { return },
            }
        }
    }
}
