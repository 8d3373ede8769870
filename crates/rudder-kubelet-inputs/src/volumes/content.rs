//! The files of configMap, secret, downwardAPI and projected volumes (upstream's
//! `MakePayload`s), and the cache of projected service account tokens.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccountTokenProjection,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock::{Clock, elapsed};

use super::atomic_writer::{FileProjection, Payload};
use crate::fieldpath::{metadata_field_value, resource_field_value};
use crate::source::{BoundPod, ObjectSource, SourceError};

/// Upstream's default file mode for configMap, secret, downwardAPI and projected volumes.
pub const DEFAULT_MODE: i32 = 0o644;

/// Why a payload cannot be made.
#[derive(Debug)]
pub enum Failure {
    Message(String),
    Source(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Source(e)
    }
}

fn mode_of(item_mode: Option<i32>, default_mode: i32) -> u32 {
    (item_mode.unwrap_or(default_mode) & 0o7777) as u32
}

fn config_map_files(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        files.insert(k.clone(), v.as_bytes().to_vec());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        files.insert(k.clone(), v.0.clone());
    }
    files
}

fn secret_files(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect()
}

/// Keys (all, or the listed `items`) to files. `missing` words the error for an item whose
/// key is absent (ignored when `optional`).
fn key_payload(
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: impl Fn(&str) -> String,
    payload: &mut Payload,
) -> Result<(), Failure> {
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, data) in files {
                let file = FileProjection { data: data.clone(), mode: mode_of(None, default_mode) };
                payload.insert(k.clone(), file);
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = files.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(Failure::Message(missing(&item.key)));
                };
                let file =
                    FileProjection { data: data.clone(), mode: mode_of(item.mode, default_mode) };
                payload.insert(item.path.clone(), file);
            }
        }
    }
    Ok(())
}

/// A configMap's files; an optional configMap that does not exist gives no files.
pub async fn config_map_payload(
    source: &dyn ObjectSource,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    payload: &mut Payload,
) -> Result<(), Failure> {
    let Some(cm) = source.get_config_map(namespace, name).await? else {
        if optional {
            return Ok(());
        }
        return Err(Failure::Message(format!("configmap \"{name}\" not found")));
    };
    let files = config_map_files(&cm);
    let missing = |k: &str| format!("configmap references non-existent config key: {k}");
    key_payload(&files, items, default_mode, optional, missing, payload)
}

/// A secret's files; an optional secret that does not exist gives no files.
pub async fn secret_payload(
    source: &dyn ObjectSource,
    namespace: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    payload: &mut Payload,
) -> Result<(), Failure> {
    let Some(secret) = source.get_secret(namespace, name).await? else {
        if optional {
            return Ok(());
        }
        return Err(Failure::Message(format!("secret \"{name}\" not found")));
    };
    let files = secret_files(&secret);
    let missing = |k: &str| format!("references non-existent secret key: {k}");
    key_payload(&files, items, default_mode, optional, missing, payload)
}

/// Downward API files: pod metadata fields and container resources.
pub fn downward_api_payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    allocatable: &BTreeMap<String, Quantity>,
    payload: &mut Payload,
) -> Result<(), Failure> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            metadata_field_value(pod, f).map_err(Failure::Message)?
        } else if let Some(r) = &item.resource_field_ref {
            resource_field_value(pod, None, r, allocatable).map_err(Failure::Message)?
        } else {
            continue;
        };
        let file =
            FileProjection { data: value.into_bytes(), mode: mode_of(item.mode, default_mode) };
        payload.insert(item.path.clone(), file);
    }
    Ok(())
}

/// The sources of a projected volume, in order (a later source's file wins a path).
pub async fn projected_payload(
    pod: &Pod,
    sources: &[VolumeProjection],
    default_mode: i32,
    ctx: &ProjectionContext<'_>,
    payload: &mut Payload,
) -> Result<(), Failure> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for s in sources {
        if let Some(cm) = &s.config_map {
            let optional = cm.optional == Some(true);
            let items = cm.items.as_deref();
            config_map_payload(
                ctx.source,
                namespace,
                &cm.name,
                items,
                default_mode,
                optional,
                payload,
            )
            .await?;
        } else if let Some(secret) = &s.secret {
            let optional = secret.optional == Some(true);
            let items = secret.items.as_deref();
            secret_payload(
                ctx.source,
                namespace,
                &secret.name,
                items,
                default_mode,
                optional,
                payload,
            )
            .await?;
        } else if let Some(d) = &s.downward_api {
            let items = d.items.as_deref().unwrap_or(&[]);
            downward_api_payload(pod, items, default_mode, ctx.allocatable, payload)?;
        } else if let Some(t) = &s.service_account_token {
            let token = ctx.tokens.token(pod, t, ctx.source).await?;
            let mode = mode_of(None, default_mode);
            payload.insert(t.path.clone(), FileProjection { data: token.into_bytes(), mode });
        } else if s.cluster_trust_bundle.is_some() {
            return Err(Failure::Message(
                "clusterTrustBundle projections are not supported".to_owned(),
            ));
        }
    }
    Ok(())
}

/// What a projected volume's sources are read with.
pub struct ProjectionContext<'a> {
    pub source: &'a dyn ObjectSource,
    pub allocatable: &'a BTreeMap<String, Quantity>,
    pub tokens: &'a TokenCache,
}

/// Service account tokens already obtained, reused until 80% of their lifetime has passed (or
/// 24 hours), like upstream's token manager.
pub struct TokenCache {
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<TokenKey, CachedToken>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TokenKey {
    pod_uid: String,
    namespace: String,
    service_account: String,
    audiences: Vec<String>,
    expiration_seconds: i64,
}

#[derive(Clone, Debug)]
struct CachedToken {
    token: String,
    issued: Timestamp,
    expires: Timestamp,
}

impl TokenCache {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        TokenCache { clock, entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, CachedToken>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a pod's tokens.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != pod_uid);
    }

    async fn token(
        &self,
        pod: &Pod,
        projection: &ServiceAccountTokenProjection,
        source: &dyn ObjectSource,
    ) -> Result<String, Failure> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".to_owned());
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let audiences: Vec<String> =
            projection.audience.iter().filter(|a| !a.is_empty()).cloned().collect();
        let key = TokenKey {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace,
            service_account,
            audiences,
            expiration_seconds: projection.expiration_seconds.unwrap_or(3600),
        };
        let now = self.clock.now();
        if let Some(cached) = self.lock().get(&key)
            && !needs_refresh(cached, now)
        {
            return Ok(cached.token.clone());
        }
        let name = pod.metadata.name.as_deref().unwrap_or("");
        let bound = BoundPod { name, uid: &key.pod_uid };
        let answer = source
            .request_service_account_token(
                &key.namespace,
                &key.service_account,
                &key.audiences,
                key.expiration_seconds,
                bound,
            )
            .await?;
        let Some(status) = answer.and_then(|t| t.status) else {
            return Err(Failure::Message(format!(
                "failed to fetch token: serviceaccount \"{}\" not found",
                key.service_account
            )));
        };
        let cached = CachedToken {
            token: status.token.clone(),
            issued: now,
            expires: status.expiration_timestamp.0,
        };
        self.lock().insert(key, cached);
        Ok(status.token)
    }
}

fn needs_refresh(token: &CachedToken, now: Timestamp) -> bool {
    if now >= token.expires {
        return true;
    }
    let lifetime = elapsed(token.issued, token.expires);
    let age = elapsed(token.issued, now);
    age > Duration::from_secs(24 * 3600) || age.as_secs_f64() > lifetime.as_secs_f64() * 0.8
}
