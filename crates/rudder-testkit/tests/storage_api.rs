//! Storage kinds in the API server: the bootstrapped `local-path` class, DefaultStorageClass
//! admission, PVC defaults, validation and immutability, PV validation.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use rudder_testkit::TestCluster;
use serde_json::{Value, json};

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

fn claim(name: &str, class: Option<&str>) -> PersistentVolumeClaim {
    let mut v = json!({
        "metadata": { "name": name },
        "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } },
    });
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_get_the_default_class_and_the_local_path_class_exists() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let classes: Api<StorageClass> = Api::all(client.clone());
    let local = classes.get("local-path").await.unwrap();
    assert_eq!(local.provisioner, "rudder.dev/local-path");
    assert_eq!(local.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(local.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
    assert_eq!(
        local.metadata.annotations.unwrap()["storageclass.kubernetes.io/is-default-class"],
        "true"
    );

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let c = claims.create(&PostParams::default(), &claim("plain", None)).await.unwrap();
    let spec = c.spec.unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("local-path"));
    assert_eq!(spec.volume_mode.as_deref(), Some("Filesystem"));
    assert_eq!(c.status.unwrap().phase.as_deref(), Some("Pending"));
    // An explicit "" means no class.
    let c = claims.create(&PostParams::default(), &claim("none", Some(""))).await.unwrap();
    assert_eq!(c.spec.unwrap().storage_class_name.as_deref(), Some(""));

    // Another default class (the newest default wins, unit-tested; here the only one);
    // without any default, claims get none.
    let off = json!({ "metadata": { "annotations": { "storageclass.kubernetes.io/is-default-class": "false" } } });
    classes.patch("local-path", &PatchParams::default(), &Patch::Merge(off.clone())).await.unwrap();
    let fast: StorageClass = serde_json::from_value(json!({
        "metadata": { "name": "fast", "annotations": { "storageclass.kubernetes.io/is-default-class": "true" } },
        "provisioner": "example.com/fast",
    }))
    .unwrap();
    let fast = classes.create(&PostParams::default(), &fast).await.unwrap();
    assert_eq!(fast.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(fast.volume_binding_mode.as_deref(), Some("Immediate"));
    let c = claims.create(&PostParams::default(), &claim("newest", None)).await.unwrap();
    assert_eq!(c.spec.unwrap().storage_class_name.as_deref(), Some("fast"));
    classes.patch("fast", &PatchParams::default(), &Patch::Merge(off)).await.unwrap();
    let c = claims.create(&PostParams::default(), &claim("classless", None)).await.unwrap();
    assert_eq!(c.spec.unwrap().storage_class_name, None);

    // A class's provisioner and parameters are immutable.
    let patch = json!({ "provisioner": "example.com/other" });
    let (code, message) = api_error(
        classes.patch("fast", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap_err(),
    );
    assert_eq!(code, 422, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_validated_and_their_spec_is_immutable_but_may_grow_and_bind() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let empty: PersistentVolumeClaim =
        serde_json::from_value(json!({ "metadata": { "name": "empty" }, "spec": {} })).unwrap();
    let (code, message) =
        api_error(claims.create(&PostParams::default(), &empty).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.accessModes: Required value: at least 1 access mode is required"),
        "{message}"
    );
    assert!(message.contains("spec.resources[storage]: Required value"), "{message}");

    claims.create(&PostParams::default(), &claim("c", None)).await.unwrap();
    let grow = json!({ "spec": { "resources": { "requests": { "storage": "2Gi" } }, "volumeName": "pv-1" } });
    let grown = claims.patch("c", &PatchParams::default(), &Patch::Merge(grow)).await.unwrap();
    assert_eq!(grown.spec.as_ref().unwrap().volume_name.as_deref(), Some("pv-1"));
    for (patch, what) in [
        (json!({ "spec": { "resources": { "requests": { "storage": "1Gi" } } } }), "shrink"),
        (json!({ "spec": { "accessModes": ["ReadWriteMany"] } }), "access modes"),
        (json!({ "spec": { "volumeName": "pv-2" } }), "rebind"),
        (json!({ "spec": { "storageClassName": "other" } }), "class"),
    ] {
        let (code, message) = api_error(
            claims.patch("c", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap_err(),
        );
        assert_eq!(code, 422, "{what}: {message}");
    }
    // A PUT of the original manifest (without the class the server filled in) is no change.
    let mut again = claim("c", None);
    let current = claims.get("c").await.unwrap();
    again.metadata.resource_version = current.metadata.resource_version.clone();
    again.spec.as_mut().unwrap().resources.as_mut().unwrap().requests =
        current.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.clone();
    again.spec.as_mut().unwrap().volume_name = Some("pv-1".into());
    claims.replace("c", &PostParams::default(), &again).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_need_one_source_a_capacity_and_access_modes() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = |spec: Value| -> PersistentVolume {
        serde_json::from_value(json!({ "metadata": { "name": "v" }, "spec": spec })).unwrap()
    };
    let (code, message) =
        api_error(volumes.create(&PostParams::default(), &pv(json!({}))).await.unwrap_err());
    assert_eq!(code, 422);
    for expected in [
        "spec.accessModes: Required value",
        "spec.capacity: Required value",
        "spec: Required value: must specify a volume type",
    ] {
        assert!(message.contains(expected), "{expected} in {message}");
    }
    let two = json!({
        "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
        "hostPath": { "path": "/tmp/x" }, "nfs": { "server": "s", "path": "/" },
    });
    let (code, message) =
        api_error(volumes.create(&PostParams::default(), &pv(two)).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("may not specify more than 1 volume type"), "{message}");
    let good = json!({
        "accessModes": ["ReadWriteOnce"], "capacity": { "storage": "1Gi" },
        "hostPath": { "path": "/tmp/x" },
    });
    let created = volumes.create(&PostParams::default(), &pv(good)).await.unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Retain"));
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));
}
