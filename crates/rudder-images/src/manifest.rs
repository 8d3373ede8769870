//! The JSON documents of an image: manifests (docker v2 schema2 and OCI), indexes (docker
//! manifest lists and OCI image indexes), and the image config, parsed leniently (unknown
//! fields ignored) into what the store needs. The config fields the kubelet uses are kept in
//! [`ImageConfig`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, DigestError};
use crate::layer::Compression;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Manifests and configs larger than this are refused (real ones are a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{what} is not valid JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported manifest schema version {0} (only 2)")]
    SchemaVersion(u32),
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    #[error("{0} is not a container image (config media type)")]
    NotAnImage(String),
    #[error("no linux/amd64 image in the index (platforms: {0})")]
    NoPlatform(String),
    #[error("image has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge { what: &'static str, size: u64, limit: usize },
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A manifest or an index; which one is decided by `mediaType`, or by the presence of
/// `manifests` when `mediaType` is absent (allowed for OCI).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug)]
pub enum Parsed {
    Manifest(Manifest),
    Index(Vec<Descriptor>),
}

/// Parses a manifest or an index. `media_type` is the Content-Type the registry sent (or the
/// descriptor's), used when the document has none.
pub fn parse(bytes: &[u8], media_type: Option<&str>) -> Result<Parsed, ManifestError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::TooLarge {
            what: "manifest",
            size: bytes.len() as u64,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let doc: Document = serde_json::from_slice(bytes)
        .map_err(|source| ManifestError::Json { what: "manifest", source })?;
    if doc.schema_version != 2 {
        return Err(ManifestError::SchemaVersion(doc.schema_version));
    }
    let kind = doc.media_type.clone().or_else(|| media_type.map(str::to_owned));
    let is_index = match kind.as_deref() {
        Some(DOCKER_MANIFEST_LIST | OCI_INDEX) => true,
        Some(DOCKER_MANIFEST | OCI_MANIFEST) => false,
        None => doc.manifests.is_some(),
        Some(other) => return Err(ManifestError::MediaType(other.to_owned())),
    };
    if is_index {
        return Ok(Parsed::Index(doc.manifests.unwrap_or_default()));
    }
    let config = doc.config.ok_or(ManifestError::MediaType("manifest without config".into()))?;
    if config.media_type != DOCKER_CONFIG && config.media_type != OCI_CONFIG {
        return Err(ManifestError::NotAnImage(config.media_type));
    }
    for l in &doc.layers {
        Compression::from_media_type(&l.media_type)?;
        Digest::parse(&l.digest)?;
    }
    Digest::parse(&config.digest)?;
    Ok(Parsed::Manifest(Manifest {
        media_type: kind.unwrap_or_else(|| OCI_MANIFEST.to_owned()),
        config,
        layers: doc.layers,
    }))
}

/// Picks the entry for `os`/`architecture` (an entry without a variant, or `v8` on arm64,
/// preferred; then the first match).
pub fn select_platform<'a>(
    entries: &'a [Descriptor],
    os: &str,
    architecture: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let matching: Vec<&Descriptor> = entries
        .iter()
        .filter(|e| {
            e.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == architecture)
        })
        .filter(|e| matches!(e.media_type.as_str(), DOCKER_MANIFEST | OCI_MANIFEST))
        .collect();
    let preferred = matching.iter().find(|e| {
        e.platform
            .as_ref()
            .is_some_and(|p| p.variant.is_none() || p.variant.as_deref() == Some("v8"))
    });
    preferred.or(matching.first()).copied().ok_or_else(|| {
        let found: Vec<String> = entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)))
            .collect();
        ManifestError::NoPlatform(found.join(", "))
    })
}

/// What the runtime needs from an image config.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    /// `80/tcp`, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The parts of an image config file the store keeps.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    pub os: String,
    pub architecture: String,
    pub diff_ids: Vec<Digest>,
    pub config: ImageConfig,
}

#[derive(Deserialize)]
struct RawConfigFile {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    config: Option<RawConfig>,
    rootfs: RawRootFs,
}

#[derive(Deserialize)]
struct RawRootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

pub fn parse_config(bytes: &[u8]) -> Result<ConfigFile, ManifestError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::TooLarge {
            what: "image config",
            size: bytes.len() as u64,
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let raw: RawConfigFile = serde_json::from_slice(bytes)
        .map_err(|source| ManifestError::Json { what: "image config", source })?;
    let c = raw.config.unwrap_or_default();
    let diff_ids =
        raw.rootfs.diff_ids.iter().map(|d| Digest::parse(d)).collect::<Result<Vec<_>, _>>()?;
    Ok(ConfigFile {
        os: raw.os,
        architecture: raw.architecture,
        diff_ids,
        config: ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            stop_signal: c.stop_signal.filter(|s| !s.is_empty()),
            labels: c.labels.unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn docker_schema2_and_oci_manifests() {
        for (mt, layer_mt) in [
            (DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.diff.tar.gzip"),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ] {
            let cfg = if mt == DOCKER_MANIFEST { DOCKER_CONFIG } else { OCI_CONFIG };
            let json = format!(
                r#"{{"schemaVersion":2,"mediaType":"{mt}","config":{{"mediaType":"{cfg}","digest":"{D}","size":2}},
                "layers":[{{"mediaType":"{layer_mt}","digest":"{D}","size":3}}]}}"#
            );
            let Parsed::Manifest(m) = parse(json.as_bytes(), None).unwrap() else { panic!() };
            assert_eq!(m.media_type, mt);
            assert_eq!(m.layers.len(), 1);
        }
    }

    #[test]
    fn indexes_and_platform_selection() {
        let json = format!(
            r#"{{"schemaVersion":2,"manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":2,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#
        );
        let Parsed::Index(entries) = parse(json.as_bytes(), Some(OCI_INDEX)).unwrap() else {
            panic!()
        };
        assert_eq!(select_platform(&entries, "linux", "amd64").unwrap().size, 2);
        assert_eq!(select_platform(&entries, "linux", "arm64").unwrap().size, 1);
        let err = select_platform(&entries, "linux", "s390x").unwrap_err().to_string();
        assert!(err.contains("linux/arm64, linux/amd64"), "{err}");
    }

    #[test]
    fn refuses_artifacts_and_bad_digests() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{D}","size":2}},"layers":[]}}"#
        );
        assert!(matches!(parse(json.as_bytes(), None), Err(ManifestError::NotAnImage(_))));
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{D}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:../x","size":1}}]}}"#
        );
        assert!(matches!(parse(json.as_bytes(), None), Err(ManifestError::Digest(_))));
        assert!(matches!(
            parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(1))
        ));
    }

    #[test]
    fn config_fields() {
        let json = format!(
            r#"{{"os":"linux","architecture":"amd64","config":{{"Entrypoint":["/e"],"Cmd":null,
            "Env":["PATH=/bin"],"WorkingDir":"/w","User":"1000:1000","ExposedPorts":{{"80/tcp":{{}},"53/udp":{{}}}},
            "StopSignal":"SIGQUIT"}},"rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let c = parse_config(json.as_bytes()).unwrap();
        assert_eq!(c.diff_ids.len(), 1);
        assert_eq!(c.config.entrypoint, vec!["/e"]);
        assert!(c.config.cmd.is_empty());
        assert_eq!(c.config.exposed_ports, vec!["53/udp", "80/tcp"]);
        assert_eq!(c.config.user, "1000:1000");
        assert_eq!(c.config.stop_signal.as_deref(), Some("SIGQUIT"));
    }
}
