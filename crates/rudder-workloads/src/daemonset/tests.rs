//! The DaemonSet decisions without a server: manage, rolling update, status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;
use serde_json::{Value, json};

use super::backoff::Backoff;
use super::manage::{Current, ManagePlan, manage_plan, node_pods, status_counts};
use super::rolling::{RollingPlan, allowances, rolling_plan};
use super::util::{CONTROLLER_REVISION_HASH_LABEL, replace_node_name_affinity};

const NEW: &str = "new";
const OLD: &str = "old";

fn now() -> Timestamp {
    Timestamp::from_second(2_000_000_000).unwrap()
}

fn ds(strategy: Value, node_selector: Value, min_ready: i32) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": { "name": "d", "namespace": "ns", "uid": "u" },
        "spec": {
            "selector": { "matchLabels": { "app": "d" } },
            "minReadySeconds": min_ready,
            "updateStrategy": strategy,
            "template": { "metadata": { "labels": { "app": "d" } }, "spec": {
                "nodeSelector": node_selector, "containers": [{ "name": "c", "image": "i" }] } },
        },
    }))
    .unwrap()
}

fn rolling(unavailable: Value, surge: Value) -> Value {
    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": unavailable, "maxSurge": surge } })
}

fn node(name: &str, labels: Value, taints: Value) -> Arc<Node> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels }, "spec": { "taints": taints } }))
        .unwrap(),
    )
}

fn nodes(names: &[&str]) -> Vec<Arc<Node>> {
    names.iter().map(|n| node(n, json!({}), json!([]))).collect()
}

/// A pod of revision `hash` on `node`; `age_s` seconds old; `state`: "pending" (not bound),
/// "running" (not ready), "ready" (ready for a long time), "fresh" (ready just now),
/// "failed", "succeeded", "deleting".
fn pod(name: &str, node: &str, hash: &str, age_s: i64, state: &str) -> Arc<Pod> {
    let created = clock::add(now(), Duration::ZERO) - std::time::Duration::from_secs(age_s as u64);
    let ready_since = if state == "fresh" { now() } else { created };
    let t = |t: Timestamp| t.to_string();
    let mut v = json!({
        "metadata": { "name": name, "namespace": "ns", "creationTimestamp": t(created),
            "labels": { "app": "d", CONTROLLER_REVISION_HASH_LABEL: hash } },
        "spec": { "containers": [], "affinity": serde_json::to_value(replace_node_name_affinity(None, node)).unwrap() },
        "status": { "phase": "Running" },
    });
    if state != "pending" {
        v["spec"]["nodeName"] = json!(node);
    }
    match state {
        "ready" | "fresh" => {
            v["status"]["conditions"] =
                json!([{ "type": "Ready", "status": "True", "lastTransitionTime": t(ready_since) }])
        }
        "failed" => v["status"]["phase"] = json!("Failed"),
        "succeeded" => v["status"]["phase"] = json!("Succeeded"),
        "deleting" => v["metadata"]["deletionTimestamp"] = json!(t(now())),
        "pending" => v["status"]["phase"] = json!("Pending"),
        _ => {}
    }
    Arc::new(serde_json::from_value(v).unwrap())
}

fn current(d: &DaemonSet) -> Current {
    Current::of(d, NEW)
}

fn names(pods: &[Arc<Pod>]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    n.sort();
    n
}

fn manage(d: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>], backoff: &Backoff) -> ManagePlan {
    manage_plan(nodes, d, &node_pods(pods, false), &current(d), backoff, now())
}

