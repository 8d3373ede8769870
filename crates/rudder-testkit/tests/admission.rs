//! The API server's admission steps as a client sees them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::Api;
use kube::api::PostParams;
use rudder_testkit::TestCluster;

fn pod(name: &str, extra_spec: serde_json::Value) -> Pod {
    let mut spec = serde_json::json!({ "containers": [{ "name": "c", "image": "busybox" }] });
    spec.as_object_mut().unwrap().extend(extra_spec.as_object().unwrap().clone());
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_priority_comes_from_its_priority_class() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let classes: Api<PriorityClass> = Api::all(client);
    let pp = PostParams::default();

    // Built-in classes exist; no class and no default -> 0.
    let critical = classes.get("system-cluster-critical").await.unwrap();
    assert_eq!(critical.value, 2_000_000_000);
    let plain = pods.create(&pp, &pod("plain", serde_json::json!({}))).await.unwrap();
    let spec = plain.spec.unwrap();
    assert_eq!(spec.priority, Some(0));
    assert_eq!(spec.preemption_policy.as_deref(), Some("PreemptLowerPriority"));

    let high: PriorityClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": { "name": "high" }, "value": 1000, "preemptionPolicy": "Never",
    }))
    .unwrap();
    classes.create(&pp, &high).await.unwrap();
    let p = pods
        .create(&pp, &pod("important", serde_json::json!({ "priorityClassName": "high" })))
        .await
        .unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(1000));
    assert_eq!(spec.preemption_policy.as_deref(), Some("Never"));

    // An unknown class is refused with upstream's 403.
    let err = pods
        .create(&pp, &pod("lost", serde_json::json!({ "priorityClassName": "nope" })))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert!(s.message.contains("no PriorityClass with name nope was found"), "{}", s.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    // A priority that disagrees with the class is refused too.
    let err = pods
        .create(&pp, &pod("liar", serde_json::json!({ "priorityClassName": "high", "priority": 5 })))
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403), "priority mismatch accepted");

    // A globalDefault class applies to pods without a class.
    let default: PriorityClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": { "name": "everyone" }, "value": 7, "globalDefault": true,
    }))
    .unwrap();
    classes.create(&pp, &default).await.unwrap();
    let p = pods.create(&pp, &pod("defaulted", serde_json::json!({}))).await.unwrap();
    let spec = p.spec.unwrap();
    assert_eq!(spec.priority, Some(7));
    assert_eq!(spec.priority_class_name.as_deref(), Some("everyone"));
}
