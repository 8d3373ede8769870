//! The DaemonSet controller against a real rudder API server, with rudder's scheduler and
//! simulated nodes (which run bound pods: Running and Ready).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::daemonset::{
    CHANGE_CAUSE, create, daemon_set, get, hash, history_rows, kubectl, node_of, pods, revisions,
    seed, set_image, settled, sim, start_all, wait_pods_on, wait_status,
};
use common::{events, namespace, wait_event, wait_for};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::{Api, Client};
use rudder_workloads::daemonset::util::CONTROLLER_REVISION_HASH_LABEL;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_daemonset_runs_on_every_node_including_the_tainted_master_and_follows_nodes() {
    let h = start_all().await;
    let c = &h.client;
    let _workers = sim(&h, &["worker-0", "worker-1"], &[], &[]).await;
    let _master = sim(&h, &["master"], &["node-role.kubernetes.io/master:NoSchedule"], &[]).await;
    let ns = "kube-system";
    let seed_sel = "name=fluentd-elasticsearch";
    create(c, ns, seed()).await;
    // The same without the master toleration stays off the master.
    create(c, ns, daemon_set("plain", "busybox", json!({}), json!({}))).await;

    let seeded = wait_pods_on(c, ns, seed_sel, &["master", "worker-0", "worker-1"], None).await;
    wait_pods_on(c, ns, "app=plain", &["worker-0", "worker-1"], None).await;
    for pod in &seeded {
        let spec = pod.spec.as_ref().unwrap();
        let terms = serde_json::to_value(
            &spec
                .affinity
                .as_ref()
                .unwrap()
                .node_affinity
                .as_ref()
                .unwrap()
                .required_during_scheduling_ignored_during_execution,
        )
        .unwrap();
        assert_eq!(
            terms,
            json!({ "nodeSelectorTerms": [{ "matchFields": [
                { "key": "metadata.name", "operator": "In", "values": [node_of(pod)] }] }] })
        );
        let tolerations: BTreeSet<String> = spec
            .tolerations
            .iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}:{}",
                    t.key.clone().unwrap_or_default(),
                    t.effect.clone().unwrap_or_default()
                )
            })
            .collect();
        for want in [
            "node-role.kubernetes.io/master:NoSchedule",
            "node.kubernetes.io/not-ready:NoExecute",
            "node.kubernetes.io/unreachable:NoExecute",
            "node.kubernetes.io/disk-pressure:NoSchedule",
            "node.kubernetes.io/memory-pressure:NoSchedule",
            "node.kubernetes.io/pid-pressure:NoSchedule",
            "node.kubernetes.io/unschedulable:NoSchedule",
        ] {
            assert!(tolerations.contains(want), "{want} in {tolerations:?}");
        }
        assert!(!hash(pod).is_empty());
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("DaemonSet", Some(true)));
        assert!(pod.metadata.generate_name.as_deref() == Some("fluentd-elasticsearch-"));
    }
    wait_status(c, ns, "fluentd-elasticsearch", "3 of 3", settled(3)).await;
    let name = seeded[0].metadata.name.clone().unwrap();
    wait_event(c, ns, "fluentd-elasticsearch", "SuccessfulCreate", &format!("Created pod: {name}"))
        .await;

    // A node joins: it gets a pod.
    let joined = sim(&h, &["worker-2"], &[], &[]).await;
    let four = ["master", "worker-0", "worker-1", "worker-2"];
    wait_pods_on(c, ns, seed_sel, &four, None).await;
    wait_status(c, ns, "fluentd-elasticsearch", "4 of 4", settled(4)).await;

    // The node goes away: its pod goes, the counts drop.
    joined.shutdown().await;
    Api::<Node>::all(c.clone())
        .delete("worker-2", &DeleteParams::default())
        .await
        .expect("delete node");
    wait_pods_on(c, ns, seed_sel, &["master", "worker-0", "worker-1"], None).await;
    wait_status(c, ns, "fluentd-elasticsearch", "3 of 3 again", settled(3)).await;
    wait_status(c, ns, "plain", "2 of 2", settled(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_excludes_nodes_and_follows_label_changes() {
    let h = start_all().await;
    let c = &h.client;
    namespace(c, "sel").await;
    let _ssd = sim(&h, &["ssd-0"], &[], &["disk=ssd"]).await;
    let _hdd = sim(&h, &["hdd-0"], &[], &[]).await;
    create(c, "sel", daemon_set("agent", "busybox", json!({}), json!({ "disk": "ssd" }))).await;
    wait_pods_on(c, "sel", "app=agent", &["ssd-0"], None).await;
    wait_status(c, "sel", "agent", "1 of 1", settled(1)).await;

    let nodes: Api<Node> = Api::all(c.clone());
    let label = |v: Value| json!({ "metadata": { "labels": { "disk": v } } });
    nodes
        .patch("hdd-0", &PatchParams::default(), &Patch::Merge(&label(json!("ssd"))))
        .await
        .unwrap();
    wait_pods_on(c, "sel", "app=agent", &["hdd-0", "ssd-0"], None).await;
    nodes
        .patch("ssd-0", &PatchParams::default(), &Patch::Merge(&label(Value::Null)))
        .await
        .unwrap();
    wait_pods_on(c, "sel", "app=agent", &["hdd-0"], None).await;
    wait_status(c, "sel", "agent", "1 of 1 on the other node", settled(1)).await;
    let evs = events(c, "sel", "agent").await;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("SuccessfulDelete")), "{evs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_records_revisions_and_rolls_back_from_their_data() {
    let h = start_all().await;
    let c = &h.client;
    let ns = "roll";
    namespace(c, ns).await;
    let _nodes = sim(&h, &["n0", "n1", "n2"], &[], &[]).await;
    let strategy = json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } });
    create(c, ns, daemon_set("web", "app:v1", strategy, json!({}))).await;
    let all = ["n0", "n1", "n2"];

    let first = wait_for("the first revision", || async {
        let revs = revisions(c, ns, "app=web").await;
        (revs.len() == 1).then(|| revs[0].clone())
    })
    .await;
    let h1 = first.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL].clone();
    assert_eq!(first.revision, 1);
    assert_eq!(first.metadata.name.as_deref(), Some(format!("web-{h1}").as_str()));
    assert_eq!(first.metadata.annotations.as_ref().unwrap()[CHANGE_CAUSE], "image app:v1");
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("DaemonSet", "web"));
    let data = &first.data.as_ref().unwrap().0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "app:v1");
    assert_eq!(data.as_object().unwrap().len(), 1, "only spec: {data}");
    wait_pods_on(c, ns, "app=web", &all, Some(&h1)).await;
    wait_status(c, ns, "web", "3 of 3", settled(3)).await;

    // A new template: pods replaced one at a time, a second revision.
    set_image(c, ns, "web", "app:v2").await;
    let revs = wait_for("two revisions", || async {
        let revs = revisions(c, ns, "app=web").await;
        (revs.len() == 2).then_some(revs)
    })
    .await;
    assert_eq!(revs.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2]);
    let h2 = revs[1].metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL].clone();
    assert_ne!(h1, h2);
    assert_eq!(revs[1].metadata.annotations.as_ref().unwrap()[CHANGE_CAUSE], "image app:v2");
    let updated = wait_pods_on(c, ns, "app=web", &all, Some(&h2)).await;
    assert!(
        updated
            .iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("app:v2"))
    );
    wait_status(c, ns, "web", "3 of 3 updated", settled(3)).await;
    let evs = events(c, ns, "web").await;
    assert!(evs.iter().any(|e| e.reason.as_deref() == Some("SuccessfulDelete")));

    // Roll back as `kubectl rollout undo` does: revision 1's data as a strategic merge patch.
    let api: Api<DaemonSet> = Api::namespaced(c.clone(), ns);
    let undo = revs[0].data.as_ref().unwrap().0.clone();
    api.patch("web", &PatchParams::default(), &Patch::Strategic(&undo)).await.expect("rollback");
    let ds = get(c, ns, "web").await;
    let image =
        ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("app:v1"));
    wait_pods_on(c, ns, "app=web", &all, Some(&h1)).await;
    let revs = wait_for("revision 1 renumbered to 3", || async {
        let revs = revisions(c, ns, "app=web").await;
        (revs.len() == 2 && revs[1].revision == 3).then_some(revs)
    })
    .await;
    let hash_of = |r: &ControllerRevision| {
        r.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL].clone()
    };
    assert_eq!((revs[0].revision, hash_of(&revs[0])), (2, h2));
    assert_eq!(hash_of(&revs[1]), h1);
    wait_status(c, ns, "web", "3 of 3 rolled back", settled(3)).await;
}

