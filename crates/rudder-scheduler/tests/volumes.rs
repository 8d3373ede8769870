//! The VolumeBinding filter against a real API server: claims that do not exist or are
//! unbound with an Immediate class keep pods pending (and creating or binding them wakes the
//! pods up), a bound claim's volume node affinity picks the node, and a WaitForFirstConsumer
//! claim lets the pod go anywhere.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use rudder_client::Context;
use rudder_scheduler::{Scheduler, SchedulerConfig};
use rudder_testkit::TestCluster;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

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

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("object JSON");
    api.create(&PostParams::default(), &obj).await.expect("create")
}

fn all<K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>>(
    client: &kube::Client,
) -> Api<K> {
    Api::all(client.clone())
}

fn default_ns<K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
    client: &kube::Client,
) -> Api<K> {
    Api::namespaced(client.clone(), "default")
}

async fn create_node(client: &kube::Client, name: &str) {
    let api: Api<Node> = Api::all(client.clone());
    let _: Node = create(
        &all(client),
        json!({
            "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } }
        }),
    )
    .await;
    let resources = json!({ "cpu": "4", "memory": "8Gi", "pods": "110" });
    let status = json!({ "capacity": resources, "allocatable": resources,
        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }] });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .expect("node status");
}

async fn pod_using(client: &kube::Client, name: &str, claim: &str) {
    let _: Pod = create(&default_ns(client), json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }],
                  "volumes": [{ "name": "v", "persistentVolumeClaim": { "claimName": claim } }] }
    }))
    .await;
}

fn claim(name: &str, class: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": "default" },
        "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                  "resources": { "requests": { "storage": "1Gi" } } }
    })
}

async fn node_of(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(&format!("pod {name} to be bound"), || async {
        api.get(name).await.ok()?.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await
}

async fn unschedulable_message(client: &kube::Client, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    wait_for(&format!("pod {name} to be reported unschedulable"), || async {
        let p = api.get(name).await.ok()?;
        let c = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then_some(c.message?)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_binding_filter() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let kubeconfig = cluster.component_kubeconfig("system:kube-scheduler", &[]);
    let own = rudder_client::client_from_kubeconfig_text(&kubeconfig).expect("client");
    let scheduler = Scheduler::new(
        Context::new(own, cancel.clone()),
        SchedulerConfig { rng_seed: Some(1), ..SchedulerConfig::default() },
    );
    let handle = scheduler.handle();
    let token = cancel.clone();
    tokio::spawn(async move { scheduler.run(token).await.expect("scheduler runs") });
    tokio::time::timeout(DEADLINE, handle.wait_synced()).await.expect("caches sync");
    create_node(&client, "n1").await;
    create_node(&client, "n2").await;
    let _: StorageClass = create(
        &all(&client),
        json!({
            "metadata": { "name": "wffc" }, "provisioner": "rudder.dev/local-path",
            "volumeBindingMode": "WaitForFirstConsumer"
        }),
    )
    .await;
    let _: StorageClass = create(
        &all(&client),
        json!({
            "metadata": { "name": "imm" }, "provisioner": "example.com/none",
            "volumeBindingMode": "Immediate"
        }),
    )
    .await;

    // A missing claim: unschedulable, until the claim appears.
    pod_using(&client, "early", "later").await;
    assert_eq!(
        unschedulable_message(&client, "early").await,
        "0/2 nodes are available: persistentvolumeclaim \"later\" not found. preemption: 0/2 \
         nodes are available: 2 Preemption is not helpful for scheduling.."
    );
    let _: PersistentVolumeClaim = create(&default_ns(&client), claim("later", "wffc")).await;
    node_of(&client, "early").await;

    // Unbound with an Immediate class: waits for the binder.
    let _: PersistentVolumeClaim = create(&default_ns(&client), claim("imm-claim", "imm")).await;
    pod_using(&client, "imm-pod", "imm-claim").await;
    let msg = unschedulable_message(&client, "imm-pod").await;
    assert!(
        msg.starts_with(
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        ),
        "{msg}"
    );

    // Bound to a volume pinned to n2: the pod goes to n2 (several times, to rule out luck).
    let _: PersistentVolume = create(&all(&client), json!({
        "metadata": { "name": "pinned" },
        "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                  "storageClassName": "imm", "hostPath": { "path": "/mnt/p" },
                  "claimRef": { "namespace": "default", "name": "imm-claim" },
                  "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                      { "key": "kubernetes.io/hostname", "operator": "In", "values": ["n2"] }] }] } } }
    }))
    .await;
    // Bind the claim by hand (what the binder does); the parked pod is woken by the change.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let mut c = claims.get("imm-claim").await.unwrap();
    c.spec.as_mut().unwrap().volume_name = Some("pinned".into());
    c.metadata
        .annotations
        .get_or_insert_default()
        .insert("pv.kubernetes.io/bind-completed".into(), "yes".into());
    claims.replace("imm-claim", &PostParams::default(), &c).await.expect("bind claim");
    assert_eq!(node_of(&client, "imm-pod").await, "n2");
    for i in 0..4 {
        let name = format!("more-{i}");
        pod_using(&client, &name, "imm-claim").await;
        assert_eq!(node_of(&client, &name).await, "n2");
    }
}
