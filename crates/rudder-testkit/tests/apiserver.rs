//! API server behaviours controllers rely on, as a client sees them: admission, the
//! namespace finalize subresource, generateName, update rules (uid precondition, owner
//! references, podCIDR), EndpointSlice generations.

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
            assert!(
                s.message.contains("no PriorityClass with name nope was found"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    // A priority that disagrees with the class is refused too.
    let err = pods
        .create(
            &pp,
            &pod("liar", serde_json::json!({ "priorityClassName": "high", "priority": 5 })),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 403), "priority mismatch accepted");
    let err = pods
        .create(
            &pp,
            &pod("rebel", serde_json::json!({ "priorityClassName": "high", "preemptionPolicy": "PreemptLowerPriority" })),
        )
        .await
        .unwrap_err();
    let (code, message) = api_code(err);
    assert_eq!(code, 403);
    assert!(message.contains("the string value of PreemptionPolicy"), "{message}");

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

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_finalize_lets_a_terminating_namespace_go() {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "doomed" } })).unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    namespaces.delete("doomed", &Default::default()).await.unwrap();
    let terminating = namespaces.get("doomed").await.unwrap();
    assert_eq!(terminating.status.as_ref().unwrap().phase.as_deref(), Some("Terminating"));

    // New content is refused with the cause controllers look for.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "late" } })).unwrap();
    match cms.create(&PostParams::default(), &cm).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            let causes = s.details.unwrap().causes;
            assert_eq!(causes[0].reason, "NamespaceTerminating");
        }
        other => panic!("unexpected {other:?}"),
    }

    // PUT .../finalize with the kubernetes finalizer removed: the namespace goes.
    let mut body = terminating.clone();
    body.spec.as_mut().unwrap().finalizers = Some(vec![]);
    let req = http::Request::put("/api/v1/namespaces/doomed/finalize")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    let _: serde_json::Value = client.request(req).await.unwrap();
    let (code, _) = api_code(namespaces.get("doomed").await.unwrap_err());
    assert_eq!(code, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_check_uid_owner_references_and_pod_cidr() {
    use k8s_openapi::api::core::v1::{ConfigMap, Node};
    use kube::api::{Patch, PatchParams};
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "c" } })).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let pp = PatchParams::default();

    let wrong_uid = serde_json::json!({ "metadata": { "uid": "wrong", "labels": { "x": "y" } } });
    let (code, message) =
        api_code(cms.patch("c", &pp, &Patch::Merge(&wrong_uid)).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("metadata.uid"), "{message}");
    assert!(cms.get("c").await.unwrap().metadata.labels.is_none(), "patch applied anyway");

    let two = serde_json::json!({ "metadata": { "ownerReferences": [
        { "apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": "1", "controller": true },
        { "apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": "2", "controller": true },
    ] } });
    let (code, message) = api_code(cms.patch("c", &pp, &Patch::Merge(&two)).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("Only one reference can have Controller set to true"), "{message}");

    let nodes: Api<Node> = Api::all(client);
    let node: Node =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "n" } })).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let set = |cidr: &str| serde_json::json!({ "spec": { "podCIDR": cidr, "podCIDRs": [cidr] } });
    nodes.patch("n", &pp, &Patch::Merge(&set("10.42.3.0/24"))).await.unwrap();
    let (code, _) =
        api_code(nodes.patch("n", &pp, &Patch::Merge(&set("10.42.9.0/24"))).await.unwrap_err());
    assert_eq!(code, 422, "podCIDR changed once set");
    let node2: Node =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "m" } })).unwrap();
    nodes.create(&PostParams::default(), &node2).await.unwrap();
    let (code, _) =
        api_code(nodes.patch("m", &pp, &Patch::Merge(&set("bogus"))).await.unwrap_err());
    assert_eq!(code, 422, "bogus podCIDR accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_have_a_generation() {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::api::{Patch, PatchParams};
    let cluster = TestCluster::start().await;
    let slices: Api<EndpointSlice> = Api::namespaced(cluster.client(), "default");
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "s" }, "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.0.0.1"] }],
    }))
    .unwrap();
    let created = slices.create(&PostParams::default(), &slice).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let labels = serde_json::json!({ "metadata": { "labels": { "a": "b" } } });
    let same = slices.patch("s", &PatchParams::default(), &Patch::Merge(&labels)).await.unwrap();
    assert_eq!(same.metadata.generation, Some(1), "metadata change bumped the generation");
    let eps = serde_json::json!({ "endpoints": [{ "addresses": ["10.0.0.2"] }] });
    let bumped = slices.patch("s", &PatchParams::default(), &Patch::Merge(&eps)).await.unwrap();
    assert_eq!(bumped.metadata.generation, Some(2));
}

/// A name given with generateName is the name (upstream's rule): creating it again is 409
/// AlreadyExists, not a second object under a generated name. The StatefulSet controller
/// sends both and relies on that when a create is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_name_is_used_only_without_a_name() {
    let cluster = TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let pp = PostParams::default();
    let mut named = pod("web-0", serde_json::json!({}));
    named.metadata.generate_name = Some("web-".into());
    pods.create(&pp, &named).await.unwrap();
    match pods.create(&pp, &named).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("a taken name with generateName must be AlreadyExists: {other:?}"),
    }
    let mut generated = pod("", serde_json::json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("web-".into());
    let made = pods.create(&pp, &generated).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == "web-".len() + 5, "{name}");
    let names: Vec<String> = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
