//! The node lifecycle controller (upstream's `nodelifecycle`, without the parts that moved to
//! the taint eviction controller): watches Nodes and their Leases in `kube-node-lease`; a
//! node not seen alive (Lease renewal or Ready heartbeat, timed by this controller's clock)
//! for the grace period gets its conditions set to Unknown; the node's condition taints
//! (NoSchedule for not-ready, unreachable, pressure conditions, unschedulable; NoExecute for
//! not-ready/unreachable, subject to upstream's zone disruption rules) follow its conditions.

pub mod health;
pub mod node_taints;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::PostParams;
use rudder_client::{
    Change, Clock, Context, EventType, Informer, Outcome, Recorder, WorkQueue, run_workers,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use health::{NoExecuteMode, NodeHealth, ready_status, unknown_conditions, zone_modes, zone_of};
use node_taints::desired_taints;

/// Upstream's component name for the node controller's events.
pub const COMPONENT: &str = "node-controller";

#[derive(Clone, Debug)]
pub struct NodeLifecycleConfig {
    /// How often node health is checked (`--node-monitor-period`).
    pub node_monitor_period: Duration,
    /// How long a node may be silent before it is marked Unknown
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted a Ready condition.
    pub node_startup_grace_period: Duration,
    /// Share of not-ready nodes that makes a zone partially disrupted.
    pub unhealthy_zone_threshold: f64,
    /// Zones up to this size stop NoExecute tainting when partially disrupted.
    pub large_cluster_size_threshold: usize,
    pub lease_namespace: String,
    pub workers: usize,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        NodeLifecycleConfig {
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            lease_namespace: "kube-node-lease".into(),
            workers: 4,
        }
    }
}

struct Shared {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    leases: Arc<Informer<Lease>>,
    pods: Arc<Informer<Pod>>,
    health: Mutex<HashMap<String, NodeHealth>>,
    modes: Mutex<BTreeMap<String, NoExecuteMode>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    config: NodeLifecycleConfig,
    queue: Arc<WorkQueue<String>>,
}

impl Shared {
    fn mode_for(&self, node: &Node) -> NoExecuteMode {
        self.modes
            .lock()
            .expect("modes lock")
            .get(&zone_of(node))
            .copied()
            .unwrap_or(NoExecuteMode::Normal)
    }
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: NodeLifecycleConfig, cancel: CancellationToken) {
    let shared = Arc::new(Shared {
        client: ctx.client.clone(),
        nodes: ctx.informers.get::<Node>(),
        leases: ctx.informers.get::<Lease>(),
        pods: ctx.informers.get::<Pod>(),
        health: Mutex::new(HashMap::new()),
        modes: Mutex::new(BTreeMap::new()),
        recorder: ctx.recorder(COMPONENT),
        clock: ctx.clock.clone(),
        config: config.clone(),
        queue: WorkQueue::new(),
    });
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            shared.nodes.wait_synced().await;
            shared.leases.wait_synced().await;
            shared.pods.wait_synced().await;
        } => {}
    }
    {
        let s = Arc::downgrade(&shared);
        shared.nodes.add_handler(move |change: &Change<Node>| {
            let Some(s) = s.upgrade() else { return };
            match change {
                Change::Added(node) | Change::Updated { new: node, .. } => {
                    if desired_taints(node, s.mode_for(node), s.clock.now()).is_some() {
                        s.queue.add(node.metadata.name.clone().unwrap_or_default());
                    }
                }
                Change::Deleted(node) => {
                    let name = node.metadata.name.clone().unwrap_or_default();
                    if s.health.lock().expect("health lock").remove(&name).is_some() {
                        s.recorder.event(
                            &**node,
                            EventType::Normal,
                            "RemovingNode",
                            format!("Node {name} event: Removing Node {name} from Controller"),
                        );
                    }
                }
            }
        });
    }
    let workers = {
        let s = shared.clone();
        tokio::spawn(run_workers(
            "nodelifecycle-taints",
            shared.queue.clone(),
            config.workers,
            cancel.clone(),
            move |name: String| {
                let s = s.clone();
                async move { reconcile_taints(&s, &name).await }
            },
        ))
    };
    let mut tick = tokio::time::interval(config.node_monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => monitor_node_health(&shared).await,
        }
    }
    let _ = workers.await;
}

