//! rudder-client's pieces against a real (in-process) API server: informers, events,
//! leader election.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use rudder_client::{Change, Context, EventType, LeaderElectionConfig, LeaderElector, SystemClock};
use rudder_testkit::TestCluster;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);

async fn eventually<F: FnMut() -> bool>(what: &str, mut f: F) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informer_follows_the_api() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &config_map("before")).await.unwrap();

    let cancel = CancellationToken::new();
    let ctx = Context::new(client, cancel.clone());
    let informer = ctx.informers.get::<ConfigMap>();
    assert!(Arc::ptr_eq(&informer, &ctx.informers.get::<ConfigMap>()), "one per type");
    let deletes = Arc::new(AtomicUsize::new(0));
    let d = deletes.clone();
    informer.add_handler(move |c| {
        if let Change::Deleted(_) = c {
            d.fetch_add(1, Ordering::SeqCst);
        }
    });
    tokio::time::timeout(DEADLINE, informer.wait_synced()).await.unwrap();
    assert!(informer.get("default", "before").is_some());

    api.create(&PostParams::default(), &config_map("after")).await.unwrap();
    eventually("the new object", || informer.get("default", "after").is_some()).await;
    api.delete("before", &DeleteParams::default()).await.unwrap();
    eventually("the delete", || informer.get("default", "before").is_none()).await;
    // The cache drops the object before its handlers hear of it: wait for them too.
    eventually("the delete handler", || deletes.load(Ordering::SeqCst) > 0).await;
    assert_eq!(deletes.load(Ordering::SeqCst), 1);
    let names: Vec<String> =
        informer.list_namespace("default").iter().map(|c| c.name_any()).collect();
    assert!(names.contains(&"after".to_owned()) && !names.contains(&"before".to_owned()));
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_events_are_folded_into_one_with_a_count() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = api.create(&PostParams::default(), &config_map("noisy")).await.unwrap();
    let ctx = Context::new(client.clone(), CancellationToken::new());
    let recorder = ctx.recorder("test-controller");
    recorder.event(&cm, EventType::Warning, "Trouble", "it broke");
    recorder.event(&cm, EventType::Warning, "Trouble", "it broke");
    recorder.event(&cm, EventType::Normal, "Fine", "all good");
    let events: Api<Event> = Api::namespaced(client, "default");
    let lp = ListParams::default().fields("involvedObject.name=noisy");
    let start = tokio::time::Instant::now();
    loop {
        let list = events.list(&lp).await.unwrap().items;
        let trouble: Vec<_> =
            list.iter().filter(|e| e.reason.as_deref() == Some("Trouble")).collect();
        if trouble.len() == 1 && trouble[0].count == Some(2) && list.len() == 2 {
            let e = trouble[0];
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(e.involved_object.kind.as_deref(), Some("ConfigMap"));
            assert_eq!(e.involved_object.uid, cm.metadata.uid);
            assert_eq!(
                e.source.as_ref().and_then(|s| s.component.as_deref()),
                Some("test-controller")
            );
            break;
        }
        assert!(start.elapsed() < DEADLINE, "events never folded: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_at_the_same_instant_get_distinct_names() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = api.create(&PostParams::default(), &config_map("frozen")).await.unwrap();
    // A clock that does not move: both events are stamped with the same instant.
    let clock = Arc::new(rudder_client::ManualClock::new("2026-01-01T00:00:00Z".parse().unwrap()));
    let ctx = Context::with_clock(client.clone(), CancellationToken::new(), clock);
    let recorder = ctx.recorder("test-controller");
    recorder.event(&cm, EventType::Normal, "First", "one");
    recorder.event(&cm, EventType::Normal, "Second", "two");
    let events: Api<Event> = Api::namespaced(client, "default");
    let lp = ListParams::default().fields("involvedObject.name=frozen");
    let start = tokio::time::Instant::now();
    loop {
        let list = events.list(&lp).await.unwrap().items;
        if list.len() == 2 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "an event was lost: {list:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn election(name: &str, identity: &str) -> LeaderElectionConfig {
    LeaderElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
        ..LeaderElectionConfig::new(name, identity)
    }
}

/// Runs a candidate; `leading` counts how many of its leadership terms are active.
fn candidate(
    client: kube::Client,
    identity: &str,
    leading: Arc<AtomicUsize>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let elector =
        LeaderElector::new(client, election("test-lock", identity), Arc::new(SystemClock));
    tokio::spawn(elector.run(cancel, move |lost: CancellationToken| {
        let leading = leading.clone();
        async move {
            leading.fetch_add(1, Ordering::SeqCst);
            lost.cancelled().await;
            leading.fetch_sub(1, Ordering::SeqCst);
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_handover() {
    let cluster = TestCluster::start().await;
    let (a_leads, b_leads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a_cancel, b_cancel) = (CancellationToken::new(), CancellationToken::new());
    let a = candidate(cluster.client(), "a", a_leads.clone(), a_cancel.clone());
    eventually("a leads", || a_leads.load(Ordering::SeqCst) == 1).await;
    let b = candidate(cluster.client(), "b", b_leads.clone(), b_cancel.clone());
    // b keeps trying for longer than a lease duration but a renews: b never leads.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        assert_eq!(b_leads.load(Ordering::SeqCst), 0, "two leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-system");
    let lease = leases.get("test-lock").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().holder_identity.as_deref(), Some("a"));

    // a stops cleanly: it releases the Lease and b takes over without waiting it out.
    a_cancel.cancel();
    a.await.unwrap();
    assert_eq!(a_leads.load(Ordering::SeqCst), 0);
    eventually("b leads", || b_leads.load(Ordering::SeqCst) == 1).await;
    let lease = leases.get("test-lock").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("b"));
    assert_eq!(spec.lease_transitions, Some(1));

    // b dies without releasing (task aborted): a new candidate c waits the lease out, then leads.
    b.abort();
    let c_leads = Arc::new(AtomicUsize::new(0));
    let c_cancel = CancellationToken::new();
    let _c = candidate(cluster.client(), "c", c_leads.clone(), c_cancel.clone());
    eventually("c leads after b's lease expired", || c_leads.load(Ordering::SeqCst) == 1).await;
    b_cancel.cancel();
    c_cancel.cancel();
}

/// `as=PartialObjectMetadata[List]` (kube's `Api<PartialObjectMeta<K>>`, what the garbage
/// collector watches with): get, list and watch answer metadata only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_only_get_list_and_watch() {
    use futures::StreamExt;
    use kube::core::{PartialObjectMeta, WatchEvent};

    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let full: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = config_map("meta");
    cm.metadata.labels = Some([("app".to_owned(), "x".to_owned())].into());
    cm.data = Some([("big".to_owned(), "v".repeat(4096))].into());
    let created = full.create(&PostParams::default(), &cm).await.unwrap();

    // Raw bodies: the kind is PartialObjectMetadata and nothing but metadata comes back.
    let get_as = |path: &str, form: &str| {
        let accept = format!("application/json;as={form};g=meta.k8s.io;v=v1");
        let request = http::Request::get(path).header("accept", accept).body(Vec::new()).unwrap();
        let client = client.clone();
        async move { client.request::<serde_json::Value>(request).await.unwrap() }
    };
    let one = get_as("/api/v1/namespaces/default/configmaps/meta", "PartialObjectMetadata").await;
    assert_eq!(one["kind"], "PartialObjectMetadata");
    assert_eq!(one["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(one["metadata"]["uid"], created.metadata.uid.clone().unwrap().as_str());
    assert!(one.get("data").is_none(), "{one}");
    let list = get_as("/api/v1/namespaces/default/configmaps", "PartialObjectMetadataList").await;
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert!(list["metadata"]["resourceVersion"].is_string());
    let item = list["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "meta");
    assert!(item.is_some_and(|i| i.get("data").is_none() && i["kind"] == "PartialObjectMetadata"));

    // Through kube's typed metadata API, a watch sees a change with its labels only.
    let meta: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), "default");
    let got = meta.get("meta").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["app"], "x");
    let rv = created.metadata.resource_version.clone().unwrap();
    let mut events = meta.watch(&kube::api::WatchParams::default(), &rv).await.unwrap().boxed();
    let patch = serde_json::json!({"metadata": {"labels": {"app": "y"}}});
    full.patch("meta", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .unwrap();
    let event = tokio::time::timeout(DEADLINE, events.next()).await.unwrap().unwrap().unwrap();
    match event {
        WatchEvent::Modified(o) => {
            assert_eq!(o.metadata.labels.unwrap()["app"], "y");
            assert_eq!(o.types.unwrap().kind, "PartialObjectMetadata");
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
}
