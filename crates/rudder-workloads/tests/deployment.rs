//! The Deployment controller (with the ReplicaSet controller) against a real rudder API
//! server. Pods are made Ready by a test task standing in for the kubelet.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{
    Controllers, Harness, mark_ready, name, namespace, pods, readier, start, wait_event, wait_for,
};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use rudder_workloads::deployment::util::{
    DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION, POD_TEMPLATE_HASH_LABEL,
    REVISION_ANNOTATION, REVISION_HISTORY_ANNOTATION, compute_hash,
};
use serde_json::{Value, json};

const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn manifest(name: &str, replicas: i32, strategy: Value, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "annotations": { CHANGE_CAUSE: format!("image {image}"), LAST_APPLIED: "{}" },
        },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "strategy": strategy,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": image }] }
            }
        }
    })
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } })
}

async fn create(client: &Client, ns: &str, d: Value) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .expect("create Deployment")
}

async fn get(client: &Client, ns: &str, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), ns).get(name).await.expect("get Deployment")
}

async fn patch(client: &Client, ns: &str, name: &str, p: Value) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&p)).await.expect("patch Deployment");
}

/// A new template (image) with its change-cause, as `kubectl set image` + annotate do.
async fn set_image(client: &Client, ns: &str, name: &str, image: &str) {
    let p = json!({
        "metadata": { "annotations": { CHANGE_CAUSE: format!("image {image}") } },
        "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": image }] } } }
    });
    patch(client, ns, name, p).await;
}

async fn replica_sets(client: &Client, ns: &str, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list ReplicaSets")
        .items
}

fn annotation(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn condition(d: &Deployment, type_: &str) -> Option<DeploymentCondition> {
    d.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
}

/// Every replica updated and available, nothing old left, this generation observed.
fn complete(d: &Deployment, replicas: i32) -> bool {
    let Some(s) = &d.status else { return false };
    s.observed_generation == d.metadata.generation
        && s.replicas == Some(replicas)
        && s.updated_replicas == Some(replicas)
        && s.ready_replicas == Some(replicas)
        && s.available_replicas == Some(replicas)
        && s.unavailable_replicas.unwrap_or(0) == 0
}

async fn wait_complete(
    client: &Client,
    ns: &str,
    name: &str,
    replicas: i32,
    revision: &str,
) -> Deployment {
    wait_for(&format!("Deployment {name} complete at revision {revision}"), || async {
        let d = get(client, ns, name).await;
        let progressed = condition(&d, "Progressing").and_then(|c| c.reason).as_deref()
            == Some("NewReplicaSetAvailable");
        (complete(&d, replicas)
            && progressed
            && annotation(&d.metadata, REVISION_ANNOTATION).as_deref() == Some(revision))
        .then_some(d)
    })
    .await
}

fn rs_with_revision<'a>(rss: &'a [ReplicaSet], revision: &str) -> &'a ReplicaSet {
    rss.iter()
        .find(|rs| annotation(&rs.metadata, REVISION_ANNOTATION).as_deref() == Some(revision))
        .unwrap_or_else(|| panic!("a ReplicaSet at revision {revision}"))
}

fn hash_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL)).cloned().unwrap_or_default()
}