/// One pass of upstream's `monitorNodeHealth`.
async fn monitor_node_health(s: &Shared) {
    let now = s.clock.now();
    let nodes = s.nodes.list();
    let mut silent = Vec::new();
    let mut registered = Vec::new();
    {
        let mut health = s.health.lock().expect("health lock");
        health.retain(|name, _| s.nodes.get("", name).is_some());
        for node in &nodes {
            let name = node.metadata.name.clone().unwrap_or_default();
            let lease = s.leases.get(&s.config.lease_namespace, &name);
            let h = health.entry(name.clone()).or_insert_with(|| {
                registered.push(node.clone());
                NodeHealth::new(node, lease.as_deref(), now)
            });
            h.observe(node, lease.as_deref(), now);
            let grace = if ready_status(node).is_none() {
                s.config.node_startup_grace_period
            } else {
                s.config.node_monitor_grace_period
            };
            if h.expired(now, grace)
                && let Some(conditions) = unknown_conditions(node, now)
            {
                silent.push((node.clone(), conditions));
            }
        }
    }
    for node in registered {
        let name = node.metadata.name.clone().unwrap_or_default();
        s.recorder.event(
            &*node,
            EventType::Normal,
            "RegisteredNode",
            format!("Node {name} event: Registered Node {name} in Controller"),
        );
    }
    let mut now_unknown = Vec::new();
    for (node, conditions) in silent {
        let name = node.metadata.name.clone().unwrap_or_default();
        let was_ready = ready_status(&node) == Some("True");
        let mut updated = (*node).clone();
        updated.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        let api: Api<Node> = Api::all(s.client.clone());
        match call(
            "update node status",
            api.replace_status(&name, &PostParams::default(), &updated),
        )
        .await
        {
            Ok(_) => {
                tracing::info!(node = %name, "node lifecycle: node stopped posting status; conditions set to Unknown");
                now_unknown.push(name.clone());
                if was_ready {
                    s.recorder.event(
                        &*node,
                        EventType::Normal,
                        "NodeNotReady",
                        format!("Node {name} status is now: NodeNotReady"),
                    );
                    mark_pods_not_ready(s, &name).await;
                }
            }
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "node lifecycle: status update failed; next pass retries")
            }
        }
    }
    // Zone disruption states, with the nodes just marked counted as not ready.
    let readiness: Vec<(String, Option<String>)> = nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let ready = if now_unknown.contains(&name) {
                Some("Unknown".to_owned())
            } else {
                ready_status(n).map(str::to_owned)
            };
            (zone_of(n), ready)
        })
        .collect();
    let modes = zone_modes(
        &readiness,
        s.config.unhealthy_zone_threshold,
        s.config.large_cluster_size_threshold,
    );
    let changed = {
        let mut current = s.modes.lock().expect("modes lock");
        let changed = *current != modes;
        if changed {
            tracing::info!(?modes, "node lifecycle: zone eviction modes changed");
            *current = modes;
        }
        changed
    };
    if changed {
        for node in &nodes {
            s.queue.add(node.metadata.name.clone().unwrap_or_default());
        }
    }
}

/// upstream's `MarkPodsNotReady`: the node's pods are no longer Ready.
async fn mark_pods_not_ready(s: &Shared, node: &str) {
    let now = s.clock.now();
    for pod in s.pods.list() {
        if pod.spec.as_ref().and_then(|p| p.node_name.as_deref()) != Some(node) {
            continue;
        }
        let mut updated = (*pod).clone();
        let Some(ready) = updated
            .status
            .as_mut()
            .and_then(|st| st.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "Ready"))
        else {
            continue;
        };
        if ready.status == "False" {
            continue;
        }
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(now));
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &namespace);
        if let Err(e) =
            call("update pod status", api.replace_status(&name, &PostParams::default(), &updated))
                .await
        {
            tracing::debug!(pod = %name, error = %e, "node lifecycle: marking pod not ready failed");
        }
    }
}

async fn reconcile_taints(s: &Shared, name: &str) -> Result<Outcome, Error> {
    let Some(node) = s.nodes.get("", name) else { return Ok(Outcome::Done) };
    let Some(taints) = desired_taints(&node, s.mode_for(&node), s.clock.now()) else {
        return Ok(Outcome::Done);
    };
    let mut updated = (*node).clone();
    updated.spec.get_or_insert_with(Default::default).taints = Some(taints);
    let api: Api<Node> = Api::all(s.client.clone());
    match call("update node taints", api.replace(name, &PostParams::default(), &updated)).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) if e.is_not_found() => Ok(Outcome::Done),
        Err(e) => Err(e),
    }
}
