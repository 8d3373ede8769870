//! Where the kubelet reads the objects a pod's inputs come from: configMaps, secrets, claims,
//! volumes, services, and service account tokens. [`KubeSource`] asks the API server (every
//! call bounded by a timeout); [`MemorySource`] keeps objects in memory for tests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenRequestStatus,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use kube::api::{Api, ListParams, PostParams};
use rudder_client::api::{RequestError, Target, call};

/// A failed read (not "not found", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{0}")]
    Other(String),
}

/// The pod a service account token is bound to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundPod<'a> {
    pub name: &'a str,
    pub uid: &'a str,
}

/// Reads the objects a pod's environment and volumes come from. `Ok(None)` means the object
/// does not exist.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, SourceError>;
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError>;
    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, SourceError>;
    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, SourceError>;
    /// `POST serviceaccounts/{sa_name}/token` bound to `pod`; `None` when the service account
    /// does not exist. An empty `audiences` means the API server's own.
    async fn request_service_account_token(
        &self,
        namespace: &str,
        sa_name: &str,
        audiences: &[String],
        expiration_seconds: i64,
        pod: BoundPod<'_>,
    ) -> Result<Option<TokenRequest>, SourceError>;
    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, SourceError>;
}

/// [`ObjectSource`] over the API server.
#[derive(Clone)]
pub struct KubeSource {
    pub client: kube::Client,
    pub timeout: Duration,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl KubeSource {
    /// A source whose calls each take at most 10 s.
    pub fn new(client: kube::Client) -> Self {
        KubeSource { client, timeout: Duration::from_secs(10) }
    }

    async fn get_opt<K>(
        &self,
        api: Api<K>,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<K>, SourceError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let target = Target { verb: "get", kind, namespace, name };
        Ok(call(target, self.timeout, api.get_opt(name)).await?)
    }
}

#[async_trait]
impl ObjectSource for KubeSource {
    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, SourceError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        self.get_opt(api, "ConfigMap", namespace, name).await
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        self.get_opt(api, "Secret", namespace, name).await
    }

    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, SourceError> {
        let api = Api::namespaced(self.client.clone(), namespace);
        self.get_opt(api, "PersistentVolumeClaim", namespace, name).await
    }

    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, SourceError> {
        let api = Api::all(self.client.clone());
        self.get_opt(api, "PersistentVolume", "", name).await
    }

    async fn request_service_account_token(
        &self,
        namespace: &str,
        sa_name: &str,
        audiences: &[String],
        expiration_seconds: i64,
        pod: BoundPod<'_>,
    ) -> Result<Option<TokenRequest>, SourceError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = token_request(audiences, expiration_seconds, pod);
        let target = Target { verb: "create", kind: "TokenRequest", namespace, name: sa_name };
        let result = call(
            target,
            self.timeout,
            api.create_token_request(sa_name, &PostParams::default(), &request),
        )
        .await;
        match result {
            Ok(t) => Ok(Some(t)),
            // Only "the service account does not exist" is None; a 404 for anything else (a
            // server without the subresource, a missing bound pod) is an error.
            Err(e)
                if e.status().is_some_and(|s| {
                    s.code == 404
                        && s.details.as_ref().is_some_and(|d| {
                            d.kind == "serviceaccounts" && (d.name.is_empty() || d.name == sa_name)
                        })
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, SourceError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let target = Target { verb: "list", kind: "Service", namespace, name: "" };
        let list = call(target, self.timeout, api.list(&ListParams::default())).await?;
        Ok(list.items)
    }
}

/// The TokenRequest the kubelet sends for a pod.
pub fn token_request(
    audiences: &[String],
    expiration_seconds: i64,
    pod: BoundPod<'_>,
) -> TokenRequest {
    TokenRequest {
        spec: TokenRequestSpec {
            audiences: audiences.to_vec(),
            expiration_seconds: Some(expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name.to_owned()),
                uid: Some(pod.uid.to_owned()),
            }),
        },
        ..TokenRequest::default()
    }
}

