//! Helpers shared by the integration tests: a cluster, objects, and polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::{Client, Resource};
use serde_json::json;

/// How long a test waits for a wanted state.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` until it yields a value (every 50 ms); panics naming `what` after
/// [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether `name` is gone (404).
pub async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(api.get_opt(name).await, Ok(None))
}

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap(),
        uid: owner.meta().uid.clone().unwrap(),
        controller: None,
        block_owner_deletion: Some(block),
    }
}

pub async fn config_map(
    client: &Client,
    ns: &str,
    name: &str,
    owners: Vec<OwnerReference>,
    finalizers: &[&str],
) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": name, "ownerReferences": owners, "finalizers": finalizers },
        "data": { "k": "v" },
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm)
        .await
        .unwrap_or_else(|e| panic!("create cm {name}: {e}"))
}

pub fn pod_object(name: &str, owners: Vec<OwnerReference>, finalizers: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "ownerReferences": owners, "finalizers": finalizers },
        "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
    }))
    .unwrap()
}

pub async fn pod(
    client: &Client,
    ns: &str,
    name: &str,
    owners: Vec<OwnerReference>,
    finalizers: &[&str],
) -> Pod {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &pod_object(name, owners, finalizers))
        .await
        .unwrap_or_else(|e| panic!("create pod {name}: {e}"))
}

/// Runs `f` on a task that stops with the returned token.
pub fn spawn<F>(
    f: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> tokio_util::sync::CancellationToken
where
    F: Future<Output = ()> + Send + 'static,
{
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(f(cancel.clone()));
    cancel
}
