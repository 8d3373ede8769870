//! Pods on simulated nodes against a real rudder API server: running and ready with an
//! address, completing, failing, crash-looping, readiness annotations.

mod common;

use std::net::Ipv4Addr;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Binding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use rudder_sim::Ipv4Cidr;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_pod_runs_ready_with_an_address_of_its_node() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let sim = start(&client, fast_config(2)).await;
    // The node IPAM controller's work, done by hand: sim-node-0 gets a podCIDR.
    let cidr = json!({ "spec": { "podCIDR": "10.99.3.0/24", "podCIDRs": ["10.99.3.0/24"] } });
    nodes(&client).patch("sim-node-0", &PatchParams::default(), &Patch::Merge(cidr)).await.unwrap();
    let want: Ipv4Cidr = "10.99.3.0/24".parse().unwrap();
    eventually("the simulator sees the podCIDR", || async {
        (sim.pod_cidr("sim-node-0").unwrap() == want).then_some(())
    })
    .await;

    // One pod created bound, one bound through pods/binding like the scheduler does.
    create_pod(&client, pod("direct", Some("sim-node-0"), "Always", json!({}))).await;
    create_pod(&client, pod("scheduled", None, "Always", json!({}))).await;
    let binding: Binding = serde_json::from_value(json!({
        "metadata": { "name": "scheduled" }, "target": { "kind": "Node", "name": "sim-node-1" }
    }))
    .unwrap();
    pods(&client)
        .create_subresource::<_, serde_json::Value>(
            "binding",
            "scheduled",
            &PostParams::default(),
            &binding,
        )
        .await
        .unwrap();

    for (name, node_ip, cidr) in [
        ("direct", "198.18.0.1", want),
        ("scheduled", "198.18.0.2", "10.42.1.0/24".parse().unwrap()), // no podCIDR: carved
    ] {
        let p = eventually(&format!("{name} ready"), || async {
            let p = pods(&client).get(name).await.ok()?;
            (phase(&p) == Some("Running") && rudder_client::objects::pod_is_ready(&p)).then_some(p)
        })
        .await;
        let status = p.status.as_ref().unwrap();
        let ip: Ipv4Addr = status.pod_ip.as_deref().unwrap().parse().unwrap();
        assert!(cidr.contains(ip), "{name}: {ip} not in {cidr}");
        assert_eq!(status.pod_ips.as_ref().unwrap()[0].ip, ip.to_string());
        assert_eq!(status.host_ip.as_deref(), Some(node_ip));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        assert!(status.start_time.is_some());
        for t in
            ["PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"]
        {
            let c = condition(&p, t).unwrap_or_else(|| panic!("{name}: no {t}"));
            assert_eq!(c.status, "True", "{name}: {t}");
            assert!(c.last_transition_time.is_some());
        }
        let cs = status.container_statuses.as_ref().unwrap();
        assert_eq!(cs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let uid = p.metadata.uid.as_deref().unwrap();
        assert_eq!(cs[0].image, "nginx:1.27");
        assert_eq!(cs[0].image_id, "sim://nginx:1.27");
        assert_eq!(cs[0].container_id.as_deref(), Some(format!("sim://{uid}-a").as_str()));
        assert!(cs.iter().all(|c| c.ready && c.started == Some(true) && c.restart_count == 0));
        assert!(cs[0].state.as_ref().unwrap().running.as_ref().unwrap().started_at.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_to_completion_pods_succeed_or_fail_by_exit_code() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let _sim = start(&client, fast_config(1)).await;
    let node = Some("sim-node-0");
    create_pod(&client, pod("done", node, "Never", json!({}))).await;
    create_pod(&client, pod("onfailure-zero", node, "OnFailure", json!({}))).await;
    create_pod(
        &client,
        pod(
            "broken",
            node,
            "Never",
            json!({ "sim.rudder.dev/exit-after-ms": "100", "sim.rudder.dev/exit-code": "3" }),
        ),
    )
    .await;

    for name in ["done", "onfailure-zero"] {
        let p = wait_phase(&client, name, "Succeeded").await;
        let ready = condition(&p, "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("PodCompleted"))
        );
        for c in p.status.as_ref().unwrap().container_statuses.as_ref().unwrap() {
            let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
            assert_eq!(
                (t.exit_code, t.reason.as_deref()),
                (0, Some("Completed")),
                "{name}/{}",
                c.name
            );
            assert!(!c.ready);
        }
    }
    let p = wait_phase(&client, "broken", "Failed").await;
    for c in p.status.as_ref().unwrap().container_statuses.as_ref().unwrap() {
        let t = c.state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
        assert_eq!(c.restart_count, 0);
    }
    assert_eq!(condition(&p, "Ready").unwrap().status, "False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_pod_that_exits_crash_loops() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let _sim = start(&client, fast_config(1)).await;
    let annotations =
        json!({ "sim.rudder.dev/exit-after-ms": "100", "sim.rudder.dev/exit-code": "2" });
    create_pod(&client, pod("crasher", Some("sim-node-0"), "Always", annotations)).await;

    // Every status the simulator writes is a watch event: collect what a client sees.
    let config = watcher::Config::default().fields("metadata.name=crasher");
    let stream = watcher::watcher(pods(&client), config);
    futures::pin_mut!(stream);
    let (mut back_off, mut restarted_with_last_state, mut not_ready_while_down) =
        (false, false, false);
    let mut max_restarts = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !(back_off && restarted_with_last_state && not_ready_while_down && max_restarts >= 3) {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("crash loop seen in time")
            .expect("watch goes on")
            .expect("watch works");
        let (Event::Apply(p) | Event::InitApply(p)) = event else { continue };
        let Some(c) = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.first().cloned())
        else {
            continue;
        };
        assert_eq!(phase(&p), Some("Running"), "an Always pod stays Running");
        max_restarts = max_restarts.max(c.restart_count);
        if let Some(t) = c.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
            assert_eq!((t.exit_code, t.reason.as_deref()), (2, Some("Error")));
            restarted_with_last_state |= c.restart_count >= 1;
        }
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && w.reason.as_deref() == Some("CrashLoopBackOff")
        {
            back_off = true;
            assert!(w.message.as_deref().unwrap().starts_with("back-off "), "{w:?}");
            assert!(!c.ready);
            let ready = condition(&p, "Ready").unwrap();
            not_ready_while_down |=
                ready.status == "False" && ready.reason.as_deref() == Some("ContainersNotReady");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_annotations() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let _sim = start(&client, fast_config(1)).await;
    let node = Some("sim-node-0");
    create_pod(
        &client,
        pod("slow", node, "Always", json!({ "sim.rudder.dev/ready-after-ms": "400" })),
    )
    .await;
    create_pod(
        &client,
        pod("never", node, "Always", json!({ "sim.rudder.dev/not-ready": "true" })),
    )
    .await;

    // Every status write is a watch event: the pod is seen Running but not Ready, then Ready.
    let config = watcher::Config::default().fields("metadata.name=slow");
    let stream = watcher::watcher(pods(&client), config);
    futures::pin_mut!(stream);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let mut seen_unready = false;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("slow pod ready in time")
            .expect("watch goes on")
            .expect("watch works");
        let (Event::Apply(p) | Event::InitApply(p)) = event else { continue };
        if phase(&p) != Some("Running") {
            continue;
        }
        if rudder_client::objects::pod_is_ready(&p) {
            break;
        }
        let ready = condition(&p, "Ready").unwrap();
        assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
        seen_unready = true;
    }
    assert!(seen_unready, "the pod was never seen running but not ready");

    let never = wait_phase(&client, "never", "Running").await;
    let ready = condition(&never, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("ContainersNotReady"))
    );
    // Removing the annotation makes it ready.
    let patch = json!({ "metadata": { "annotations": { "sim.rudder.dev/not-ready": null } } });
    pods(&client).patch("never", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    eventually("pod ready once the annotation is gone", || async {
        let p = pods(&client).get("never").await.ok()?;
        rudder_client::objects::pod_is_ready(&p).then_some(())
    })
    .await;
}
