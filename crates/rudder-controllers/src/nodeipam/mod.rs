//! Node IPAM (upstream's range allocator in `nodeipam`): every Node without
//! `spec.podCIDR` gets the next free subnet of the cluster CIDR in `spec.podCIDR` and
//! `spec.podCIDRs`. The used subnets are rebuilt from the Nodes at start, so a subnet is never
//! handed out twice across restarts; a deleted Node's subnet is released.

pub mod cidr;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use rudder_client::{Change, Context, EventType, Outcome, Recorder, WorkQueue, run_workers};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use cidr::{CidrSet, Ipv4Cidr};

/// Upstream's component name for the allocator's events.
pub const COMPONENT: &str = "cidrAllocator";

#[derive(Clone, Debug)]
pub struct NodeIpamConfig {
    /// The range node subnets come from (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// The prefix length of each node's subnet (`--node-cidr-mask-size`).
    pub node_cidr_mask_size: u8,
    pub workers: usize,
}

impl Default for NodeIpamConfig {
    fn default() -> Self {
        NodeIpamConfig { cluster_cidr: "10.42.0.0/16".into(), node_cidr_mask_size: 24, workers: 4 }
    }
}

struct State {
    set: CidrSet,
    /// Subnets handed to nodes whose update is not in the cache yet.
    assigned: HashMap<String, Ipv4Cidr>,
    /// Nodes that found the range exhausted: tried again as soon as a subnet is released.
    waiting: HashSet<String>,
}

fn node_cidrs(node: &Node) -> Vec<Ipv4Cidr> {
    let Some(spec) = node.spec.as_ref() else { return Vec::new() };
    let mut all: Vec<&String> = spec.pod_cidrs.iter().flatten().collect();
    if all.is_empty() {
        all.extend(spec.pod_cidr.as_ref());
    }
    all.into_iter().filter_map(|c| c.parse().ok()).collect()
}

fn has_pod_cidr(node: &Node) -> bool {
    node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()).is_some_and(|c| !c.is_empty())
}

fn occupy(state: &mut State, node: &Node) {
    let name = node.metadata.name.clone().unwrap_or_default();
    for c in node_cidrs(node) {
        if let Err(e) = state.set.occupy(&c) {
            tracing::warn!(node = %name, error = %e, "node IPAM: cannot mark the node's CIDR used");
        }
    }
    // A subnet we handed out that the node does not carry (someone else set another one).
    if let Some(ours) = state.assigned.remove(&name)
        && !node_cidrs(node).contains(&ours)
    {
        let _ = state.set.release(&ours);
    }
}

/// Runs the allocator until `cancel`. An invalid configuration is logged and ends it.
pub async fn run(ctx: Context, config: NodeIpamConfig, cancel: CancellationToken) {
    let set = config
        .cluster_cidr
        .parse::<Ipv4Cidr>()
        .and_then(|cluster| CidrSet::new(cluster, config.node_cidr_mask_size));
    let set = match set {
        Ok(set) => set,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM: invalid configuration; not running");
            return;
        }
    };
    let nodes = ctx.informers.get::<Node>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = nodes.wait_synced() => {}
    }
    let state =
        Arc::new(Mutex::new(State { set, assigned: HashMap::new(), waiting: HashSet::new() }));
    {
        let mut s = state.lock().expect("ipam lock");
        for node in nodes.list() {
            occupy(&mut s, &node);
        }
        tracing::info!(
            used = s.set.used(),
            capacity = s.set.capacity(),
            "node IPAM: CIDRs in use rebuilt"
        );
    }
    let queue = WorkQueue::<String>::new();
    {
        let (queue, state) = (queue.clone(), state.clone());
        nodes.add_handler(move |change: &Change<Node>| {
            let name = change.object().metadata.name.clone().unwrap_or_default();
            match change {
                Change::Added(node) | Change::Updated { new: node, .. } => {
                    if has_pod_cidr(node) {
                        occupy(&mut state.lock().expect("ipam lock"), node);
                    } else {
                        queue.add(name);
                    }
                }
                Change::Deleted(node) => {
                    let mut s = state.lock().expect("ipam lock");
                    let mut released = node_cidrs(node);
                    released.extend(s.assigned.remove(&name));
                    s.waiting.remove(&name);
                    if !released.is_empty() {
                        for c in released {
                            let _ = s.set.release(&c);
                        }
                        for waiting in s.waiting.drain() {
                            queue.add(waiting);
                        }
                    }
                }
            }
        });
    }
    let recorder = ctx.recorder(COMPONENT);
    let client = ctx.client.clone();
    run_workers("nodeipam", queue, config.workers, cancel, move |name: String| {
        let (nodes, state, recorder, client) =
            (nodes.clone(), state.clone(), recorder.clone(), client.clone());
        async move { allocate(&client, &nodes, &state, &recorder, &name).await }
    })
    .await;
}

async fn allocate(
    client: &kube::Client,
    nodes: &rudder_client::Informer<Node>,
    state: &Mutex<State>,
    recorder: &Recorder,
    name: &str,
) -> Result<Outcome, Error> {
    let Some(node) = nodes.get("", name) else { return Ok(Outcome::Done) };
    if has_pod_cidr(&node) {
        occupy(&mut state.lock().expect("ipam lock"), &node);
        return Ok(Outcome::Done);
    }
    let cidr = {
        let mut s = state.lock().expect("ipam lock");
        match s.assigned.get(name) {
            Some(c) => Some(*c),
            None => {
                let next = s.set.allocate_next();
                match next {
                    Some(c) => {
                        s.assigned.insert(name.to_owned(), c);
                        s.waiting.remove(name);
                    }
                    None => {
                        s.waiting.insert(name.to_owned());
                    }
                }
                next
            }
        }
    };
    let Some(cidr) = cidr else {
        recorder.event(
            &*node,
            EventType::Normal,
            "CIDRNotAvailable",
            format!("Node {name} status is now: CIDRNotAvailable"),
        );
        return Err(Error::Retry(format!("no CIDR left for node {name}")));
    };
    let patch = json!({
        "metadata": { "resourceVersion": node.metadata.resource_version },
        "spec": { "podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()] },
    });
    let api: Api<Node> = Api::all(client.clone());
    match call(
        "patch node podCIDR",
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "node IPAM: CIDR assigned");
            Ok(Outcome::Done)
        }
        Err(e) if e.is_not_found() => {
            let mut s = state.lock().expect("ipam lock");
            if s.assigned.remove(name).is_some() {
                let _ = s.set.release(&cidr);
            }
            Ok(Outcome::Done)
        }
        Err(e) => {
            if !e.is_conflict() {
                recorder.event(
                    &*node,
                    EventType::Normal,
                    "CIDRAssignmentFailed",
                    format!("Node {name} status is now: CIDRAssignmentFailed"),
                );
            }
            // The subnet stays reserved for this node and is tried again.
            Err(e)
        }
    }
}
