//! The StatefulSet controller against a real rudder API server, with a simulated node.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{
    claims, create_set, events, is_ready, label, namespace, patch_set, pod_names, pods, sets,
    start, wait_event, wait_for, wait_settled,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::{Value, json};

const SEED_STS: &str =
    include_str!("../../rudder/tests/fixtures/seeds/021-statefulset-sts-example.yaml");
const SEED_SVC: &str = include_str!("../../rudder/tests/fixtures/seeds/022-service-app.yaml");

/// Seed 021 as JSON (the workspace has no YAML parser); `seed_matches_the_fixture` keeps the
/// two together.
fn seed_sts() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": { "name": "sts-example" },
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 3,
            "selector": { "matchLabels": { "app": "stateful" } },
            "serviceName": "app",
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
            "template": {
                "metadata": { "labels": { "app": "stateful" } },
                "spec": {
                    "containers": [{
                        "name": "nginx",
                        "image": "nginx:stable-alpine",
                        "ports": [{ "containerPort": 80 }],
                        "volumeMounts": [{ "name": "www", "mountPath": "/usr/share/nginx/html" }]
                    }]
                }
            },
            "volumeClaimTemplates": [{
                "metadata": { "name": "www" },
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "standard",
                    "resources": { "requests": { "storage": "1Gi" } }
                }
            }]
        }
    })
}

/// Seed 022 as JSON.
fn seed_svc() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "name": "app" },
        "spec": {
            "clusterIP": "None",
            "selector": { "app": "stateful" },
            "ports": [{ "protocol": "TCP", "port": 80, "targetPort": 80 }]
        }
    })
}

#[test]
fn seed_matches_the_fixture() {
    for line in [
        "kind: StatefulSet",
        "  name: sts-example",
        "  replicas: 2",
        "  revisionHistoryLimit: 3",
        "      app: stateful",
        "  serviceName: app",
        "      partition: 0",
        "        image: nginx:stable-alpine",
        "        - name: www",
        "          mountPath: /usr/share/nginx/html",
        "      storageClassName: standard",
        "          storage: 1Gi",
    ] {
        assert!(SEED_STS.lines().any(|l| l == line), "seed 021 has no line {line:?}");
    }
    for line in ["  name: app", "  clusterIP: None", "    app: stateful", "    targetPort: 80"] {
        assert!(SEED_SVC.lines().any(|l| l == line), "seed 022 has no line {line:?}");
    }
}

async fn create_service(client: &Client, ns: &str) {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &serde_json::from_value(seed_svc()).unwrap())
        .await
        .expect("create headless service");
}

