//! The namespace controller against a real API server.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_controllers::namespace::{self, NamespaceConfig};
use serde_json::json;

async fn create<K>(client: &kube::Client, ns: &str, value: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let obj: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {}: {e}", K::kind(&())));
}

async fn count<K>(client: &kube::Client, ns: &str) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or(usize::MAX)
}

fn condition(ns: &Namespace, type_: &str) -> Option<(String, String)> {
    let c = ns.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.message.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_its_content_and_reports_what_remains() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "doomed").await;
    create_namespace(&client, "kept").await;
    pod(&client, "doomed", "p", vec![], &[]).await;
    pod(&client, "kept", "p", vec![], &[]).await;
    config_map(&client, "doomed", "plain", vec![], &[]).await;
    config_map(&client, "doomed", "held", vec![], &["example.com/hold"]).await;
    create::<Secret>(
        &client,
        "doomed",
        json!({ "metadata": { "name": "s" }, "stringData": { "a": "b" } }),
    )
    .await;
    create::<Service>(
        &client,
        "doomed",
        json!({
            "metadata": { "name": "svc" },
            "spec": { "selector": { "app": "x" }, "ports": [{ "port": 80 }] },
        }),
    )
    .await;
    create::<Deployment>(
        &client,
        "doomed",
        json!({
            "metadata": { "name": "d" },
            "spec": {
                "selector": { "matchLabels": { "app": "x" } },
                "template": {
                    "metadata": { "labels": { "app": "x" } },
                    "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
                },
            },
        }),
    )
    .await;

    let controller = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            let config = NamespaceConfig {
                finalizer_estimate: Duration::from_secs(1),
                ..NamespaceConfig::default()
            };
            namespace::run(ctx, config, cancel).await;
        })
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();

    eventually("the namespace's content without finalizers to go", || async {
        let counts = [
            count::<Pod>(&client, "doomed").await,
            count::<Secret>(&client, "doomed").await,
            count::<Service>(&client, "doomed").await,
            count::<Deployment>(&client, "doomed").await,
        ];
        (counts == [0, 0, 0, 0]).then_some(())
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    assert!(gone(&cms, "plain").await);
    let held = cms.get("held").await.expect("the configmap with a finalizer stays");
    assert!(held.metadata.deletion_timestamp.is_some());
    let ns = eventually("conditions naming what remains", || async {
        let ns = namespaces.get("doomed").await.ok()?;
        let (status, _) = condition(&ns, "NamespaceFinalizersRemaining")?;
        (status == "True").then_some(ns)
    })
    .await;
    assert_eq!(
        condition(&ns, "NamespaceContentRemaining"),
        Some((
            "True".into(),
            "Some resources are remaining: configmaps. has 1 resource instances".into()
        ))
    );
    assert_eq!(
        condition(&ns, "NamespaceFinalizersRemaining"),
        Some((
            "True".into(),
            "Some finalizers are remaining: example.com/hold in 1 resource instances".into()
        ))
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionDiscoveryFailure").map(|c| c.0),
        Some("False".into())
    );
    assert_eq!(
        condition(&ns, "NamespaceDeletionContentFailure").map(|c| c.0),
        Some("False".into())
    );

    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "metadata": { "finalizers": null } })),
    )
    .await
    .unwrap();
    // Emptied, the namespace reports it (briefly) and is finalized away.
    eventually("the content removed and the namespace finalized", || async {
        match namespaces.get("doomed").await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(gone(&cms, "held").await);
    // Other namespaces are not touched.
    assert_eq!(count::<Pod>(&client, "kept").await, 1);
    assert!(namespaces.get("kept").await.unwrap().metadata.deletion_timestamp.is_none());
    controller.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_namespace_is_finalized_and_goes() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "doomed").await;
    pod(&client, "doomed", "p", vec![], &[]).await;
    config_map(&client, "doomed", "c", vec![], &[]).await;
    let controller = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            namespace::run(ctx, NamespaceConfig::default(), cancel).await;
        })
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    eventually("the namespace to go", || async { gone(&namespaces, "doomed").await.then_some(()) })
        .await;
    assert_eq!(count::<Pod>(&client, "doomed").await, 0);
    controller.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_waits_for_gracefully_deleted_pods() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    create_namespace(&client, "graceful").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "graceful");
    let bound: Pod = serde_json::from_value(json!({
        "metadata": { "name": "running" },
        "spec": { "nodeName": "n1", "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .unwrap();
    pods.create(&PostParams::default(), &bound).await.unwrap();
    let controller = {
        let client = client.clone();
        spawn(move |cancel| async move {
            let ctx = Context::new(client, cancel.clone());
            namespace::run(ctx, NamespaceConfig::default(), cancel).await;
        })
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.delete("graceful", &DeleteParams::default()).await.unwrap();

    // The pod is Terminating (its kubelet has not confirmed): the namespace waits and says so.
    let pod = eventually("the pod to be terminating", || async {
        let p = pods.get("running").await.ok()?;
        p.metadata.deletion_timestamp.is_some().then_some(p)
    })
    .await;
    assert_eq!(pod.metadata.deletion_grace_period_seconds, Some(30));
    eventually("the remaining pod to be reported", || async {
        let ns = namespaces.get("graceful").await.ok()?;
        let (status, message) = condition(&ns, "NamespaceContentRemaining")?;
        (status == "True" && message.contains("pods. has 1 resource instances")).then_some(())
    })
    .await;
    assert!(namespaces.get_opt("graceful").await.unwrap().is_some());

    // The kubelet's final delete: grace 0 with the uid as precondition.
    let uid = pod.metadata.uid.clone().unwrap();
    let params = DeleteParams::default()
        .grace_period(0)
        .preconditions(kube::api::Preconditions { uid: Some(uid), resource_version: None });
    pods.delete("running", &params).await.unwrap();
    eventually("the namespace to go", || async {
        gone(&namespaces, "graceful").await.then_some(())
    })
    .await;
    controller.cancel();
}
