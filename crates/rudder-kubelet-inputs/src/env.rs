//! A container's environment, computed like upstream's `makeEnvironmentVariables`: `envFrom`
//! first, then `env` in order (a value's `$(VAR)` references see the variables set so far and
//! the service variables; `valueFrom` reads configMap/secret keys, pod fields and resources),
//! then the service link variables not already set.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::expand::expand;
use crate::fieldpath::{Addresses, env_field_value, resource_field_value};
use crate::source::{ObjectSource, SourceError};

/// What the kubelet knows besides the pod when it computes a container's environment.
#[derive(Clone, Debug, Default)]
pub struct EnvContext {
    /// Used for `spec.nodeName` when the pod does not carry one.
    pub node_name: String,
    /// The node's addresses (`status.hostIP` is the first).
    pub host_ips: Vec<String>,
    /// The pod's addresses (`status.podIP` is the first).
    pub pod_ips: Vec<String>,
    /// The services of the pod's namespace, and the `kubernetes` service of `default` (other
    /// services are ignored).
    pub services: Vec<Service>,
    /// The node's allocatable resources: what unset limits stand for in `resourceFieldRef`.
    pub allocatable: BTreeMap<String, Quantity>,
}

/// Upstream's event reason for `envFrom` keys that were skipped.
pub const INVALID_ENV_NAMES_REASON: &str = "InvalidEnvironmentVariableNames";

/// Keys of one `envFrom` source that are not valid variable names and were skipped (the pod
/// still starts; upstream records a Warning event, see [`SkippedEnvFromKeys::event_message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedEnvFromKeys {
    /// `configMap` or `secret`, as upstream's message says it.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Sorted, prefix included.
    pub keys: Vec<String>,
}

impl SkippedEnvFromKeys {
    /// The Warning event's message (reason [`INVALID_ENV_NAMES_REASON`]).
    pub fn event_message(&self) -> String {
        format!(
            "Keys [{}] from the EnvFrom {} {}/{} were skipped since they are considered invalid \
             environment variable names.",
            self.keys.join(", "),
            self.kind,
            self.namespace,
            self.name
        )
    }
}

/// A container's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// Name/value pairs, each name once.
    pub vars: Vec<(String, String)>,
    /// `envFrom` keys that were skipped (for events).
    pub skipped: Vec<SkippedEnvFromKeys>,
}

/// Why a container's environment cannot be computed. The kubelet reports these as
/// `CreateContainerConfigError` with this message and retries.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { key: String, namespace: String, name: String },
    /// A `fieldRef` or `resourceFieldRef` that cannot be resolved.
    #[error("{0}")]
    Field(String),
    /// The object could not be read (not "not found"): worth retrying.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Computes `container`'s environment in `pod`.
