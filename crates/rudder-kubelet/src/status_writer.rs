//! Pod status patches: workers hand in the status they computed; one writer task sends
//! only what differs from what it last wrote for that pod, coalescing bursts (the latest
//! status of a pod wins), and retries failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rudder_client::api::{Target, call};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Status patches in flight at once.
const MAX_IN_FLIGHT: usize = 16;

#[derive(Clone, Debug)]
struct Pending {
    namespace: String,
    name: String,
    status: PodStatus,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    written: HashMap<String, PodStatus>,
}

#[derive(Clone, Default)]
pub struct StatusWriter {
    inner: Arc<Mutex<Inner>>,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter").finish_non_exhaustive()
    }
}

impl StatusWriter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `status` for the pod unless it is what was last written (or what the API
    /// already has, `current`).
    pub fn set(&self, pod: &Pod, status: PodStatus) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut inner = self.lock();
        let same_as_api = pod.status.as_ref() == Some(&status);
        if same_as_api || inner.written.get(&uid) == Some(&status) {
            inner.pending.remove(&uid);
            if same_as_api {
                inner.written.insert(uid, status);
            }
            return;
        }
        inner.pending.insert(
            uid,
            Pending {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                name: pod.metadata.name.clone().unwrap_or_default(),
                status,
            },
        );
        drop(inner);
        self.notify.notify_one();
    }

    /// The status last written for the pod.
    pub fn last_written(&self, uid: &str) -> Option<PodStatus> {
        self.lock().written.get(uid).cloned()
    }

    pub fn forget(&self, uid: &str) {
        let mut inner = self.lock();
        inner.pending.remove(uid);
        inner.written.remove(uid);
    }

    /// Whether nothing is waiting to be written.
    pub fn is_idle(&self) -> bool {
        self.lock().pending.is_empty()
    }

    /// Writes queued statuses until `cancel`.
    pub async fn run(self, client: Client, timeout: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.notify.notified() => {}
            }
            let batch: Vec<(String, Pending)> = self.lock().pending.drain().collect();
            // Patches go out concurrently (bounded): a burst of pods is not written one
            // round trip after the other.
            let failed = std::sync::atomic::AtomicBool::new(false);
            futures::stream::iter(batch)
                .for_each_concurrent(MAX_IN_FLIGHT, |(uid, p)| {
                    let (client, failed, me) = (client.clone(), &failed, &self);
                    async move {
                        let api: Api<Pod> = Api::namespaced(client, &p.namespace);
                        let patch = serde_json::json!({ "metadata": { "uid": uid }, "status": p.status });
                        let t = Target { verb: "patch status", kind: "Pod", namespace: &p.namespace, name: &p.name };
                        let params = PatchParams::default();
                        match call(t, timeout, api.patch_status(&p.name, &params, &Patch::Merge(&patch))).await {
                            Ok(_) => {
                                me.lock().written.insert(uid, p.status);
                            }
                            Err(e) if e.status().is_some_and(|s| matches!(s.code, 404 | 409 | 422)) => {
                                tracing::debug!(error = %e, "pod status not written: the pod is gone or was replaced");
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "writing pod status failed; retrying");
                                me.lock().pending.entry(uid).or_insert(p);
                                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    }
                })
                .await;
            let failed = failed.into_inner();
            if failed {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                self.notify.notify_one();
            }
        }
    }
}
