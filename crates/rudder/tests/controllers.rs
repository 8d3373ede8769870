//! The control loops end to end: `rudder server` (scheduler and controller manager inside),
//! `rudder sim nodes` processes as the nodes, and the real kubectl 1.33 driving the seed's
//! Deployment through scaling, rollouts, rollbacks, pauses, self-healing, node failure,
//! cascading deletes, Services' endpoints and unschedulable pods.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufReader;
use std::process::{Command, Stdio};

use common::{DEADLINE, KUBECTL, KillOnDrop, Server, Sim, eventually};
use serde_json::Value;

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/seeds");

/// Short node-failure settings so the test sees eviction in seconds.
const FAST_NODE_FAILURE: &[&str] =
    &["--node-monitor-grace-period", "3s", "--default-toleration-seconds", "1"];
/// Lease renewals well inside that 3 s grace period (the simulator's default is a kubelet's
/// 10 s, which would let healthy nodes go Unknown between renewals).
const FAST_HEARTBEAT: &[&str] = &["--heartbeat-interval", "1s"];

fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&server.kubectl(&all)).expect("kubectl JSON")
}

/// name -> (node, ready, image) of the pods matching `selector`.
fn pods(server: &Server, selector: &str) -> BTreeMap<String, (String, bool, String)> {
    let list = json(server, &["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        // Pods evicted from a dead node stay Terminating until it comes back (as upstream).
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap().to_owned();
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_owned();
            (
                name,
                (node, is_ready(p), p["spec"]["containers"][0]["image"].as_str().unwrap().into()),
            )
        })
        .collect()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn rollout_status(server: &Server, target: &str) {
    server.kubectl(&["rollout", "status", target, "--timeout=60s"]);
}

/// Watches pods with `kubectl get -w` and records, once all `replicas` are ready, the most
/// pods and the fewest ready pods seen at any moment. `start` returns once the watch has
/// seen them all ready, so a change made after it is observed from its beginning.
struct PodWatch {
    child: KillOnDrop,
    reader: std::thread::JoinHandle<(usize, usize, usize)>,
}

impl PodWatch {
    fn start(server: &Server, selector: &str, replicas: usize) -> PodWatch {
        let mut child = Command::new(KUBECTL)
            .args(["get", "pods", "-l", selector, "--watch", "--output-watch-events", "-o", "json"])
            .env("KUBECONFIG", server.kubeconfig())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (armed_tx, armed_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut ready: BTreeMap<String, bool> = BTreeMap::new();
            let (mut armed, mut max_total, mut min_ready, mut events) = (false, 0, usize::MAX, 0);
            for event in serde_json::Deserializer::from_reader(BufReader::new(stdout))
                .into_iter::<Value>()
                .map_while(Result::ok)
            {
                let name = event["object"]["metadata"]["name"].as_str().unwrap_or("").to_owned();
                if event["type"] == "DELETED" {
                    ready.remove(&name);
                } else {
                    ready.insert(name, is_ready(&event["object"]));
                }
                let total = ready.len();
                let n_ready = ready.values().filter(|r| **r).count();
                if !armed && total == replicas && n_ready == replicas {
                    armed = true;
                    let _ = armed_tx.send(());
                }
                if armed {
                    events += 1;
                    max_total = max_total.max(total);
                    min_ready = min_ready.min(n_ready);
                }
            }
            (max_total, min_ready, events)
        });
        let child = KillOnDrop(child);
        armed_rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("the watch never saw {replicas} ready pods"));
        PodWatch { child, reader }
    }

    /// Stops watching: (most pods, fewest ready pods, events seen after arming).
    fn finish(self) -> (usize, usize, usize) {
        drop(self.child);
        self.reader.join().unwrap()
    }
}

