//! Node IPAM against a real API server.

mod common;

use std::collections::BTreeSet;

use common::*;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use rudder_client::Context;
use rudder_controllers::nodeipam::{self, NodeIpamConfig};
use serde_json::json;

async fn create_node(client: &kube::Client, name: &str, pod_cidr: Option<&str>) {
    let api: Api<Node> = Api::all(client.clone());
    let spec = match pod_cidr {
        Some(c) => json!({ "podCIDR": c, "podCIDRs": [c] }),
        None => json!({}),
    };
    let node: Node =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap();
    api.create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("create node {name}: {e}"));
}

fn start(client: &kube::Client, config: NodeIpamConfig) -> tokio_util::sync::CancellationToken {
    let client = client.clone();
    spawn(move |cancel| async move {
        let ctx = Context::new(client, cancel.clone());
        nodeipam::run(ctx, config, cancel).await;
    })
}

async fn pod_cidr(nodes: &Api<Node>, name: &str) -> Option<String> {
    let node = nodes.get(name).await.ok()?;
    let spec = node.spec?;
    let cidr = spec.pod_cidr.filter(|c| !c.is_empty())?;
    assert_eq!(spec.pod_cidrs.as_deref(), Some(std::slice::from_ref(&cidr)), "podCIDRs of {name}");
    Some(cidr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_cidrs_across_a_restart() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    for name in ["n1", "n2", "n3"] {
        create_node(&client, name, None).await;
    }
    let ipam = start(&client, NodeIpamConfig::default());
    let mut first = Vec::new();
    for name in ["n1", "n2", "n3"] {
        first.push(eventually(&format!("{name} to get a CIDR"), || pod_cidr(&nodes, name)).await);
    }
    let distinct: BTreeSet<&String> = first.iter().collect();
    assert_eq!(distinct.len(), 3, "{first:?}");
    for c in &first {
        assert!(c.starts_with("10.42.") && c.ends_with(".0/24"), "{c}");
    }
    ipam.cancel();

    // While it is down: a node that brings its own CIDR (the one that would be next) and one
    // without.
    create_node(&client, "n4", Some("10.42.3.0/24")).await;
    create_node(&client, "n5", None).await;
    let ipam = start(&client, NodeIpamConfig::default());
    let fifth = eventually("n5 to get a CIDR", || pod_cidr(&nodes, "n5")).await;
    assert!(!first.contains(&fifth) && fifth != "10.42.3.0/24", "{fifth} handed out twice");
    for (name, cidr) in ["n1", "n2", "n3"].iter().zip(&first) {
        assert_eq!(pod_cidr(&nodes, name).await.as_ref(), Some(cidr), "{name} kept its CIDR");
    }
    ipam.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_range_is_reported_and_released_cidrs_are_reused() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let config =
        NodeIpamConfig { cluster_cidr: "10.99.0.0/23".into(), node_cidr_mask_size: 24, workers: 1 };
    create_node(&client, "a", None).await;
    create_node(&client, "b", None).await;
    let ipam = start(&client, config);
    let a = eventually("a to get a CIDR", || pod_cidr(&nodes, "a")).await;
    eventually("b to get a CIDR", || pod_cidr(&nodes, "b")).await;
    create_node(&client, "c", None).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let event = eventually("a CIDRNotAvailable event for c", || async {
        let list =
            events.list(&ListParams::default().fields("involvedObject.name=c")).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("CIDRNotAvailable"))
    })
    .await;
    assert_eq!(event.message.as_deref(), Some("Node c status is now: CIDRNotAvailable"));
    assert_eq!(event.source.and_then(|s| s.component).as_deref(), Some("cidrAllocator"));
    assert_eq!(pod_cidr(&nodes, "c").await, None);

    nodes.delete("a", &DeleteParams::default()).await.unwrap();
    let c = eventually("c to get a's released CIDR", || pod_cidr(&nodes, "c")).await;
    assert_eq!(c, a);
    ipam.cancel();
}
