//! Pod status patches: workers hand in the status they computed; one writer task sends
//! only what differs from what it last wrote for that pod, coalescing bursts (the latest
//! status of a pod wins), one patch per pod at a time, and retries failures.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rudder_client::api::{Target, call};
use tokio::sync::{Notify, Semaphore};
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
    /// Pods with a patch on its way (or backing off after a failed one).
    in_flight: HashSet<String>,
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

    /// Whether nothing is waiting to be written or being written.
    pub fn is_idle(&self) -> bool {
        let inner = self.lock();
        inner.pending.is_empty() && inner.in_flight.is_empty()
    }

    /// Writes queued statuses until `cancel`: as soon as a status is queued it goes out, up
    /// to [`MAX_IN_FLIGHT`] patches at once and never two for the same pod (a newer status
    /// waits for the older write, then replaces what is pending). No batch waits for its
    /// slowest patch before the next statuses go.
    pub async fn run(self, client: Client, timeout: Duration, cancel: CancellationToken) {
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.notify.notified() => {}
            }
            // Without a free slot, the write that frees one notifies.
            while let Ok(slot) = slots.clone().try_acquire_owned() {
                let Some((uid, pending)) = self.next_to_write() else { break };
                let (me, client, cancel) = (self.clone(), client.clone(), cancel.clone());
                tokio::spawn(async move {
                    let failed = !me.write(&client, timeout, &uid, pending).await;
                    drop(slot);
                    if failed {
                        // Back off before this pod's next attempt; other pods go on.
                        tokio::select! {
                            _ = cancel.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    me.lock().in_flight.remove(&uid);
                    me.notify.notify_one();
                });
            }
        }
    }

    /// A pod with a status to write and no write in flight, marked in flight.
    fn next_to_write(&self) -> Option<(String, Pending)> {
        let mut inner = self.lock();
        let uid = inner.pending.keys().find(|uid| !inner.in_flight.contains(*uid))?.clone();
        let pending = inner.pending.remove(&uid)?;
        inner.in_flight.insert(uid.clone());
        Some((uid, pending))
    }

    /// One patch; false if it should be tried again (it is queued again unless a newer
    /// status is already waiting).
    async fn write(&self, client: &Client, timeout: Duration, uid: &str, p: Pending) -> bool {
        let api: Api<Pod> = Api::namespaced(client.clone(), &p.namespace);
        let patch = serde_json::json!({ "metadata": { "uid": uid }, "status": p.status });
        let t =
            Target { verb: "patch status", kind: "Pod", namespace: &p.namespace, name: &p.name };
        let params = PatchParams::default();
        match call(t, timeout, api.patch_status(&p.name, &params, &Patch::Merge(&patch))).await {
            Ok(_) => {
                self.lock().written.insert(uid.to_owned(), p.status);
                true
            }
            Err(e) if e.status().is_some_and(|s| matches!(s.code, 404 | 409 | 422)) => {
                tracing::debug!(error = %e, "pod status not written: the pod is gone or was replaced");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "writing pod status failed; retrying");
                self.lock().pending.entry(uid.to_owned()).or_insert(p);
                false
            }
        }
    }
}

#[cfg(test)]
#[path = "status_writer_tests.rs"]
mod tests;
