//! The API server side of the kubelet: graceful pod deletion, `pods/log` proxied to a
//! (fake) kubelet over HTTPS with the API server's client certificate, the streaming
//! subresources rudder does not serve yet, and TokenRequest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{
    Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use rudder_testkit::TestCluster;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(30);

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason, s.message),
        other => panic!("expected an API error, got {other}"),
    }
}

async fn pod(pods: &Api<Pod>, spec: Value) -> Pod {
    let p: Pod = serde_json::from_value(spec).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap()
}

async fn set_status(pods: &Api<Pod>, name: &str, status: Value) {
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .unwrap();
}

fn bound(name: &str, node: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "busybox" }] },
    })
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Graceful deletion
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_pod_is_deleted_gracefully_and_its_kubelet_finishes_the_deletion() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let created = pod(&pods, bound("g", "n1")).await;
    set_status(&pods, "g", json!({ "phase": "Running" })).await;
    let uid = created.metadata.uid.clone().unwrap();
    let rv = pods.get("g").await.unwrap().metadata.resource_version.unwrap();
    let mut events =
        pods.watch(&WatchParams::default().fields("metadata.name=g"), &rv).await.unwrap().boxed();

    // First DELETE: the pod stays, with deletionTimestamp = now + 30 s and the grace period.
    let answer = pods.delete("g", &DeleteParams::default()).await.unwrap();
    let marked = answer.left().expect("the pod is answered, not a Status");
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let deadline = marked.metadata.deletion_timestamp.clone().expect("deletionTimestamp").0;
    let creation = created.metadata.creation_timestamp.unwrap().0;
    let ahead = deadline.duration_since(creation).as_secs();
    assert!((28..=40).contains(&ahead), "deletionTimestamp {ahead}s after creation");

    // A longer grace period changes nothing; a shorter one shortens it.
    let again = pods.delete("g", &DeleteParams::default().grace_period(60)).await.unwrap();
    let again = again.left().unwrap();
    assert_eq!(again.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(again.metadata.resource_version, marked.metadata.resource_version);
    let shorter = pods.delete("g", &DeleteParams::default().grace_period(10)).await.unwrap();
    let shorter = shorter.left().unwrap();
    assert_eq!(shorter.metadata.deletion_grace_period_seconds, Some(10));
    assert_eq!(
        deadline.duration_since(shorter.metadata.deletion_timestamp.unwrap().0).as_secs(),
        20
    );

    // The kubelet writes status while it stops the containers: the pod stays.
    set_status(&pods, "g", json!({ "phase": "Running", "message": "stopping" })).await;
    assert!(pods.get_opt("g").await.unwrap().is_some());

    // A wrong uid precondition is refused; the kubelet's own final delete removes it.
    let wrong = DeleteParams::default()
        .grace_period(0)
        .preconditions(Preconditions { uid: Some("other".into()), resource_version: None });
    assert_eq!(api_error(pods.delete("g", &wrong).await.unwrap_err()).0, 409);
    let last = DeleteParams::default()
        .grace_period(0)
        .preconditions(Preconditions { uid: Some(uid), resource_version: None });
    let gone = pods.delete("g", &last).await.unwrap();
    assert!(gone.is_right(), "a Status: the pod is gone");
    assert!(pods.get_opt("g").await.unwrap().is_none());

    // Watchers saw the marking, then the deletion.
    let mut kinds = Vec::new();
    while kinds.last() != Some(&"DELETED") {
        let event = tokio::time::timeout(DEADLINE, events.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("watch open");
        kinds.push(match event {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Modified(p) => {
                assert!(p.metadata.deletion_timestamp.is_some() || kinds.is_empty());
                "MODIFIED"
            }
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        });
    }
    assert_eq!(kinds.first(), Some(&"MODIFIED"));
    assert!(!kinds.contains(&"ADDED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unscheduled_terminated_and_forced_pods_go_at_once_unless_finalizers_hold_them() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, json!({ "metadata": { "name": "unscheduled" }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } })).await;
    pod(&pods, bound("done", "n1")).await;
    set_status(&pods, "done", json!({ "phase": "Succeeded" })).await;
    pod(&pods, bound("forced", "n1")).await;
    let mut held = bound("held", "n1");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    pod(&pods, held).await;

    for (name, params) in [
        ("unscheduled", DeleteParams::default()),
        ("done", DeleteParams::default()),
        ("forced", DeleteParams::default().grace_period(0)),
    ] {
        let answer = pods.delete(name, &params).await.unwrap();
        assert!(answer.is_right(), "{name}: deleted at once");
        assert!(pods.get_opt(name).await.unwrap().is_none(), "{name} gone");
    }

    // Finalizers hold a forced deletion (grace 0) until they are removed.
    let marked = pods.delete("held", &DeleteParams::default().grace_period(0)).await.unwrap();
    let marked = marked.left().unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(0));
    let patch = json!({ "metadata": { "finalizers": null } });
    pods.patch("held", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    assert!(pods.get_opt("held").await.unwrap().is_none());

    // A graceful pod whose finalizers go first still waits for its kubelet.
    let mut both = bound("both", "n1");
    both["metadata"]["finalizers"] = json!(["example.com/hold"]);
    pod(&pods, both).await;
    let marked = pods.delete("both", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let patch = json!({ "metadata": { "finalizers": null } });
    pods.patch("both", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap();
    assert!(pods.get_opt("both").await.unwrap().is_some(), "grace period still running");
    pods.delete("both", &DeleteParams::default().grace_period(0)).await.unwrap();
    assert!(pods.get_opt("both").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletecollection_marks_scheduled_pods_and_removes_the_others() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, bound("on-node", "n1")).await;
    pod(&pods, json!({ "metadata": { "name": "floating" }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } })).await;
    pods.delete_collection(&DeleteParams::default(), &ListParams::default()).await.unwrap();
    let left = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].metadata.name.as_deref(), Some("on-node"));
    assert_eq!(left[0].metadata.deletion_grace_period_seconds, Some(30));
    // Force: everything goes.
    pods.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default())
        .await
        .unwrap();
    assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
}

// ---------------------------------------------------------------------------------------
// pods/log through a fake kubelet
// ---------------------------------------------------------------------------------------

/// A kubelet stand-in: HTTPS that requires a client certificate from the cluster CA,
/// records each request's target and whether the client presented the API server's
/// kubelet client certificate, and answers:
/// `/containerLogs/<ns>/fails/..` with 500 `kubelet says no`; `follow=true` with `first\n`,
/// then (once released) `second\n` and the end; anything else with its request target.
struct FakeKubelet {
    port: u16,
    requests: Arc<Mutex<Vec<(String, bool)>>>,
    release: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    async fn start(tls_dir: &Path) -> FakeKubelet {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca = std::fs::read(tls_dir.join("ca.crt")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let serving = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(serving.signing_key.serialize_pem().as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![serving.cert.der().clone()], key)
            .unwrap();
        let expected_client: PathBuf = tls_dir.join("apiserver-kubelet-client.crt");
        let expected_client =
            CertificateDer::from_pem_file(&expected_client).expect("the kubelet client cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(tokio::sync::Notify::new());
        let (reqs, rel) = (requests.clone(), release.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, reqs, rel) = (acceptor.clone(), reqs.clone(), rel.clone());
                let expected = expected_client.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let from_apiserver = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .is_some_and(|c| c.as_ref() == expected.as_ref());
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    reqs.lock().unwrap().push((target.clone(), from_apiserver));
                    if target.starts_with("/containerLogs/work/fails/") {
                        let body = "kubelet says no";
                        let response = format!(
                            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(response.as_bytes()).await;
                    } else if target.contains("follow=true") {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst\n";
                        if tls.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = tls.flush().await;
                        rel.notified().await;
                        let _ = tls.write_all(b"second\n").await;
                    } else {
                        let body = format!("{target}\n");
                        let response = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(response.as_bytes()).await;
                    }
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeKubelet { port, requests, release, task }
    }

    fn requests(&self) -> Vec<(String, bool)> {
        self.requests.lock().unwrap().clone()
    }
}

async fn node_for(client: &kube::Client, name: &str, kubelet_port: u16) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": name },
        "status": {
            "addresses": [
                { "type": "Hostname", "address": "no-such-host.invalid" },
                { "type": "InternalIP", "address": "127.0.0.1" },
            ],
            "daemonEndpoints": { "kubeletEndpoint": { "Port": kubelet_port } },
        },
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

fn running(names: &[&str]) -> Value {
    let statuses: Vec<Value> = names
        .iter()
        .map(|n| {
            json!({
                "name": n, "image": "busybox", "imageID": "", "ready": true, "restartCount": 1,
                "state": { "running": { "startedAt": "2026-01-01T00:00:00Z" } },
                "lastState": { "terminated": { "exitCode": 1, "containerID": "rudder://x" } },
            })
        })
        .collect();
    json!({ "phase": "Running", "containerStatuses": statuses })
}

async fn log_pods(client: &kube::Client, kubelet_port: u16) -> Api<Pod> {
    namespace(client, "work").await;
    node_for(client, "n1", kubelet_port).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "work");
    pod(&pods, bound("one", "n1")).await;
    set_status(&pods, "one", running(&["c"])).await;
    pod(&pods, json!({
        "metadata": { "name": "multi" },
        "spec": { "nodeName": "n1",
                  "initContainers": [{ "name": "init", "image": "busybox" }],
                  "containers": [{ "name": "a", "image": "busybox" }, { "name": "b", "image": "busybox" }] },
    }))
    .await;
    set_status(&pods, "multi", running(&["a", "b"])).await;
    pod(&pods, bound("fails", "n1")).await;
    set_status(&pods, "fails", running(&["c"])).await;
    pod(&pods, json!({ "metadata": { "name": "pending" }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } })).await;
    pods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_logs_are_validated_then_proxied_to_the_nodes_kubelet() {
    let cluster = TestCluster::start().await;
    let kubelet = FakeKubelet::start(&cluster.data_dir().join("tls")).await;
    let client = cluster.client();
    let pods = log_pods(&client, kubelet.port).await;

    assert_eq!(
        pods.logs("one", &LogParams::default()).await.unwrap(),
        "/containerLogs/work/one/c\n"
    );
    let params = LogParams {
        container: Some("c".into()),
        previous: true,
        timestamps: true,
        tail_lines: Some(2),
        since_seconds: Some(60),
        limit_bytes: Some(100),
        ..LogParams::default()
    };
    assert_eq!(
        pods.logs("one", &params).await.unwrap(),
        "/containerLogs/work/one/c?previous=true&timestamps=true&tailLines=2&sinceSeconds=60&limitBytes=100\n"
    );
    let b = LogParams { container: Some("b".into()), ..LogParams::default() };
    assert_eq!(pods.logs("multi", &b).await.unwrap(), "/containerLogs/work/multi/b\n");

    // Validation, before any kubelet is asked.
    let asked = kubelet.requests().len();
    let (code, _, message) =
        api_error(pods.logs("multi", &LogParams::default()).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (400, "a container name must be specified for pod multi, choose one of: [init a b]")
    );
    let zz = LogParams { container: Some("zz".into()), ..LogParams::default() };
    let (code, _, message) = api_error(pods.logs("multi", &zz).await.unwrap_err());
    assert_eq!((code, message.as_str()), (400, "container zz is not valid for pod multi"));
    let (code, _, message) =
        api_error(pods.logs("pending", &LogParams::default()).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (400, "container \"c\" in pod \"pending\" is waiting to start: ContainerCreating")
    );
    let (code, reason, _) =
        api_error(pods.logs("missing", &LogParams::default()).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let negative = LogParams { tail_lines: Some(-1), ..LogParams::default() };
    let (code, _, message) = api_error(pods.logs("one", &negative).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("tailLines"), "{message}");
    assert_eq!(kubelet.requests().len(), asked, "nothing invalid reached the kubelet");

    // The kubelet's errors come through with its code and message.
    let (code, _, message) =
        api_error(pods.logs("fails", &LogParams::default()).await.unwrap_err());
    assert_eq!((code, message.as_str()), (500, "kubelet says no"));

    // follow streams line by line until the kubelet ends.
    let follow = LogParams { follow: true, ..LogParams::default() };
    let mut lines = pods.log_stream("one", &follow).await.unwrap().lines();
    let first = tokio::time::timeout(DEADLINE, lines.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, "first", "the first line arrives before the kubelet sends more");
    kubelet.release.notify_one();
    let second = tokio::time::timeout(DEADLINE, lines.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(second, "second");
    assert!(tokio::time::timeout(DEADLINE, lines.next()).await.unwrap().is_none(), "the end");

    let requests = kubelet.requests();
    assert!(requests.iter().all(|(_, from_apiserver)| *from_apiserver), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_works_through_the_api_server() {
    let cluster = TestCluster::start().await;
    let kubelet = FakeKubelet::start(&cluster.data_dir().join("tls")).await;
    let client = cluster.client();
    log_pods(&client, kubelet.port).await;
    let kubeconfig = cluster.admin_kubeconfig.clone();
    let kubectl = |args: &'static [&'static str]| {
        let kubeconfig = kubeconfig.clone();
        async move {
            let out = tokio::time::timeout(
                DEADLINE,
                tokio::process::Command::new("kubectl")
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args(["-n", "work", "logs"])
                    .args(args)
                    .output(),
            )
            .await
            .expect("kubectl in time")
            .expect("kubectl runs");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (ok, out, err) =
        kubectl(&["one", "--tail=3", "--timestamps", "--limit-bytes=50", "--since=1h"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "/containerLogs/work/one/c?timestamps=true&tailLines=3&sinceSeconds=3600&limitBytes=50\n"
    );
    let (ok, out, err) = kubectl(&["multi", "-c", "b", "--previous"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "/containerLogs/work/multi/b?previous=true\n");
    let (ok, _, err) = kubectl(&["pending"]).await;
    assert!(!ok);
    assert!(
        err.contains("container \"c\" in pod \"pending\" is waiting to start: ContainerCreating"),
        "{err}"
    );
    kubelet.release.notify_one();
    let (ok, out, err) = kubectl(&["-f", "one"]).await;
    assert!(ok, "{err}");
    assert_eq!(out, "first\nsecond\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_attach_and_portforward_check_the_request_before_reaching_the_kubelet() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pod(&pods, bound("p", "n1")).await;
    pod(&pods, json!({"metadata": {"name": "unbound"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).await;
    let call = |path: &str| {
        let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{path}"))
            .body(Vec::new())
            .unwrap();
        let client = client.clone();
        async move { api_error(client.request_text(req).await.unwrap_err()) }
    };
    for (path, code, message) in [
        ("p/exec?command=ls", 400, "you must specify at least 1 of stdin, stdout, stderr"),
        ("p/exec?stdout=true", 400, "you must specify at least one command for the container"),
        ("p/attach?stdout=true&container=zzz", 400, "container zzz is not valid for pod p"),
        ("p/exec?command=ls&stdout=maybe", 400, "invalid value for stdout"),
        ("p/portforward?ports=0", 400, "invalid port \"0\""),
        ("unbound/exec?command=ls&stdout=true", 400, "pod unbound does not have a host assigned"),
        ("gone/exec?command=ls&stdout=true", 404, "pods \"gone\" not found"),
        // All valid: the next step is the node's kubelet, and there is no node n1.
        ("p/exec?command=ls&stdout=true", 400, "node n1 for pod p does not exist"),
        ("p/attach?stdout=true", 400, "node n1 for pod p does not exist"),
        ("p/portforward?ports=80", 400, "node n1 for pod p does not exist"),
    ] {
        let (got_code, _, got) = call(path).await;
        assert_eq!(got_code, code, "{path}: {got}");
        assert!(got.contains(message), "{path}: {got}");
    }
}

// ---------------------------------------------------------------------------------------
// TokenRequest
// ---------------------------------------------------------------------------------------

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWS");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_issue_bound_service_account_tokens() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({ "metadata": { "name": "robot" } })).unwrap();
    let sa = accounts.create(&PostParams::default(), &sa).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut spec = bound("worker", "n1");
    spec["spec"]["serviceAccountName"] = json!("robot");
    let worker = pod(&pods, spec).await;
    pod(&pods, bound("other", "n1")).await;

    let request = |value: Value| -> TokenRequest { serde_json::from_value(value).unwrap() };
    let plain = accounts
        .create_token_request(
            "robot",
            &PostParams::default(),
            &request(json!({ "spec": { "audiences": [] } })),
        )
        .await
        .unwrap();
    assert_eq!(plain.spec.expiration_seconds, Some(3600));
    assert_eq!(plain.spec.audiences, ["https://kubernetes.default.svc.cluster.local"]);
    let status = plain.status.unwrap();
    let c = claims(&status.token);
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["uid"], json!(sa.metadata.uid));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(
        status.expiration_timestamp.0.as_second(),
        c["exp"].as_i64().unwrap(),
        "expirationTimestamp matches the token"
    );

    let uid = worker.metadata.uid.clone().unwrap();
    let bound_request = request(json!({ "spec": {
        "audiences": ["vault"], "expirationSeconds": 7200,
        "boundObjectRef": { "kind": "Pod", "apiVersion": "v1", "name": "worker", "uid": uid },
    } }));
    let answer = accounts
        .create_token_request("robot", &PostParams::default(), &bound_request)
        .await
        .unwrap();
    let c = claims(&answer.status.unwrap().token);
    assert_eq!(c["aud"], json!(["vault"]));
    assert_eq!(c["kubernetes.io"]["pod"], json!({ "name": "worker", "uid": uid }));
    assert_eq!(c["kubernetes.io"]["node"]["name"], "n1");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 7200);

    let failures = [
        ("robot", json!({ "spec": { "audiences": [], "expirationSeconds": 60 } }), 422),
        (
            "robot",
            json!({ "spec": { "audiences": [], "boundObjectRef": { "kind": "Pod", "name": "worker", "uid": "stale" } } }),
            409,
        ),
        (
            "robot",
            json!({ "spec": { "audiences": [], "boundObjectRef": { "kind": "Pod", "name": "other" } } }),
            400,
        ),
        (
            "robot",
            json!({ "spec": { "audiences": [], "boundObjectRef": { "kind": "Pod", "name": "nope" } } }),
            404,
        ),
        ("nobody", json!({ "spec": { "audiences": [] } }), 404),
    ];
    for (account, body, code) in failures {
        let e = accounts
            .create_token_request(account, &PostParams::default(), &request(body.clone()))
            .await
            .unwrap_err();
        assert_eq!(api_error(e).0, code, "{account} {body}");
    }
}
