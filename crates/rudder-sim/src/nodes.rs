//! The node side: registration (create the Node, or take over an existing one), the Lease
//! heartbeats (one task, one timer heap, spread over the interval, bounded concurrency), node
//! status posts (on change, on restart, and every `status_report_interval`), and the one
//! Node watch that tells us podCIDRs and what the API shows of our nodes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{SimError, call};
use crate::node_object::{self, NODE_LEASE_NAMESPACE};
use crate::shared::{NodeShared, Shared};
use crate::unread;

const REGISTER_RETRY_BASE: Duration = Duration::from_millis(200);
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct NodeApi {
    nodes: Api<Node>,
    leases: Api<Lease>,
    client: Client,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NodeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeApi").finish_non_exhaustive()
    }
}

impl NodeApi {
    pub fn new(client: Client, shared: Arc<Shared>) -> Self {
        NodeApi {
            nodes: Api::all(client.clone()),
            leases: Api::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
            client,
            shared,
        }
    }

    fn timeout(&self) -> Duration {
        self.shared.config.request_timeout
    }

    /// Creates the node's Node (or takes over the existing one: our labels added, status
    /// re-posted; its taints and anything else left as they are) and its Lease.
    async fn register(&self, node: &NodeShared) -> Result<(), SimError> {
        let cfg = &self.shared.config;
        let name = &node.id.name;
        let now = self.shared.clock.now();
        let fresh = node_object::new_node(cfg, &node.id, now);
        let created = call(
            || format!("registering node {name}"),
            self.timeout(),
            self.nodes.create(&PostParams::default(), &fresh),
        )
        .await;
        match created {
            Ok(n) => node.observe(cfg, &n),
            Err(e) if e.status_code() == Some(409) => {
                let existing =
                    call(|| format!("reading node {name}"), self.timeout(), self.nodes.get(name))
                        .await?;
                node.observe(cfg, &existing);
                if let Some(patch) = node_object::missing_metadata(cfg, &node.id, &existing) {
                    let n = call(
                        || format!("labelling node {name}"),
                        self.timeout(),
                        self.nodes.patch(name, &PatchParams::default(), &Patch::Merge(patch)),
                    )
                    .await?;
                    node.observe(cfg, &n);
                }
                self.post_status(node).await?;
            }
            Err(e) => return Err(e),
        }
        node.observed().status_posted = Some(Instant::now());
        let uid = node.observed().node.uid.clone();
        let lease = node_object::lease(name, uid.as_deref(), cfg.lease_duration_seconds, now);
        match call(
            || format!("creating the lease of node {name}"),
            self.timeout(),
            self.leases.create(&PostParams::default(), &lease),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status_code() == Some(409) => self.renew_lease(node).await,
            Err(e) => Err(e),
        }
    }

    /// Renews the node's Lease (recreating it if it went away).
    async fn renew_lease(&self, node: &NodeShared) -> Result<(), SimError> {
        let cfg = &self.shared.config;
        let name = &node.id.name;
        let now = self.shared.clock.now();
        let patch = node_object::lease_renewal(name, cfg.lease_duration_seconds, now);
        let renewed = call(
            || format!("renewing the lease of node {name}"),
            self.timeout(),
            unread::patch::<Lease>(
                &self.client,
                Some(NODE_LEASE_NAMESPACE),
                name,
                None,
                &Patch::Merge(patch),
            ),
        )
        .await;
        match renewed {
            Err(e) if e.status_code() == Some(404) => {
                let uid = node.observed().node.uid.clone();
                let lease =
                    node_object::lease(name, uid.as_deref(), cfg.lease_duration_seconds, now);
                call(
                    || format!("recreating the lease of node {name}"),
                    self.timeout(),
                    self.leases.create(&PostParams::default(), &lease),
                )
                .await
                .map(|_| ())
            }
            other => other,
        }
    }

    /// Posts a healthy node's status through nodes/status (strategic merge: conditions and
    /// addresses merge by type, so conditions other components own stay).
    async fn post_status(&self, node: &NodeShared) -> Result<(), SimError> {
        let cfg = &self.shared.config;
        let name = &node.id.name;
        let conditions = node.observed().node.conditions.clone();
        let status = node_object::status(cfg, &node.id, &conditions, self.shared.clock.now());
        let patch = serde_json::json!({ "status": status });
        let n = call(
            || format!("posting the status of node {name}"),
            self.timeout(),
            self.nodes.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)),
        )
        .await?;
        node.observe(cfg, &n);
        node.observed().status_posted = Some(Instant::now());
        Ok(())
    }

    /// One heartbeat: renew the Lease, then post the status if it is due (forced, not what a
    /// healthy node reports, or not posted for `status_report_interval`).
    async fn heartbeat(&self, node: &NodeShared) {
        if let Err(e) = self.renew_lease(node).await {
            tracing::debug!(node = %node.id.name, error = %e, "lease renewal failed");
        }
        let due = {
            let observed = node.observed();
            !observed.node.healthy
                || observed
                    .status_posted
                    .is_none_or(|t| t.elapsed() >= self.shared.config.status_report_interval)
        };
        if (node.force_status.swap(false, Ordering::SeqCst) || due)
            && let Err(e) = self.post_status(node).await
        {
            tracing::debug!(node = %node.id.name, error = %e, "node status post failed");
            node.force_status.store(true, Ordering::SeqCst);
        }
    }
}

