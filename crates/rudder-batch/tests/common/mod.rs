//! What the integration tests share: a TestCluster with the batch controllers, one simulated
//! node that runs the pods (pods succeed after `SUCCEED_AFTER` unless annotated), a binder
//! standing in for the scheduler, and polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Binding, Event, Namespace, ObjectReference, Pod};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use rudder_client::{Clock, Context, SystemClock};
use rudder_sim::{SimConfig, SimNodes};
use rudder_testkit::TestCluster;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long a test waits for a state before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// How long simulated pods of Jobs run before they exit 0.
pub const SUCCEED_AFTER: Duration = Duration::from_millis(300);
pub const NODE: &str = "sim-node-0";

pub struct Harness {
    pub cluster: TestCluster,
    pub client: Client,
    pub ctx: Context,
    pub cancel: CancellationToken,
    _nodes: SimNodes,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Controllers {
    pub cronjob: bool,
    pub ttl: bool,
    pub gc: bool,
}

pub async fn start(controllers: Controllers, clock: Option<Arc<dyn Clock>>) -> Harness {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let clock = clock.unwrap_or_else(|| Arc::new(SystemClock));
    let ctx = Context::with_clock(client.clone(), cancel.clone(), clock);
    let config = rudder_batch::JobConfig {
        sync_batch_period: Duration::ZERO,
        pod_failure_backoff: Duration::from_millis(100),
        max_pod_failure_backoff: Duration::from_secs(1),
        ..Default::default()
    };
    tokio::spawn(rudder_batch::job::run(ctx.clone(), config, cancel.clone()));
    if controllers.cronjob {
        let config = rudder_batch::CronJobConfig {
            max_requeue_delay: Some(Duration::from_millis(50)),
            ..Default::default()
        };
        tokio::spawn(rudder_batch::cronjob::run(ctx.clone(), config, cancel.clone()));
    }
    if controllers.ttl {
        let config = rudder_batch::TtlAfterFinishedConfig::default();
        tokio::spawn(rudder_batch::ttlafterfinished::run(ctx.clone(), config, cancel.clone()));
    }
    if controllers.gc {
        let config = rudder_controllers::garbagecollector::GarbageCollectorConfig::default();
        tokio::spawn(rudder_controllers::garbagecollector::run(
            ctx.clone(),
            config,
            cancel.clone(),
        ));
    }
    let mut sim = SimConfig::with_count(1);
    sim.succeed_after = Some(SUCCEED_AFTER);
    let nodes = SimNodes::start(client.clone(), sim, cancel.clone()).await.expect("sim nodes");
    nodes.wait_registered().await.expect("sim node registered");
    binder(&client, cancel.clone());
    Harness { cluster, client, ctx, cancel, _nodes: nodes }
}

/// Stands in for the scheduler: binds every pending pod to the simulated node.
pub fn binder(client: &Client, cancel: CancellationToken) {
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
            let bound = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty());
            if bound || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let binding = Binding {
                metadata: kube::api::ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    kind: Some("Node".into()),
                    name: Some(NODE.into()),
                    api_version: Some("v1".into()),
                    ..Default::default()
                },
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let _ = api
                .create_subresource::<Binding, Value>(
                    "binding",
                    &name,
                    &PostParams::default(),
                    &binding,
                )
                .await;
        }
    });
}

pub async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &ns).await.expect("create namespace");
}

pub async fn create_job(client: &Client, ns: &str, manifest: Value) -> Job {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let job: Job = serde_json::from_value(manifest).expect("job manifest");
    api.create(&PostParams::default(), &job).await.expect("create job")
}

pub async fn create_cronjob(client: &Client, ns: &str, manifest: Value) -> CronJob {
    let api: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let cj: CronJob = serde_json::from_value(manifest).expect("cronjob manifest");
    api.create(&PostParams::default(), &cj).await.expect("create cronjob")
}

pub async fn get_job(client: &Client, ns: &str, name: &str) -> Option<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    api.get_opt(name).await.expect("get job")
}

pub async fn jobs(client: &Client, ns: &str) -> Vec<Job> {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.expect("list jobs").items
}

pub fn condition<'a>(
    job: &'a Job,
    type_: &str,
) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

/// Waits until the Job has a True condition of this type; returns the Job.
pub async fn wait_condition(client: &Client, ns: &str, name: &str, type_: &str) -> Job {
    wait_for(&format!("job {name} condition {type_}"), || async {
        get_job(client, ns, name).await.filter(|j| condition(j, type_).is_some())
    })
    .await
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

pub async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector)).await.expect("list pods").items
}

pub async fn events(client: &Client, ns: &str, involved: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={involved}"));
    api.list(&lp).await.expect("list events").items
}

/// Waits for an event with this reason about `involved`; returns its message.
pub async fn wait_event(client: &Client, ns: &str, involved: &str, reason: &str) -> String {
    wait_for(&format!("event {reason} on {involved}"), || async {
        events(client, ns, involved)
            .await
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason))
            .map(|e| e.message.unwrap_or_default())
    })
    .await
}

pub fn status_of(job: &Job) -> k8s_openapi::api::batch::v1::JobStatus {
    job.status.clone().unwrap_or_default()
}

/// A Job's pod template: one container, restartPolicy Never, the given annotations.
pub fn pod_template(annotations: Value) -> Value {
    json!({
        "metadata": { "annotations": annotations },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "main", "image": "busybox" }]
        }
    })
}
