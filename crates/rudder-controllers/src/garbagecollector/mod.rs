//! The garbage collector (upstream's `garbagecollector`): watches every resource the API
//! serves that supports list, watch and delete, keeps a small dependency graph of all
//! objects (`graph`), and deletes objects whose owners are gone (background propagation),
//! deletes the dependents of owners deleted in the foreground before letting the owner go,
//! and strips the ownerReferences of owners deleted with `orphan`. Decisions are in
//! `decide`; the API calls in `workers`; the watches in `monitors`.

pub mod decide;
pub mod graph;
mod monitors;
mod workers;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rudder_client::{Context, Recorder, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::discovery::ServedResources;
use graph::{Actions, Graph, GraphEvent, Uid};

/// Upstream's component name for the garbage collector's events.
pub const COMPONENT: &str = "garbage-collector-controller";

/// Resources never watched (upstream's default ignored resources).
pub const IGNORED_RESOURCES: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

#[derive(Clone, Debug)]
pub struct GarbageCollectorConfig {
    /// Workers deleting objects (upstream `--concurrent-gc-syncs`, 20).
    pub workers: usize,
    /// How often discovery is run again to watch resources that appeared since.
    pub resync_period: Duration,
    /// How long to wait for the first list of every resource before starting anyway
    /// (decisions always check owners with the API, so starting early is safe).
    pub sync_timeout: Duration,
}

impl Default for GarbageCollectorConfig {
    fn default() -> Self {
        GarbageCollectorConfig {
            workers: 20,
            resync_period: Duration::from_secs(30),
            sync_timeout: Duration::from_secs(60),
        }
    }
}

/// What the monitors, the graph and the workers share.
pub(crate) struct Shared {
    pub client: kube::Client,
    pub graph: Mutex<Graph>,
    pub resources: RwLock<ServedResources>,
    pub delete_queue: Arc<WorkQueue<Uid>>,
    pub orphan_queue: Arc<WorkQueue<Uid>>,
    pub recorder: Recorder,
}

impl Shared {
    /// Applies a change to the graph and queues what it asks for.
    pub fn apply(&self, event: GraphEvent) {
        let actions = self.graph.lock().expect("graph lock").apply(event);
        self.enqueue(actions);
    }

    fn enqueue(&self, actions: Actions) {
        for uid in actions.attempt_to_delete {
            self.delete_queue.add(uid);
        }
        for uid in actions.attempt_to_orphan {
            self.orphan_queue.add(uid);
        }
    }
}

/// Runs the garbage collector until `cancel`.
pub async fn run(ctx: Context, config: GarbageCollectorConfig, cancel: CancellationToken) {
    let shared = Arc::new(Shared {
        client: ctx.client.clone(),
        graph: Mutex::new(Graph::new()),
        resources: RwLock::new(ServedResources::default()),
        delete_queue: WorkQueue::new(),
        orphan_queue: WorkQueue::new(),
        recorder: ctx.recorder(COMPONENT),
    });
    let mut monitors = monitors::Monitors::new(shared.clone(), cancel.child_token());

    // First discovery: retried until it works.
    let mut delay = Duration::from_millis(200);
    loop {
        match monitors.resync().await {
            Ok(()) => break,
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    tokio::select! {
        _ = cancel.cancelled() => return,
        synced = tokio::time::timeout(config.sync_timeout, monitors.wait_synced()) => {
            if synced.is_err() {
                tracing::warn!("garbage collector: not every resource listed in time; starting anyway");
            }
        }
    }
    tracing::info!(
        objects = shared.graph.lock().expect("graph lock").len(),
        "garbage collector: graph synced"
    );

    let delete_workers = {
        let s = shared.clone();
        tokio::spawn(run_workers(
            "garbagecollector-delete",
            shared.delete_queue.clone(),
            config.workers,
            cancel.clone(),
            move |uid: Uid| {
                let s = s.clone();
                async move { workers::attempt_to_delete(&s, uid).await }
            },
        ))
    };
    let orphan_workers = {
        let s = shared.clone();
        tokio::spawn(run_workers(
            "garbagecollector-orphan",
            shared.orphan_queue.clone(),
            config.workers.div_ceil(4),
            cancel.clone(),
            move |uid: Uid| {
                let s = s.clone();
                async move { workers::attempt_to_orphan(&s, uid).await }
            },
        ))
    };

    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(config.resync_period) => {
                if let Err(e) = monitors.resync().await {
                    tracing::warn!(error = %e, "garbage collector: rediscovery failed");
                }
            }
        }
    }
    let _ = delete_workers.await;
    let _ = orphan_workers.await;
}