/// Registers every node (bounded concurrency, each retried with back-off until it works or
/// `cancel`), counting them in `shared.registered`.
pub(crate) async fn register_all(api: NodeApi, cancel: CancellationToken) {
    let shared = api.shared.clone();
    let limit = shared.config.max_concurrent_node_writes;
    futures::stream::iter(shared.nodes.iter())
        .for_each_concurrent(limit, |node| {
            let api = api.clone();
            let cancel = cancel.clone();
            let shared = shared.clone();
            async move {
                let mut delay = REGISTER_RETRY_BASE;
                loop {
                    match api.register(node).await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(node = %node.id.name, error = %e, "node registration failed; retrying");
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = tokio::time::sleep(delay) => {}
                            }
                            delay = (delay * 2).min(REGISTER_RETRY_MAX);
                        }
                    }
                }
                node.registered.store(true, Ordering::SeqCst);
                shared.registered.send_modify(|n| *n += 1);
            }
        })
        .await;
}

/// Node i's first heartbeat comes (i+1)/K of an interval after `start`, so K nodes write
/// evenly over the interval rather than all at once.
pub(crate) fn first_due(start: Instant, interval: Duration, index: usize, count: usize) -> Instant {
    start + interval.mul_f64((index as f64 + 1.0) / count.max(1) as f64)
}

/// The heartbeats due within one tick are sent together, so that the store commits their
/// Lease writes together rather than one commit (and one disk flush) each; a node renews up
/// to one tick early. A twentieth of the interval, at most 100 ms.
pub(crate) fn heartbeat_tick(interval: Duration) -> Duration {
    (interval / 20).min(Duration::from_millis(100))
}

/// Heartbeats until `cancel`: one timer heap over all nodes, served in ticks (see
/// [`heartbeat_tick`]); a node's heartbeat is skipped while it is stopped or while its
/// previous one is still in flight. `kicks` asks for an immediate heartbeat with a status
/// post (a node started again).
pub(crate) async fn heartbeats(
    api: NodeApi,
    mut kicks: mpsc::UnboundedReceiver<usize>,
    cancel: CancellationToken,
) {
    let shared = api.shared.clone();
    let interval = shared.config.heartbeat_interval;
    let tick = heartbeat_tick(interval);
    let writes = Arc::new(Semaphore::new(shared.config.max_concurrent_node_writes));
    let count = shared.nodes.len();
    let start = Instant::now();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> =
        (0..count).map(|i| Reverse((first_due(start, interval, i, count), i))).collect();
    let beat = |index: usize| {
        let api = api.clone();
        let writes = writes.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let node = &shared.nodes[index];
            if let Ok(_permit) = writes.acquire().await {
                api.heartbeat(node).await;
            }
            node.heartbeat_busy.store(false, Ordering::SeqCst);
        });
    };
    loop {
        let next = heap.peek().map(|Reverse((at, _))| *at).unwrap_or_else(|| start + interval);
        tokio::select! {
            _ = cancel.cancelled() => return,
            Some(index) = kicks.recv() => {
                let node = &shared.nodes[index];
                node.force_status.store(true, Ordering::SeqCst);
                if node.is_running() && !node.heartbeat_busy.swap(true, Ordering::SeqCst) {
                    beat(index);
                }
            }
            _ = tokio::time::sleep_until(next) => {
                let now = Instant::now();
                while let Some(Reverse((at, index))) = heap.peek().copied() {
                    if at > now + tick {
                        break;
                    }
                    heap.pop();
                    let node = &shared.nodes[index];
                    if node.is_running()
                        && node.registered.load(Ordering::SeqCst)
                        && !node.heartbeat_busy.swap(true, Ordering::SeqCst)
                    {
                        beat(index);
                    }
                    // Keep the node's slot in the spread; if we fell a whole interval behind,
                    // start from now.
                    let mut again = at + interval;
                    if again <= now {
                        again = now + interval;
                    }
                    heap.push(Reverse((again, index)));
                }
            }
        }
    }
}

/// Watches all Nodes and records what the API shows of ours (podCIDR, conditions, whether
/// the status is what a healthy node reports), until `cancel`.
pub(crate) async fn watch_nodes(shared: Arc<Shared>, client: Client, cancel: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => match e {
                Some(e) => e,
                None => return,
            },
        };
        match event {
            Ok(Event::Apply(node) | Event::InitApply(node)) => {
                if let Some(ours) = node.metadata.name.as_deref().and_then(|n| shared.node(n)) {
                    ours.observe(&shared.config, &node);
                }
            }
            Ok(Event::Delete(node)) => {
                if let Some(name) = node.metadata.name.as_deref()
                    && shared.node(name).is_some()
                {
                    // Like upstream's kubelet, we do not register again: restart the
                    // simulation to bring the Node back.
                    tracing::warn!(node = name, "simulated node deleted from the API");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "node watch failed; retrying with back-off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_spread_over_the_interval() {
        let start = Instant::now();
        let interval = Duration::from_secs(10);
        let dues: Vec<Duration> =
            (0..4).map(|i| first_due(start, interval, i, 4) - start).collect();
        assert_eq!(dues, [2500, 5000, 7500, 10_000].map(Duration::from_millis));
    }
}
