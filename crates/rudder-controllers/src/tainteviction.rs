//! The taint eviction controller (upstream's `tainteviction`, formerly the node lifecycle
//! controller's taint manager): a pod on a node with a NoExecute taint it does not tolerate
//! is deleted at once; one that tolerates it with tolerationSeconds is deleted that long after
//! the taint's timeAdded; pods without their own toleration of `not-ready`/`unreachable` are
//! treated as tolerating them for `default_toleration_seconds` (what upstream's
//! DefaultTolerationSeconds admission plugin adds, which rudder's API server does not).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use rudder_client::informer::key_of;
use rudder_client::{
    Change, Clock, Context, EventType, Informer, ObjectKey, Outcome, Recorder, WorkQueue,
    run_workers,
};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use crate::taints::{Eviction, NO_EXECUTE, eviction, with_default_tolerations};

/// Upstream's component name for the controller's events.
pub const COMPONENT: &str = "taint-eviction-controller";

#[derive(Clone, Debug)]
pub struct TaintEvictionConfig {
    /// How long pods without their own toleration tolerate `not-ready` and `unreachable`
    /// (upstream's `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`).
    pub default_toleration_seconds: i64,
    pub workers: usize,
}

impl Default for TaintEvictionConfig {
    fn default() -> Self {
        TaintEvictionConfig { default_toleration_seconds: 300, workers: 8 }
    }
}

/// (node, key, value, effect) of a taint without timeAdded.
type TaintId = (String, String, String, String);

struct Shared {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    by_node: Mutex<HashMap<String, HashSet<ObjectKey>>>,
    /// Nodes with a NoExecute taint: a pod change only needs a look when its node is one.
    tainted: Mutex<HashSet<String>>,
    first_seen: Mutex<HashMap<TaintId, Timestamp>>,
    scheduled: Mutex<HashMap<ObjectKey, Timestamp>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    config: TaintEvictionConfig,
    queue: Arc<WorkQueue<ObjectKey>>,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|t| t.iter().filter(|t| t.effect == NO_EXECUTE).cloned().collect())
        .unwrap_or_default()
}

fn taint_id(node: &str, t: &Taint) -> TaintId {
    (node.to_owned(), t.key.clone(), t.value.clone().unwrap_or_default(), t.effect.clone())
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: TaintEvictionConfig, cancel: CancellationToken) {
    let shared = Arc::new(Shared {
        client: ctx.client.clone(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        by_node: Mutex::new(HashMap::new()),
        tainted: Mutex::new(HashSet::new()),
        first_seen: Mutex::new(HashMap::new()),
        scheduled: Mutex::new(HashMap::new()),
        recorder: ctx.recorder(COMPONENT),
        clock: ctx.clock.clone(),
        config: config.clone(),
        queue: WorkQueue::new(),
    });
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { shared.pods.wait_synced().await; shared.nodes.wait_synced().await } => {}
    }
    {
        let s = Arc::downgrade(&shared);
        shared.pods.add_handler(move |change: &Change<Pod>| {
            let Some(s) = s.upgrade() else { return };
            pod_changed(&s, change);
        });
    }
    {
        let s = Arc::downgrade(&shared);
        shared.nodes.add_handler(move |change: &Change<Node>| {
            let Some(s) = s.upgrade() else { return };
            node_changed(&s, change);
        });
    }
    let s = shared.clone();
    run_workers(
        "tainteviction",
        shared.queue.clone(),
        config.workers,
        cancel,
        move |key: ObjectKey| {
            let s = s.clone();
            async move { process_pod(&s, key).await }
        },
    )
    .await;
}

fn pod_changed(s: &Shared, change: &Change<Pod>) {
    let old_node = match change {
        Change::Updated { old, .. } | Change::Deleted(old) => node_of(old),
        Change::Added(_) => None,
    };
    let new_node = match change {
        Change::Added(pod) | Change::Updated { new: pod, .. } => node_of(pod),
        Change::Deleted(_) => None,
    };
    let key = key_of(&**change.object());
    // Most changes (status updates) leave the pod on its node: the index stays as it is.
    if old_node != new_node {
        let mut by_node = s.by_node.lock().expect("index lock");
        if let Some(node) = old_node
            && let Some(set) = by_node.get_mut(node)
        {
            set.remove(&key);
            if set.is_empty() {
                by_node.remove(node);
            }
        }
        if let Some(node) = new_node {
            by_node.entry(node.to_owned()).or_default().insert(key.clone());
        }
    }
    match change {
        Change::Deleted(_) => {
            s.scheduled.lock().expect("scheduled lock").remove(&key);
        }
        _ => {
            let Some(node) = new_node else { return };
            let tainted = s.tainted.lock().expect("tainted lock").contains(node);
            if tainted || s.scheduled.lock().expect("scheduled lock").contains_key(&key) {
                s.queue.add(key);
            }
        }
    }
}

