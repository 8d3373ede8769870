//! The garbage collector against a real API server: background, foreground and orphan
//! propagation.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_controllers::garbagecollector::{self, GarbageCollectorConfig};
use serde_json::json;

static TEMPLATE: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
    json!({
        "metadata": { "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    })
});

fn start_gc(client: &kube::Client) -> tokio_util::sync::CancellationToken {
    let client = client.clone();
    spawn(move |cancel| async move {
        let ctx = Context::new(client, cancel.clone());
        let config = GarbageCollectorConfig { workers: 4, ..GarbageCollectorConfig::default() };
        garbagecollector::run(ctx, config, cancel).await;
    })
}

/// Returns once the collector has seen every pod created in `ns` before the call: a barrier
/// pod whose owner never existed is created after them, and the collector, which sees one
/// resource's changes in order, deletes it.
async fn collector_has_seen_pods(client: &kube::Client, ns: &str) {
    let never = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "never-existed".into(),
        uid: "0d1c0a5e-0000-4000-8000-000000000000".into(),
        controller: None,
        block_owner_deletion: None,
    };
    pod(client, ns, "collector-barrier", vec![never], &[]).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    eventually("the barrier pod collected", || async {
        gone(&pods, "collector-barrier").await.then_some(())
    })
    .await;
}