#[test]
fn manage_creates_where_missing_and_deletes_where_not_wanted() {
    let d = ds(rolling(json!(1), json!(0)), json!({ "role": "worker" }), 0);
    let ns = vec![
        node("w1", json!({ "role": "worker" }), json!([])),
        node("w2", json!({ "role": "worker" }), json!([])),
        node("db", json!({ "role": "db" }), json!([])),
        node(
            "tainted",
            json!({ "role": "worker" }),
            json!([{ "key": "k", "effect": "NoSchedule" }]),
        ),
        node(
            "evicting",
            json!({ "role": "worker" }),
            json!([{ "key": "k", "effect": "NoExecute" }]),
        ),
    ];
    let pods = vec![
        pod("p-w1", "w1", NEW, 10, "ready"),
        pod("p-db", "db", NEW, 10, "ready"),
        pod("p-tainted", "tainted", NEW, 10, "ready"),
        pod("p-evicting", "evicting", NEW, 10, "ready"),
        pod("p-gone-pending", "gone", NEW, 10, "pending"),
        pod("p-gone-bound", "gone2", NEW, 10, "ready"),
    ];
    let plan = manage(&d, &ns, &pods, &Backoff::default());
    assert_eq!(plan.create_on, vec!["w2"]);
    // db no longer matches; evicting's NoExecute taint is not tolerated; tainted (NoSchedule)
    // keeps its running pod; the pending pod of a node that is gone goes.
    assert_eq!(names(&plan.delete), vec!["p-db", "p-evicting", "p-gone-pending"]);
    assert_eq!(names(&plan.on_missing_nodes), vec!["p-gone-bound"]);
    assert!(plan.failed.is_empty() && plan.retry_after.is_none());
}

#[test]
fn manage_deletes_failed_pods_with_back_off_and_prunes_extras() {
    let d = ds(rolling(json!(1), json!(0)), json!({}), 0);
    let ns = nodes(&["a", "b", "c"]);
    let backoff = Backoff::default();
    let pods = vec![
        pod("a-failed", "a", NEW, 10, "failed"),
        pod("b-old", "b", NEW, 20, "ready"),
        pod("b-young", "b", NEW, 5, "ready"),
        pod("b-going", "b", NEW, 30, "deleting"),
        pod("c-done", "c", NEW, 10, "succeeded"),
    ];
    let plan = manage(&d, &ns, &pods, &backoff);
    assert_eq!(names(&plan.delete), vec!["a-failed", "b-young", "c-done"], "the oldest stays");
    assert_eq!(plan.failed.len(), 1);
    assert_eq!(plan.failed[0].1, "a");
    assert_eq!(plan.succeeded.len(), 1);
    assert!(plan.create_on.is_empty(), "replacements come in the next round");

    // The replacement failed too, at once: it waits for the back-off.
    let pods = vec![pod("a-failed-2", "a", NEW, 0, "failed")];
    let plan = manage(&d, &ns, &pods, &backoff);
    assert!(plan.delete.is_empty());
    assert_eq!(plan.retry_after, Some(Duration::from_secs(1)));
    assert_eq!(plan.create_on, vec!["b", "c"]);
}

#[test]
fn manage_with_surge_keeps_an_old_pod_until_the_new_one_is_available() {
    let d = ds(rolling(json!(0), json!(1)), json!({}), 0);
    let ns = nodes(&["a", "b", "c"]);
    let pods = vec![
        pod("a-old", "a", OLD, 100, "ready"),
        pod("a-new", "a", NEW, 1, "running"),
        pod("b-old", "b", OLD, 100, "ready"),
        pod("b-new", "b", NEW, 1, "ready"),
        pod("c-old", "c", OLD, 100, "running"),
        pod("c-new", "c", NEW, 1, "running"),
        pod("c-new-2", "c", NEW, 0, "running"),
    ];
    let plan = manage(&d, &ns, &pods, &Backoff::default());
    // a: new not yet available, old ready: both stay. b: new available: old goes.
    // c: old not ready: it goes; the second new pod is extra.
    assert_eq!(names(&plan.delete), vec!["b-old", "c-new-2", "c-old"]);
    assert!(plan.create_on.is_empty());
}