#[test]
fn seed_deployment_scales_rolls_out_rolls_back_and_pauses() {
    let server = Server::start();
    let _sim = Sim::start(&server, &["--count", "3"]);
    server.kubectl(&["apply", "-f", &format!("{SEEDS}/006-deployment-ml-model-serving.yaml")]);
    server.kubectl(&[
        "annotate",
        "deployment/ml-model-serving",
        "kubernetes.io/change-cause=first release",
    ]);
    rollout_status(&server, "deployment/ml-model-serving");
    let get = server.kubectl(&["get", "deployments"]);
    assert!(get.contains("ml-model-serving   10/10   10           10"), "{get}");
    let running = pods(&server, "app=ml-model");
    assert_eq!(running.len(), 10);
    let nodes: BTreeSet<&str> = running.values().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(nodes.len(), 3, "10 replicas not spread over the 3 nodes: {running:?}");
    for n in &nodes {
        let on = running.values().filter(|(node, _, _)| node == n).count();
        assert!((3..=4).contains(&on), "{on} pods on {n}: not spread evenly");
    }

    server.kubectl(&["scale", "deployment/ml-model-serving", "--replicas=4"]);
    rollout_status(&server, "deployment/ml-model-serving");
    eventually("4 pods", || (pods(&server, "app=ml-model").len() == 4).then_some(()));

    // A rolling update, watched: never more than 4 + maxSurge (25% -> 1) pods, never fewer
    // than 4 - maxUnavailable (25% -> 1) ready.
    let watch = PodWatch::start(&server, "app=ml-model", 4);
    server.kubectl(&[
        "set",
        "image",
        "deployment/ml-model-serving",
        "ml-rest-server=ml-serving:2.0",
    ]);
    server.kubectl(&[
        "annotate",
        "--overwrite",
        "deployment/ml-model-serving",
        "kubernetes.io/change-cause=serve 2.0",
    ]);
    rollout_status(&server, "deployment/ml-model-serving");
    let now = eventually("all pods on 2.0", || {
        let p = pods(&server, "app=ml-model");
        (p.len() == 4 && p.values().all(|(_, r, i)| *r && i == "ml-serving:2.0")).then_some(p)
    });
    assert_eq!(now.len(), 4);
    let (max_total, min_ready, events) = watch.finish();
    assert!(events >= 8, "the watch saw only {events} events of the rollout");
    assert!(max_total <= 5, "{max_total} pods at once: maxSurge exceeded");
    assert!(min_ready >= 3, "only {min_ready} ready pods at a moment: maxUnavailable exceeded");

    let history = server.kubectl(&["rollout", "history", "deployment/ml-model-serving"]);
    assert!(history.contains("1         first release"), "{history}");
    assert!(history.contains("2         serve 2.0"), "{history}");

    // Undo goes back to revision 1's template (as revision 3); --to-revision picks one.
    server.kubectl(&["rollout", "undo", "deployment/ml-model-serving"]);
    rollout_status(&server, "deployment/ml-model-serving");
    let image = || {
        server.kubectl(&[
            "get",
            "deployment/ml-model-serving",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    assert_eq!(image(), "ml-serving:1.0");
    let history = server.kubectl(&["rollout", "history", "deployment/ml-model-serving"]);
    assert!(history.contains("3         first release"), "{history}");
    assert!(!history.contains("\n1 "), "revision 1 should now be 3: {history}");
    server.kubectl(&["rollout", "undo", "deployment/ml-model-serving", "--to-revision=2"]);
    rollout_status(&server, "deployment/ml-model-serving");
    assert_eq!(image(), "ml-serving:2.0");
    eventually("pods back on 2.0", || {
        let p = pods(&server, "app=ml-model");
        (p.len() == 4 && p.values().all(|(_, r, i)| *r && i == "ml-serving:2.0")).then_some(())
    });
    let rs = server.kubectl(&["get", "rs", "-l", "app=ml-model", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "a rollback must reuse the old ReplicaSet: {rs}");

    // Paused: the template change is observed but nothing rolls; resumed: it completes.
    server.kubectl(&["rollout", "pause", "deployment/ml-model-serving"]);
    server.kubectl(&[
        "set",
        "image",
        "deployment/ml-model-serving",
        "ml-rest-server=ml-serving:3.0",
    ]);
    eventually("the paused change observed", || {
        let d = json(&server, &["get", "deployment/ml-model-serving"]);
        (d["status"]["observedGeneration"] == d["metadata"]["generation"]).then_some(())
    });
    let p = pods(&server, "app=ml-model");
    assert!(p.values().all(|(_, _, i)| i == "ml-serving:2.0"), "paused but rolled: {p:?}");
    let rs = server.kubectl(&["get", "rs", "-l", "app=ml-model", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "paused but created a ReplicaSet: {rs}");
    server.kubectl(&["rollout", "resume", "deployment/ml-model-serving"]);
    rollout_status(&server, "deployment/ml-model-serving");
    eventually("pods on 3.0", || {
        let p = pods(&server, "app=ml-model");
        (p.len() == 4 && p.values().all(|(_, r, i)| *r && i == "ml-serving:3.0")).then_some(())
    });

    let described = server.kubectl(&["describe", "deployment/ml-model-serving"]);
    assert!(described.contains("ScalingReplicaSet"), "{described}");
    assert!(described.contains("NewReplicaSetAvailable"), "{described}");
}

#[test]
fn pods_are_replaced_when_deleted_and_when_their_node_fails() {
    let server = Server::start_args(FAST_NODE_FAILURE);
    let _steady =
        Sim::start(&server, &[&["--count", "2", "--prefix", "steady"], FAST_HEARTBEAT].concat());
    let flaky =
        Sim::start(&server, &[&["--count", "1", "--prefix", "flaky"], FAST_HEARTBEAT].concat());
    server.kubectl(&["create", "deployment", "web", "--image=busybox", "--replicas=6"]);
    rollout_status(&server, "deployment/web");
    let before = pods(&server, "app=web");
    assert!(before.values().any(|(n, _, _)| n == "flaky-0"), "nothing on flaky-0: {before:?}");

    // A deleted pod is replaced by a new one.
    let victim = before.keys().next().unwrap().clone();
    server.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    eventually("a replacement", || {
        let p = pods(&server, "app=web");
        (p.len() == 6 && !p.contains_key(&victim) && p.values().all(|(_, r, _)| *r)).then_some(())
    });

    // The flaky node loses power: NotReady, tainted, its pods evicted and recreated elsewhere.
    drop(flaky);
    eventually("flaky-0 NotReady", || {
        let nodes = server.kubectl(&["get", "nodes", "flaky-0"]);
        nodes.contains("NotReady").then_some(())
    });
    let node = json(&server, &["get", "node", "flaky-0"]);
    let taints: Vec<&str> = node["spec"]["taints"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["key"].as_str()).collect())
        .unwrap_or_default();
    assert!(taints.contains(&"node.kubernetes.io/unreachable"), "taints: {taints:?}");
    eventually("all 6 pods running on the steady nodes", || {
        let p = pods(&server, "app=web");
        (p.len() == 6 && p.values().all(|(n, r, _)| *r && n.starts_with("steady-"))).then_some(())
    });

    // Back on: Ready again.
    let _flaky =
        Sim::start(&server, &[&["--count", "1", "--prefix", "flaky"], FAST_HEARTBEAT].concat());
    eventually("flaky-0 Ready", || {
        let nodes = server.kubectl(&["get", "nodes", "flaky-0", "--no-headers"]);
        nodes.split_whitespace().nth(1).is_some_and(|s| s == "Ready").then_some(())
    });

    // Deleting the Deployment takes its ReplicaSet and pods; --cascade=orphan leaves them.
    server.kubectl(&["delete", "deployment", "web"]);
    eventually("web's ReplicaSet and pods gone", || {
        let rs = server.kubectl(&["get", "rs", "-l", "app=web", "-o", "name"]);
        (rs.trim().is_empty() && pods(&server, "app=web").is_empty()).then_some(())
    });
    server.kubectl(&["create", "deployment", "kept", "--image=busybox", "--replicas=2"]);
    rollout_status(&server, "deployment/kept");
    server.kubectl(&["delete", "deployment", "kept", "--cascade=orphan"]);
    eventually("the orphaned ReplicaSet released", || {
        let rs = json(&server, &["get", "rs", "-l", "app=kept"]);
        let items = rs["items"].as_array().unwrap();
        (items.len() == 1 && items[0]["metadata"]["ownerReferences"].is_null()).then_some(())
    });
    assert_eq!(pods(&server, "app=kept").len(), 2, "orphaned pods must stay");
    let rs = server.kubectl(&[
        "get",
        "rs",
        "-l",
        "app=kept",
        "-o",
        "jsonpath={.items[0].status.replicas}",
    ]);
    assert_eq!(rs, "2");
}

fn endpoint_ips(server: &Server, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let ep = json(server, &["get", "endpoints", service]);
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        for a in subset["addresses"].as_array().into_iter().flatten() {
            ready.insert(a["ip"].as_str().unwrap().to_owned());
        }
        for a in subset["notReadyAddresses"].as_array().into_iter().flatten() {
            not_ready.insert(a["ip"].as_str().unwrap().to_owned());
        }
    }
    (ready, not_ready)
}

fn slice_ips(server: &Server, service: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let label = format!("kubernetes.io/service-name={service}");
    let slices = json(server, &["get", "endpointslices", "-l", &label]);
    let mut ready = BTreeSet::new();
    let mut not_ready = BTreeSet::new();
    for s in slices["items"].as_array().unwrap() {
        for e in s["endpoints"].as_array().into_iter().flatten() {
            let ip = e["addresses"][0].as_str().unwrap().to_owned();
            if e["conditions"]["ready"] == true {
                ready.insert(ip);
            } else {
                not_ready.insert(ip);
            }
        }
    }
    (ready, not_ready)
}

fn pod_ips(server: &Server, selector: &str) -> BTreeMap<String, String> {
    let list = json(server, &["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            let ip = p["status"]["podIP"].as_str()?;
            Some((p["metadata"]["name"].as_str().unwrap().to_owned(), ip.to_owned()))
        })
        .collect()
}

#[test]
fn endpoints_follow_readiness_and_unschedulable_pods_wait_for_room() {
    let server = Server::start();
    let _sim = Sim::start(&server, &["--count", "3"]);
    server.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=3",
        "--port=8080",
    ]);
    rollout_status(&server, "deployment/web");
    server.kubectl(&["expose", "deployment", "web", "--port=80", "--target-port=8080"]);
    let ips = eventually("3 pod IPs", || {
        let ips = pod_ips(&server, "app=web");
        (ips.len() == 3).then_some(ips)
    });
    let all: BTreeSet<String> = ips.values().cloned().collect();
    eventually("endpoints and slices with the 3 pods", || {
        let e = endpoint_ips(&server, "web");
        let s = slice_ips(&server, "web");
        (e == (all.clone(), BTreeSet::new()) && s == e).then_some(())
    });
    let endpoints = server.kubectl(&["get", "endpoints", "web"]);
    assert!(endpoints.contains(":8080"), "{endpoints}");

    // One pod turns not ready: it moves to notReadyAddresses / ready=false, and back.
    let (name, ip) = ips.iter().next().unwrap();
    server.kubectl(&["annotate", "pod", name, "sim.rudder.dev/not-ready=true"]);
    let ready: BTreeSet<String> = all.iter().filter(|i| *i != ip).cloned().collect();
    let unready: BTreeSet<String> = [ip.clone()].into();
    eventually("the not-ready pod moved", || {
        let e = endpoint_ips(&server, "web");
        let s = slice_ips(&server, "web");
        (e == (ready.clone(), unready.clone()) && s == e).then_some(())
    });
    server.kubectl(&["annotate", "pod", name, "sim.rudder.dev/not-ready-"]);
    eventually("the pod ready again", || {
        (endpoint_ips(&server, "web") == (all.clone(), BTreeSet::new())).then_some(())
    });

    // A pod that fits nowhere: Pending, FailedScheduling with upstream's message; a node
    // with room appears and it is scheduled there.
    let overrides = r#"{"spec":{"containers":[{"name":"big","image":"busybox","resources":{"requests":{"cpu":"100"}}}]}}"#;
    server.kubectl(&["run", "big", "--image=busybox", &format!("--overrides={overrides}")]);
    let message = eventually("a FailedScheduling event", || {
        let events = json(
            &server,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=big,reason=FailedScheduling",
            ],
        );
        events["items"].as_array()?.first()?["message"].as_str().map(str::to_owned)
    });
    assert!(message.starts_with("0/3 nodes are available: 3 Insufficient cpu."), "{message}");
    let phase = server.kubectl(&["get", "pod", "big", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Pending");
    let _roomy =
        Sim::start(&server, &["--count", "1", "--prefix", "roomy", "--capacity", "cpu=128"]);
    eventually("big running on roomy-0", || {
        let p = json(&server, &["get", "pod", "big"]);
        (p["spec"]["nodeName"] == "roomy-0" && p["status"]["phase"] == "Running").then_some(())
    });
}