fn uids(refs: &Option<Vec<OwnerReference>>) -> Vec<String> {
    refs.iter().flatten().map(|r| r.uid.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_deletes_dependents_and_drops_dangling_references() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "gc").await;
    let gc = start_gc(&client);

    let owner = config_map(&client, "gc", "owner", vec![], &[]).await;
    let other = config_map(&client, "gc", "other", vec![], &[]).await;
    pod(&client, "gc", "p1", vec![owner_reference(&owner, true)], &[]).await;
    pod(&client, "gc", "p2", vec![owner_reference(&owner, false)], &[]).await;
    config_map(&client, "gc", "dep", vec![owner_reference(&owner, false)], &[]).await;
    config_map(
        &client,
        "gc",
        "shared",
        vec![owner_reference(&owner, false), owner_reference(&other, false)],
        &[],
    )
    .await;
    // Same name as a live owner, another uid: that owner is gone.
    let mut stale = owner_reference(&other, false);
    stale.uid = "7d0e1f6c-0000-4000-8000-000000000001".into();
    config_map(&client, "gc", "stale", vec![stale], &[]).await;
    // An owner that never existed.
    let mut ghost = owner_reference(&other, false);
    ghost.name = "ghost".into();
    ghost.uid = "7d0e1f6c-0000-4000-8000-000000000002".into();
    config_map(&client, "gc", "haunted", vec![ghost], &[]).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "gc");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gc");
    // Objects with live owners stay while the collector has seen everything.
    eventually("the object with a stale owner reference to go", || async {
        gone(&cms, "stale").await.then_some(())
    })
    .await;
    eventually("the object with a never-existing owner to go", || async {
        gone(&cms, "haunted").await.then_some(())
    })
    .await;
    assert!(pods.get_opt("p1").await.unwrap().is_some(), "p1's owner lives");
    assert!(cms.get_opt("dep").await.unwrap().is_some(), "dep's owner lives");

    cms.delete("owner", &DeleteParams::background()).await.unwrap();
    // Owners of other groups and cluster-scoped owners.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "gc");
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), "gc");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "web" },
        "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": TEMPLATE.clone() },
    }))
    .unwrap();
    let deployment = deployments.create(&PostParams::default(), &deployment).await.unwrap();
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "web-1", "ownerReferences": [owner_reference(&deployment, true)] },
        "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": TEMPLATE.clone() },
    }))
    .unwrap();
    let rs = replicasets.create(&PostParams::default(), &rs).await.unwrap();
    pod(&client, "gc", "web-1-a", vec![owner_reference(&rs, true)], &[]).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1" } })).unwrap();
    let node = nodes.create(&PostParams::default(), &node).await.unwrap();
    config_map(&client, "gc", "node-info", vec![owner_reference(&node, false)], &[]).await;
    deployments.delete("web", &DeleteParams::background()).await.unwrap();
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    eventually("the deployment's replicaset and its pod to be collected", || async {
        (gone(&replicasets, "web-1").await && gone(&pods, "web-1-a").await).then_some(())
    })
    .await;
    eventually("the node's configmap to be collected", || async {
        gone(&cms, "node-info").await.then_some(())
    })
    .await;

    for name in ["p1", "p2"] {
        eventually(&format!("pod {name} to be collected"), || async {
            gone(&pods, name).await.then_some(())
        })
        .await;
    }
    eventually("configmap dep to be collected", || async { gone(&cms, "dep").await.then_some(()) })
        .await;
    let other_uid = other.metadata.uid.clone().unwrap();
    eventually("the dangling reference of shared to be removed", || async {
        let shared = cms.get("shared").await.ok()?;
        (uids(&shared.metadata.owner_references) == [other_uid.clone()]).then_some(())
    })
    .await;
    assert!(cms.get_opt("other").await.unwrap().is_some());
    gc.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "fg").await;
    let gc = start_gc(&client);

    let owner = config_map(&client, "fg", "owner", vec![], &[]).await;
    // A blocking dependent that stays (its own finalizer) until the test lets it go.
    pod(&client, "fg", "blocker", vec![owner_reference(&owner, true)], &["example.com/hold"]).await;
    pod(&client, "fg", "free", vec![owner_reference(&owner, false)], &[]).await;
    // A dependent with a dependent of its own.
    let mid = config_map(&client, "fg", "mid", vec![owner_reference(&owner, true)], &[]).await;
    pod(&client, "fg", "leaf", vec![owner_reference(&mid, true)], &[]).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "fg");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "fg");
    cms.delete("owner", &DeleteParams::foreground()).await.unwrap();

    eventually("the non-blocking dependent to go", || async {
        gone(&pods, "free").await.then_some(())
    })
    .await;
    eventually("the chain below the owner to go", || async {
        (gone(&pods, "leaf").await && gone(&cms, "mid").await).then_some(())
    })
    .await;
    eventually("the blocker to be marked for deletion", || async {
        pods.get("blocker").await.ok()?.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let waiting = cms.get("owner").await.expect("the owner waits for its blocking dependent");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(waiting.metadata.finalizers.iter().flatten().any(|f| f == "foregroundDeletion"));

    // Let the blocker go: the owner follows.
    let release = json!({ "metadata": { "finalizers": null } });
    pods.patch("blocker", &PatchParams::default(), &Patch::Merge(&release)).await.unwrap();
    eventually("the blocker to go", || async { gone(&pods, "blocker").await.then_some(()) }).await;
    eventually("the owner to go once its dependents are gone", || async {
        gone(&cms, "owner").await.then_some(())
    })
    .await;
    gc.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_keeps_dependents_without_the_reference() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "orphan").await;
    let gc = start_gc(&client);

    let owner = config_map(&client, "orphan", "owner", vec![], &[]).await;
    let other = config_map(&client, "orphan", "other", vec![], &[]).await;
    pod(&client, "orphan", "a", vec![owner_reference(&owner, true)], &[]).await;
    pod(&client, "orphan", "b", vec![owner_reference(&owner, false)], &[]).await;
    config_map(
        &client,
        "orphan",
        "c",
        vec![owner_reference(&owner, false), owner_reference(&other, false)],
        &[],
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "orphan");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "orphan");
    // Orphaning strips the references the collector knows of; a pod it has not seen yet
    // would keep its reference and be collected once the owner is gone (as upstream).
    collector_has_seen_pods(&client, "orphan").await;
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the orphaning owner to go", || async { gone(&cms, "owner").await.then_some(()) })
        .await;

    let owner_uid = owner.metadata.uid.clone().unwrap();
    for name in ["a", "b"] {
        let p = pods.get(name).await.unwrap_or_else(|e| panic!("pod {name} must live on: {e}"));
        assert!(
            !uids(&p.metadata.owner_references).contains(&owner_uid),
            "{name} still names the owner"
        );
        assert!(p.metadata.deletion_timestamp.is_none());
    }
    let c = cms.get("c").await.unwrap();
    assert_eq!(uids(&c.metadata.owner_references), [other.metadata.uid.clone().unwrap()]);
    gc.cancel();
}