/// Records, from one pod watch (events in resourceVersion order), whether `first` was Ready
/// when `second` first appeared. Returns once the watch has listed (so it sees every change
/// that follows).
async fn watch_order(
    client: &Client,
    ns: &str,
    first: &str,
    second: &str,
) -> Arc<Mutex<Option<bool>>> {
    let seen = Arc::new(Mutex::new(None));
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let mut listed_tx = Some(listed_tx);
    let (client, ns, first, second) =
        (client.clone(), ns.to_owned(), first.to_owned(), second.to_owned());
    let out = seen.clone();
    tokio::spawn(async move {
        let api: Api<Pod> = Api::namespaced(client, &ns);
        let stream = watcher::watcher(api, watcher::Config::default());
        futures::pin_mut!(stream);
        let mut ready: BTreeMap<String, bool> = BTreeMap::new();
        while let Some(event) = stream.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                Ok(watcher::Event::InitDone) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                _ => continue,
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if name == second && !ready.contains_key(&second) {
                *out.lock().unwrap() = Some(ready.get(&first).copied().unwrap_or(false));
                return;
            }
            ready.insert(name, is_ready(&pod));
        }
    });
    tokio::time::timeout(common::DEADLINE, listed).await.expect("pod watch listed").unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_statefulset_is_ordered_with_stable_claims_across_scaling() {
    let h = start(false).await;
    let ns = "sts1";
    namespace(&h.client, ns).await;
    create_service(&h.client, ns).await;
    let order = watch_order(&h.client, ns, "sts-example-0", "sts-example-1").await;
    let set = create_set(&h.client, ns, seed_sts()).await;
    let uid = set.metadata.uid.clone().unwrap();
    let settled = wait_settled(&h.client, ns, "sts-example", 2).await;
    assert_eq!(*order.lock().unwrap(), Some(true), "sts-example-0 was Ready before -1 was made");
    let revision = settled.status.as_ref().unwrap().update_revision.clone().unwrap();
    assert!(revision.starts_with("sts-example-"), "{revision}");
    assert_eq!(settled.status.as_ref().unwrap().collision_count, Some(0));

    // Identity, DNS names and claims.
    let mut claim_uids = BTreeMap::new();
    for ordinal in 0..2 {
        let name = format!("sts-example-{ordinal}");
        let pod = pods(&h.client, ns).get(&name).await.unwrap();
        assert_eq!(label(&pod, "statefulset.kubernetes.io/pod-name"), name);
        assert_eq!(label(&pod, "apps.kubernetes.io/pod-index"), ordinal.to_string());
        assert_eq!(label(&pod, "controller-revision-hash"), revision);
        assert_eq!(label(&pod, "app"), "stateful");
        let spec = pod.spec.clone().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("app"));
        let claim_name = format!("www-sts-example-{ordinal}");
        let volume = spec.volumes.unwrap().into_iter().find(|v| v.name == "www").unwrap();
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, claim_name);
        let owner = &pod.metadata.owner_references.clone().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("StatefulSet", uid.as_str(), Some(true))
        );
        let claim = claims(&h.client, ns).get(&claim_name).await.unwrap();
        assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "stateful");
        let cs = claim.spec.clone().unwrap();
        assert_eq!(cs.storage_class_name.as_deref(), Some("standard"));
        assert_eq!(cs.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
        assert!(claim.metadata.owner_references.is_none(), "Retain: the claim has no owner");
        claim_uids.insert(claim_name, claim.metadata.uid.unwrap());
        wait_event(
            &h.client,
            ns,
            "sts-example",
            "SuccessfulCreate",
            &format!("create Pod {name} in StatefulSet sts-example successful"),
        )
        .await;
        wait_event(&h.client, ns, "sts-example", "SuccessfulCreate",
            &format!("create Claim www-sts-example-{ordinal} Pod {name} in StatefulSet sts-example success")).await;
    }

    // Scale down: -1 goes, its claim stays.
    patch_set(&h.client, ns, "sts-example", json!({ "spec": { "replicas": 1 } })).await;
    wait_settled(&h.client, ns, "sts-example", 1).await;
    assert_eq!(pod_names(&h.client, ns).await, vec!["sts-example-0"]);
    let kept =
        claims(&h.client, ns).get("www-sts-example-1").await.expect("claim outlives its pod");
    assert_eq!(kept.metadata.uid.as_ref(), claim_uids.get("www-sts-example-1"));
    wait_event(
        &h.client,
        ns,
        "sts-example",
        "SuccessfulDelete",
        "delete Pod sts-example-1 in StatefulSet sts-example successful",
    )
    .await;

    // Scale up: -1 comes back on the same claim.
    patch_set(&h.client, ns, "sts-example", json!({ "spec": { "replicas": 2 } })).await;
    wait_settled(&h.client, ns, "sts-example", 2).await;
    let pod = pods(&h.client, ns).get("sts-example-1").await.unwrap();
    let volume = pod.spec.unwrap().volumes.unwrap().into_iter().find(|v| v.name == "www").unwrap();
    assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "www-sts-example-1");
    let again = claims(&h.client, ns).get("www-sts-example-1").await.unwrap();
    assert_eq!(again.metadata.uid.as_ref(), claim_uids.get("www-sts-example-1"), "same claim");
    let all = claims(&h.client, ns).list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2);
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0].image.clone().unwrap_or_default()
}