pub async fn container_env(
    pod: &Pod,
    container: &Container,
    source: &dyn ObjectSource,
    ctx: &EnvContext,
) -> Result<ContainerEnv, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let enable_links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let service_env = service_env(&ctx.services, namespace, enable_links);
    let mut objects =
        Objects { source, namespace, config_maps: HashMap::new(), secrets: HashMap::new() };
    let mut env = OrderedEnv::default();
    let mut skipped = Vec::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, data) = if let Some(r) = &from.config_map_ref {
            let optional = r.optional == Some(true);
            match objects.config_map(&r.name).await? {
                Some(cm) => ("configMap", &r.name, config_map_data(&cm)),
                None if optional => continue,
                None => return Err(objects.config_map_missing(&r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            let optional = r.optional == Some(true);
            match objects.secret(&r.name).await? {
                Some(s) => ("secret", &r.name, secret_data(&s)),
                None if optional => continue,
                None => return Err(objects.secret_missing(&r.name)),
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if is_env_var_name(&k) {
                env.set(k, v);
            } else {
                invalid.push(k);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            skipped.push(SkippedEnvFromKeys {
                kind,
                namespace: namespace.to_owned(),
                name: name.clone(),
                keys: invalid,
            });
        }
    }

    let addresses = Addresses { host_ips: &ctx.host_ips, pod_ips: &ctx.pod_ips };
    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            expand(value, |name| {
                env.get(name)
                    .or_else(|| service_env.get(name).map(String::as_str))
                    .map(str::to_owned)
            })
        } else if let Some(from) = &var.value_from {
            if let Some(f) = &from.field_ref {
                match env_field_value(pod, f, addresses) {
                    Ok(v) if v.is_empty() && f.field_path == "spec.nodeName" => {
                        ctx.node_name.clone()
                    }
                    Ok(v) => v,
                    Err(e) => return Err(EnvError::Field(e)),
                }
            } else if let Some(r) = &from.resource_field_ref {
                resource_field_value(pod, Some(container), r, &ctx.allocatable)
                    .map_err(EnvError::Field)?
            } else if let Some(r) = &from.config_map_key_ref {
                let optional = r.optional == Some(true);
                let Some(cm) = objects.config_map(&r.name).await? else {
                    if optional {
                        continue;
                    }
                    return Err(objects.config_map_missing(&r.name));
                };
                match config_map_data(&cm).remove(&r.key) {
                    Some(v) => v,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::ConfigMapKeyNotFound {
                            key: r.key.clone(),
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else if let Some(r) = &from.secret_key_ref {
                let optional = r.optional == Some(true);
                let Some(s) = objects.secret(&r.name).await? else {
                    if optional {
                        continue;
                    }
                    return Err(objects.secret_missing(&r.name));
                };
                match secret_data(&s).remove(&r.key) {
                    Some(v) => v,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::SecretKeyNotFound {
                            key: r.key.clone(),
                            namespace: namespace.to_owned(),
                            name: r.name.clone(),
                        });
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }

    let mut vars = env.into_vec();
    let present: std::collections::HashSet<String> = vars.iter().map(|(k, _)| k.clone()).collect();
    vars.extend(service_env.into_iter().filter(|(k, _)| !present.contains(k)));
    Ok(ContainerEnv { vars, skipped })
}

/// The services [`EnvContext::services`] needs for a pod in `namespace`: the namespace's
/// services and the `kubernetes` service of `default`, read through `source`.
pub async fn services_for_namespace(
    source: &dyn ObjectSource,
    namespace: &str,
) -> Result<Vec<Service>, SourceError> {
    let mut services = source.list_services(namespace).await?;
    if namespace != "default" {
        let master = source.list_services("default").await?;
        services.extend(
            master.into_iter().filter(|s| s.metadata.name.as_deref() == Some("kubernetes")),
        );
    }
    Ok(services)
}

/// Whether a name is a valid environment variable name. Upstream v1.33 validates with the
/// relaxed rule (feature RelaxedEnvironmentVariableValidation, on by default): printable ASCII
/// other than `=`, not empty.
pub fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// Variables set so far, in the order first set.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.index.get(name).map(|&i| self.vars[i].1.as_str())
    }

    fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// ConfigMaps and secrets read once per computation.
struct Objects<'a> {
    source: &'a dyn ObjectSource,
    namespace: &'a str,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
}

impl Objects<'_> {
    async fn config_map(&mut self, name: &str) -> Result<Option<ConfigMap>, SourceError> {
        if let Some(cm) = self.config_maps.get(name) {
            return Ok(cm.clone());
        }
        let cm = self.source.get_config_map(self.namespace, name).await?;
        self.config_maps.insert(name.to_owned(), cm.clone());
        Ok(cm)
    }

    async fn secret(&mut self, name: &str) -> Result<Option<Secret>, SourceError> {
        if let Some(s) = self.secrets.get(name) {
            return Ok(s.clone());
        }
        let s = self.source.get_secret(self.namespace, name).await?;
        self.secrets.insert(name.to_owned(), s.clone());
        Ok(s)
    }

    fn config_map_missing(&self, name: &str) -> EnvError {
        EnvError::ConfigMapNotFound { namespace: self.namespace.to_owned(), name: name.to_owned() }
    }

    fn secret_missing(&self, name: &str) -> EnvError {
        EnvError::SecretNotFound { namespace: self.namespace.to_owned(), name: name.to_owned() }
    }
}

/// A configMap's string data (binaryData is not visible to env, as upstream).
fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.data.clone().unwrap_or_default()
}

fn secret_data(s: &Secret) -> BTreeMap<String, String> {
    s.data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// The service link variables a pod in `namespace` sees (upstream's `getServiceEnvVarMap` and
/// `envvars.FromServices`), sorted by name: the `kubernetes` service of `default` always, the
/// namespace's own services when `enable_links`; only services with a cluster IP.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services {
        let Some(spec) = &s.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        if ip.is_empty() || ip == "None" || spec.ports.as_ref().is_none_or(|p| p.is_empty()) {
            continue;
        }
        let name = s.metadata.name.as_deref().unwrap_or("");
        let ns = s.metadata.namespace.as_deref().unwrap_or("");
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_links {
            chosen.insert(name, s);
        }
    }
    let mut out = BTreeMap::new();
    for (name, s) in chosen {
        let spec = s.spec.as_ref().expect("filtered above");
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        let ports = spec.ports.as_deref().unwrap_or(&[]);
        let prefix = env_name(name);
        out.insert(format!("{prefix}_SERVICE_HOST"), ip.to_owned());
        out.insert(format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string());
        for p in ports {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.insert(
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    p.port.to_string(),
                );
            }
        }
        let host = if ip.contains(':') { format!("[{ip}]") } else { ip.to_owned() };
        for (i, p) in ports.iter().enumerate() {
            let protocol = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
            let url = format!("{}://{host}:{}", protocol.to_lowercase(), p.port);
            if i == 0 {
                out.insert(format!("{prefix}_PORT"), url.clone());
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
            out.insert(format!("{port_prefix}_PROTO"), protocol.to_lowercase());
            out.insert(format!("{port_prefix}_PORT"), p.port.to_string());
            out.insert(format!("{port_prefix}_ADDR"), ip.to_owned());
            out.insert(port_prefix, url);
        }
    }
    out
}

/// `my-svc` -> `MY_SVC`.
fn env_name(name: &str) -> String {
    name.replace('-', "_").to_uppercase()
}
