//! What the simulated-node tests share: a cluster, a fast configuration, pod builders, and
//! polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::PostParams;
use rudder_sim::{SimConfig, SimNodes};
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(30);

/// Fast timings: heartbeats every 200 ms, pods done after 300 ms, back-off from 200 ms.
pub fn fast_config(count: usize) -> SimConfig {
    let mut c = SimConfig::with_count(count);
    c.heartbeat_interval = Duration::from_millis(200);
    c.succeed_after = Some(Duration::from_millis(300));
    c.crash_loop_backoff_base = Duration::from_millis(200);
    c.crash_loop_backoff_max = Duration::from_secs(2);
    c
}

pub async fn start(client: &kube::Client, config: SimConfig) -> SimNodes {
    let sim = SimNodes::start(client.clone(), config, CancellationToken::new()).await.unwrap();
    tokio::time::timeout(DEADLINE, sim.wait_registered())
        .await
        .expect("nodes registered in time")
        .unwrap();
    sim
}

/// Polls `f` every 50 ms until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn pods(client: &kube::Client) -> Api<Pod> {
    Api::namespaced(client.clone(), "default")
}

pub fn nodes(client: &kube::Client) -> Api<Node> {
    Api::all(client.clone())
}

pub fn leases(client: &kube::Client) -> Api<Lease> {
    Api::namespaced(client.clone(), "kube-node-lease")
}

/// A pod with containers `a` and `b`, `restartPolicy` and annotations, bound to `node` at
/// creation (`None`: unbound).
pub fn pod(
    name: &str,
    node: Option<&str>,
    restart_policy: &str,
    annotations: serde_json::Value,
) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "containers": [
                { "name": "b", "image": "busybox" },
                { "name": "a", "image": "nginx:1.27" }
            ]
        }
    }))
    .unwrap()
}

pub async fn create_pod(client: &kube::Client, pod: Pod) -> Pod {
    pods(client).create(&PostParams::default(), &pod).await.unwrap()
}

pub async fn renew_time(client: &kube::Client, node: &str) -> MicroTime {
    let lease = leases(client).get(node).await.unwrap();
    lease.spec.unwrap().renew_time.expect("renewTime")
}

pub fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

pub fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn node_condition<'a>(
    node: &'a Node,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Waits for the pod to reach `want` phase and returns it.
pub async fn wait_phase(client: &kube::Client, name: &str, want: &str) -> Pod {
    eventually(&format!("pod {name} {want}"), || async {
        let p = pods(client).get(name).await.ok()?;
        (phase(&p) == Some(want)).then_some(p)
    })
    .await
}
