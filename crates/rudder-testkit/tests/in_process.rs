//! In-process connections (`rudder_apiserver::local`): what the scheduler and controller
//! manager inside `rudder server` use. Same TLS, same identity, no TCP.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use rudder_testkit::TestCluster;

const DEADLINE: Duration = Duration::from_secs(30);

/// `kubeconfig` with its server URL pointing at a TCP port nobody listens on: a request that
/// succeeds with it did not go over TCP.
fn unreachable_over_tcp(kubeconfig: &str, cluster: &TestCluster) -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // (the listener is dropped here: the port is closed)
    kubeconfig.replace(&cluster.address.to_string(), &closed.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_reach_the_api_over_the_pipe_with_their_certificate() {
    let cluster = TestCluster::start().await;
    let text = cluster.component_kubeconfig("system:kube-controller-manager", &[]);
    let text = unreachable_over_tcp(&text, &cluster);
    let client = rudder_client::client_over(&text, cluster.local.clone()).unwrap();

    // Requests, a write and a watch all work over the pipe.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_owned()), "{names:?}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("piped".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let seen = tokio::time::timeout(DEADLINE, async {
        let mut events = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();
        while let Some(event) = events.try_next().await.unwrap() {
            if let watcher::Event::InitApply(cm) | watcher::Event::Apply(cm) = event
                && cm.name_any() == "piped"
            {
                return true;
            }
        }
        false
    })
    .await
    .expect("the watch over the pipe delivers the object");
    assert!(seen);

    // Without a client certificate the same pipe gets 401: the identity is the TLS peer's.
    let anonymous: String = unreachable_over_tcp(&cluster.kubeconfig_text(), &cluster)
        .lines()
        .filter(|l| !l.contains("client-certificate-data") && !l.contains("client-key-data"))
        .map(|l| format!("{l}\n"))
        .collect();
    let anonymous = rudder_client::client_over(&anonymous, cluster.local.clone()).unwrap();
    let err = Api::<Namespace>::all(anonymous).list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 401),
        "expected 401 Unauthorized, got {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_refuses_in_process_connections() {
    let cluster = TestCluster::start().await;
    let local = cluster.local.clone();
    let text = cluster.component_kubeconfig("system:kube-scheduler", &[]);
    drop(cluster);
    let client = rudder_client::client_over(&text, local).unwrap();
    let result =
        tokio::time::timeout(DEADLINE, Api::<Namespace>::all(client).list(&ListParams::default()))
            .await
            .expect("an error, not a hang");
    assert!(result.is_err(), "{result:?}");
}
