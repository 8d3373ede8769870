use super::*;
use crate::config::SimConfig;
use crate::pod_io::Recorded;
use k8s_openapi::api::core::v1::Pod;
use rudder_client::ManualClock;
use std::sync::atomic::Ordering;

struct Harness {
    engine: Engine,
    writes: mpsc::UnboundedReceiver<Recorded>,
    shared: Arc<Shared>,
    clock: Arc<ManualClock>,
}

fn harness(max_writes: usize) -> Harness {
    let mut cfg = SimConfig::with_count(2);
    cfg.max_concurrent_pod_writes = max_writes;
    cfg.ready_delay = Duration::from_millis(10);
    let clock = Arc::new(ManualClock::new("2025-01-01T00:00:00Z".parse().unwrap()));
    let shared = Arc::new(Shared::new(cfg, clock.clone()));
    let (tx, writes) = mpsc::unbounded_channel();
    let (done_tx, _) = mpsc::unbounded_channel();
    let engine = Engine::new(shared.clone(), PodWriter::Record(tx), done_tx);
    Harness { engine, writes, shared, clock }
}

fn info(
    name: &str,
    uid: &str,
    node: usize,
    policy: &str,
    annotations: serde_json::Value,
    deleting: bool,
) -> EngineMsg {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "namespace": "ns", "uid": uid, "annotations": annotations },
        "spec": { "restartPolicy": policy, "nodeName": format!("sim-node-{node}"),
                  "containers": [{ "name": "c", "image": "busybox" }] }
    }))
    .unwrap();
    if deleting {
        pod.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2025-01-01T00:00:00Z".parse().unwrap(),
            ));
    }
    EngineMsg::Applied(Box::new(PodInfo::of(&pod, node).unwrap()))
}

fn running(name: &str, uid: &str) -> EngineMsg {
    info(name, uid, 0, "Always", serde_json::json!({}), false)
}

impl Harness {
    fn send(&mut self, msg: EngineMsg) {
        self.engine.handle(msg);
        self.engine.dispatch();
    }

    async fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        tokio::time::advance(d).await;
        self.engine.fire_timers();
        self.engine.dispatch();
    }

    fn take(&mut self) -> Vec<Recorded> {
        std::iter::from_fn(|| self.writes.try_recv().ok()).collect()
    }

    fn answer(&mut self, r: &Recorded, outcome: WriteOutcome) {
        self.send(EngineMsg::Done {
            slot: r.slot,
            generation: r.generation,
            work: r.work,
            outcome,
        });
    }
}

fn phase(r: &Recorded) -> &str {
    r.status.as_ref().unwrap().phase.as_deref().unwrap()
}

