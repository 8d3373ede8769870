//! The pod garbage collector against a real API server.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_controllers::podgc::{self, PodGcConfig};
use serde_json::json;

async fn node(client: &kube::Client, name: &str, ready: bool, out_of_service: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut spec = json!({});
    if out_of_service {
        spec["taints"] = json!([{ "key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute" }]);
    }
    let n: Node =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let status = json!({ "status": { "conditions": [{
        "type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "Test",
    }] } });
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

async fn pod_on(pods: &Api<Pod>, name: &str, node: &str, finalizers: &[&str], phase: &str) {
    let p: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "finalizers": finalizers },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let status = json!({ "status": { "phase": phase } });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_gone_or_out_of_service_nodes_and_surplus_terminated_pods_are_force_deleted() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "work").await;
    node(&client, "up", true, false).await;
    node(&client, "down", false, true).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "work");
    pod_on(&pods, "kept", "up", &[], "Running").await;
    pod_on(&pods, "orphan", "ghost", &[], "Running").await;
    pod_on(&pods, "orphan-held", "ghost", &["example.com/hold"], "Running").await;
    for name in ["done-a", "done-b", "done-c"] {
        pod_on(&pods, name, "up", &[], "Succeeded").await;
    }
    pod_on(&pods, "stuck", "down", &[], "Running").await;
    pod_on(&pods, "running-on-down", "down", &[], "Running").await;
    // A graceful deletion that no kubelet will finish.
    pods.delete("stuck", &DeleteParams::default()).await.unwrap();
    let stuck = pods.get("stuck").await.unwrap();
    assert_eq!(stuck.metadata.deletion_grace_period_seconds, Some(30));

    let controller = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            let config = PodGcConfig {
                terminated_pod_gc_threshold: 2,
                quarantine: Duration::from_secs(1),
                period: Duration::from_millis(100),
            };
            podgc::run(ctx, config, cancel).await;
        })
    };

    for name in ["orphan", "stuck", "done-a"] {
        eventually(&format!("{name} to be force-deleted"), || async {
            gone(&pods, name).await.then_some(())
        })
        .await;
    }
    // The held orphan was marked Failed (DisruptionTarget) and deleted; its finalizer holds it.
    let held = eventually("the held orphan to be marked and deleted", || async {
        let p = pods.get("orphan-held").await.ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    let status = held.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let condition = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(condition.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(condition.message.as_deref(), Some("PodGC: node no longer exists"));
    assert_eq!(held.metadata.deletion_grace_period_seconds, Some(0));

    for name in ["kept", "done-b", "done-c", "running-on-down"] {
        let p = pods.get(name).await.unwrap_or_else(|e| panic!("{name} kept: {e}"));
        assert!(p.metadata.deletion_timestamp.is_none(), "{name} not deleted");
    }
    controller.cancel();
}
