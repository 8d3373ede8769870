//! Both controllers against a real rudder API server, with the test playing the kubelet
//! (pod status written through pods/status): Endpoints and EndpointSlices follow pods,
//! labels, selectors, named ports, headless Services, many pods, and Service deletion.

mod common;

use std::collections::BTreeSet;

use common::{Env, eventually, strings};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Event, Node};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

const MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const HEADLESS: &str = "service.kubernetes.io/headless";

fn web_service() -> serde_json::Value {
    json!({
        "selector": { "app": "web" },
        "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_readiness_deletion_and_labels() {
    let env = Env::start().await;
    env.create_service("web", json!({ "team": "a" }), web_service()).await;
    env.create_pod("a", json!({ "app": "web" }), json!({}), "10.42.0.1", true).await;
    env.create_pod("b", json!({ "app": "web" }), json!({}), "10.42.0.2", false).await;
    env.create_pod("c", json!({ "app": "web" }), json!({}), "10.42.0.3", true).await;
    env.create_pod("x", json!({ "app": "other" }), json!({}), "10.42.0.9", true).await;
    env.expect_ips("web", &["10.42.0.1", "10.42.0.3"], &["10.42.0.2"]).await;

    // What the objects look like.
    let ep = env.endpoints().get("web").await.unwrap();
    let labels = ep.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(MANAGED_BY).map(String::as_str), Some("endpoint-controller"));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"));
    assert!(!labels.contains_key(HEADLESS));
    let annotations = ep.metadata.annotations.clone().unwrap_or_default();
    assert!(annotations.contains_key("endpoints.kubernetes.io/last-change-trigger-time"));
    let subset = &ep.subsets.as_ref().unwrap()[0];
    let port = &subset.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    let target = subset.addresses.as_ref().unwrap()[0].target_ref.clone().unwrap();
    assert_eq!((target.kind.as_deref(), target.name.as_deref()), (Some("Pod"), Some("a")));
    assert!(target.uid.is_some());
    let slices = env.slices_of("web").await;
    assert_eq!(slices.len(), 1);
    let slice = &slices[0];
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels[SLICE_MANAGED_BY], "endpointslice-controller.k8s.io");
    assert_eq!(labels["team"], "a");
    assert!(slice.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Service", "web"));
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    let b = slice.endpoints.iter().find(|e| e.addresses == ["10.42.0.2"]).unwrap();
    let c = b.conditions.clone().unwrap();
    assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(false), Some(false)));

    // Readiness flips.
    env.write_status("a", "10.42.0.1", false).await;
    env.write_status("b", "10.42.0.2", true).await;
    env.expect_ips("web", &["10.42.0.2", "10.42.0.3"], &["10.42.0.1"]).await;

    // Deletion.
    env.delete_pod("c").await;
    env.expect_ips("web", &["10.42.0.2"], &["10.42.0.1"]).await;

    // Label changes: b leaves, then x joins.
    env.set_labels("b", json!({ "app": "other" })).await;
    env.expect_ips("web", &[], &["10.42.0.1"]).await;
    env.set_labels("x", json!({ "app": "web" })).await;
    env.expect_ips("web", &["10.42.0.9"], &["10.42.0.1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selector_changes_and_removal() {
    let env = Env::start().await;
    // Endpoints a user manages for a Service without a selector: never touched.
    env.create_service("manual", json!({}), json!({ "ports": [{ "port": 80 }] })).await;
    let manual: Endpoints = serde_json::from_value(json!({
        "metadata": { "name": "manual" },
        "subsets": [{ "addresses": [{ "ip": "192.0.2.1" }], "ports": [{ "port": 80 }] }],
    }))
    .unwrap();
    let manual = env.endpoints().create(&PostParams::default(), &manual).await.unwrap();

    env.create_service("web", json!({}), web_service()).await;
    env.create_pod("a", json!({ "app": "web" }), json!({}), "10.42.0.1", true).await;
    env.create_pod("b", json!({ "app": "api" }), json!({}), "10.42.0.2", true).await;
    env.expect_ips("web", &["10.42.0.1"], &[]).await;

    env.patch_service("web", json!({ "spec": { "selector": { "app": "api" } } })).await;
    env.expect_ips("web", &["10.42.0.2"], &[]).await;

    // Without a selector the controllers' objects go.
    env.patch_service("web", json!({ "spec": { "selector": null } })).await;
    eventually("Endpoints web deleted", || async {
        env.endpoints().get_opt("web").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("EndpointSlices of web deleted", || async {
        env.slices_of("web").await.is_empty().then_some(())
    })
    .await;

    // Back to a selector: they come back.
    env.patch_service("web", json!({ "spec": { "selector": { "app": "web" } } })).await;
    env.expect_ips("web", &["10.42.0.1"], &[]).await;

    let now = env.endpoints().get("manual").await.unwrap();
    assert_eq!(now.metadata.resource_version, manual.metadata.resource_version);
    assert!(env.slices_of("manual").await.is_empty(), "no mirroring");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_target_ports_resolve_per_pod() {
    let env = Env::start().await;
    env.create_service(
        "web",
        json!({}),
        json!({
            "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "targetPort": "http" },
                { "name": "metrics", "port": 9100, "targetPort": 9100 },
            ],
        }),
    )
    .await;
    let ports = |n: i32| {
        json!({ "containers": [{ "name": "c", "image": "busybox",
        "ports": [{ "name": "http", "containerPort": n }] }] })
    };
    env.create_pod("a", json!({ "app": "web" }), ports(8080), "10.42.0.1", true).await;
    env.create_pod("b", json!({ "app": "web" }), ports(9090), "10.42.0.2", true).await;
    env.create_pod("c", json!({ "app": "web" }), json!({}), "10.42.0.3", true).await;
    // c has no port named http: it is listed for the numeric port only. Endpoints group
    // ports by the addresses offering them, slices group pods by the ports they resolve.
    eventually("Endpoints subsets per port", || async {
        let ep = env.endpoints().get_opt("web").await.unwrap()?;
        let mut seen: Vec<(Vec<i32>, Vec<String>)> = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| {
                let ports = s.ports.iter().flatten().map(|p| p.port).collect();
                (
                    ports,
                    strings(
                        &s.addresses.iter().flatten().map(|a| a.ip.as_str()).collect::<Vec<_>>(),
                    ),
                )
            })
            .collect();
        seen.sort();
        let want = vec![
            (vec![8080], strings(&["10.42.0.1"])),
            (vec![9090], strings(&["10.42.0.2"])),
            (vec![9100], strings(&["10.42.0.1", "10.42.0.2", "10.42.0.3"])),
        ];
        (seen == want).then_some(())
    })
    .await;
    eventually("slices per resolved port set", || async {
        let mut seen: Vec<(Vec<i32>, Vec<String>)> = env
            .slices_of("web")
            .await
            .iter()
            .map(|s| {
                let mut ports: Vec<i32> = s.ports.iter().flatten().filter_map(|p| p.port).collect();
                ports.sort();
                let ips = s.endpoints.iter().flat_map(|e| e.addresses.clone()).collect();
                (ports, ips)
            })
            .collect();
        seen.sort();
        let want = vec![
            (vec![8080, 9100], strings(&["10.42.0.1"])),
            (vec![9090, 9100], strings(&["10.42.0.2"])),
            (vec![9100], strings(&["10.42.0.3"])),
        ];
        (seen == want).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_service_with_hostnames_nodes_and_zones() {
    let env = Env::start().await;
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "n1", "labels": { "topology.kubernetes.io/zone": "zone-a" } },
    }))
    .unwrap();
    Api::<Node>::all(env.client.clone()).create(&PostParams::default(), &node).await.unwrap();
    env.create_service(
        "db",
        json!({ "team": "data" }),
        json!({ "clusterIP": "None", "selector": { "app": "db" } }),
    )
    .await;
    let spec = json!({ "hostname": "db-0", "subdomain": "db", "nodeName": "n1" });
    env.create_pod("db-0", json!({ "app": "db" }), spec, "10.42.0.5", true).await;
    env.expect_ips("db", &["10.42.0.5"], &[]).await;

    let ep = env.endpoints().get("db").await.unwrap();
    let ep_uid = ep.metadata.uid.clone();
    let labels = ep.metadata.labels.clone().unwrap();
    assert_eq!(labels.get(HEADLESS).map(String::as_str), Some(""));
    assert_eq!(labels.get("team").map(String::as_str), Some("data"));
    let subset = &ep.subsets.as_ref().unwrap()[0];
    assert!(
        subset.ports.as_ref().is_none_or(Vec::is_empty),
        "a headless Service may have no ports"
    );
    let address = &subset.addresses.as_ref().unwrap()[0];
    assert_eq!(address.hostname.as_deref(), Some("db-0"));
    assert_eq!(address.node_name.as_deref(), Some("n1"));

    let slices = env.slices_of("db").await;
    assert_eq!(slices.len(), 1);
    assert_eq!(
        slices[0].metadata.labels.as_ref().unwrap().get(HEADLESS).map(String::as_str),
        Some("")
    );
    let e = &slices[0].endpoints[0];
    assert_eq!(e.hostname.as_deref(), Some("db-0"));
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    assert_eq!(e.zone.as_deref(), Some("zone-a"));

    // Somebody else's slice for the Service is left alone; ours and the Endpoints come
    // back when deleted.
    let foreign: EndpointSlice = serde_json::from_value(json!({
        "metadata": { "name": "db-foreign", "labels": {
            "kubernetes.io/service-name": "db",
            SLICE_MANAGED_BY: "someone-else",
        }},
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["192.0.2.7"], "conditions": { "ready": true } }],
    }))
    .unwrap();
    let foreign = env.slices().create(&PostParams::default(), &foreign).await.unwrap();
    let ours = slices[0].metadata.name.clone().unwrap();
    env.slices().delete(&ours, &DeleteParams::default()).await.unwrap();
    env.endpoints().delete("db", &DeleteParams::default()).await.unwrap();
    eventually("our slice recreated", || async {
        let names: Vec<_> =
            env.slices_of("db").await.into_iter().filter_map(|s| s.metadata.name).collect();
        (names.len() == 2 && !names.contains(&ours)).then_some(())
    })
    .await;
    env.expect_ips("db", &["10.42.0.5"], &[]).await;
    let still = env.slices().get("db-foreign").await.unwrap();
    assert_eq!(still.metadata.resource_version, foreign.metadata.resource_version);
    eventually("Endpoints recreated", || async {
        let ep = env.endpoints().get_opt("db").await.unwrap()?;
        (ep.metadata.uid != ep_uid).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pods_fill_slices_of_100_and_service_deletion_removes_both() {
    let env = Env::start().await;
    let ips: Vec<String> = (0..250).map(|i| format!("10.42.{}.{}", i / 200, i % 200 + 1)).collect();
    futures::stream::iter(ips.iter().enumerate())
        .for_each_concurrent(16, |(i, ip)| {
            let env = &env;
            async move {
                env.create_pod(&format!("p{i}"), json!({ "app": "web" }), json!({}), ip, true)
                    .await;
            }
        })
        .await;
    // The Service comes once the controllers' pod cache holds every pod with its IP, so
    // that its first reconcile sees all of them: later arrivals would fill the slices
    // differently (as upstream's, the reconciler never rebalances slices).
    let pods = env.ctx.informers.get::<k8s_openapi::api::core::v1::Pod>();
    eventually("the pod cache holds the 250 pods", || async {
        let with_ip = pods
            .list_namespace("default")
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
            .count();
        (with_ip == 250).then_some(())
    })
    .await;
    env.create_service("web", json!({}), web_service()).await;
    let all: Vec<&str> = ips.iter().map(String::as_str).collect();
    env.expect_ips("web", &all, &[]).await;
    let slices = env.slices_of("web").await;
    let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    let names: BTreeSet<_> = slices.iter().map(|s| s.metadata.name.clone()).collect();
    assert_eq!(names.len(), 3);

    // Every write was conditional, yet none failed: the controllers never wrote from a
    // cache that lagged behind their own writes (no FailedToUpdate... warnings).
    let events = Api::<Event>::all(env.client.clone()).list(&ListParams::default()).await.unwrap();
    let warnings: Vec<_> = events
        .items
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| (e.reason.clone(), e.message.clone()))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");

    env.services().delete("web", &DeleteParams::default()).await.unwrap();
    eventually("Endpoints and EndpointSlices of web deleted", || async {
        let gone = env.endpoints().get_opt("web").await.unwrap().is_none()
            && env.slices_of("web").await.is_empty();
        gone.then_some(())
    })
    .await;
}