/// An in-memory [`ObjectSource`] for tests. Tokens are `token-<n>` (n counts requests), valid
/// for the requested time from the real clock; every request is recorded.
#[derive(Debug, Default)]
pub struct MemorySource {
    inner: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    config_maps: BTreeMap<(String, String), ConfigMap>,
    secrets: BTreeMap<(String, String), Secret>,
    claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    services: Vec<Service>,
    service_accounts: Vec<(String, String)>,
    token_requests: Vec<(String, String, TokenRequest)>,
    fail: Option<String>,
}

fn key(meta: &kube::api::ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl MemorySource {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds or replaces a configMap.
    pub fn put_config_map(&self, cm: ConfigMap) {
        self.lock().config_maps.insert(key(&cm.metadata), cm);
    }

    pub fn remove_config_map(&self, namespace: &str, name: &str) {
        self.lock().config_maps.remove(&(namespace.to_owned(), name.to_owned()));
    }

    pub fn put_secret(&self, secret: Secret) {
        self.lock().secrets.insert(key(&secret.metadata), secret);
    }

    pub fn put_claim(&self, claim: PersistentVolumeClaim) {
        self.lock().claims.insert(key(&claim.metadata), claim);
    }

    pub fn put_volume(&self, pv: PersistentVolume) {
        self.lock().volumes.insert(pv.metadata.name.clone().unwrap_or_default(), pv);
    }

    pub fn put_service(&self, service: Service) {
        let mut m = self.lock();
        let k = key(&service.metadata);
        m.services.retain(|s| key(&s.metadata) != k);
        m.services.push(service);
    }

    /// Lets tokens be requested for this service account.
    pub fn put_service_account(&self, namespace: &str, name: &str) {
        self.lock().service_accounts.push((namespace.to_owned(), name.to_owned()));
    }

    /// Every token request so far: (namespace, service account, request).
    pub fn token_requests(&self) -> Vec<(String, String, TokenRequest)> {
        self.lock().token_requests.clone()
    }

    /// Makes every call fail with `message` (None: back to normal).
    pub fn fail_with(&self, message: Option<&str>) {
        self.lock().fail = message.map(str::to_owned);
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, Memory>, SourceError> {
        let m = self.lock();
        match &m.fail {
            Some(message) => Err(SourceError::Other(message.clone())),
            None => Ok(m),
        }
    }
}

fn nk(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_owned(), name.to_owned())
}

#[async_trait]
impl ObjectSource for MemorySource {
    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, SourceError> {
        Ok(self.check()?.config_maps.get(&nk(namespace, name)).cloned())
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        Ok(self.check()?.secrets.get(&nk(namespace, name)).cloned())
    }

    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, SourceError> {
        Ok(self.check()?.claims.get(&nk(namespace, name)).cloned())
    }

    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, SourceError> {
        Ok(self.check()?.volumes.get(name).cloned())
    }

    async fn request_service_account_token(
        &self,
        namespace: &str,
        sa_name: &str,
        audiences: &[String],
        expiration_seconds: i64,
        pod: BoundPod<'_>,
    ) -> Result<Option<TokenRequest>, SourceError> {
        let mut m = self.check()?;
        if !m.service_accounts.contains(&nk(namespace, sa_name)) {
            return Ok(None);
        }
        let mut request = token_request(audiences, expiration_seconds, pod);
        m.token_requests.push((namespace.to_owned(), sa_name.to_owned(), request.clone()));
        let expires = rudder_client::clock::add(
            k8s_openapi::jiff::Timestamp::now(),
            Duration::from_secs(expiration_seconds.max(0) as u64),
        );
        request.status = Some(TokenRequestStatus {
            token: format!("token-{}", m.token_requests.len()),
            expiration_timestamp: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(expires),
        });
        Ok(Some(request))
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, SourceError> {
        Ok(self
            .check()?
            .services
            .iter()
            .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
            .collect())
    }
}
