//! Client libraries against a real `rudder server`: the `kube` crate (the controllers will
//! use it) and the official Python client.

mod common;

use std::process::Command;

use common::Server;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, Config};

async fn client(server: &Server) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_crate_client_and_watcher() {
    let server = Server::start();
    let client = client(&server).await;
    let version = client.apiserver_version().await.unwrap();
    assert_eq!((version.major.as_str(), version.minor.as_str()), ("1", "33"));

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    // The initial list ends with InitDone, before anything was created.
    loop {
        match tokio::time::timeout(common::DEADLINE, stream.next()).await.unwrap().unwrap().unwrap()
        {
            watcher::Event::InitDone => break,
            _ => continue,
        }
    }
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "from-kube", "labels": {"app": "k"}},
        "data": {"a": "1"},
    }))
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.resource_version.is_some() && created.metadata.uid.is_some());
    match tokio::time::timeout(common::DEADLINE, stream.next()).await.unwrap().unwrap().unwrap() {
        watcher::Event::Apply(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("from-kube")),
        other => panic!("expected Apply, got {other:?}"),
    }
    let patch = serde_json::json!({"data": {"b": "2"}});
    cms.patch("from-kube", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    match tokio::time::timeout(common::DEADLINE, stream.next()).await.unwrap().unwrap().unwrap() {
        watcher::Event::Apply(cm) => {
            assert_eq!(cm.data.unwrap().get("b").map(String::as_str), Some("2"))
        }
        other => panic!("expected Apply, got {other:?}"),
    }
    cms.delete("from-kube", &DeleteParams::default()).await.unwrap();
    match tokio::time::timeout(common::DEADLINE, stream.next()).await.unwrap().unwrap().unwrap() {
        watcher::Event::Delete(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("from-kube")),
        other => panic!("expected Delete, got {other:?}"),
    }

    let deployments: Api<Deployment> = Api::default_namespaced(client);
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "kd"},
        "spec": {"selector": {"matchLabels": {"app": "kd"}},
                 "template": {"metadata": {"labels": {"app": "kd"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let listed = deployments.list(&ListParams::default().labels("")).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let spec = listed.items[0].spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1), "defaulted");
    let err = deployments.create(&PostParams::default(), &d).await.unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "AlreadyExists");
        }
        other => panic!("expected a 409 Status, got {other}"),
    }
}

#[test]
fn python_kubernetes_client() {
    let server = Server::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deployment_client.py");
    let out =
        Command::new("python3").arg(script).arg(server.kubeconfig()).output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("created py-deploy RollingUpdate"), "{stdout}");
    assert!(stdout.contains("watched ['ADDED', 'MODIFIED'"), "{stdout}");
    assert!(stdout.contains("'DELETED']"), "{stdout}");
}