/// Follows the pods of `selector` and reports, per node, the most pods seen at once and
/// whether a node ever had none after it had one, until `done` holds for the live pods.
async fn follow_pods(
    client: &Client,
    ns: &str,
    selector: &str,
    start: kube::core::ObjectList<Pod>,
    done: impl Fn(&BTreeMap<String, Pod>) -> bool,
) -> (BTreeMap<String, usize>, bool) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let params = WatchParams::default().labels(selector).timeout(60);
    let version = start.metadata.resource_version.clone().unwrap_or_default();
    let stream = api.watch(&params, &version).await.expect("watch pods");
    futures::pin_mut!(stream);
    let mut live: BTreeMap<String, Pod> =
        start.items.into_iter().map(|p| (p.metadata.name.clone().unwrap(), p)).collect();
    let mut most: BTreeMap<String, usize> = BTreeMap::new();
    for p in live.values() {
        *most.entry(node_of(p)).or_default() += 1;
    }
    let mut emptied = false;
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("rollout in time")
            .expect("watch open")
            .expect("watch event");
        match event {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                live.insert(p.metadata.name.clone().unwrap(), p);
            }
            WatchEvent::Deleted(p) => {
                live.remove(p.metadata.name.as_deref().unwrap());
            }
            _ => continue,
        }
        let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
        for p in live.values() {
            *per_node.entry(node_of(p)).or_default() += 1;
        }
        for (node, m) in most.iter() {
            if *m > 0 && !per_node.contains_key(node) {
                emptied = true;
            }
        }
        for (node, n) in per_node {
            let m = most.entry(node).or_default();
            *m = (*m).max(n);
        }
        if done(&live) {
            return (most, emptied);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surge_starts_the_new_pod_before_deleting_the_old_one() {
    let h = start_all().await;
    let c = &h.client;
    let ns = "surge";
    namespace(c, ns).await;
    let _nodes = sim(&h, &["s0", "s1"], &[], &[]).await;
    let strategy =
        json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 0, "maxSurge": 1 } });
    create(c, ns, daemon_set("proxy", "proxy:v1", strategy, json!({}))).await;
    wait_pods_on(c, ns, "app=proxy", &["s0", "s1"], None).await;
    wait_status(c, ns, "proxy", "2 of 2", settled(2)).await;
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let before = api.list(&ListParams::default().labels("app=proxy")).await.unwrap();

    set_image(c, ns, "proxy", "proxy:v2").await;
    let (most, emptied) = follow_pods(c, ns, "app=proxy", before, |live| {
        live.len() == 2
            && live.values().all(|p| {
                p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("proxy:v2")
                    && common::is_ready(p)
            })
    })
    .await;
    assert_eq!(most.get("s0"), Some(&2), "old and new pod side by side on s0: {most:?}");
    assert_eq!(most.get("s1"), Some(&2), "old and new pod side by side on s1: {most:?}");
    assert!(!emptied, "no node was ever without a pod");
    wait_status(c, ns, "proxy", "2 of 2 updated", settled(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pods_are_replaced_and_on_delete_waits_for_deletion() {
    let h = start_all().await;
    let c = &h.client;
    let ns = "fail";
    namespace(c, ns).await;
    let nodes = sim(&h, &["f0"], &[], &[]).await;
    create(c, ns, daemon_set("logs", "logs:v1", json!({ "type": "OnDelete" }), json!({}))).await;
    let first = wait_pods_on(c, ns, "app=logs", &["f0"], None).await.remove(0);
    let first_name = first.metadata.name.clone().unwrap();

    // The node stops reporting (so nothing rewrites the pod's status) and the pod fails.
    nodes.stop_node("f0").unwrap();
    let api: Api<Pod> = Api::namespaced(c.clone(), ns);
    let failed = json!({ "status": { "phase": "Failed" } });
    api.patch_status(&first_name, &PatchParams::default(), &Patch::Merge(&failed)).await.unwrap();
    let message =
        format!("Found failed daemon pod {ns}/{first_name} on node f0, will try to kill it");
    wait_event(c, ns, "logs", "FailedDaemonPod", &message).await;
    nodes.start_node("f0").unwrap();
    let second = wait_pods_on(c, ns, "app=logs", &["f0"], None).await.remove(0);
    assert_ne!(second.metadata.name, first.metadata.name);
    wait_status(c, ns, "logs", "1 of 1", settled(1)).await;

    // OnDelete: a new template changes no pod until the pod is deleted.
    set_image(c, ns, "logs", "logs:v2").await;
    wait_status(c, ns, "logs", "nothing updated", |s| {
        s.updated_number_scheduled.unwrap_or(0) == 0 && s.number_ready == 1
    })
    .await;
    let revs = revisions(c, ns, "app=logs").await;
    assert_eq!(revs.len(), 2);
    let h2 = revs[1].metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH_LABEL].clone();
    assert_ne!(hash(&pods(c, ns, "app=logs").await[0]), h2);
    api.delete(second.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    wait_pods_on(c, ns, "app=logs", &["f0"], Some(&h2)).await;
    wait_status(c, ns, "logs", "1 of 1 updated", settled(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_and_undo() {
    let h = start_all().await;
    let c = &h.client;
    let ns = "cli";
    namespace(c, ns).await;
    let _nodes = sim(&h, &["k0", "k1"], &[], &[]).await;
    create(c, ns, daemon_set("web", "app:v1", json!({}), json!({}))).await;
    let out = kubectl(&h, &["-n", ns, "rollout", "status", "ds/web", "--timeout=30s"]).await;
    assert!(out.contains("daemon set \"web\" successfully rolled out"), "{out}");

    set_image(c, ns, "web", "app:v2").await;
    let out = kubectl(&h, &["-n", ns, "rollout", "status", "ds/web", "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let out = kubectl(&h, &["-n", ns, "rollout", "history", "ds/web"]).await;
    let want = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
        rows.iter().map(|(r, c)| (r.to_string(), c.to_string())).collect()
    };
    assert_eq!(history_rows(&out), want(&[("1", "image app:v1"), ("2", "image app:v2")]), "{out}");
    let out = kubectl(&h, &["-n", ns, "rollout", "history", "ds/web", "--revision=1"]).await;
    assert!(out.contains("app:v1") && !out.contains("app:v2"), "{out}");

    let out = kubectl(&h, &["-n", ns, "rollout", "undo", "ds/web"]).await;
    assert!(out.contains("daemonset.apps/web rolled back"), "{out}");
    let out = kubectl(&h, &["-n", ns, "rollout", "status", "ds/web", "--timeout=30s"]).await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = wait_pods_on(c, ns, "app=web", &["k0", "k1"], None).await;
    assert!(
        pods.iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("app:v1"))
    );
    let out = wait_for("revision 1 shown as 3", || async {
        let out = kubectl(&h, &["-n", ns, "rollout", "history", "ds/web"]).await;
        (history_rows(&out).iter().map(|r| r.0.as_str()).collect::<Vec<_>>() == ["2", "3"])
            .then_some(out)
    })
    .await;
    assert_eq!(history_rows(&out), want(&[("2", "image app:v2"), ("3", "image app:v1")]), "{out}");
    let out = kubectl(&h, &["-n", ns, "get", "ds", "web"]).await;
    let row: Vec<&str> = out.lines().nth(1).unwrap_or("").split_whitespace().collect();
    // NAME DESIRED CURRENT READY UP-TO-DATE AVAILABLE ...
    assert_eq!(&row[..6], ["web", "2", "2", "2", "2", "2"], "{out}");
}