async fn harness(ns: &str, ready: bool) -> Harness {
    let h =
        start(Controllers { replicaset: true, deployment: true, ..Default::default() }, None).await;
    namespace(&h.client, ns).await;
    if ready {
        readier(&h.client, ns, |_| true, h.cancel.clone());
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_hashed_replica_set_with_revisions_annotations_and_status() {
    let h = harness("d1", true).await;
    create(&h.client, "d1", manifest("web", 3, json!(null), "busybox:1")).await;
    let d = wait_complete(&h.client, "d1", "web", 3, "1").await;
    let s = d.status.clone().unwrap();
    assert_eq!(s.collision_count, None);

    let rss = replica_sets(&h.client, "d1", "web").await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = compute_hash(&d.spec.as_ref().unwrap().template, None);
    let rs_name = format!("web-{hash}");
    assert_eq!(rs.metadata.name.as_deref(), Some(rs_name.as_str()));
    assert!(hash.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    let spec = rs.spec.clone().unwrap();
    assert_eq!(hash_of(&rs.metadata), hash);
    assert_eq!(spec.selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH_LABEL], hash);
    assert_eq!(hash_of(spec.template.as_ref().unwrap().metadata.as_ref().unwrap()), hash);
    let owner = rudder_client::objects::controller_of(&rs.metadata).unwrap();
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Deployment", "web"));
    assert_eq!(
        (owner.uid.as_str(), owner.block_owner_deletion),
        (d.metadata.uid.as_deref().unwrap(), Some(true))
    );
    assert_eq!(annotation(&rs.metadata, REVISION_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).as_deref(), Some("3"));
    // Default strategy: 25% surge of 3 rounds up to 1.
    assert_eq!(annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION).as_deref(), Some("4"));
    assert_eq!(annotation(&rs.metadata, CHANGE_CAUSE).as_deref(), Some("image busybox:1"));
    assert_eq!(annotation(&rs.metadata, LAST_APPLIED), None);
    for pod in pods(&h.client, "d1", "app=web").await {
        assert_eq!(hash_of(&pod.metadata), hash);
        assert!(name(&pod).starts_with(&format!("{rs_name}-")));
    }

    let available = condition(&d, "Available").unwrap();
    assert_eq!(
        (available.status.as_str(), available.reason.as_deref(), available.message.as_deref()),
        ("True", Some("MinimumReplicasAvailable"), Some("Deployment has minimum availability."))
    );
    let progressing = condition(&d, "Progressing").unwrap();
    let message = format!("ReplicaSet {rs_name:?} has successfully progressed.");
    assert_eq!(
        (progressing.status.as_str(), progressing.message.as_deref()),
        ("True", Some(message.as_str()))
    );
    wait_event(
        &h.client,
        "d1",
        "web",
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} from 0 to 3"),
    )
    .await;

    // Scaling: the one ReplicaSet follows, its annotations too.
    patch(&h.client, "d1", "web", json!({ "spec": { "replicas": 5 } })).await;
    wait_complete(&h.client, "d1", "web", 5, "1").await;
    let rs = &replica_sets(&h.client, "d1", "web").await[0];
    assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).as_deref(), Some("5"));
    assert_eq!(annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION).as_deref(), Some("7"));
    wait_event(
        &h.client,
        "d1",
        "web",
        "ScalingReplicaSet",
        &format!("Scaled up replica set {rs_name} from 3 to 5"),
    )
    .await;
}

/// Watches the pods of `app` while its template changes and checks every state the watch
/// shows: at most `max_pods` pods, at least `min_ready` ready ones, and (Recreate) never old
/// and new pods together. Returns when only new, ready pods are left.
async fn observe_rollout(
    client: &Client,
    ns: &str,
    app: &str,
    replicas: i32,
    max_pods: usize,
    min_ready: usize,
    exclusive: bool,
) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = api.list(&ListParams::default().labels(&format!("app={app}"))).await.unwrap();
    let rv = list.metadata.resource_version.clone().unwrap();
    let mut live: HashMap<String, Pod> = list.items.into_iter().map(|p| (name(&p), p)).collect();
    let old_hash = hash_of(&live.values().next().expect("pods before the change").metadata);
    let stream =
        api.watch(&WatchParams::default().labels(&format!("app={app}")), &rv).await.unwrap();
    futures::pin_mut!(stream);
    set_image(client, ns, app, "busybox:2").await;
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let event =
            tokio::time::timeout_at(deadline, stream.next()).await.expect("rollout in time");
        match event.expect("watch open").expect("watch event") {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                live.insert(name(&p), p);
            }
            WatchEvent::Deleted(p) => {
                live.remove(&name(&p));
            }
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
        let ready = live.values().filter(|p| common::is_ready(p)).count();
        let old = live.values().filter(|p| hash_of(&p.metadata) == old_hash).count();
        let new = live.len() - old;
        let state = format!("{} pods ({old} old, {new} new), {ready} ready", live.len());
        assert!(live.len() <= max_pods, "more than {max_pods} pods: {state}");
        assert!(ready >= min_ready, "fewer than {min_ready} ready: {state}");
        assert!(!exclusive || old == 0 || new == 0, "old and new pods together: {state}");
        if old == 0 && new == replicas as usize && ready == new {
            return;
        }
    }
}

