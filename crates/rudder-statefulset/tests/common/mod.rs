//! What the integration tests share: a TestCluster with the StatefulSet controller, one
//! simulated node (pods go Running and Ready), a binder standing in for the scheduler,
//! optionally the garbage collector, and polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Binding, Event, Namespace, ObjectReference, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use rudder_client::Context;
use rudder_sim::{SimConfig, SimNodes};
use rudder_testkit::TestCluster;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a state before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
pub const NODE: &str = "sim-node-0";

pub struct Harness {
    pub cluster: TestCluster,
    pub client: Client,
    pub cancel: CancellationToken,
    pub sim: SimNodes,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A cluster with the StatefulSet controller, a node, a binder; `gc`: the garbage collector too.
pub async fn start(gc: bool) -> Harness {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let ctx = Context::new(client.clone(), cancel.clone());
    let config = rudder_statefulset::StatefulSetConfig::default();
    tokio::spawn(rudder_statefulset::run(ctx.clone(), config, cancel.clone()));
    if gc {
        let config = rudder_controllers::garbagecollector::GarbageCollectorConfig::default();
        tokio::spawn(rudder_controllers::garbagecollector::run(ctx, config, cancel.clone()));
    }
    let sim = SimNodes::start(client.clone(), SimConfig::with_count(1), cancel.clone())
        .await
        .expect("simulated node");
    tokio::time::timeout(DEADLINE, sim.wait_registered())
        .await
        .expect("node registered in time")
        .expect("node registered");
    binder(&client, cancel.clone());
    Harness { cluster, client, cancel, sim }
}

/// Stands in for the scheduler: binds every unbound pod to the one node.
fn binder(client: &Client, cancel: CancellationToken) {
    let client = client.clone();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::all(client.clone());
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = cancel.cancelled() => return,
            };
            let Some(event) = event else { return };
            let pod = match event {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                _ => continue,
            };
            let spec = pod.spec.as_ref();
            if spec.and_then(|s| s.node_name.as_ref()).is_some()
                || pod.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(NODE.into()),
                    ..ObjectReference::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            // A failed binding is retried (a loaded machine can time a request out); a
            // pod bound or gone meanwhile answers 409 or 404 and is left alone.
            for attempt in 1..=5 {
                match api
                    .create_subresource::<Binding, Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => break,
                    Err(e) => {
                        eprintln!("binding {ns}/{name} (attempt {attempt}): {e}");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
    });
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
}

/// Polls `probe` until it gives a value; fails the test after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sets(client: &Client, ns: &str) -> Api<StatefulSet> {
    Api::namespaced(client.clone(), ns)
}

pub fn pods(client: &Client, ns: &str) -> Api<Pod> {
    Api::namespaced(client.clone(), ns)
}

pub fn claims(client: &Client, ns: &str) -> Api<PersistentVolumeClaim> {
    Api::namespaced(client.clone(), ns)
}

pub async fn create_set(client: &Client, ns: &str, set: Value) -> StatefulSet {
    sets(client, ns)
        .create(&PostParams::default(), &serde_json::from_value(set).unwrap())
        .await
        .expect("create StatefulSet")
}

pub async fn patch_set(client: &Client, ns: &str, name: &str, patch: Value) -> StatefulSet {
    sets(client, ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch StatefulSet")
}

/// The pods of `ns` by name, sorted.
pub async fn pod_names(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = pods(client, ns)
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && rudder_client::objects::pod_is_ready(pod)
}

pub fn label<'a>(pod: &'a Pod, key: &str) -> &'a str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str).unwrap_or("")
}

/// Waits until the set's status shows `ready` ready replicas of `replicas`, all at one
/// revision, observed at its generation; returns the set.
pub async fn wait_settled(client: &Client, ns: &str, name: &str, replicas: i32) -> StatefulSet {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let set = sets(client, ns).get(name).await.ok();
        let status = set.as_ref().and_then(|s| s.status.clone());
        let done = set.as_ref().zip(status.as_ref()).is_some_and(|(set, s)| {
            s.observed_generation == set.metadata.generation
                && s.replicas == replicas
                && s.ready_replicas == Some(replicas)
                && s.available_replicas == Some(replicas)
                && s.updated_replicas == Some(replicas)
                && s.current_replicas == Some(replicas)
                && s.current_revision.is_some()
                && s.current_revision == s.update_revision
        });
        let pods = pods(client, ns).list(&ListParams::default()).await.expect("list pods").items;
        if done && pods.len() == replicas as usize {
            return set.expect("done");
        }
        // What a failure needs to be understood: the set's status and every pod's state.
        let pods: Vec<String> = pods
            .iter()
            .map(|p| {
                let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                format!("{:?} {node:?} {phase:?} {}", p.metadata.name, is_ready(p))
            })
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for StatefulSet {name} settled at {replicas}: \
             generation {:?}, status {status:?}; pods (name, node, phase, ready) {pods:?}",
            set.as_ref().and_then(|s| s.metadata.generation)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn events(client: &Client, ns: &str, involved: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={involved}"));
    api.list(&lp).await.expect("list events").items
}

/// Waits for an event with this reason and message about `involved`.
pub async fn wait_event(client: &Client, ns: &str, involved: &str, reason: &str, message: &str) {
    wait_for(&format!("event {reason} {message:?} on {involved}"), || async {
        let events = events(client, ns, involved).await;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message))
            .then_some(())
    })
    .await
}