#[tokio::test(start_paused = true)]
async fn starts_pods_after_the_delay_and_writes_only_changes() {
    let mut h = harness(8);
    h.send(running("p", "u1"));
    h.advance(Duration::from_millis(5)).await;
    assert!(h.take().is_empty(), "not before ready_delay");
    h.advance(Duration::from_millis(5)).await;
    let w = h.take();
    assert_eq!(w.len(), 1);
    assert_eq!((w[0].work, w[0].name.as_str(), phase(&w[0])), (Work::Status, "p", "Running"));
    let ip: Ipv4Addr = w[0].status.as_ref().unwrap().pod_ip.as_deref().unwrap().parse().unwrap();
    assert!("10.42.0.0/24".parse::<crate::Ipv4Cidr>().unwrap().contains(ip));
    h.answer(&w[0], WriteOutcome::Written);
    // Our own write comes back through the watch: nothing to do.
    h.send(running("p", "u1"));
    h.advance(Duration::from_secs(60)).await;
    assert!(h.take().is_empty());
    assert_eq!(h.engine.counts(), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn scripted_exit_moves_the_pod_on_its_timer() {
    let mut h = harness(8);
    h.send(info("job", "u1", 0, "Never", serde_json::json!({ "sim.rudder.dev/exit-after-ms": "50", "sim.rudder.dev/exit-code": "1" }), false));
    h.advance(Duration::from_millis(10)).await;
    let w = h.take();
    assert_eq!(phase(&w[0]), "Running");
    h.answer(&w[0], WriteOutcome::Written);
    h.advance(Duration::from_millis(49)).await;
    assert!(h.take().is_empty());
    h.advance(Duration::from_millis(1)).await;
    let w = h.take();
    assert_eq!(phase(&w[0]), "Failed");
    assert_eq!(h.engine.counts(), (1, 0), "a finished pod's address is free again");
}

#[tokio::test(start_paused = true)]
async fn bounds_the_writes_in_flight() {
    let mut h = harness(1);
    for i in 0..3 {
        h.send(running(&format!("p{i}"), &format!("u{i}")));
    }
    h.advance(Duration::from_millis(10)).await;
    for _ in 0..3 {
        let w = h.take();
        assert_eq!(w.len(), 1, "one at a time");
        h.answer(&w[0], WriteOutcome::Written);
    }
    assert!(h.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_stopped_node_parks_its_pods_until_started() {
    let mut h = harness(8);
    h.shared.nodes[0].running.store(false, Ordering::SeqCst);
    h.send(running("p", "u1"));
    h.send(running("other", "u2"));
    h.advance(Duration::from_secs(1)).await;
    assert!(h.take().is_empty(), "stopped node: no writes");
    h.shared.nodes[0].running.store(true, Ordering::SeqCst);
    h.send(EngineMsg::NodeStarted(0));
    let w = h.take();
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|w| phase(w) == "Running"));
}

#[tokio::test(start_paused = true)]
async fn deletion_is_finished_once_and_the_pod_forgotten() {
    let mut h = harness(8);
    h.send(running("p", "u1"));
    h.advance(Duration::from_millis(10)).await;
    let w = h.take();
    h.answer(&w[0], WriteOutcome::Written);
    h.send(info("p", "u1", 0, "Always", serde_json::json!({}), true));
    let w = h.take();
    assert_eq!((w.len(), w[0].work), (1, Work::Delete));
    assert_eq!(h.engine.counts(), (1, 0), "address freed at deletion");
    h.answer(&w[0], WriteOutcome::Written);
    // Still there (finalizers): another update does not delete again.
    h.send(info("p", "u1", 0, "Always", serde_json::json!({}), true));
    assert!(h.take().is_empty());
    h.send(EngineMsg::Deleted { namespace: "ns".into(), name: "p".into(), uid: "u1".into() });
    assert_eq!(h.engine.counts(), (0, 0));
    // A terminating pod we never ran (e.g. terminal) is deleted too.
    h.send(info("old", "u9", 1, "Never", serde_json::json!({}), true));
    assert_eq!(h.take()[0].work, Work::Delete);
}

#[tokio::test(start_paused = true)]
async fn failed_writes_retry_with_back_off_and_gone_pods_are_forgotten() {
    let mut h = harness(8);
    h.send(running("p", "u1"));
    h.advance(Duration::from_millis(10)).await;
    let w = h.take();
    h.answer(&w[0], WriteOutcome::Failed);
    h.advance(Duration::from_millis(199)).await;
    assert!(h.take().is_empty());
    h.advance(Duration::from_millis(1)).await;
    let w = h.take();
    assert_eq!((w.len(), phase(&w[0])), (1, "Running"), "retried");
    h.answer(&w[0], WriteOutcome::Gone);
    assert_eq!(h.engine.counts(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_new_uid_replaces_the_old_pod() {
    let mut h = harness(8);
    h.send(running("p", "u1"));
    h.advance(Duration::from_millis(10)).await;
    let w = h.take();
    h.answer(&w[0], WriteOutcome::Written);
    h.send(running("p", "u2"));
    h.advance(Duration::from_millis(10)).await;
    let w = h.take();
    assert_eq!(w.len(), 1);
    let id =
        w[0].status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].container_id.clone();
    assert_eq!(id.as_deref(), Some("sim://u2-c"));
    assert_eq!(h.engine.counts(), (1, 1));
}
