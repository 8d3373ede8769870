//! What the integration tests share: a TestCluster with the controllers running, namespaces,
//! a stand-in for the kubelet that marks pods Ready, and polling with a deadline.

#![allow(dead_code)]

pub mod daemonset;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use rudder_client::{Clock, Context, SystemClock};
use rudder_testkit::TestCluster;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a state before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Harness {
    pub cluster: TestCluster,
    pub client: Client,
    pub ctx: Context,
    pub cancel: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Which controllers a test runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Controllers {
    pub replicaset: bool,
    pub replicationcontroller: bool,
    pub deployment: bool,
}

pub async fn start(controllers: Controllers, clock: Option<Arc<dyn Clock>>) -> Harness {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
    let ctx = Context::with_clock(client.clone(), cancel.clone(), clock);
    if controllers.replicaset {
        let config = rudder_workloads::ReplicaSetConfig::default();
        tokio::spawn(rudder_workloads::replicaset::run(ctx.clone(), config, cancel.clone()));
    }
    if controllers.replicationcontroller {
        let config = rudder_workloads::ReplicationControllerConfig::default();
        tokio::spawn(rudder_workloads::replicationcontroller::run(
            ctx.clone(),
            config,
            cancel.clone(),
        ));
    }
    if controllers.deployment {
        let config = rudder_workloads::DeploymentConfig::default();
        tokio::spawn(rudder_workloads::deployment::run(ctx.clone(), config, cancel.clone()));
    }
    Harness { cluster, client, ctx, cancel }
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
}

/// Marks a pod Running and Ready (what a kubelet would report), ready since `since`.
pub async fn mark_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    since: Timestamp,
) -> kube::Result<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let at = k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", since).unwrap();
    let patch = json!({
        "status": {
            "phase": "Running",
            "conditions": [
                { "type": "Ready", "status": "True", "lastTransitionTime": at },
                { "type": "ContainersReady", "status": "True", "lastTransitionTime": at },
            ],
        }
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

/// Stands in for the kubelet: marks every pod of `namespace` that `wanted` accepts Ready as
/// it appears, until `cancel`.
pub fn readier(
    client: &Client,
    namespace: &str,
    wanted: impl Fn(&Pod) -> bool + Send + Sync + 'static,
    cancel: CancellationToken,
) {
    let client = client.clone();
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
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
            if rudder_client::objects::pod_is_ready(&pod)
                || pod.metadata.deletion_timestamp.is_some()
                || !wanted(&pod)
            {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let _ = mark_ready(&client, &namespace, &name, Timestamp::now()).await;
        }
    });
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

pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default().labels(selector)).await.expect("list pods").items
}

pub async fn events(client: &Client, namespace: &str, involved: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().fields(&format!("involvedObject.name={involved}"));
    api.list(&lp).await.expect("list events").items
}

/// Waits for an event with this reason and message about `involved`.
pub async fn wait_event(
    client: &Client,
    namespace: &str,
    involved: &str,
    reason: &str,
    message: &str,
) {
    wait_for(&format!("event {reason} {message:?} on {involved}"), || async {
        let events = events(client, namespace, involved).await;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message))
            .then_some(())
    })
    .await
}

pub fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

pub fn is_ready(pod: &Pod) -> bool {
    rudder_client::objects::pod_is_ready(pod)
}
