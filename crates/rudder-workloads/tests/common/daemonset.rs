//! What the DaemonSet integration tests share: the controller with rudder's scheduler,
//! simulated nodes, manifests, and waits for pods, status and revisions.

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rudder_sim::{SimConfig, SimNodes};
use rudder_workloads::daemonset::util::{CONTROLLER_REVISION_HASH_LABEL, target_node_name};
use serde_json::{Value, json};

use super::{Controllers, Harness, start, wait_for};

pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// The controller under test and the scheduler, on one server.
pub async fn start_all() -> Harness {
    let h = start(Controllers::default(), None).await;
    let config = rudder_workloads::DaemonSetConfig::default();
    tokio::spawn(rudder_workloads::daemonset::run(h.ctx.clone(), config, h.cancel.clone()));
    let (ctx, cancel) = (h.ctx.clone(), h.cancel.clone());
    tokio::spawn(async move {
        let config = rudder_scheduler::SchedulerConfig::default();
        rudder_scheduler::run(ctx, config, cancel).await.expect("scheduler");
    });
    h
}

/// Simulated nodes with these names, taints (`key[=value]:Effect`) and labels (`k=v`).
pub async fn sim(h: &Harness, names: &[&str], taints: &[&str], labels: &[&str]) -> SimNodes {
    let mut config =
        SimConfig { names: names.iter().map(|n| n.to_string()).collect(), ..SimConfig::default() };
    for t in taints {
        config.add_taint(t).expect("taint");
    }
    for l in labels {
        config.add_label(l).expect("label");
    }
    let sim = SimNodes::start(h.client.clone(), config, h.cancel.clone()).await.expect("sim");
    tokio::time::timeout(super::DEADLINE, sim.wait_registered())
        .await
        .expect("nodes registered in time")
        .expect("nodes registered");
    sim
}

/// The seed manifest (tests/fixtures/seeds/013-daemonset-fluentd-elasticsearch.yaml in the
/// rudder crate) as JSON.
pub fn seed() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": "fluentd-elasticsearch", "namespace": "kube-system",
            "labels": { "k8s-app": "fluentd-logging" } },
        "spec": {
            "selector": { "matchLabels": { "name": "fluentd-elasticsearch" } },
            "template": {
                "metadata": { "labels": { "name": "fluentd-elasticsearch" } },
                "spec": {
                    "tolerations": [{ "key": "node-role.kubernetes.io/master", "effect": "NoSchedule" }],
                    "containers": [{
                        "name": "fluentd-elasticsearch",
                        "image": "k8s.gcr.io/fluentd-elasticsearch:1.20",
                        "resources": {
                            "limits": { "memory": "200Mi" },
                            "requests": { "cpu": "100m", "memory": "200Mi" },
                        },
                    }],
                },
            },
        },
    })
}

pub fn daemon_set(name: &str, image: &str, strategy: Value, node_selector: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": name, "annotations": { CHANGE_CAUSE: format!("image {image}") } },
        "spec": {
            "selector": { "matchLabels": { "app": name } },
            "updateStrategy": strategy,
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "nodeSelector": node_selector, "containers": [{ "name": "c", "image": image }] },
            },
        },
    })
}

pub async fn create(client: &Client, ns: &str, ds: Value) -> DaemonSet {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &serde_json::from_value(ds).unwrap())
        .await
        .expect("create DaemonSet")
}

pub async fn get(client: &Client, ns: &str, name: &str) -> DaemonSet {
    Api::<DaemonSet>::namespaced(client.clone(), ns).get(name).await.expect("get DaemonSet")
}

pub async fn set_image(client: &Client, ns: &str, name: &str, image: &str) {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let p = json!({
        "metadata": { "annotations": { CHANGE_CAUSE: format!("image {image}") } },
        "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": image }] } } },
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&p)).await.expect("patch DaemonSet");
}

pub async fn pods(client: &Client, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(selector)).await.expect("list pods").items
}

pub fn hash(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
        .cloned()
        .unwrap_or_default()
}

pub fn node_of(pod: &Pod) -> String {
    target_node_name(pod).unwrap_or_default()
}

/// Waits until the selected pods are exactly one per node of `nodes`, each bound there and
/// Ready (and, if given, of revision `want_hash`); returns them.
pub async fn wait_pods_on(
    client: &Client,
    ns: &str,
    selector: &str,
    nodes: &[&str],
    want_hash: Option<&str>,
) -> Vec<Pod> {
    let want: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
    wait_for(&format!("{selector} pods ready on {want:?} (hash {want_hash:?})"), || async {
        let pods = pods(client, ns, selector).await;
        let mut on: Vec<String> = pods.iter().map(node_of).collect();
        on.sort();
        let ok = on == want
            && pods.iter().all(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_of(p).as_str())
                    && super::is_ready(p)
                    && p.metadata.deletion_timestamp.is_none()
                    && want_hash.is_none_or(|h| hash(p) == h)
            });
        ok.then_some(pods)
    })
    .await
}

/// Waits until the DaemonSet's status (for its current generation) satisfies `ok`.
pub async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&DaemonSetStatus) -> bool,
) -> DaemonSet {
    wait_for(&format!("{name} status: {what}"), || async {
        let ds = get(client, ns, name).await;
        let s = ds.status.clone().unwrap_or_default();
        let observed = s.observed_generation.unwrap_or(0) >= ds.metadata.generation.unwrap_or(0);
        (observed && ok(&s)).then_some(ds)
    })
    .await
}

/// Every count at `n`: desired, current, ready, available, updated; nothing misscheduled.
pub fn settled(n: i32) -> impl Fn(&DaemonSetStatus) -> bool {
    move |s| {
        s.desired_number_scheduled == n
            && s.current_number_scheduled == n
            && s.number_ready == n
            && s.number_available.unwrap_or(0) == n
            && s.updated_number_scheduled.unwrap_or(0) == n
            && s.number_misscheduled == 0
            && s.number_unavailable.unwrap_or(0) == 0
    }
}

pub async fn revisions(client: &Client, ns: &str, selector: &str) -> Vec<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let mut items =
        api.list(&ListParams::default().labels(selector)).await.expect("list revisions").items;
    items.sort_by_key(|r| r.revision);
    items
}

/// Runs the real kubectl against the test server; its stdout, or the test fails.
pub async fn kubectl(h: &Harness, args: &[&str]) -> String {
    let mut all =
        vec!["--kubeconfig".to_string(), h.cluster.admin_kubeconfig.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("kubectl").args(&all).output().expect("run kubectl")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `(revision, change-cause)` rows of `kubectl rollout history`.
pub fn history_rows(out: &str) -> Vec<(String, String)> {
    out.lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| {
            let (rev, cause) = l.trim().split_once(char::is_whitespace)?;
            Some((rev.to_owned(), cause.trim().to_owned()))
        })
        .collect()
}
