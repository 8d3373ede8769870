//! The pods of this node: one watch (`spec.nodeName=<node>`) feeding one worker per pod,
//! the runtime relist that wakes workers whose containers changed (upstream's PLEG), and the
//! cleanup of sandboxes and volumes no pod owns (left by a deleted pod while the agent was
//! down).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use rudder_client::{Change, Informer};
use rudder_runtime::ContainerState;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::labels;
use crate::shared::Shared;
use crate::worker::{Mode, PodWorker};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VolumeObject {
    ConfigMap,
    Secret,
}

/// Names of the objects of `kind` the pod's volumes (direct or projected) show.
fn volume_objects(pod: &Pod, kind: VolumeObject) -> impl Iterator<Item = &str> {
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).flat_map(move |v| {
        let direct = match kind {
            VolumeObject::ConfigMap => v.config_map.as_ref().map(|c| c.name.as_str()),
            VolumeObject::Secret => v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        };
        let projected =
            v.projected.iter().flat_map(|p| p.sources.iter().flatten()).filter_map(move |src| {
                match kind {
                    VolumeObject::ConfigMap => src.config_map.as_ref().map(|c| c.name.as_str()),
                    VolumeObject::Secret => src.secret.as_ref().map(|s| s.name.as_str()),
                }
            });
        direct.into_iter().chain(projected)
    })
}

struct Handle {
    pod_tx: watch::Sender<Option<Arc<Pod>>>,
    wake: Arc<Notify>,
    refresh: Arc<AtomicBool>,
    task: Option<JoinHandle<()>>,
}