fn node_changed(s: &Shared, change: &Change<Node>) {
    let (old, new) = match change {
        Change::Added(n) => (Vec::new(), Some(n)),
        Change::Updated { old, new } => (no_execute_taints(old), Some(new)),
        Change::Deleted(node) => {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            s.tainted.lock().expect("tainted lock").remove(name);
            return;
        }
    };
    let Some(node) = new else { return };
    let name = node.metadata.name.clone().unwrap_or_default();
    let taints = no_execute_taints(node);
    // Before the pods are looked up below: a pod bound meanwhile is then either in the
    // index already or sees the node as tainted itself.
    {
        let mut tainted = s.tainted.lock().expect("tainted lock");
        if taints.is_empty() {
            tainted.remove(&name);
        } else {
            tainted.insert(name.clone());
        }
    }
    {
        let now = s.clock.now();
        let mut first_seen = s.first_seen.lock().expect("first seen lock");
        first_seen.retain(|id, _| id.0 != name || taints.iter().any(|t| taint_id(&name, t) == *id));
        for t in taints.iter().filter(|t| t.time_added.is_none()) {
            first_seen.entry(taint_id(&name, t)).or_insert(now);
        }
    }
    if old == taints {
        return;
    }
    let pods: Vec<ObjectKey> = s
        .by_node
        .lock()
        .expect("index lock")
        .get(&name)
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default();
    for key in pods {
        s.queue.add(key);
    }
}

async fn process_pod(s: &Shared, key: ObjectKey) -> Result<Outcome, Error> {
    let (namespace, name) = &key;
    let Some(pod) = s.pods.get(namespace, name) else {
        s.scheduled.lock().expect("scheduled lock").remove(&key);
        return Ok(Outcome::Done);
    };
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Outcome::Done);
    }
    let Some(node_name) = node_of(&pod) else { return Ok(Outcome::Done) };
    let now = s.clock.now();
    let taints: Vec<(Taint, Timestamp)> = match s.nodes.get("", node_name) {
        Some(node) => {
            let first_seen = s.first_seen.lock().expect("first seen lock");
            no_execute_taints(&node)
                .into_iter()
                .map(|t| {
                    let start = t
                        .time_added
                        .as_ref()
                        .map(|ta| ta.0)
                        .or_else(|| first_seen.get(&taint_id(node_name, &t)).copied())
                        .unwrap_or(now);
                    (t, start)
                })
                .collect()
        }
        None => Vec::new(),
    };
    let tolerations = with_default_tolerations(
        pod.spec.as_ref().and_then(|p| p.tolerations.as_deref()).unwrap_or_default(),
        s.config.default_toleration_seconds,
    );
    match eviction(&taints, &tolerations, now) {
        Eviction::Keep => {
            if s.scheduled.lock().expect("scheduled lock").remove(&key).is_some() {
                s.recorder.event(
                    &*pod,
                    EventType::Normal,
                    "TaintManagerEviction",
                    format!("Cancelling deletion of Pod {namespace}/{name}"),
                );
            }
            Ok(Outcome::Done)
        }
        Eviction::At(when) => {
            s.scheduled.lock().expect("scheduled lock").insert(key.clone(), when);
            let wait = rudder_client::clock::elapsed(now, when).max(Duration::from_millis(1));
            Ok(Outcome::RequeueAfter(wait))
        }
        Eviction::Now => {
            evict(s, &pod).await?;
            s.scheduled.lock().expect("scheduled lock").remove(&key);
            Ok(Outcome::Done)
        }
    }
}

/// Marks the pod with a DisruptionTarget condition (best effort) and deletes it.
async fn evict(s: &Shared, pod: &Pod) -> Result<(), Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    s.recorder.event(
        pod,
        EventType::Normal,
        "TaintManagerEviction",
        format!("Marking for deletion Pod {namespace}/{name}"),
    );
    let api: Api<Pod> = Api::namespaced(s.client.clone(), &namespace);
    let mut marked = pod.clone();
    let conditions =
        marked.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(s.clock.now())),
        ..PodCondition::default()
    });
    if let Err(e) =
        call("update pod status", api.replace_status(&name, &PostParams::default(), &marked)).await
    {
        tracing::debug!(pod = %name, error = %e, "taint eviction: DisruptionTarget condition not set");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match call("delete pod", api.delete(&name, &params)).await {
        Ok(_) => {
            tracing::info!(%namespace, pod = %name, "taint eviction: pod deleted");
            Ok(())
        }
        Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}
