//! The scheduler against a real rudder API server: Nodes are created by hand (status through
//! nodes/status), pods are created, and the tests wait (polling with a generous deadline)
//! for the bindings, conditions and events upstream's scheduler would produce.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_scheduler::{Scheduler, SchedulerConfig, SchedulerHandle};
use rudder_testkit::TestCluster;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

struct Env {
    _cluster: TestCluster,
    client: kube::Client,
    cancel: CancellationToken,
    handle: SchedulerHandle,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A cluster and a scheduler with its own identity, caches synced.
async fn start() -> Env {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let kubeconfig = cluster.component_kubeconfig("system:kube-scheduler", &[]);
    let scheduler_client =
        rudder_client::client_from_kubeconfig_text(&kubeconfig).expect("scheduler client");
    let ctx = Context::new(scheduler_client, cancel.clone());
    let scheduler =
        Scheduler::new(ctx, SchedulerConfig { rng_seed: Some(1), ..SchedulerConfig::default() });
    let handle = scheduler.handle();
    let token = cancel.clone();
    tokio::spawn(async move { scheduler.run(token).await.expect("scheduler runs") });
    tokio::time::timeout(DEADLINE, handle.wait_synced()).await.expect("scheduler caches sync");
    Env { _cluster: cluster, client, cancel, handle }
}

/// Polls `check` until it gives a value or the deadline passes.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct NodeSpec<'a> {
    name: &'a str,
    cpu: &'a str,
    labels: Value,
    taints: Value,
    ready: bool,
}

impl<'a> NodeSpec<'a> {
    fn new(name: &'a str, cpu: &'a str) -> Self {
        NodeSpec { name, cpu, labels: json!({}), taints: json!([]), ready: true }
    }
}

async fn create_node(client: &kube::Client, n: NodeSpec<'_>) {
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = n.labels.clone();
    labels["kubernetes.io/hostname"] = json!(n.name);
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": n.name, "labels": labels },
        "spec": { "taints": n.taints },
    }))
    .unwrap();
    api.create(&PostParams::default(), &node).await.expect("create node");
    let resources = json!({ "cpu": n.cpu, "memory": "8Gi", "pods": "110" });
    let mut status = json!({ "capacity": resources, "allocatable": resources });
    if n.ready {
        status["conditions"] =
            json!([{ "type": "Ready", "status": "True", "reason": "KubeletReady" }]);
    }
    api.patch_status(n.name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .expect("node status");
}

fn pod_json(name: &str, cpu: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": "default", "labels": {} },
        "spec": { "containers": [{ "name": "c", "image": "busybox",
                                   "resources": { "requests": { "cpu": cpu } } }] }
    })
}