pub struct Manager {
    shared: Arc<Shared>,
    pods: Arc<Informer<Pod>>,
    workers: Mutex<HashMap<String, Handle>>,
    mode_tx: watch::Sender<Mode>,
    cancel: CancellationToken,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    pub fn new(
        shared: Arc<Shared>,
        pods: Arc<Informer<Pod>>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Manager {
            shared,
            pods,
            workers: Mutex::new(HashMap::new()),
            mode_tx: watch::Sender::new(Mode::Run),
            cancel,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Handle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the pods whose volumes show `kind` object `namespace/name`, to refresh them now
    /// (configMap and secret volumes follow their objects within a relist, not a minute).
    fn object_changed(&self, kind: VolumeObject, namespace: &str, name: &str) {
        for h in self.lock().values() {
            let uses = h.pod_tx.borrow().as_ref().is_some_and(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && volume_objects(p, kind).any(|n| n == name)
            });
            if uses {
                h.refresh.store(true, Ordering::Relaxed);
                h.wake.notify_one();
            }
        }
    }

    /// Follows ConfigMaps and Secrets so that volumes showing them are refreshed on change.
    pub fn watch_volume_objects(
        self: &Arc<Self>,
        config_maps: &Informer<ConfigMap>,
        secrets: &Informer<Secret>,
    ) {
        let me = self.clone();
        config_maps.add_handler(move |c: &Change<ConfigMap>| {
            if let Change::Updated { new, .. } | Change::Added(new) = c {
                let m = &new.metadata;
                me.object_changed(
                    VolumeObject::ConfigMap,
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                );
            }
        });
        let me = self.clone();
        secrets.add_handler(move |c: &Change<Secret>| {
            if let Change::Updated { new, .. } | Change::Added(new) = c {
                let m = &new.metadata;
                me.object_changed(
                    VolumeObject::Secret,
                    m.namespace.as_deref().unwrap_or(""),
                    m.name.as_deref().unwrap_or(""),
                );
            }
        });
    }

    /// Subscribes to the pod informer, then keeps relisting the runtime until cancelled.
    pub async fn run(self: Arc<Self>) {
        let me = self.clone();
        self.pods.add_handler(move |change: &Change<Pod>| match change {
            Change::Added(p) | Change::Updated { new: p, .. } => me.upsert(p.clone()),
            Change::Deleted(p) => me.removed(p),
        });
        self.pods.wait_synced().await;
        self.clean_orphans().await;
        let mut last: HashMap<String, Vec<(String, ContainerState)>> = HashMap::new();
        let mut since_cleanup = std::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return,
                _ = tokio::time::sleep(self.shared.cfg.relist_period) => {}
            }
            let now = self.relist().await;
            for (uid, states) in &now {
                if last.get(uid) != Some(states) {
                    self.wake(uid);
                }
            }
            for uid in last.keys().filter(|u| !now.contains_key(*u)) {
                self.wake(uid);
            }
            last = now;
            if since_cleanup.elapsed() >= Duration::from_secs(30) {
                self.clean_orphans().await;
                since_cleanup = std::time::Instant::now();
                let now_ms = self.shared.now_ms();
                self.shared.crash_backoff().gc(now_ms);
                self.shared.image_backoff().gc(now_ms);
            }
        }
    }

    /// Container states by pod uid.
    async fn relist(&self) -> HashMap<String, Vec<(String, ContainerState)>> {
        let mut out: HashMap<String, Vec<(String, ContainerState)>> = HashMap::new();
        match self.shared.runtime.list_containers(None).await {
            Ok(cs) => {
                for c in cs {
                    if let Some(uid) = c.labels.get(labels::POD_UID) {
                        out.entry(uid.clone()).or_default().push((c.id, c.state));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "relisting containers failed"),
        }
        for v in out.values_mut() {
            v.sort_by(|a, b| a.0.cmp(&b.0));
        }
        out
    }

    fn wake(&self, uid: &str) {
        if let Some(h) = self.lock().get(uid) {
            h.wake.notify_one();
        }
    }

    fn upsert(self: &Arc<Self>, pod: Arc<Pod>) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if uid.is_empty() {
            return;
        }
        let mut workers = self.lock();
        if let Some(h) = workers.get(&uid) {
            h.pod_tx.send_replace(Some(pod));
            return;
        }
        if *self.mode_tx.borrow() != Mode::Run {
            return;
        }
        let (pod_tx, pod_rx) = watch::channel(Some(pod));
        let wake = Arc::new(Notify::new());
        let refresh = Arc::new(AtomicBool::new(false));
        let worker = PodWorker::new(
            self.shared.clone(),
            pod_rx,
            self.mode_tx.subscribe(),
            wake.clone(),
            refresh.clone(),
        );
        let me = self.clone();
        let cancel = self.cancel.clone();
        let key = uid.clone();
        let task = tokio::spawn(async move {
            worker.run(cancel).await;
            me.lock().remove(&key);
        });
        workers.insert(uid, Handle { pod_tx, wake, refresh, task: Some(task) });
    }

    fn removed(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(h) = self.lock().get(&uid) {
            h.pod_tx.send_replace(None);
        }
    }

    /// Number of pods with a worker.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node shutdown: every pod is stopped within `grace` and reported Failed, then every
    /// sandbox and volume is removed; returns when done (workers get `grace` plus a margin).
    pub async fn shutdown(&self, grace: Duration) {
        self.mode_tx.send_replace(Mode::Shutdown { grace });
        let tasks: Vec<JoinHandle<()>> =
            self.lock().values_mut().filter_map(|h| h.task.take()).collect();
        let all = futures::future::join_all(tasks);
        if tokio::time::timeout(grace + Duration::from_secs(10), all).await.is_err() {
            tracing::warn!("node shutdown: some pods did not stop in time");
        }
        // Let the final statuses go out.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !self.shared.status.is_idle() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Nothing of the pods outlives the node: sandboxes (with their exited containers,
        // rootfs mounts and network) and volumes go.
        if let Ok(sandboxes) = self.shared.runtime.list_pod_sandboxes().await {
            for s in sandboxes {
                if let Err(e) = self.shared.runtime.remove_pod_sandbox(&s.id).await {
                    tracing::warn!(error = %e, sandbox = %s.id, "removing a sandbox at shutdown failed");
                }
            }
        }
        for uid in self.shared.volumes.list_pod_uids().unwrap_or_default() {
            if let Err(e) = self.shared.volumes.teardown(&uid).await {
                tracing::warn!(error = %e, pod_uid = %uid, "removing volumes at shutdown failed");
            }
        }
    }

    /// Removes sandboxes and volume directories of pods this node no longer has.
    async fn clean_orphans(&self) {
        let known: HashSet<String> =
            self.pods.list().iter().filter_map(|p| p.metadata.uid.clone()).collect();
        let sandboxes = match self.shared.runtime.list_pod_sandboxes().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "listing sandboxes for cleanup failed");
                return;
            }
        };
        let mut orphans: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in sandboxes {
            let uid = s.labels.get(labels::POD_UID).cloned().unwrap_or_default();
            if !known.contains(&uid) && !self.lock().contains_key(&uid) {
                orphans.entry(uid).or_default().push(s.id);
            }
        }
        for (uid, ids) in orphans {
            tracing::info!(pod_uid = %uid, "removing the sandboxes of a pod this node no longer has");
            for id in ids {
                if let Ok(cs) = self.shared.runtime.list_containers(Some(&id)).await {
                    for c in cs.iter().filter(|c| c.state == ContainerState::Running) {
                        let grace = c
                            .annotations
                            .get(labels::GRACE_PERIOD)
                            .and_then(|g| g.parse().ok())
                            .unwrap_or(30u64);
                        let _ = self.shared.runtime.stop_container(&c.id, grace.min(30)).await;
                    }
                }
                if let Err(e) = self.shared.runtime.remove_pod_sandbox(&id).await {
                    tracing::warn!(error = %e, sandbox = %id, "removing an orphaned sandbox failed");
                }
            }
        }
        if let Ok(uids) = self.shared.volumes.list_pod_uids() {
            for uid in uids {
                if !known.contains(&uid)
                    && !self.lock().contains_key(&uid)
                    && let Err(e) = self.shared.volumes.teardown(&uid).await
                {
                    tracing::warn!(error = %e, pod_uid = %uid, "removing orphaned volumes failed");
                }
            }
        }
    }
}
