//! Importing image tarballs (`rudder image import`):
//! - OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`): every entry of
//!   `index.json`, through a nested index to the store's platform; names from the
//!   `io.containerd.image.name` annotation, or `org.opencontainers.image.ref.name` when it is
//!   a full reference (a bare tag names no repository: such an image gets the `RepoTags` of
//!   a `manifest.json` next to it, as `docker save` writes both, or stays untagged);
//! - docker-archive (`docker save`: `manifest.json` with `Config`, `RepoTags`, `Layers`;
//!   layers possibly gzip'd): the manifest is synthesised (OCI), so its digest is the
//!   image's here only.
//!
//! Every blob is verified: manifests, indexes and configs against their digests, layers
//! against their blob digests where the format has them and always against the config's
//! diff_ids while unpacking.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::archive::Archive;
use super::lock::FileLock;
use super::{ImageStore, NewImage, StoreError};
use crate::digest::{Digest, HashingReader};
use crate::layer::Compression;
use crate::manifest::{self, ConfigFile, Descriptor, MAX_DOCUMENT_BYTES, Manifest, Parsed};
use crate::reference::ImageRef;

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image found in a tarball, its documents verified.
struct Candidate {
    digest: Digest,
    manifest_digest: Digest,
    index_bytes: Option<Vec<u8>>,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    config_bytes: Vec<u8>,
    config: ConfigFile,
    names: Vec<String>,
    /// Per layer: the blob in the archive, its compression, the digest to verify it against.
    layers: Vec<(PathBuf, Compression, Option<Digest>)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl ImageStore {
    /// Imports every image of an OCI-layout or docker-archive tarball (plain or gzip'd).
    pub async fn import(&self, path: &Path) -> Result<Vec<crate::ImageRecord>, StoreError> {
        let _lease = FileLock::acquire_async(&self.lease_path(), false).await?;
        let (path, tmp) = (path.to_path_buf(), self.tmp_dir());
        let (os, arch) = (self.options.os.clone(), self.options.architecture.clone());
        let (archive, candidates) = tokio::task::spawn_blocking(move || {
            let archive = Archive::extract(&path, &tmp)?;
            let candidates = if archive.has("oci-layout") && archive.has("index.json") {
                oci_candidates(&archive, &os, &arch)?
            } else if archive.has("manifest.json") {
                docker_candidates(&archive)?
            } else {
                return Err(import_err(
                    &archive,
                    "neither an OCI layout (oci-layout, index.json) nor a docker archive (manifest.json)",
                ));
            };
            Ok::<_, StoreError>((archive, candidates))
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let mut out = Vec::new();
        for c in candidates {
            // Futures built first, not in a stream closure: keeps this future `Send`.
            let layers: Vec<_> = c
                .layers
                .iter()
                .zip(&c.config.diff_ids)
                .map(|((blob, compression, verify), diff_id)| async move {
                    let _guard = self.layer_locks.lock(diff_id.hex()).await;
                    self.install_layer(diff_id, *compression, blob, verify.as_ref()).await
                })
                .collect();
            futures::stream::iter(layers)
                .buffer_unordered(self.options.max_concurrent_downloads.max(1))
                .try_collect::<Vec<bool>>()
                .await?;
            out.push(self.commit(NewImage {
                digest: c.digest,
                manifest_digest: c.manifest_digest,
                index_bytes: c.index_bytes.as_deref(),
                manifest_bytes: &c.manifest_bytes,
                manifest: &c.manifest,
                config_bytes: &c.config_bytes,
                config: c.config,
                names: c.names,
                repo_digests: Vec::new(),
            })?);
        }
        drop(archive);
        Ok(out)
    }
}

fn import_err(archive: &Archive, message: impl Into<String>) -> StoreError {
    StoreError::Import { path: archive.source().to_owned(), message: message.into() }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// Reads a document blob of an OCI layout and verifies it.
fn read_blob(archive: &Archive, digest: &str) -> Result<(Digest, Vec<u8>), StoreError> {
    let digest = Digest::parse(digest)?;
    let bytes = archive.read(&blob_name(&digest), MAX_DOCUMENT_BYTES)?;
    Digest::of(&bytes).verify(&digest, &blob_name(&digest))?;
    Ok((digest, bytes))
}

fn oci_candidates(archive: &Archive, os: &str, arch: &str) -> Result<Vec<Candidate>, StoreError> {
    let index = archive.read("index.json", MAX_DOCUMENT_BYTES)?;
    let Parsed::Index(entries) = manifest::parse(&index, Some(manifest::OCI_INDEX))? else {
        return Err(import_err(archive, "index.json is not an image index"));
    };
    let docker_tags = docker_tags_by_config(archive);
    // The same image may be listed once per name.
    let mut by_digest: BTreeMap<String, (Descriptor, Vec<String>)> = BTreeMap::new();
    for e in entries {
        let names = annotation_names(&e);
        let slot = by_digest.entry(e.digest.clone()).or_insert_with(|| (e.clone(), Vec::new()));
        slot.1.extend(names);
    }
    let mut out = Vec::new();
    for (_, (entry, mut names)) in by_digest {
        let (digest, bytes) = read_blob(archive, &entry.digest)?;
        let (index_bytes, manifest_digest, manifest_bytes, manifest) =
            match manifest::parse(&bytes, Some(&entry.media_type))? {
                Parsed::Manifest(m) => (None, digest.clone(), bytes, m),
                Parsed::Index(children) => {
                    let child = manifest::select_platform(&children, os, arch)?;
                    let (child_digest, child_bytes) = read_blob(archive, &child.digest)?;
                    let Parsed::Manifest(m) =
                        manifest::parse(&child_bytes, Some(&child.media_type))?
                    else {
                        return Err(import_err(archive, "an index inside an index"));
                    };
                    (Some(bytes), child_digest, child_bytes, m)
                }
            };
        let (config_digest, config_bytes) = read_blob(archive, &manifest.config.digest)?;
        let config = checked_config(archive, &config_bytes, manifest.layers.len())?;
        if names.is_empty() {
            names = docker_tags.get(&config_digest).cloned().unwrap_or_default();
        }
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                let d = Digest::parse(&l.digest)?;
                let compression = Compression::from_media_type(&l.media_type)
                    .map_err(|e| import_err(archive, e.to_string()))?;
                Ok((archive.path(&blob_name(&d))?.to_path_buf(), compression, Some(d)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        names.sort();
        names.dedup();
        out.push(Candidate {
            digest,
            manifest_digest,
            index_bytes,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
            names,
            layers,
        });
    }
    Ok(out)
}

fn annotation_names(entry: &Descriptor) -> Vec<String> {
    let Some(a) = &entry.annotations else { return Vec::new() };
    let full =
        a.get(CONTAINERD_NAME).or_else(|| a.get(OCI_REF_NAME).filter(|n| n.contains(['/', ':'])));
    full.and_then(|n| ImageRef::parse(n).ok()).and_then(|r| r.tagged_name()).into_iter().collect()
}

fn checked_config(
    archive: &Archive,
    bytes: &[u8],
    layers: usize,
) -> Result<ConfigFile, StoreError> {
    let config = manifest::parse_config(bytes)?;
    if config.diff_ids.len() != layers {
        return Err(import_err(
            archive,
            format!("{layers} layers but the config lists {} diff_ids", config.diff_ids.len()),
        ));
    }
    Ok(config)
}

fn docker_entries(archive: &Archive) -> Result<Vec<DockerEntry>, StoreError> {
    let bytes = archive.read("manifest.json", MAX_DOCUMENT_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|e| import_err(archive, format!("manifest.json: {e}")))
}

/// `RepoTags` of a docker archive's `manifest.json`, by config digest (empty without one).
fn docker_tags_by_config(archive: &Archive) -> BTreeMap<Digest, Vec<String>> {
    let mut out = BTreeMap::new();
    let Ok(entries) = docker_entries(archive) else { return out };
    for e in entries {
        let Ok(bytes) = archive.read(&e.config, MAX_DOCUMENT_BYTES) else { continue };
        let tags = e.repo_tags.unwrap_or_default();
        out.insert(Digest::of(&bytes), tags.iter().filter_map(|t| tag_name(t)).collect());
    }
    out
}

fn tag_name(tag: &str) -> Option<String> {
    ImageRef::parse(tag).ok().and_then(|r| r.tagged_name())
}

/// The digest a docker archive member's name claims (`<hex>.json` for the config,
/// `blobs/sha256/<hex>`), if any. (`<hex>/layer.tar` names a v1 layer ID, not a digest.)
fn claimed_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn docker_candidates(archive: &Archive) -> Result<Vec<Candidate>, StoreError> {
    let mut out = Vec::new();
    for entry in docker_entries(archive)? {
        let config_bytes = archive.read(&entry.config, MAX_DOCUMENT_BYTES)?;
        let config_digest = Digest::of(&config_bytes);
        if let Some(claimed) = claimed_digest(&entry.config) {
            config_digest.verify(&claimed, &entry.config)?;
        }
        let config = checked_config(archive, &config_bytes, entry.layers.len())?;
        let mut layers = Vec::new();
        let mut descriptors = Vec::new();
        for (name, diff_id) in entry.layers.iter().zip(&config.diff_ids) {
            let path = archive.path(name)?.to_path_buf();
            let (digest, size, compression) = hash_file(&path)?;
            if let Some(claimed) = claimed_digest(name) {
                digest.verify(&claimed, name)?;
            }
            if compression == Compression::None {
                digest
                    .verify(diff_id, &format!("{name} (an uncompressed layer is its diff_id)"))?;
            }
            descriptors.push(serde_json::json!({
                "mediaType": compression.oci_media_type(),
                "digest": digest.as_str(),
                "size": size,
            }));
            layers.push((path, compression, None));
        }
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {
                "mediaType": manifest::OCI_CONFIG,
                "digest": config_digest.as_str(),
                "size": config_bytes.len(),
            },
            "layers": descriptors,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest_json).map_err(|e| import_err(archive, e.to_string()))?;
        let Parsed::Manifest(manifest) = manifest::parse(&manifest_bytes, None)? else {
            return Err(import_err(archive, "synthesised manifest is not a manifest"));
        };
        let digest = Digest::of(&manifest_bytes);
        let mut names: Vec<String> =
            entry.repo_tags.unwrap_or_default().iter().filter_map(|t| tag_name(t)).collect();
        names.sort();
        names.dedup();
        out.push(Candidate {
            digest: digest.clone(),
            manifest_digest: digest,
            index_bytes: None,
            manifest_bytes,
            manifest,
            config_bytes,
            config,
            names,
            layers,
        });
    }
    Ok(out)
}

/// Digest, size and compression of a file.
fn hash_file(path: &Path) -> Result<(Digest, u64, Compression), StoreError> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut head = [0u8; 4];
    let n = file.read(&mut head).map_err(|e| StoreError::io(path, e))?;
    let mut reader = HashingReader::new(std::io::Cursor::new(head[..n].to_vec()).chain(file));
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| StoreError::io(path, e))?;
    let (digest, size) = reader.finish().map_err(|e| StoreError::io(path, e))?;
    Ok((digest, size, Compression::detect(&head[..n])))
}
