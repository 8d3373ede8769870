//! The ReplicaSet and ReplicationController controllers against a real rudder API server.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::{
    Controllers, is_ready, mark_ready, name, namespace, pods, readier, start, wait_event, wait_for,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use rudder_client::ManualClock;
use serde_json::{Value, json};

const ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

fn replica_set(name: &str, replicas: i32, app: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app, "tier": "web" }, "annotations": { "note": "from-template" } },
                "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
            }
        }
    })
}

async fn create_rs(client: &Client, ns: &str, rs: Value) -> ReplicaSet {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &serde_json::from_value(rs).unwrap())
        .await
        .expect("create ReplicaSet")
}

async fn get_rs(client: &Client, ns: &str, name: &str) -> ReplicaSet {
    Api::<ReplicaSet>::namespaced(client.clone(), ns).get(name).await.expect("get ReplicaSet")
}

async fn scale_rs(client: &Client, ns: &str, name: &str, replicas: i32) {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let patch = json!({ "spec": { "replicas": replicas } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale ReplicaSet");
}

/// (replicas, fullyLabeled, ready, available, observedGeneration == generation)
fn counts(rs: &ReplicaSet) -> (i32, i32, i32, i32, bool) {
    let s = rs.status.clone().unwrap_or_default();
    (
        s.replicas,
        s.fully_labeled_replicas.unwrap_or(0),
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        s.observed_generation == rs.metadata.generation,
    )
}

async fn wait_counts(
    client: &Client,
    ns: &str,
    name: &str,
    want: (i32, i32, i32, i32, bool),
) -> ReplicaSet {
    wait_for(&format!("ReplicaSet {name} status {want:?}"), || async {
        let rs = get_rs(client, ns, name).await;
        (counts(&rs) == want).then_some(rs)
    })
    .await
}

fn controlled_by(pod: &Pod, uid: &str) -> bool {
    rudder_client::objects::controller_of(&pod.metadata).is_some_and(|r| r.uid == uid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_replicas_from_the_template_and_replaces_deleted_pods() {
    let h = start(Controllers { replicaset: true, ..Default::default() }, None).await;
    namespace(&h.client, "rs1").await;
    readier(&h.client, "rs1", |_| true, h.cancel.clone());
    let rs = create_rs(&h.client, "rs1", replica_set("web", 3, "web")).await;
    let uid = rs.metadata.uid.clone().unwrap();
    wait_counts(&h.client, "rs1", "web", (3, 3, 3, 3, true)).await;

    let list = pods(&h.client, "rs1", "app=web").await;
    assert_eq!(list.len(), 3);
    for pod in &list {
        let n = name(pod);
        let suffix = n.strip_prefix("web-").expect("named after the ReplicaSet");
        assert_eq!(suffix.len(), 5, "{n}");
        assert!(suffix.chars().all(|c| ALPHABET.contains(c)), "{n}");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!((labels["app"].as_str(), labels["tier"].as_str()), ("web", "web"));
        assert_eq!(pod.metadata.annotations.as_ref().unwrap()["note"], "from-template");
        let refs = pod.metadata.owner_references.clone().unwrap();
        assert_eq!(refs.len(), 1);
        let r = &refs[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
            ("apps/v1", "ReplicaSet", "web")
        );
        assert_eq!(r.uid, uid);
        assert_eq!((r.controller, r.block_owner_deletion), (Some(true), Some(true)));
        wait_event(&h.client, "rs1", "web", "SuccessfulCreate", &format!("Created pod: {n}")).await;
    }

    // A deleted pod is replaced.
    let victim = name(&list[0]);
    Api::<Pod>::namespaced(h.client.clone(), "rs1")
        .delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    let now = wait_for("a replacement pod", || async {
        let list = pods(&h.client, "rs1", "app=web").await;
        (list.len() == 3 && list.iter().all(|p| name(p) != victim)).then_some(list)
    })
    .await;
    let fresh: Vec<String> =
        now.iter().map(name).filter(|n| !list.iter().any(|p| &name(p) == n)).collect();
    assert_eq!(fresh.len(), 1);
    wait_event(&h.client, "rs1", "web", "SuccessfulCreate", &format!("Created pod: {}", fresh[0]))
        .await;
    wait_counts(&h.client, "rs1", "web", (3, 3, 3, 3, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_deletes_not_ready_pods_first() {
    let h = start(Controllers { replicaset: true, ..Default::default() }, None).await;
    namespace(&h.client, "rs2").await;
    create_rs(&h.client, "rs2", replica_set("web", 4, "web")).await;
    let list = wait_for("4 pods", || async {
        let list = pods(&h.client, "rs2", "app=web").await;
        (list.len() == 4).then_some(list)
    })
    .await;
    let mut names: Vec<String> = list.iter().map(name).collect();
    names.sort();
    let ready: BTreeSet<String> = names[..2].iter().cloned().collect();
    for n in &ready {
        mark_ready(&h.client, "rs2", n, Timestamp::now()).await.unwrap();
    }
    // The controller has seen the readiness once its status says so.
    wait_counts(&h.client, "rs2", "web", (4, 4, 2, 2, true)).await;
    scale_rs(&h.client, "rs2", "web", 2).await;
    let left = wait_for("2 pods left", || async {
        let list = pods(&h.client, "rs2", "app=web").await;
        (list.len() == 2).then_some(list)
    })
    .await;
    let left: BTreeSet<String> = left.iter().map(name).collect();
    assert_eq!(left, ready, "the not-ready pods went first");
    for n in names[2..].iter() {
        wait_event(&h.client, "rs2", "web", "SuccessfulDelete", &format!("Deleted pod: {n}")).await;
    }
    wait_counts(&h.client, "rs2", "web", (2, 2, 2, 2, true)).await;
}

fn bare_pod(name: &str, labels: Value, owner: Option<Value>) -> Pod {
    let mut meta = json!({ "name": name, "labels": labels });
    if let Some(o) = owner {
        meta["ownerReferences"] = json!([o]);
    }
    serde_json::from_value(json!({
        "metadata": meta,
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_orphans_releases_relabelled_pods_and_leaves_others_alone() {
    let h = start(Controllers { replicaset: true, ..Default::default() }, None).await;
    namespace(&h.client, "rs3").await;
    let pods_api: Api<Pod> = Api::namespaced(h.client.clone(), "rs3");
    let foreign_owner = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "someone-else",
        "uid": "6b0bd7c1-0000-4000-8000-000000000001", "controller": true,
    });
    pods_api
        .create(&PostParams::default(), &bare_pod("orphan", json!({ "app": "web" }), None))
        .await
        .unwrap();
    pods_api
        .create(
            &PostParams::default(),
            &bare_pod("foreign", json!({ "app": "web" }), Some(foreign_owner)),
        )
        .await
        .unwrap();
    let rs = create_rs(&h.client, "rs3", replica_set("web", 2, "web")).await;
    let uid = rs.metadata.uid.clone().unwrap();

    // The orphan is adopted and only one pod is created.
    let owned = wait_for("orphan adopted, 2 pods owned", || async {
        let list = pods(&h.client, "rs3", "app=web").await;
        let owned: Vec<Pod> = list.into_iter().filter(|p| controlled_by(p, &uid)).collect();
        (owned.len() == 2 && owned.iter().any(|p| name(p) == "orphan")).then_some(owned)
    })
    .await;
    let orphan = owned.iter().find(|p| name(p) == "orphan").unwrap();
    let r = rudder_client::objects::controller_of(&orphan.metadata).unwrap();
    assert_eq!(
        (r.kind.as_str(), r.name.as_str(), r.block_owner_deletion),
        ("ReplicaSet", "web", Some(true))
    );
    wait_counts(&h.client, "rs3", "web", (2, 1, 0, 0, true)).await;

    // A pod relabelled out of the selector is released and replaced.
    let created = owned.iter().find(|p| name(p) != "orphan").map(name).unwrap();
    let relabel = json!({ "metadata": { "labels": { "app": "elsewhere" } } });
    pods_api.patch(&created, &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    wait_for("relabelled pod released", || async {
        let p = pods_api.get(&created).await.unwrap();
        let refs = p.metadata.owner_references.unwrap_or_default();
        refs.iter().all(|r| r.uid != uid).then_some(())
    })
    .await;
    wait_for("a replacement", || async {
        let list = pods(&h.client, "rs3", "app=web").await;
        let owned: Vec<Pod> = list.into_iter().filter(|p| controlled_by(p, &uid)).collect();
        (owned.len() == 2 && owned.iter().all(|p| name(p) != created)).then_some(())
    })
    .await;
    wait_counts(&h.client, "rs3", "web", (2, 1, 0, 0, true)).await;

    // The pod another controller controls was never touched.
    let foreign = pods_api.get("foreign").await.unwrap();
    let refs = foreign.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "someone-else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_creates_more_pods_than_replicas() {
    let h = start(Controllers { replicaset: true, ..Default::default() }, None).await;
    namespace(&h.client, "rs4").await;
    readier(&h.client, "rs4", |_| true, h.cancel.clone());
    let api: Api<Pod> = Api::namespaced(h.client.clone(), "rs4");
    let stream = api.watch(&WatchParams::default(), "0").await.unwrap();
    futures::pin_mut!(stream);
    create_rs(&h.client, "rs4", replica_set("web", 20, "web")).await;
    let mut seen: HashSet<String> = HashSet::new();
    let mut live: HashSet<String> = HashSet::new();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    while live.len() < 20 {
        let event =
            tokio::time::timeout_at(deadline, stream.next()).await.expect("20 pods in time");
        match event.expect("watch open").expect("watch event") {
            WatchEvent::Added(p) => {
                seen.insert(name(&p));
                live.insert(name(&p));
            }
            WatchEvent::Deleted(p) => {
                live.remove(&name(&p));
            }
            _ => {}
        }
        assert!(live.len() <= 20, "more pods than replicas: {live:?}");
    }
    let rs = wait_counts(&h.client, "rs4", "web", (20, 20, 20, 20, true)).await;
    assert_eq!(pods(&h.client, "rs4", "app=web").await.len(), 20);
    assert_eq!(seen.len(), 20, "no pod was created twice over");
    assert_eq!(counts(&rs).0, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_creates_report_replica_failure_until_they_succeed() {
    let h = start(Controllers { replicaset: true, ..Default::default() }, None).await;
    namespace(&h.client, "rs5").await;
    let mut manifest = replica_set("web", 2, "web");
    manifest["spec"]["template"]["spec"]["priorityClassName"] = json!("missing");
    create_rs(&h.client, "rs5", manifest).await;
    let condition = wait_for("ReplicaFailure condition", || async {
        let rs = get_rs(&h.client, "rs5", "web").await;
        rs.status?.conditions?.into_iter().find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_deref()),
        ("True", Some("FailedCreate"))
    );
    assert!(condition.message.unwrap().contains("no PriorityClass with name missing was found"));
    wait_for("FailedCreate event", || async {
        let events = common::events(&h.client, "rs5", "web").await;
        events
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("FailedCreate")
                    && e.type_.as_deref() == Some("Warning")
                    && e.message.as_deref().is_some_and(|m| {
                        m.starts_with("Error creating: ")
                            && m.contains("no PriorityClass with name missing")
                    })
            })
            .then_some(())
    })
    .await;

    let pc: k8s_openapi::api::scheduling::v1::PriorityClass =
        serde_json::from_value(json!({ "metadata": { "name": "missing" }, "value": 1000 }))
            .unwrap();
    Api::all(h.client.clone())
        .create(&PostParams::default(), &pc)
        .await
        .expect("create PriorityClass");
    let rs = wait_for("pods created and the condition gone", || async {
        let rs = get_rs(&h.client, "rs5", "web").await;
        let gone =
            rs.status.as_ref().and_then(|s| s.conditions.as_ref()).is_none_or(|c| c.is_empty());
        (counts(&rs).0 == 2 && gone).then_some(rs)
    })
    .await;
    assert_eq!(counts(&rs).1, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_ready_seconds_follow_the_injected_clock() {
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let h =
        start(Controllers { replicaset: true, ..Default::default() }, Some(clock.clone())).await;
    namespace(&h.client, "rs6").await;
    readier(&h.client, "rs6", |_| true, h.cancel.clone());
    let mut manifest = replica_set("web", 2, "web");
    manifest["spec"]["minReadySeconds"] = json!(30);
    create_rs(&h.client, "rs6", manifest).await;
    // Ready, but not for 30 s by the controller's clock.
    wait_counts(&h.client, "rs6", "web", (2, 2, 2, 0, true)).await;
    clock.advance(Duration::from_secs(31));
    // Any event makes the controller look again (its own requeue would come in 30 s).
    let api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "rs6");
    let poke = json!({ "metadata": { "annotations": { "poke": "1" } } });
    api.patch("web", &PatchParams::default(), &Patch::Merge(&poke)).await.unwrap();
    wait_counts(&h.client, "rs6", "web", (2, 2, 2, 2, true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_controllers_keep_their_replicas() {
    let h = start(Controllers { replicationcontroller: true, ..Default::default() }, None).await;
    namespace(&h.client, "rc1").await;
    readier(&h.client, "rc1", |_| true, h.cancel.clone());
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": { "name": "legacy" },
        "spec": {
            "replicas": 2,
            "selector": { "app": "legacy" },
            "template": {
                "metadata": { "labels": { "app": "legacy" } },
                "spec": { "containers": [{ "name": "c", "image": "busybox" }] }
            }
        }
    }))
    .unwrap();
    let api: Api<ReplicationController> = Api::namespaced(h.client.clone(), "rc1");
    let rc = api.create(&PostParams::default(), &rc).await.unwrap();
    let uid = rc.metadata.uid.unwrap();
    let status = wait_for("RC status", || async {
        let rc = api.get("legacy").await.unwrap();
        let s = rc.status.clone()?;
        (s.replicas == 2
            && s.ready_replicas == Some(2)
            && s.available_replicas == Some(2)
            && s.observed_generation == rc.metadata.generation)
            .then_some(s)
    })
    .await;
    assert_eq!(status.fully_labeled_replicas, Some(2));
    let list = pods(&h.client, "rc1", "app=legacy").await;
    assert_eq!(list.len(), 2);
    for pod in &list {
        let r = rudder_client::objects::controller_of(&pod.metadata).unwrap();
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.uid.as_str()),
            ("v1", "ReplicationController", uid.as_str())
        );
        assert!(name(pod).starts_with("legacy-"));
        assert!(is_ready(pod));
        wait_event(
            &h.client,
            "rc1",
            "legacy",
            "SuccessfulCreate",
            &format!("Created pod: {}", name(pod)),
        )
        .await;
    }
    let patch = json!({ "spec": { "replicas": 1 } });
    api.patch("legacy", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    wait_for("one pod left", || async {
        (pods(&h.client, "rc1", "app=legacy").await.len() == 1).then_some(())
    })
    .await;
    wait_for("SuccessfulDelete from replication-controller", || async {
        let events = common::events(&h.client, "rc1", "legacy").await;
        events
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("SuccessfulDelete")
                    && e.source.as_ref().and_then(|s| s.component.as_deref())
                        == Some("replication-controller")
            })
            .then_some(())
    })
    .await;
}