#[test]
fn status_counts_what_kubectl_shows() {
    let d = ds(rolling(json!(1), json!(0)), json!({ "role": "worker" }), 30);
    let ns = vec![
        node("w1", json!({ "role": "worker" }), json!([])),
        node("w2", json!({ "role": "worker" }), json!([])),
        node("w3", json!({ "role": "worker" }), json!([])),
        node("w4", json!({ "role": "worker" }), json!([])),
        node("db", json!({ "role": "db" }), json!([])),
    ];
    let pods = vec![
        pod("w1", "w1", NEW, 100, "ready"),
        pod("w2", "w2", OLD, 100, "fresh"),
        pod("w3", "w3", NEW, 100, "running"),
        pod("db", "db", NEW, 100, "ready"),
    ];
    let c = status_counts(&ns, &d, &node_pods(&pods, true), &current(&d), now());
    assert_eq!(c.desired_number_scheduled, 4);
    assert_eq!(c.current_number_scheduled, 3);
    assert_eq!(c.number_misscheduled, 1);
    assert_eq!(c.number_ready, 2);
    assert_eq!(c.number_available, 1, "w2 is ready but not for minReadySeconds");
    assert_eq!(c.number_unavailable, 3);
    assert_eq!(c.updated_number_scheduled, 2);
}

fn roll(d: &DaemonSet, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> RollingPlan {
    rolling_plan(nodes, d, &node_pods(pods, false), &current(d), now()).unwrap()
}

#[test]
fn rolling_update_without_surge_respects_max_unavailable() {
    let ns = nodes(&["a", "b", "c", "d"]);
    let all_old: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|n| pod(&format!("{n}-old"), n, OLD, 100, "ready"))
        .collect();
    let d1 = ds(rolling(json!(1), json!(0)), json!({}), 0);
    assert_eq!(names(&roll(&d1, &ns, &all_old).delete), vec!["a-old"]);
    let d2 = ds(rolling(json!("50%"), json!(0)), json!({}), 0);
    assert_eq!(names(&roll(&d2, &ns, &all_old).delete), vec!["a-old", "b-old"]);

    // One node already has an unavailable new pod: no room left with maxUnavailable 1.
    let mut pods = all_old[1..].to_vec();
    pods.push(pod("a-new", "a", NEW, 1, "running"));
    assert!(roll(&d1, &ns, &pods).delete.is_empty());
    // ... once it is available, the next old pod goes.
    pods.pop();
    pods.push(pod("a-new", "a", NEW, 1, "ready"));
    assert_eq!(names(&roll(&d1, &ns, &pods).delete), vec!["b-old"]);
    // An old pod that is not available is replaced at once, whatever the budget.
    let mut pods = all_old.clone();
    pods[2] = pod("c-old", "c", OLD, 100, "running");
    assert_eq!(names(&roll(&d1, &ns, &pods).delete), vec!["c-old"]);
    // A node without any pod counts as unavailable.
    assert!(roll(&d1, &ns, &all_old[1..]).delete.is_empty());
    // All updated: nothing to do.
    let all_new: Vec<_> =
        ["a", "b", "c", "d"].iter().map(|n| pod(n, n, NEW, 100, "ready")).collect();
    assert_eq!(roll(&d1, &ns, &all_new), RollingPlan::default());
}

#[test]
fn rolling_update_with_surge_creates_before_deleting() {
    let ns = nodes(&["a", "b", "c"]);
    let d = ds(rolling(json!(0), json!(1)), json!({}), 0);
    let all_old: Vec<_> =
        ["a", "b", "c"].iter().map(|n| pod(&format!("{n}-old"), n, OLD, 100, "ready")).collect();
    let plan = roll(&d, &ns, &all_old);
    assert_eq!(plan.create_on, vec!["a"], "one surge pod at a time");
    assert!(plan.delete.is_empty(), "nothing is deleted before its replacement is available");

    let mut pods = all_old.clone();
    pods.push(pod("a-new", "a", NEW, 1, "running"));
    assert_eq!(roll(&d, &ns, &pods), RollingPlan::default(), "waiting for a-new");
    pods.pop();
    pods.push(pod("a-new", "a", NEW, 1, "ready"));
    let plan = roll(&d, &ns, &pods);
    assert_eq!(names(&plan.delete), vec!["a-old"]);
    assert_eq!(plan.create_on, vec!["b"]);

    // An unavailable old pod gets its replacement beyond the surge budget.
    let mut pods = all_old.clone();
    pods[2] = pod("c-old", "c", OLD, 100, "running");
    let plan = roll(&d, &ns, &pods);
    assert_eq!(plan.create_on, vec!["c", "a"]);
}