async fn revisions(client: &Client, ns: &str) -> Vec<(String, i64)> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let mut out: Vec<(String, i64)> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap(), r.revision))
        .collect();
    out.sort_by_key(|r| r.1);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_partition_then_rollback() {
    let h = start(false).await;
    let ns = "sts2";
    namespace(&h.client, ns).await;
    create_service(&h.client, ns).await;
    let mut seed = seed_sts();
    seed["spec"]["replicas"] = json!(3);
    create_set(&h.client, ns, seed).await;
    let v1 = wait_settled(&h.client, ns, "sts-example", 3).await;
    let rev1 = v1.status.unwrap().current_revision.unwrap();

    // Partition 1: only ordinals 1 and 2 move to the new template.
    patch_set(
        &h.client,
        ns,
        "sts-example",
        json!({ "spec": {
        "updateStrategy": { "rollingUpdate": { "partition": 1 } },
        "template": { "spec": { "containers": [{ "name": "nginx", "image": "nginx:v2" }] } }
    } }),
    )
    .await;
    let set = wait_for("pods 1 and 2 updated", || async {
        let set = sets(&h.client, ns).get("sts-example").await.ok()?;
        let s = set.status.clone()?;
        let done = s.observed_generation == set.metadata.generation
            && s.updated_replicas == Some(2)
            && s.ready_replicas == Some(3)
            && s.update_revision.as_deref() != Some(rev1.as_str());
        done.then_some(set)
    })
    .await;
    let status = set.status.unwrap();
    let rev2 = status.update_revision.unwrap();
    assert_eq!(
        status.current_revision.as_deref(),
        Some(rev1.as_str()),
        "not complete below the partition"
    );
    assert_eq!(status.current_replicas, Some(1));
    let p0 = pods(&h.client, ns).get("sts-example-0").await.unwrap();
    assert_eq!(
        (image_of(&p0).as_str(), label(&p0, "controller-revision-hash")),
        ("nginx:stable-alpine", rev1.as_str())
    );
    for n in ["sts-example-1", "sts-example-2"] {
        let p = pods(&h.client, ns).get(n).await.unwrap();
        assert_eq!(
            (image_of(&p).as_str(), label(&p, "controller-revision-hash")),
            ("nginx:v2", rev2.as_str()),
            "{n}"
        );
    }
    assert_eq!(revisions(&h.client, ns).await, vec![(rev1.clone(), 1), (rev2.clone(), 2)]);

    // Partition 0: the rest follows and the update completes.
    patch_set(
        &h.client,
        ns,
        "sts-example",
        json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 0 } } } }),
    )
    .await;
    let done = wait_settled(&h.client, ns, "sts-example", 3).await;
    assert_eq!(done.status.unwrap().current_revision.as_deref(), Some(rev2.as_str()));
    let p0 = pods(&h.client, ns).get("sts-example-0").await.unwrap();
    assert_eq!(image_of(&p0), "nginx:v2");

    // `kubectl rollout undo`: the old revision's data as a strategic merge patch.
    let api: Api<ControllerRevision> = Api::namespaced(h.client.clone(), ns);
    let old = api.get(&rev1).await.unwrap();
    let data = old.data.unwrap().0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    sets(&h.client, ns)
        .patch("sts-example", &PatchParams::default(), &Patch::Strategic(&data))
        .await
        .expect("rollback patch");
    let back = wait_settled(&h.client, ns, "sts-example", 3).await;
    assert_eq!(
        back.status.unwrap().current_revision.as_deref(),
        Some(rev1.as_str()),
        "the old revision is reused"
    );
    for n in ["sts-example-0", "sts-example-1", "sts-example-2"] {
        assert_eq!(image_of(&pods(&h.client, ns).get(n).await.unwrap()), "nginx:stable-alpine");
    }
    assert_eq!(
        revisions(&h.client, ns).await,
        vec![(rev2, 2), (rev1, 3)],
        "renumbered, not copied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_makes_every_pod_at_once() {
    let h = start(false).await;
    let ns = "sts3";
    namespace(&h.client, ns).await;
    // Pods that never become ready: OrderedReady stops at the first, Parallel does not wait.
    let set = |name: &str, policy: &str| {
        let mut s = seed_sts();
        s["metadata"]["name"] = json!(name);
        s["spec"]["replicas"] = json!(3);
        s["spec"]["podManagementPolicy"] = json!(policy);
        s["spec"]["selector"]["matchLabels"]["app"] = json!(name);
        s["spec"]["template"]["metadata"] = json!({
            "labels": { "app": name },
            "annotations": { "sim.rudder.dev/not-ready": "true" }
        });
        s
    };
    create_set(&h.client, ns, set("ordered", "OrderedReady")).await;
    create_set(&h.client, ns, set("par", "Parallel")).await;
    wait_for("3 parallel pods running", || async {
        let list = pods(&h.client, ns).list(&ListParams::default().labels("app=par")).await.ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        (running.count() == 3).then_some(())
    })
    .await;
    let par = sets(&h.client, ns).get("par").await.unwrap();
    wait_for("par status", || async {
        let s = sets(&h.client, ns).get("par").await.ok()?.status?;
        (s.replicas == 3 && s.ready_replicas == Some(0)).then_some(())
    })
    .await;
    assert!(par.metadata.uid.is_some());
    let ordered =
        pods(&h.client, ns).list(&ListParams::default().labels("app=ordered")).await.unwrap();
    let names: Vec<String> = ordered.items.into_iter().filter_map(|p| p.metadata.name).collect();
    assert_eq!(names, vec!["ordered-0"], "OrderedReady waits for ordered-0 to be ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_delete_on_scale_down_deletes_the_claim() {
    let h = start(true).await;
    let ns = "sts4";
    namespace(&h.client, ns).await;
    let mut seed = seed_sts();
    seed["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({ "whenScaled": "Delete", "whenDeleted": "Retain" });
    create_set(&h.client, ns, seed).await;
    wait_settled(&h.client, ns, "sts-example", 2).await;
    let first = claims(&h.client, ns).get("www-sts-example-1").await.unwrap();

    patch_set(&h.client, ns, "sts-example", json!({ "spec": { "replicas": 1 } })).await;
    wait_for("www-sts-example-1 deleted", || async {
        match claims(&h.client, ns).get("www-sts-example-1").await {
            Err(kube::Error::Api(s)) if s.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
    wait_settled(&h.client, ns, "sts-example", 1).await;
    let kept =
        claims(&h.client, ns).get("www-sts-example-0").await.expect("ordinal 0 keeps its claim");
    assert!(kept.metadata.owner_references.is_none());

    // Scaling up makes a new claim.
    patch_set(&h.client, ns, "sts-example", json!({ "spec": { "replicas": 2 } })).await;
    wait_settled(&h.client, ns, "sts-example", 2).await;
    let second = claims(&h.client, ns).get("www-sts-example-1").await.unwrap();
    assert_ne!(second.metadata.uid, first.metadata.uid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_made_again() {
    let h = start(false).await;
    let ns = "sts5";
    namespace(&h.client, ns).await;
    let mut seed = seed_sts();
    seed["spec"]["replicas"] = json!(1);
    create_set(&h.client, ns, seed).await;
    wait_settled(&h.client, ns, "sts-example", 1).await;
    let old = pods(&h.client, ns).get("sts-example-0").await.unwrap();
    let patch = json!({ "status": { "phase": "Failed" } });
    pods(&h.client, ns)
        .patch_status("sts-example-0", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_event(
        &h.client,
        ns,
        "sts-example",
        "RecreatingFailedPod",
        &format!("StatefulSet {ns}/sts-example is recreating failed Pod sts-example-0"),
    )
    .await;
    wait_for("a new sts-example-0", || async {
        let p = pods(&h.client, ns).get("sts-example-0").await.ok()?;
        (p.metadata.uid != old.metadata.uid && is_ready(&p)).then_some(())
    })
    .await;
    wait_settled(&h.client, ns, "sts-example", 1).await;
    assert!(!events(&h.client, ns, "sts-example").await.is_empty());
}
