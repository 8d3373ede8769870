//! Simulated nodes against a real rudder API server: registration, leases, stop/start, and
//! a restarted simulator taking its nodes and pods over.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Node;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rudder_sim::SimError;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_with_their_configuration_and_renew_leases() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let mut config = fast_config(3);
    config.add_label("team=search").unwrap();
    config.add_taint("dedicated=sim:NoSchedule").unwrap();
    config.set_capacity("cpu=8").unwrap();
    config.set_allocatable("cpu=7500m").unwrap();
    config.zones = vec!["zone-a".into(), "zone-b".into()];
    let sim = start(&client, config).await;
    assert_eq!(sim.node_names(), ["sim-node-0", "sim-node-1", "sim-node-2"]);
    assert_eq!(sim.registered(), 3);

    let listed = nodes(&client).list(&ListParams::default().labels("type=sim")).await.unwrap();
    assert_eq!(listed.items.len(), 3);
    for (i, node) in listed.items.iter().enumerate() {
        let name = format!("sim-node-{i}");
        assert_eq!(node.metadata.name.as_deref(), Some(name.as_str()));
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["team"], "search");
        assert_eq!(labels["topology.kubernetes.io/zone"], ["zone-a", "zone-b"][i % 2]);
        let taints = node.spec.as_ref().unwrap().taints.as_ref().unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            ("dedicated", "NoSchedule")
        );
        let status = node.status.as_ref().unwrap();
        let capacity = status.capacity.as_ref().unwrap();
        assert_eq!(capacity["cpu"].0, "8");
        assert_eq!(capacity["memory"].0, "16Gi");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(status.allocatable.as_ref().unwrap()["cpu"].0, "7500m");
        let ready = node_condition(node, "Ready").unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(ready.message.as_deref(), Some("kubelet is posting ready status"));
        for pressure in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(node_condition(node, pressure).unwrap().status, "False", "{pressure}");
        }
        let addresses = status.addresses.as_ref().unwrap();
        assert!(
            addresses
                .iter()
                .any(|a| a.type_ == "InternalIP" && a.address == format!("198.18.0.{}", i + 1))
        );
        assert!(addresses.iter().any(|a| a.type_ == "Hostname" && a.address == name));
        assert_eq!(status.node_info.as_ref().unwrap().kubelet_version, "v1.33.0");

        let lease = leases(&client).get(&name).await.unwrap();
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name.as_str()));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = &lease.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", name.as_str()));
        assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    }

    // Every lease is renewed: renewTime moves on.
    for name in sim.node_names() {
        let first = renew_time(&client, &name).await;
        eventually(&format!("lease of {name} renewed"), || async {
            (renew_time(&client, &name).await > first).then_some(())
        })
        .await;
    }
    assert!(matches!(sim.stop_node("nope"), Err(SimError::UnknownNode(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_goes_silent_and_comes_back_ready() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let sim = start(&client, fast_config(2)).await;
    let pp = PostParams::default();

    sim.stop_node("sim-node-0").unwrap();
    assert!(!sim.is_running("sim-node-0").unwrap());
    // A heartbeat already in flight may still land; after that nothing may.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped_at = renew_time(&client, "sim-node-0").await;
    let other_before = renew_time(&client, "sim-node-1").await;
    // A pod bound to the stopped node is not started.
    pods(&client)
        .create(&pp, &pod("frozen", Some("sim-node-0"), "Always", json!({})))
        .await
        .unwrap();
    // Negative check: five heartbeat intervals without a renewal (the running node renews).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        renew_time(&client, "sim-node-0").await,
        stopped_at,
        "stopped node renewed its lease"
    );
    assert!(
        renew_time(&client, "sim-node-1").await > other_before,
        "running node stopped renewing"
    );
    let frozen = pods(&client).get("frozen").await.unwrap();
    assert_eq!(phase(&frozen), Some("Pending"), "pod on a stopped node progressed");

    // What the node lifecycle controller does to a silent node: Ready=Unknown and a taint.
    let unknown = json!({ "status": { "conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
        "lastHeartbeatTime": stopped_at.0.to_string(), "lastTransitionTime": stopped_at.0.to_string()
    }]}});
    nodes(&client)
        .patch_status("sim-node-0", &PatchParams::default(), &Patch::Strategic(unknown))
        .await
        .unwrap();
    let taint = json!({ "spec": { "taints": [{ "key": "node.kubernetes.io/unreachable", "effect": "NoSchedule" }] } });
    nodes(&client)
        .patch("sim-node-0", &PatchParams::default(), &Patch::Merge(taint))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let node = nodes(&client).get("sim-node-0").await.unwrap();
    assert_eq!(
        node_condition(&node, "Ready").unwrap().status,
        "Unknown",
        "stopped node re-posted status"
    );

    sim.start_node("sim-node-0").unwrap();
    let node: Node = eventually("node Ready again", || async {
        let n = nodes(&client).get("sim-node-0").await.ok()?;
        let ready = node_condition(&n, "Ready")?;
        (ready.status == "True" && ready.reason.as_deref() == Some("KubeletReady")).then_some(n)
    })
    .await;
    let taints = node.spec.unwrap().taints.unwrap();
    assert_eq!(
        taints[0].key, "node.kubernetes.io/unreachable",
        "taints are the controller's business"
    );
    eventually("lease renewed again", || async {
        (renew_time(&client, "sim-node-0").await > stopped_at).then_some(())
    })
    .await;
    let running = wait_phase(&client, "frozen", "Running").await;
    assert_eq!(condition(&running, "Ready").unwrap().status, "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_simulator_takes_over_its_nodes_and_pods() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    // A Node that exists already (with a podCIDR and a label of someone else's).
    let existing: Node = serde_json::from_value(json!({
        "metadata": { "name": "sim-node-0", "labels": { "owner": "someone" } },
        "spec": { "podCIDR": "10.99.7.0/24" }
    }))
    .unwrap();
    nodes(&client).create(&PostParams::default(), &existing).await.unwrap();

    let sim = start(&client, fast_config(2)).await;
    let before = nodes(&client).get("sim-node-0").await.unwrap();
    let labels = before.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["owner"], "someone");
    assert_eq!(labels["type"], "sim");
    assert_eq!(before.spec.as_ref().unwrap().pod_cidr.as_deref(), Some("10.99.7.0/24"));
    assert_eq!(node_condition(&before, "Ready").unwrap().status, "True");
    create_pod(&client, pod("web", Some("sim-node-0"), "Always", json!({}))).await;
    let web = wait_phase(&client, "web", "Running").await;
    let ip = web.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(ip.starts_with("10.99.7."), "{ip}");
    sim.shutdown().await;

    let sim = start(&client, fast_config(2)).await;
    let all = nodes(&client).list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2, "no new Nodes");
    let after = nodes(&client).get("sim-node-0").await.unwrap();
    assert_eq!(after.metadata.uid, before.metadata.uid, "the same Node object");
    let first = renew_time(&client, "sim-node-0").await;
    eventually("lease renewed by the new process", || async {
        (renew_time(&client, "sim-node-0").await > first).then_some(())
    })
    .await;
    // The running pod is adopted as it is (same address, no restart), and its address is not
    // handed out again.
    create_pod(&client, pod("second", Some("sim-node-0"), "Always", json!({}))).await;
    let second = wait_phase(&client, "second", "Running").await;
    let web_now = pods(&client).get("web").await.unwrap();
    let status = web_now.status.as_ref().unwrap();
    assert_eq!(status.pod_ip.as_ref(), Some(&ip));
    assert_eq!(status.container_statuses.as_ref().unwrap()[0].restart_count, 0);
    assert_eq!(phase(&web_now), Some("Running"));
    let second_ip = second.status.unwrap().pod_ip.unwrap();
    assert!(second_ip.starts_with("10.99.7.") && second_ip != ip, "{second_ip} vs {ip}");
    drop(sim);
}
