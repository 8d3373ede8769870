//! Registry credentials in the docker config format that Kubernetes imagePullSecrets carry:
//! `.dockerconfigjson` (`{"auths":{"host:port":{"auth":"base64(user:pass)"}}}`, or
//! `username`/`password` fields) and the legacy `.dockercfg` (the same map without the
//! `auths` wrapper). Several secrets merge into one [`Credentials`]; a lookup by registry (and
//! repository path, as the kubelet's keyring allows `host/path` keys) returns every match,
//! most specific first, so a pull can try them in turn.

use std::fmt;

use base64::Engine as _;
use serde::Deserialize;

use crate::reference::{DOCKER_HUB, ImageRef};

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("docker config is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("credentials for {registry:?}: {reason}")]
    Entry { registry: String, reason: &'static str },
}

/// How to authenticate to one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// User and password: HTTP basic auth, or exchanged for a bearer token when the registry
    /// asks for one.
    Basic { username: String, password: String },
    /// A registry token used as is (`registrytoken`).
    Bearer { token: String },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username:?}, <redacted>)"),
            Auth::Bearer { .. } => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl Auth {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        match self {
            Auth::Basic { username, password } => {
                oci_client::secrets::RegistryAuth::Basic(username.clone(), password.clone())
            }
            Auth::Bearer { token } => oci_client::secrets::RegistryAuth::Bearer(token.clone()),
        }
    }
}

/// Credentials for any number of registries. `Credentials::default()` is anonymous.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// (normalised key: `host[/path]`, auth), in insertion order.
    entries: Vec<(String, Auth)>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    registrytoken: Option<String>,
}

impl Credentials {
    /// Parses one secret: `.dockerconfigjson` or legacy `.dockercfg` content.
    pub fn from_docker_config(json: &[u8]) -> Result<Self, CredentialsError> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        let map = match value.get("auths") {
            Some(auths) => auths.clone(),
            None => value,
        };
        let map: std::collections::BTreeMap<String, Entry> = serde_json::from_value(map)?;
        let mut out = Credentials::default();
        for (registry, entry) in map {
            out.insert(&registry, entry_auth(&registry, entry)?);
        }
        Ok(out)
    }

    /// Parses several secrets and merges them (earlier secrets are tried first).
    pub fn from_docker_configs<'a>(
        secrets: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Self, CredentialsError> {
        let mut out = Credentials::default();
        for s in secrets {
            out.merge(Credentials::from_docker_config(s)?);
        }
        Ok(out)
    }

    /// Adds `other`'s entries after ours.
    pub fn merge(&mut self, other: Credentials) {
        self.entries.extend(other.entries);
    }

    /// Adds credentials for a registry key (`host[:port]`, `host/path`, a URL such as
    /// `https://index.docker.io/v1/`).
    pub fn insert(&mut self, registry: &str, auth: Auth) {
        self.entries.push((normalise_key(registry), auth));
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first credentials whose key is exactly this registry host (docker.io aliases
    /// folded).
    pub fn lookup(&self, registry: &str) -> Option<&Auth> {
        let host = normalise_key(registry);
        self.entries.iter().find(|(k, _)| *k == host).map(|(_, a)| a)
    }

    /// Every credential that applies to `image`: keys that are its registry or a path
    /// prefix of `registry/repository`, longest key first, then in insertion order.
    pub fn for_image(&self, image: &ImageRef) -> Vec<&Auth> {
        let name = image.name();
        let mut matches: Vec<(usize, usize, &Auth)> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (key, _))| key_matches(key, &image.registry, &name))
            .map(|(i, (key, auth))| (key.len(), i, auth))
            .collect();
        matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        matches.into_iter().map(|(_, _, a)| a).collect()
    }
}

fn entry_auth(registry: &str, e: Entry) -> Result<Auth, CredentialsError> {
    let err = |reason| CredentialsError::Entry { registry: registry.to_owned(), reason };
    if let Some(token) = e.registrytoken.filter(|t| !t.is_empty()) {
        return Ok(Auth::Bearer { token });
    }
    if let Some(encoded) = e.auth.filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| err("`auth` is not base64"))?;
        let decoded = String::from_utf8(decoded).map_err(|_| err("`auth` is not UTF-8"))?;
        let (username, password) =
            decoded.split_once(':').ok_or_else(|| err("`auth` is not user:password"))?;
        return Ok(Auth::Basic { username: username.to_owned(), password: password.to_owned() });
    }
    match (e.username, e.password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Auth::Basic { username, password })
        }
        _ => Err(err("no `auth`, `username`/`password` or `registrytoken`")),
    }
}

/// `https://index.docker.io/v1/` -> `docker.io`; `http://host:5000/x/` -> `host:5000/x`.
fn normalise_key(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key)
        .trim_end_matches('/');
    let (host, path) = match key.split_once('/') {
        Some((h, p)) => (h, p),
        None => (key, ""),
    };
    let host = host.to_ascii_lowercase();
    let host = match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB,
        h => h,
    };
    // Docker's own keys carry the API version (`/v1/`, `/v2/`), never a repository path.
    let path = if matches!(path, "v1" | "v2") { "" } else { path };
    if path.is_empty() { host.to_owned() } else { format!("{host}/{path}") }
}

/// A key matches its host exactly (a leading `*.` matches one label), and its path (if
/// any) as a prefix of the repository on whole components.
fn key_matches(key: &str, registry: &str, name: &str) -> bool {
    let (key_host, key_path) = match key.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (key, None),
    };
    let host_ok = match key_host.strip_prefix("*.") {
        Some(suffix) => registry
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => key_host == registry,
    };
    if !host_ok {
        return false;
    }
    match key_path {
        None => true,
        Some(p) => {
            let repo = &name[registry.len() + 1..];
            repo == p || repo.starts_with(&format!("{p}/"))
        }
    }
}

#[cfg(test)]
mod tests;