#[test]
fn allowances_default_to_one_unavailable() {
    let d = ds(rolling(json!(0), json!(0)), json!({}), 0);
    assert_eq!(allowances(&d, 3), Ok((0, 1)));
    assert_eq!(allowances(&d, 0), Ok((0, 0)));
    let d = ds(rolling(json!("30%"), json!(0)), json!({}), 0);
    assert_eq!(allowances(&d, 10), Ok((0, 3)));
}

/// A pod as the controller creates it: controlled by the DaemonSet `d` of [`ds`].
fn created_pod(name: &str, node: &str, hash: &str, age_s: i64, state: &str) -> Pod {
    let mut p = (*pod(name, node, hash, age_s, state)).clone();
    p.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({ "apiVersion": "apps/v1", "kind": "DaemonSet",
            "name": "d", "uid": "u", "controller": true }))
        .unwrap(),
    ]);
    p
}

/// The flake of the surge rollout (a third pod on a node): a sync read the pods, then the
/// pod it created last round was observed, then the expectations check let it act on the
/// read without that pod, and it started another new pod next to it. The sync reads the
/// pods only after the check; here the watch delivers the pod at the worst moment, right
/// after the read.
#[tokio::test]
async fn a_sync_acts_only_on_pods_read_after_its_creations_were_observed() {
    use super::handlers::Handlers;
    use crate::expectations::Expectations;
    use crate::recent::RecentWrites;
    use k8s_openapi::api::apps::v1::ControllerRevision;
    use rudder_client::{Informer, ManualClock, ObjectKey, WorkQueue};

    let d = ds(rolling(json!(0), json!(1)), json!({}), 0);
    let ns = nodes(&["s0", "s1"]);
    let key: ObjectKey = ("ns".into(), "d".into());
    let daemon_sets = Informer::<DaemonSet>::new();
    daemon_sets.apply(d.clone());
    let pods = Informer::<Pod>::new();
    let expectations = Arc::new(Expectations::new(Arc::new(ManualClock::new(now()))));
    Handlers {
        daemon_sets: daemon_sets.clone(),
        queue: WorkQueue::new(),
        expectations: expectations.clone(),
        written: Arc::new(RecentWrites::default()),
    }
    .register(&Informer::<ControllerRevision>::new(), &pods, &Informer::<Node>::new());
    // s0 is done; on s1 the old pod is still alone in the cache.
    pods.apply(created_pod("s0-new", "s0", NEW, 50, "ready"));
    pods.apply(created_pod("s1-old", "s1", OLD, 100, "ready"));
    let before: Vec<Arc<Pod>> = pods.list();
    // What a sync decides from that: start a new pod on s1.
    assert_eq!(roll(&d, &ns, &before).create_on, vec!["s1"]);
    assert!(manage(&d, &ns, &before, &Backoff::default()).create_on.is_empty());

    // That sync created s1-new; its watch event arrives right after the next sync's read.
    expectations.expect(&key, 1, []);
    let s1_new = created_pod("s1-new", "s1", NEW, 0, "running");
    let (settled, read) = expectations
        .satisfied_then(&key, async {
            let read = pods.list();
            pods.apply(s1_new.clone());
            read
        })
        .await;
    assert!(
        !settled || names(&read).contains(&"s1-new".to_owned()),
        "a sync may act only on a read that has the pod it created: {:?}",
        names(&read)
    );
    // Such a read would have started a second new pod on s1, next to s1-new and s1-old.
    assert_eq!(roll(&d, &ns, &read).create_on, vec!["s1"]);

    // The next sync (the observation enqueued it) reads s1-new and waits for it.
    assert_eq!(expectations.pending(&key), (0, 0));
    let (settled, read) = expectations.satisfied_then(&key, async { pods.list() }).await;
    assert!(settled);
    assert_eq!(names(&read), vec!["s0-new", "s1-new", "s1-old"]);
    assert_eq!(roll(&d, &ns, &read), RollingPlan::default());
    assert!(manage(&d, &ns, &read, &Backoff::default()).delete.is_empty());
}
