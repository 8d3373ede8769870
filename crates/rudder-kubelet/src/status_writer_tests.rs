//! The writer against a fake API that answers slowly: one patch per pod at a time, the
//! newest status last, other pods not held back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Client;
use kube::client::Body;
use tokio_util::sync::CancellationToken;

use super::*;

/// (pod, phase) of one patch.
type Sent = (String, String);

#[derive(Default)]
struct Seen {
    in_flight: HashMap<String, usize>,
    max_per_pod: usize,
    /// In the order the patches arrived.
    patches: Vec<Sent>,
    /// Per patch, the patches already on their way when it arrived.
    alongside: Vec<(Sent, Vec<Sent>)>,
    current: Vec<Sent>,
}

fn fake_api(seen: Arc<Mutex<Seen>>, delay: Duration) -> Client {
    let service = tower::service_fn(move |req: http::Request<Body>| {
        let seen = seen.clone();
        async move {
            let pod = req.uri().path().split('/').nth(6).unwrap_or_default().to_owned();
            let body = req.into_body().collect_bytes().await.unwrap();
            let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let phase = patch["status"]["phase"].as_str().unwrap_or_default().to_owned();
            {
                let mut s = seen.lock().unwrap();
                *s.in_flight.entry(pod.clone()).or_default() += 1;
                s.max_per_pod = s.max_per_pod.max(s.in_flight[&pod]);
                let me = (pod.clone(), phase);
                let others = s.current.clone();
                s.alongside.push((me.clone(), others));
                s.current.push(me.clone());
                s.patches.push(me);
            }
            tokio::time::sleep(delay).await;
            let mut s = seen.lock().unwrap();
            *s.in_flight.get_mut(&pod).unwrap() -= 1;
            let done = s.current.iter().position(|(p, _)| *p == pod).unwrap();
            s.current.remove(done);
            drop(s);
            let answer =
                serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod}});
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(
                serde_json::to_vec(&answer).unwrap(),
            )))
        }
    });
    Client::new(service, "default")
}

fn pod(name: &str) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p
}

fn status(phase: &str) -> PodStatus {
    PodStatus { phase: Some(phase.into()), ..Default::default() }
}

// Virtual time: the fake API's delay and the pauses below are exact, not raced.
#[tokio::test(start_paused = true)]
async fn one_patch_per_pod_at_a_time_and_the_newest_status_last() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let writer = StatusWriter::default();
    let cancel = CancellationToken::new();
    tokio::spawn(writer.clone().run(
        fake_api(seen.clone(), Duration::from_millis(100)),
        Duration::from_secs(5),
        cancel.clone(),
    ));
    let (a, b) = (pod("a"), pod("b"));
    writer.set(&a, status("Pending"));
    // While a's first patch is on its way: two newer statuses for a (the last wins) and
    // one for b, which must not wait for a.
    tokio::time::sleep(Duration::from_millis(30)).await;
    writer.set(&a, status("Running"));
    writer.set(&a, status("Succeeded"));
    writer.set(&b, status("Running"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !writer.is_idle() {
        assert!(tokio::time::Instant::now() < deadline, "statuses never all written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cancel.cancel();
    let s = seen.lock().unwrap();
    assert_eq!(s.max_per_pod, 1, "two patches for one pod at once: {:?}", s.patches);
    let pair = |p: &str, ph: &str| (p.to_owned(), ph.to_owned());
    let b_alongside = s.alongside.iter().find(|(me, _)| *me == pair("b", "Running"));
    assert_eq!(
        b_alongside.map(|(_, others)| others.clone()),
        Some(vec![pair("a", "Pending")]),
        "b's patch must go while a's first one is on its way"
    );
    let of = |name: &str| -> Vec<&str> {
        s.patches.iter().filter(|(p, _)| p == name).map(|(_, ph)| ph.as_str()).collect()
    };
    assert_eq!(of("a"), ["Pending", "Succeeded"]);
    assert_eq!(of("b"), ["Running"]);
    assert_eq!(writer.last_written("uid-a"), Some(status("Succeeded")));
}