async fn create_pod(client: &kube::Client, v: Value) -> Pod {
    let pod: Pod = serde_json::from_value(v).unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

async fn node_of(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(&format!("pod {name} to be bound"), || async {
        let p = api.get(name).await.ok()?;
        p.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await
}

/// Waits for PodScheduled=False/Unschedulable and returns its message.
async fn unschedulable_message(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(&format!("pod {name} to be reported unschedulable"), || async {
        let p = api.get(name).await.ok()?;
        let c = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then_some(c.message?)
    })
    .await
}

async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
    let list = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
    list.into_iter().filter(|e| e.reason.as_deref() == Some(reason)).collect()
}

async fn wait_event(client: &kube::Client, name: &str, reason: &str) -> Event {
    wait_for(&format!("{reason} event for {name}"), || async {
        events(client, name, reason).await.into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_pods_by_selector_taints_and_resources() {
    let env = start().await;
    let c = &env.client;
    create_node(c, NodeSpec { labels: json!({ "disk": "ssd" }), ..NodeSpec::new("small", "1") })
        .await;
    create_node(
        c,
        NodeSpec {
            taints: json!([{ "key": "dedicated", "value": "gpu", "effect": "NoSchedule" }]),
            ..NodeSpec::new("tainted", "8")
        },
    )
    .await;
    create_node(c, NodeSpec::new("big", "4")).await;
    create_node(c, NodeSpec { ready: false, ..NodeSpec::new("booting", "16") }).await;

    let mut other = pod_json("other-scheduler", "100m");
    other["spec"]["schedulerName"] = json!("my-scheduler");
    create_pod(c, other).await;
    let mut ssd = pod_json("ssd", "100m");
    ssd["spec"]["nodeSelector"] = json!({ "disk": "ssd" });
    create_pod(c, ssd).await;
    create_pod(c, pod_json("heavy", "3")).await;
    let mut gpu = pod_json("gpu", "100m");
    gpu["spec"]["nodeSelector"] = json!({ "kubernetes.io/hostname": "tainted" });
    gpu["spec"]["tolerations"] = json!([{ "key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule" }]);
    create_pod(c, gpu).await;
    let mut waiting = pod_json("waiting", "100m");
    waiting["spec"]["nodeSelector"] = json!({ "kubernetes.io/hostname": "booting" });
    create_pod(c, waiting).await;

    assert_eq!(node_of(c, "ssd").await, "small");
    assert_eq!(node_of(c, "heavy").await, "big", "only big has 3 cpu and no taint");
    assert_eq!(node_of(c, "gpu").await, "tainted");
    assert_eq!(
        unschedulable_message(c, "waiting").await,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had \
         untolerated taint {node.kubernetes.io/not-ready: }, 2 node(s) didn't match Pod's node \
         affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for \
         scheduling.."
    );
    let scheduled = wait_event(c, "ssd", "Scheduled").await;
    assert_eq!(scheduled.message.as_deref(), Some("Successfully assigned default/ssd to small"));
    assert_eq!(scheduled.type_.as_deref(), Some("Normal"));
    assert_eq!(scheduled.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));
    // Pods of other schedulers are left alone (its event came before the others').
    let other = Api::<Pod>::namespaced(c.clone(), "default").get("other-scheduler").await.unwrap();
    assert_eq!(other.spec.unwrap().node_name, None);
    assert!(other.status.and_then(|s| s.conditions).unwrap_or_default().is_empty());

    // The node becomes Ready: the waiting pod goes there.
    Api::<Node>::all(c.clone())
        .patch_status(
            "booting",
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "status": { "conditions": [{ "type": "Ready", "status": "True" }] } }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_of(c, "waiting").await, "booting");
    assert!(env.handle.stats().bound >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_spreads_replicas_over_nodes() {
    let env = start().await;
    let c = &env.client;
    for n in ["n1", "n2", "n3"] {
        create_node(c, NodeSpec::new(n, "4")).await;
    }
    let replica = |name: &str| {
        let mut p = pod_json(name, "100m");
        p["metadata"]["labels"] = json!({ "app": "web" });
        p["spec"]["affinity"] = json!({ "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [{
                "labelSelector": { "matchLabels": { "app": "web" } },
                "topologyKey": "kubernetes.io/hostname" }] } });
        p
    };
    for name in ["web-1", "web-2", "web-3", "web-4"] {
        create_pod(c, replica(name)).await;
    }
    let mut nodes = Vec::new();
    for name in ["web-1", "web-2", "web-3"] {
        nodes.push(node_of(c, name).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    assert_eq!(
        unschedulable_message(c, "web-4").await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: \
         0/3 nodes are available: 3 No preemption victims found for incoming pod.."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_waits_until_there_is_room() {
    let env = start().await;
    let c = &env.client;
    for n in ["n1", "n2", "n3"] {
        create_node(c, NodeSpec::new(n, "1")).await;
    }
    for name in ["fill-1", "fill-2", "fill-3"] {
        create_pod(c, pod_json(name, "700m")).await;
    }
    let mut filled = Vec::new();
    for name in ["fill-1", "fill-2", "fill-3"] {
        filled.push(node_of(c, name).await);
    }
    filled.sort();
    assert_eq!(filled, ["n1", "n2", "n3"], "700m twice fits no node");

    create_pod(c, pod_json("big", "500m")).await;
    let expected = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are \
                    available: 3 No preemption victims found for incoming pod..";
    assert_eq!(unschedulable_message(c, "big").await, expected);
    let event = wait_event(c, "big", "FailedScheduling").await;
    assert_eq!(event.message.as_deref(), Some(expected));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.source.and_then(|s| s.component).as_deref(), Some("default-scheduler"));

    // A node with just enough room arrives.
    create_node(c, NodeSpec::new("n4", "500m")).await;
    assert_eq!(node_of(c, "big").await, "n4");

    // Another pod fits nowhere until a bound pod goes away.
    create_pod(c, pod_json("waiting", "900m")).await;
    assert_eq!(
        unschedulable_message(c, "waiting").await,
        "0/4 nodes are available: 4 Insufficient cpu. preemption: 0/4 nodes are available: \
         1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.."
    );
    let freed = node_of(c, "fill-2").await;
    // No kubelet here: a force delete (grace 0) frees the room at once.
    let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    Api::<Pod>::namespaced(c.clone(), "default").delete("fill-2", &force).await.unwrap();
    assert_eq!(node_of(c, "waiting").await, freed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_pods_preempt_lower_priority_ones() {
    let env = start().await;
    let c = &env.client;
    let classes: Api<PriorityClass> = Api::all(c.clone());
    for (name, value, policy) in [
        ("low", 100, "PreemptLowerPriority"),
        ("high", 1000, "PreemptLowerPriority"),
        ("polite", 1000, "Never"),
    ] {
        let pc: PriorityClass = serde_json::from_value(json!({
            "metadata": { "name": name }, "value": value, "preemptionPolicy": policy
        }))
        .unwrap();
        classes.create(&PostParams::default(), &pc).await.expect("priority class");
    }
    create_node(c, NodeSpec::new("n1", "1")).await;
    let mut victim = pod_json("victim", "800m");
    victim["spec"]["priorityClassName"] = json!("low");
    // No kubelet here: grace 0 makes the preemption's delete take effect at once.
    victim["spec"]["terminationGracePeriodSeconds"] = json!(0);
    create_pod(c, victim).await;
    assert_eq!(node_of(c, "victim").await, "n1");

    let mut preemptor = pod_json("preemptor", "500m");
    preemptor["spec"]["priorityClassName"] = json!("high");
    let preemptor = create_pod(c, preemptor).await;
    assert_eq!(node_of(c, "preemptor").await, "n1");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    assert!(pods.get_opt("victim").await.unwrap().is_none(), "the victim was deleted");
    let preempted = wait_event(c, "victim", "Preempted").await;
    assert_eq!(
        preempted.message,
        Some(format!("Preempted by pod {} on node n1", preemptor.metadata.uid.unwrap()))
    );
    assert_eq!(env.handle.stats().preemptions, 1);

    // Same priority as the preemptor but preemptionPolicy Never: waits instead.
    let mut polite = pod_json("polite", "800m");
    polite["spec"]["priorityClassName"] = json!("polite");
    create_pod(c, polite).await;
    assert_eq!(
        unschedulable_message(c, "polite").await,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to \
         preemptionPolicy=Never.."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gated_pods_wait_for_their_gates() {
    let env = start().await;
    let c = &env.client;
    create_node(c, NodeSpec::new("n1", "1")).await;
    let mut gated = pod_json("gated", "100m");
    gated["spec"]["schedulingGates"] = json!([{ "name": "example.com/wait" }]);
    create_pod(c, gated).await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let reason = wait_for("the SchedulingGated condition", || async {
        let p = pods.get("gated").await.ok()?;
        let cond = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        cond.reason
    })
    .await;
    assert_eq!(reason, "SchedulingGated");
    pods.patch(
        "gated",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "schedulingGates": null } })),
    )
    .await
    .expect("remove the gates");
    assert_eq!(node_of(c, "gated").await, "n1");
}
