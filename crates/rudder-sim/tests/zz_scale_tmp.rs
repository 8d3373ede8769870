mod common;
use common::*;
use std::time::{Duration, Instant};
use kube::api::{ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn scale_by_hand() {
    let cluster = rudder_testkit::TestCluster::start().await;
    let client = cluster.client();
    let mut cfg = rudder_sim::SimConfig::with_count(5000);
    cfg.succeed_after = None;
    let t = Instant::now();
    let sim = rudder_sim::SimNodes::start(client.clone(), cfg, Default::default()).await.unwrap();
    sim.wait_registered().await.unwrap();
    println!("SCALE 5000 nodes registered in {:?}", t.elapsed());
    let n = nodes(&client).list(&ListParams::default().labels("type=sim")).await.unwrap().items.len();
    println!("SCALE listed {n}");
    let t = Instant::now();
    let pp = PostParams::default();
    let pods_api = pods(&client);
    futures::stream::iter(0..3000).for_each_concurrent(32, |i| {
        let pods_api = pods_api.clone();
        let pp = pp.clone();
        async move {
            let node = format!("sim-node-{}", i % 5000);
            pods_api.create(&pp, &pod(&format!("p{i}"), Some(&node), "Always", json!({}))).await.unwrap();
        }
    }).await;
    println!("SCALE 3000 pods created in {:?}", t.elapsed());
    loop {
        let list = pods_api.list(&ListParams::default()).await.unwrap();
        let running = list.items.iter().filter(|p| phase(p) == Some("Running")).count();
        if running == 3000 { break; }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("SCALE 3000 pods running after {:?}", t.elapsed());
    // heartbeat load for a while
    tokio::time::sleep(Duration::from_secs(12)).await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let leases = leases(&client).list(&ListParams::default()).await.unwrap();
    let fresh = leases.items.iter().filter(|l| {
        let r = l.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0;
        now.duration_since(r).as_secs_f64() < 11.0
    }).count();
    println!("SCALE leases renewed in the last 11 s: {fresh} of {}", leases.items.len());
    println!("SCALE ok");
}
use futures::StreamExt;
