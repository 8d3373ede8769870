//! [`SimNodes`]: starting a simulation and controlling its nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use kube::Client;
use rudder_client::{Clock, SystemClock};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::engine::{Engine, EngineMsg};
use crate::error::SimError;
use crate::nodes::{self, NodeApi};
use crate::pod_io::{self, PodWriter};
use crate::shared::Shared;

/// Watch events queued for the pod engine before the watch waits for it.
const EVENT_QUEUE: usize = 4096;

/// A running simulation of K nodes. Dropping it stops everything it started (as does
/// cancelling the token it was started with); the Nodes, Leases and pods stay in the API,
/// and a later [`SimNodes::start`] with the same names takes them over.
pub struct SimNodes {
    shared: Arc<Shared>,
    engine: mpsc::UnboundedSender<EngineMsg>,
    kicks: mpsc::UnboundedSender<usize>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SimNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNodes").field("nodes", &self.shared.nodes.len()).finish_non_exhaustive()
    }
}

impl SimNodes {
    /// Validates `config` and starts the simulation in the background: registration of every
    /// node, heartbeats, the node and pod watches, and the pod engine. It runs until `cancel`
    /// or until the handle is dropped. Use [`SimNodes::wait_registered`] to wait for the
    /// Nodes and Leases to exist.
    pub async fn start(
        client: Client,
        config: SimConfig,
        cancel: CancellationToken,
    ) -> Result<SimNodes, SimError> {
        SimNodes::start_with_clock(client, config, Arc::new(SystemClock), cancel).await
    }

    /// [`SimNodes::start`] with the clock timestamps are read from (timers still run on
    /// tokio time).
    pub async fn start_with_clock(
        client: Client,
        config: SimConfig,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> Result<SimNodes, SimError> {
        config.validate()?;
        let cancel = cancel.child_token();
        let shared = Arc::new(Shared::new(config, clock));
        let node_api = NodeApi::new(client.clone(), shared.clone());
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (kicks_tx, kicks_rx) = mpsc::unbounded_channel();
        let writer = PodWriter::new(client.clone(), shared.config.request_timeout);
        let engine = Engine::new(shared.clone(), writer, control_tx.clone());

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn({
            let cancel = cancel.clone();
            async move {
                nodes::register_all(node_api.clone(), cancel.clone()).await;
                nodes::heartbeats(node_api, kicks_rx, cancel).await;
            }
        }));
        tasks.push(tokio::spawn(nodes::watch_nodes(
            shared.clone(),
            client.clone(),
            cancel.clone(),
        )));
        tasks.push(tokio::spawn(pod_io::watch_pods(
            shared.clone(),
            client,
            events_tx,
            cancel.clone(),
        )));
        tasks.push(tokio::spawn(engine.run(events_rx, control_rx, cancel.clone())));
        tracing::info!(nodes = shared.nodes.len(), "simulated nodes starting");
        Ok(SimNodes { shared, engine: control_tx, kicks: kicks_tx, cancel, tasks })
    }

    /// The node names, in index order.
    pub fn node_names(&self) -> Vec<String> {
        self.shared.nodes.iter().map(|n| n.id.name.clone()).collect()
    }

    /// How many nodes have registered (Node and Lease exist).
    pub fn registered(&self) -> usize {
        *self.shared.registered.borrow()
    }

    /// Waits until every node has registered; [`SimError::Stopped`] if the simulation stops
    /// first. (Registration retries failures with back-off; wrap this in a timeout to bound
    /// the wait.)
    pub async fn wait_registered(&self) -> Result<(), SimError> {
        let total = self.shared.nodes.len();
        let mut rx = self.shared.registered.subscribe();
        tokio::select! {
            r = rx.wait_for(|n| *n >= total) => r.map(|_| ()).map_err(|_| SimError::Stopped),
            _ = self.cancel.cancelled() => Err(SimError::Stopped),
        }
    }

    fn index(&self, name: &str) -> Result<usize, SimError> {
        self.shared.by_name.get(name).copied().ok_or_else(|| SimError::UnknownNode(name.to_owned()))
    }

    /// Whether `name` is running (not stopped).
    pub fn is_running(&self, name: &str) -> Result<bool, SimError> {
        Ok(self.shared.nodes[self.index(name)?].is_running())
    }

    /// The node loses power: its Lease is no longer renewed, its status no longer posted, its
    /// pods no longer progress (no status writes, no deletions finished). What the API holds
    /// stays as it is. Writes already in flight still land.
    pub fn stop_node(&self, name: &str) -> Result<(), SimError> {
        let i = self.index(name)?;
        self.shared.nodes[i].running.store(false, Ordering::SeqCst);
        tracing::info!(node = name, "simulated node stopped");
        Ok(())
    }

    /// The node comes back: its Lease is renewed and its status (Ready=True, KubeletReady)
    /// posted at once, then heartbeats go on; its pods continue from where they were. Taints
    /// and anything else others wrote are left alone.
    pub fn start_node(&self, name: &str) -> Result<(), SimError> {
        let i = self.index(name)?;
        if self.shared.nodes[i].running.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.shared.nodes[i].force_status.store(true, Ordering::SeqCst);
        let _ = self.kicks.send(i);
        let _ = self.engine.send(EngineMsg::NodeStarted(i));
        tracing::info!(node = name, "simulated node started");
        Ok(())
    }

    /// The pod CIDR pods of `name` get addresses from now: the Node's `spec.podCIDR` as last
    /// seen, else the block carved from the cluster CIDR.
    pub fn pod_cidr(&self, name: &str) -> Result<crate::Ipv4Cidr, SimError> {
        let node = &self.shared.nodes[self.index(name)?];
        Ok(node.pod_cidr(&self.shared.config))
    }

    /// Stops the simulation and waits for its tasks to end (writes already in flight may
    /// still land afterwards).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