async fn rolling_update(ns: &str, surge: i32, unavailable: i32) {
    let h = harness(ns, true).await;
    let replicas = 4;
    create(
        &h.client,
        ns,
        manifest("web", replicas, rolling(json!(surge), json!(unavailable)), "busybox:1"),
    )
    .await;
    wait_complete(&h.client, ns, "web", replicas, "1").await;
    let max_pods = (replicas + surge) as usize;
    let min_ready = (replicas - unavailable) as usize;
    observe_rollout(&h.client, ns, "web", replicas, max_pods, min_ready, false).await;
    wait_complete(&h.client, ns, "web", replicas, "2").await;
    let rss = replica_sets(&h.client, ns, "web").await;
    assert_eq!(rss.len(), 2);
    let (old, new) = (rs_with_revision(&rss, "1"), rs_with_revision(&rss, "2"));
    assert_eq!((rs_replicas(old), rs_replicas(new)), (0, replicas));
    assert_eq!(annotation(&new.metadata, CHANGE_CAUSE).as_deref(), Some("image busybox:2"));
    let old_name = old.metadata.name.clone().unwrap();
    let events = common::events(&h.client, ns, "web").await;
    assert!(
        events
            .iter()
            .any(|e| e.message.as_deref().is_some_and(
                |m| m.starts_with(&format!("Scaled down replica set {old_name} from "))
            )),
        "a scale-down event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_surge_keeps_every_replica_available() {
    rolling_update("d2a", 1, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_without_surge_stays_within_max_unavailable() {
    rolling_update("d2b", 0, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_with_percentages() {
    // 25% of 4: surge 1, unavailable 1.
    let h = harness("d2c", true).await;
    create(&h.client, "d2c", manifest("web", 4, rolling(json!("25%"), json!("25%")), "busybox:1"))
        .await;
    wait_complete(&h.client, "d2c", "web", 4, "1").await;
    observe_rollout(&h.client, "d2c", "web", 4, 5, 3, false).await;
    wait_complete(&h.client, "d2c", "web", 4, "2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_runs_old_and_new_pods_together() {
    let h = harness("d3", true).await;
    create(&h.client, "d3", manifest("web", 3, json!({ "type": "Recreate" }), "busybox:1")).await;
    wait_complete(&h.client, "d3", "web", 3, "1").await;
    observe_rollout(&h.client, "d3", "web", 3, 3, 0, true).await;
    wait_complete(&h.client, "d3", "web", 3, "2").await;
    let rss = replica_sets(&h.client, "d3", "web").await;
    assert_eq!(
        (rs_replicas(rs_with_revision(&rss, "1")), rs_replicas(rs_with_revision(&rss, "2"))),
        (0, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_brings_back_the_old_replica_set_with_a_new_revision() {
    let h = harness("d4", true).await;
    create(&h.client, "d4", manifest("web", 2, json!(null), "busybox:1")).await;
    wait_complete(&h.client, "d4", "web", 2, "1").await;
    set_image(&h.client, "d4", "web", "busybox:2").await;
    let d = wait_complete(&h.client, "d4", "web", 2, "2").await;
    let rss = replica_sets(&h.client, "d4", "web").await;
    let first = rs_with_revision(&rss, "1").clone();

    // What `kubectl rollout undo` (1.33) sends: the old template without its hash label, and
    // the old ReplicaSet's annotations (but the skipped ones, which the Deployment keeps).
    let mut template =
        serde_json::to_value(first.spec.as_ref().unwrap().template.as_ref().unwrap()).unwrap();
    template["metadata"]["labels"].as_object_mut().unwrap().remove(POD_TEMPLATE_HASH_LABEL);
    let mut annotations: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in d.metadata.annotations.clone().unwrap() {
        if k == REVISION_ANNOTATION || k == LAST_APPLIED {
            annotations.insert(k, v);
        }
    }
    for (k, v) in first.metadata.annotations.clone().unwrap() {
        if ![
            REVISION_ANNOTATION,
            REVISION_HISTORY_ANNOTATION,
            DESIRED_REPLICAS_ANNOTATION,
            MAX_REPLICAS_ANNOTATION,
            LAST_APPLIED,
        ]
        .contains(&k.as_str())
        {
            annotations.insert(k, v);
        }
    }
    let undo = json!([
        { "op": "replace", "path": "/spec/template", "value": template },
        { "op": "replace", "path": "/metadata/annotations", "value": annotations },
    ]);
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "d4");
    let undo: json_patch::Patch = serde_json::from_value(undo).unwrap();
    api.patch("web", &PatchParams::default(), &Patch::<()>::Json(undo)).await.expect("undo");

    wait_complete(&h.client, "d4", "web", 2, "3").await;
    let rss = replica_sets(&h.client, "d4", "web").await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet came back; none was created");
    let back = rs_with_revision(&rss, "3");
    assert_eq!(back.metadata.uid, first.metadata.uid);
    assert_eq!(annotation(&back.metadata, REVISION_HISTORY_ANNOTATION).as_deref(), Some("1"));
    assert_eq!(annotation(&back.metadata, CHANGE_CAUSE).as_deref(), Some("image busybox:1"));
    assert_eq!(rs_replicas(back), 2);
    assert_eq!(rs_replicas(rs_with_revision(&rss, "2")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_scales_but_does_not_roll_out_until_resumed() {
    let h = harness("d5", true).await;
    create(&h.client, "d5", manifest("web", 2, json!(null), "busybox:1")).await;
    wait_complete(&h.client, "d5", "web", 2, "1").await;
    patch(&h.client, "d5", "web", json!({ "spec": { "paused": true } })).await;
    let c = wait_for("Progressing DeploymentPaused", || async {
        condition(&get(&h.client, "d5", "web").await, "Progressing")
            .filter(|c| c.reason.as_deref() == Some("DeploymentPaused"))
    })
    .await;
    assert_eq!(
        (c.status.as_str(), c.message.as_deref()),
        ("Unknown", Some("Deployment is paused"))
    );

    set_image(&h.client, "d5", "web", "busybox:2").await;
    patch(&h.client, "d5", "web", json!({ "spec": { "replicas": 3 } })).await;
    let d = wait_for("paused Deployment scaled", || async {
        let d = get(&h.client, "d5", "web").await;
        let s = d.status.clone()?;
        (s.observed_generation == d.metadata.generation
            && s.replicas == Some(3)
            && s.available_replicas == Some(3))
        .then_some(d)
    })
    .await;
    assert_eq!(d.status.unwrap().updated_replicas, Some(0), "the new template is not rolled out");
    let rss = replica_sets(&h.client, "d5", "web").await;
    assert_eq!(rss.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(rs_replicas(&rss[0]), 3);
    assert_eq!(annotation(&rss[0].metadata, DESIRED_REPLICAS_ANNOTATION).as_deref(), Some("3"));

    patch(&h.client, "d5", "web", json!({ "spec": { "paused": false } })).await;
    wait_complete(&h.client, "d5", "web", 3, "2").await;
    assert_eq!(replica_sets(&h.client, "d5", "web").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_deletes_the_oldest_replica_sets() {
    let h = harness("d6", true).await;
    let mut m = manifest("web", 1, json!(null), "busybox:1");
    m["spec"]["revisionHistoryLimit"] = json!(1);
    create(&h.client, "d6", m).await;
    wait_complete(&h.client, "d6", "web", 1, "1").await;
    for (i, image) in ["busybox:2", "busybox:3", "busybox:4"].iter().enumerate() {
        set_image(&h.client, "d6", "web", image).await;
        wait_complete(&h.client, "d6", "web", 1, &(i + 2).to_string()).await;
    }
    let rss = wait_for("one old ReplicaSet kept", || async {
        let rss = replica_sets(&h.client, "d6", "web").await;
        (rss.len() == 2).then_some(rss)
    })
    .await;
    let mut revisions: Vec<String> =
        rss.iter().filter_map(|rs| annotation(&rs.metadata, REVISION_ANNOTATION)).collect();
    revisions.sort();
    assert_eq!(revisions, ["3", "4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded_until_the_pods_become_ready() {
    let h = harness("d7", false).await;
    let mut m = manifest("web", 1, json!(null), "busybox:1");
    m["spec"]["progressDeadlineSeconds"] = json!(1);
    create(&h.client, "d7", m).await;
    // The deadline (1 s) can pass before the ReplicaSet reports its pod (a loaded machine):
    // wait for the status that counts it too, which the ReplicaSet's update brings.
    let d = wait_for("ProgressDeadlineExceeded with the pod counted", || async {
        let d = get(&h.client, "d7", "web").await;
        let c = condition(&d, "Progressing")?;
        let counted = d.status.as_ref()?.updated_replicas == Some(1);
        (c.reason.as_deref() == Some("ProgressDeadlineExceeded") && counted).then_some(d)
    })
    .await;
    let rs_name = replica_sets(&h.client, "d7", "web").await[0].metadata.name.clone().unwrap();
    let c = condition(&d, "Progressing").unwrap();
    assert_eq!(c.status, "False");
    assert_eq!(c.message, Some(format!("ReplicaSet {rs_name:?} has timed out progressing.")));
    let a = condition(&d, "Available").unwrap();
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref(), a.message.as_deref()),
        (
            "False",
            Some("MinimumReplicasUnavailable"),
            Some("Deployment does not have minimum availability.")
        )
    );
    let s = d.status.unwrap();
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(1), Some(1), Some(0), Some(0), Some(1))
    );

    let pod =
        wait_for("the pod", || async { pods(&h.client, "d7", "app=web").await.into_iter().next() })
            .await;
    mark_ready(&h.client, "d7", &name(&pod), Timestamp::now()).await.unwrap();
    wait_complete(&h.client, "d7", "web", 1, "1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_a_matching_orphan_replica_set_and_releases_it_when_relabelled() {
    let h = harness("d8", true).await;
    let container = json!([{ "name": "c", "image": "busybox:1" }]);
    let orphan: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": "handmade", "labels": { "app": "web", POD_TEMPLATE_HASH_LABEL: "manual" } },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web", POD_TEMPLATE_HASH_LABEL: "manual" } },
            "template": {
                "metadata": { "labels": { "app": "web", POD_TEMPLATE_HASH_LABEL: "manual" } },
                "spec": { "containers": container }
            }
        }
    }))
    .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "d8");
    let orphan = rs_api.create(&PostParams::default(), &orphan).await.unwrap();
    let d = create(&h.client, "d8", manifest("web", 2, json!(null), "busybox:1")).await;
    wait_complete(&h.client, "d8", "web", 2, "1").await;
    let rss = replica_sets(&h.client, "d8", "web").await;
    assert_eq!(rss.len(), 1, "the orphan is the Deployment's ReplicaSet; none created");
    let adopted = &rss[0];
    assert_eq!(adopted.metadata.uid, orphan.metadata.uid);
    let owner = rudder_client::objects::controller_of(&adopted.metadata).unwrap();
    assert_eq!(Some(&owner.uid), d.metadata.uid.as_ref());
    assert_eq!(annotation(&adopted.metadata, REVISION_ANNOTATION).as_deref(), Some("1"));

    // Relabelled out of the selector: released, and the Deployment makes its own.
    let relabel = json!({ "metadata": { "labels": { "app": "gone" } } });
    rs_api.patch("handmade", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
    wait_for("released", || async {
        let rs = rs_api.get("handmade").await.unwrap();
        rudder_client::objects::controller_of(&rs.metadata).is_none().then_some(())
    })
    .await;
    let rss = wait_for("a ReplicaSet of its own", || async {
        let rss = replica_sets(&h.client, "d8", "web").await;
        (rss.len() == 1 && rss[0].metadata.name.as_deref() != Some("handmade")).then_some(rss)
    })
    .await;
    assert!(rss[0].metadata.name.as_deref().unwrap().starts_with("web-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_by_another_template_bumps_the_collision_count() {
    let h = harness("d9", true).await;
    let mut m = manifest("web", 1, json!(null), "busybox:1");
    m["spec"]["paused"] = json!(true);
    let d = create(&h.client, "d9", m).await;
    // The name the Deployment's ReplicaSet would get, taken by something else.
    let template = d.spec.as_ref().unwrap().template.clone();
    let taken = format!("web-{}", compute_hash(&template, None));
    let squatter: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": taken, "labels": { "app": "squatter" } },
        "spec": {
            "replicas": 0,
            "selector": { "matchLabels": { "app": "squatter" } },
            "template": {
                "metadata": { "labels": { "app": "squatter" } },
                "spec": { "containers": [{ "name": "c", "image": "busybox:other" }] }
            }
        }
    }))
    .unwrap();
    let rs_api: Api<ReplicaSet> = Api::namespaced(h.client.clone(), "d9");
    rs_api.create(&PostParams::default(), &squatter).await.unwrap();
    patch(&h.client, "d9", "web", json!({ "spec": { "paused": false } })).await;
    let d = wait_complete(&h.client, "d9", "web", 1, "1").await;
    assert_eq!(d.status.unwrap().collision_count, Some(1));
    let rss = replica_sets(&h.client, "d9", "web").await;
    assert_eq!(rss.len(), 1);
    assert_eq!(rss[0].metadata.name, Some(format!("web-{}", compute_hash(&template, Some(1)))));
    let squatter = rs_api.get(&taken).await.unwrap();
    assert!(squatter.metadata.owner_references.is_none(), "the other ReplicaSet was left alone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional() {
    let h =
        start(Controllers { replicaset: true, deployment: true, ..Default::default() }, None).await;
    namespace(&h.client, "d10").await;
    // Only pods of the first template ever become ready: the rollout gets stuck.
    let image =
        |p: &Pod| p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone());
    readier(&h.client, "d10", move |p| image(p).as_deref() == Some("busybox:1"), h.cancel.clone());
    create(&h.client, "d10", manifest("web", 10, rolling(json!(3), json!(2)), "busybox:1")).await;
    wait_complete(&h.client, "d10", "web", 10, "1").await;
    set_image(&h.client, "d10", "web", "busybox:2").await;
    // Stuck where upstream's example says: old 8 (all available), new 5 (none available).
    let sizes = |rss: &[ReplicaSet]| {
        let size = |rev: &str| {
            rss.iter()
                .find(|rs| annotation(&rs.metadata, REVISION_ANNOTATION).as_deref() == Some(rev))
                .map(rs_replicas)
        };
        (size("1"), size("2"))
    };
    wait_for("rollout stuck at 8 + 5", || async {
        (sizes(&replica_sets(&h.client, "d10", "web").await) == (Some(8), Some(5))).then_some(())
    })
    .await;
    patch(&h.client, "d10", "web", json!({ "spec": { "replicas": 20 } })).await;
    // 23 pods allowed now, spread by size: 8 * 23/13 -> 14, 5 * 23/13 -> 9.
    let rss = wait_for("proportional sizes 14 + 9", || async {
        let rss = replica_sets(&h.client, "d10", "web").await;
        (sizes(&rss) == (Some(14), Some(9))).then_some(rss)
    })
    .await;
    for rs in &rss {
        assert_eq!(annotation(&rs.metadata, DESIRED_REPLICAS_ANNOTATION).as_deref(), Some("20"));
        assert_eq!(annotation(&rs.metadata, MAX_REPLICAS_ANNOTATION).as_deref(), Some("23"));
    }
}
