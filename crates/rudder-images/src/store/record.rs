//! Image records and the name table, as JSON files written atomically (temp file, fsync,
//! rename, fsync of the directory):
//! - `images/<hex>.json`: one [`ImageRecord`] per image digest (without its names);
//! - `refs.json`: tag names (`docker.io/library/busybox:latest`) -> image digest, and repo
//!   digests (`docker.io/library/busybox@sha256:...`).
//!
//! A crash between the two writes leaves either a record without names (listed as
//! `<none>`) or a name pointing to a missing record (treated as absent): never a wrong image.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::digest::Digest;
use crate::manifest::ImageConfig;

/// One image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The digest the image is known by: the index's (manifest list's) when the reference
    /// named an index, else the manifest's. Pulling `repo@digest` gives this image again;
    /// the kubelet reports it as `imageID` (`docker-pullable://repo@digest`).
    pub digest: Digest,
    /// The platform (linux/amd64) manifest's digest (equal to `digest` without an index).
    pub manifest_digest: Digest,
    /// The config blob's digest (Docker's "image ID").
    pub config_digest: Digest,
    /// Tag names, fully qualified (`docker.io/library/busybox:latest`), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// `repo@digest` names, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
    /// Bottom layer first.
    pub layers: Vec<LayerRecord>,
    /// Compressed size of the layers plus the config, as registries and `crictl` count it.
    pub size_bytes: u64,
    pub os: String,
    pub architecture: String,
    pub config: ImageConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// Digest of the uncompressed tar: names the unpacked directory `layers/<hex>`.
    pub diff_id: Digest,
    /// Digest of the blob as distributed (compressed).
    pub digest: Digest,
    pub media_type: String,
    pub size_bytes: u64,
}

impl ImageRecord {
    /// `(repository, tag)` pairs for listing; `("<none>", "<none>")` when untagged.
    pub fn repo_tags(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .names
            .iter()
            .filter_map(|n| {
                let slash = n.rfind('/').map_or(0, |i| i + 1);
                n[slash..]
                    .rfind(':')
                    .map(|i| (n[..slash + i].to_owned(), n[slash + i + 1..].to_owned()))
            })
            .collect();
        if out.is_empty() {
            let repo = self
                .repo_digests
                .first()
                .and_then(|r| r.split_once('@'))
                .map_or("<none>".to_owned(), |(repo, _)| repo.to_owned());
            out.push((repo, "<none>".to_owned()));
        }
        out
    }
}

/// The name table (`refs.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Refs {
    #[serde(default)]
    pub names: BTreeMap<String, Digest>,
    #[serde(default)]
    pub repo_digests: BTreeSet<String>,
}

impl Refs {
    pub fn load(path: &Path) -> Result<Refs, StoreError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Refs::default()),
            Err(e) => Err(StoreError::io(path, e)),
        }
    }

    /// Fills `record.names` and `record.repo_digests` from the table.
    pub fn decorate(&self, record: &mut ImageRecord) {
        record.names = self
            .names
            .iter()
            .filter(|(_, d)| **d == record.digest)
            .map(|(n, _)| n.clone())
            .collect();
        let suffix = format!("@{}", record.digest);
        record.repo_digests =
            self.repo_digests.iter().filter(|r| r.ends_with(&suffix)).cloned().collect();
    }

    /// Whether any name or repo digest points at `digest`.
    pub fn references(&self, digest: &Digest) -> bool {
        let suffix = format!("@{digest}");
        self.names.values().any(|d| d == digest)
            || self.repo_digests.iter().any(|r| r.ends_with(&suffix))
    }

    /// Drops every name and repo digest of `digest`.
    pub fn forget(&mut self, digest: &Digest) {
        let suffix = format!("@{digest}");
        self.names.retain(|_, d| d != digest);
        self.repo_digests.retain(|r| !r.ends_with(&suffix));
    }
}

pub(crate) fn read_record(path: &Path) -> Result<Option<ImageRecord>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::io(path, std::io::ErrorKind::InvalidInput.into()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| StoreError::io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| StoreError::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| StoreError::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| StoreError::io(path, e.error))?;
    sync_dir(dir)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}
