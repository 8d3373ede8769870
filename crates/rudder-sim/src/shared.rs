//! State shared by the simulation's tasks and its handle: the nodes, whether each runs, and
//! what the API last showed of each Node.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rudder_client::Clock;

use crate::cidr::Ipv4Cidr;
use crate::config::SimConfig;
use crate::node_object::{NodeIdentity, ObservedNode};

/// One simulated node.
#[derive(Debug)]
pub(crate) struct NodeShared {
    pub id: NodeIdentity,
    /// Heartbeats and pod handling happen only while this is set (`stop_node` clears it).
    pub running: AtomicBool,
    /// The Node and its Lease exist (registration finished).
    pub registered: AtomicBool,
    /// A heartbeat of this node is in flight.
    pub heartbeat_busy: AtomicBool,
    /// Post the node status at the next heartbeat whatever it looks like.
    pub force_status: AtomicBool,
    pub observed: Mutex<Observed>,
}

#[derive(Debug, Default)]
pub(crate) struct Observed {
    pub node: ObservedNode,
    /// The resourceVersion `node` was read at (older watch events are ignored).
    pub resource_version: u64,
    /// When the status was last posted (tokio time).
    pub status_posted: Option<tokio::time::Instant>,
}

impl NodeShared {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// The node's pod CIDR: `spec.podCIDR` if the API has one, else the carved fallback.
    pub fn pod_cidr(&self, cfg: &SimConfig) -> Ipv4Cidr {
        let observed = self.observed.lock().unwrap_or_else(|p| p.into_inner());
        observed.node.pod_cidr.unwrap_or_else(|| self.id.fallback_pod_cidr(cfg))
    }

    pub fn observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records what the API showed of this Node unless it is older than what we have.
    pub fn observe(&self, cfg: &SimConfig, node: &k8s_openapi::api::core::v1::Node) {
        let rv =
            node.metadata.resource_version.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut observed = self.observed();
        if rv != 0 && rv < observed.resource_version {
            return;
        }
        observed.node = crate::node_object::observe(cfg, &self.id, node);
        observed.resource_version = rv;
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub nodes: Vec<NodeShared>,
    pub by_name: HashMap<String, usize>,
    pub clock: Arc<dyn Clock>,
    /// How many nodes have registered.
    pub registered: tokio::sync::watch::Sender<usize>,
}

impl Shared {
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> Self {
        let nodes: Vec<NodeShared> = config
            .node_names()
            .into_iter()
            .enumerate()
            .map(|(i, name)| NodeShared {
                id: NodeIdentity::new(&config, i, name),
                running: AtomicBool::new(true),
                registered: AtomicBool::new(false),
                heartbeat_busy: AtomicBool::new(false),
                force_status: AtomicBool::new(false),
                observed: Mutex::new(Observed::default()),
            })
            .collect();
        let by_name = nodes.iter().map(|n| (n.id.name.clone(), n.id.index)).collect();
        Shared { config, nodes, by_name, clock, registered: tokio::sync::watch::Sender::new(0) }
    }

    pub fn node(&self, name: &str) -> Option<&NodeShared> {
        self.by_name.get(name).map(|i| &self.nodes[*i])
    }
}
