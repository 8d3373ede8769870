//! Node lifecycle and taint eviction against a real API server: a node whose Lease stops
//! being renewed goes Unknown and gets tainted, its pods are evicted per their tolerations,
//! and the taints go when it is Ready again.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, NodeCondition, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_controllers::nodelifecycle::{self, NodeLifecycleConfig};
use rudder_controllers::tainteviction::{self, TaintEvictionConfig};
use serde_json::json;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn ready(status: &str) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some("KubeletReady".into()),
        message: Some("kubelet is posting ready status".into()),
        last_heartbeat_time: Some(Time(Timestamp::now())),
        last_transition_time: Some(Time(Timestamp::now())),
    }
}

async fn create_node(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name },
        "status": { "conditions": [ready("True")] },
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now()) },
    }))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
}

/// A pod already bound to `node`, with these tolerations.
fn pod_on(name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "nodeName": node, "tolerations": tolerations, "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .unwrap()
}

async fn post_ready(client: &kube::Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": { "conditions": [ready("True")] } });
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

/// Acts as the nodes' kubelets: renews the leases of `names` every 200 ms and posts Ready
/// again for a node found not Ready; `silent` stops the second one.
fn renew_leases(
    client: &kube::Client,
    names: [&'static str; 2],
    silent: Arc<AtomicBool>,
) -> tokio_util::sync::CancellationToken {
    let client = client.clone();
    spawn(move |cancel| async move {
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let nodes: Api<Node> = Api::all(client.clone());
        while !cancel.is_cancelled() {
            for (i, name) in names.iter().enumerate() {
                if i == 1 && silent.load(Ordering::SeqCst) {
                    continue;
                }
                let patch = json!({ "spec": { "renewTime": MicroTime(Timestamp::now()) } });
                let _ = leases.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                if i == 0
                    && let Ok(node) = nodes.get(name).await
                {
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .into_iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if !ready {
                        post_ready(&client, name).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn taint_keys(node: &Node) -> Vec<String> {
    let taints: &[Taint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

async fn events(client: &kube::Client, ns: &str, object: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={object}"));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_goes_unknown_is_tainted_and_its_pods_are_evicted() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "kube-node-lease").await;
    create_namespace(&client, "work").await;
    create_node(&client, "healthy").await;
    create_node(&client, "silent").await;
    let silent = Arc::new(AtomicBool::new(false));
    let renewer = renew_leases(&client, ["healthy", "silent"], silent.clone());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "work");
    for pod in [
        pod_on("doomed", "silent", json!([])),
        pod_on(
            "patient",
            "silent",
            json!([{ "key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 3600 }]),
        ),
        pod_on("elsewhere", "healthy", json!([])),
    ] {
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }

    let controllers = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            let lifecycle = NodeLifecycleConfig {
                node_monitor_period: Duration::from_millis(200),
                node_monitor_grace_period: Duration::from_secs(2),
                node_startup_grace_period: Duration::from_secs(2),
                ..NodeLifecycleConfig::default()
            };
            let eviction = TaintEvictionConfig {
                default_toleration_seconds: 1,
                ..TaintEvictionConfig::default()
            };
            tokio::join!(
                nodelifecycle::run(ctx.clone(), lifecycle, cancel.clone()),
                tainteviction::run(ctx, eviction, cancel),
            );
        })
    };

    silent.store(true, Ordering::SeqCst);
    let nodes: Api<Node> = Api::all(client.clone());
    let node = eventually("the silent node to be tainted unreachable", || async {
        let node = nodes.get("silent").await.ok()?;
        let keys = taint_keys(&node);
        (keys.contains(&format!("{UNREACHABLE}:NoExecute"))
            && keys.contains(&format!("{UNREACHABLE}:NoSchedule")))
        .then_some(node)
    })
    .await;
    let conditions = node.status.unwrap().conditions.unwrap();
    let ready_condition = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready_condition.status, "Unknown");
    assert_eq!(ready_condition.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(ready_condition.message.as_deref(), Some("Kubelet stopped posting node status."));
    for type_ in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c =
            conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("{type_} added"));
        assert_eq!(c.status, "Unknown");
    }
    assert!(node.spec.unwrap().taints.unwrap().iter().all(|t| t.time_added.is_some()));

    // Evicted: deleted gracefully; it stays Terminating until its kubelet (silent here)
    // confirms, as upstream (the pod GC force-deletes pods of nodes that are gone).
    eventually("the pod without tolerations to be evicted", || async {
        match pods.get_opt("doomed").await.ok()? {
            None => Some(()),
            Some(p) => p.metadata.deletion_timestamp.is_some().then_some(()),
        }
    })
    .await;
    let terminating = |p: Option<Pod>| p.expect("pod exists").metadata.deletion_timestamp.is_some();
    assert!(!terminating(pods.get_opt("patient").await.unwrap()), "tolerates for an hour");
    assert!(!terminating(pods.get_opt("elsewhere").await.unwrap()));
    let eviction = eventually("the eviction event", || async {
        events(&client, "work", "doomed", "TaintManagerEviction").await.into_iter().next()
    })
    .await;
    assert_eq!(eviction.message.as_deref(), Some("Marking for deletion Pod work/doomed"));
    assert_eq!(
        eviction.source.and_then(|s| s.component).as_deref(),
        Some("taint-eviction-controller")
    );
    eventually("the NodeNotReady event", || async {
        events(&client, "default", "silent", "NodeNotReady").await.into_iter().next()
    })
    .await;

    // The node comes back: it renews and posts Ready, the taints go.
    silent.store(false, Ordering::SeqCst);
    post_ready(&client, "silent").await;
    eventually("the unreachable taints to go", || async {
        let node = nodes.get("silent").await.ok()?;
        taint_keys(&node).is_empty().then_some(())
    })
    .await;
    assert!(pods.get_opt("patient").await.unwrap().is_some());
    eventually("the healthy node to have no taints", || async {
        taint_keys(&nodes.get("healthy").await.ok()?).is_empty().then_some(())
    })
    .await;
    controllers.cancel();
    renewer.cancel();
}

/// The pod side of taint eviction: pods bound after the node got its NoExecute taint (the
/// controller learns of them from the pod, not from a taint change) are evicted unless they
/// tolerate it; a pod on an untainted node, and one on a node whose taint was removed, stay.
#[tokio::test]
async fn pods_bound_to_an_already_tainted_node_are_evicted_unless_they_tolerate_it() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "kube-node-lease").await;
    create_namespace(&client, "work").await;
    for node in ["tainted", "clean", "was-tainted"] {
        create_node(&client, node).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let taint =
        json!({ "spec": { "taints": [{ "key": "example.com/evict", "effect": "NoExecute" }] } });
    for node in ["tainted", "was-tainted"] {
        nodes.patch(node, &PatchParams::default(), &Patch::Merge(&taint)).await.unwrap();
    }
    // The taint goes from one node again (before the controller starts: while it runs, its
    // node cache could still hold the taint when the pod below arrives, a race not a bug).
    let untaint = json!({ "spec": { "taints": null } });
    nodes.patch("was-tainted", &PatchParams::default(), &Patch::Merge(&untaint)).await.unwrap();

    let controllers = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            tainteviction::run(ctx, TaintEvictionConfig::default(), cancel).await;
        })
    };

    let pods: Api<Pod> = Api::namespaced(client.clone(), "work");
    let tolerate =
        json!([{ "key": "example.com/evict", "operator": "Exists", "effect": "NoExecute" }]);
    for pod in [
        pod_on("tolerant", "tainted", tolerate),
        pod_on("clean-pod", "clean", json!([])),
        pod_on("spared", "was-tainted", json!([])),
        pod_on("doomed", "tainted", json!([])),
    ] {
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    eventually("the pod without a toleration to be evicted", || async {
        match pods.get_opt("doomed").await.ok()? {
            None => Some(()),
            Some(p) => p.metadata.deletion_timestamp.is_some().then_some(()),
        }
    })
    .await;
    // The others were created before "doomed": had they been evicted, it would have happened.
    for name in ["tolerant", "clean-pod", "spared"] {
        let pod = pods.get_opt(name).await.unwrap().expect("pod exists");
        assert!(pod.metadata.deletion_timestamp.is_none(), "{name} was evicted");
    }
    controllers.cancel();
}
