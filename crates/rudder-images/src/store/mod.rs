//! The node's image store, under one root directory (`/var/lib/rudder/images`):
//!
//! ```text
//! blobs/sha256/<hex>   manifests, indexes and configs, verified by digest
//! layers/<hex>/        one unpacked layer per diff_id (digest of the uncompressed tar),
//!                      shared by every image that has it; an overlayfs lower directory
//! images/<hex>.json    one record per image digest (see `record`)
//! refs.json            tag names and repo digests -> image digest
//! pins/<owner>.json    layers a container uses, kept by gc whatever the images (`pins`);
//!                      elsewhere if `StoreOptions::pins_dir` says so
//! tmp/                 downloads and unpacks in progress (emptied by gc)
//! lock, refs.lock      the lease and table locks (see `lock`)
//! ```
//!
//! A layer is unpacked into `tmp/` and renamed into `layers/` only once complete, verified
//! (diff_id) and synced, so a crash never leaves a half layer that looks complete; gc removes
//! a layer by renaming it back into `tmp/` first for the same reason. Compressed layer blobs
//! are not kept once unpacked.

mod archive;
mod gc;
mod import;
mod lock;
mod pins;
mod pull;
pub(crate) mod record;

use std::fs;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use gc::GcStats;
pub use record::{ImageRecord, LayerRecord};

use crate::digest::{Digest, DigestError, HashingReader};
use crate::layer::{self, Compression, LayerError, UnpackOptions};
use crate::manifest::{ConfigFile, Manifest, ManifestError};
use crate::reference::{ImageRef, ReferenceError};
use crate::registry::{RegistryError, RegistryOptions};
use lock::{FileLock, KeyLocks};
use record::{Refs, read_record, write_atomic, write_json};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("layer {diff_id}: {source}")]
    Layer {
        diff_id: String,
        #[source]
        source: LayerError,
    },
    #[error("no image {0:?} in the store")]
    NotFound(String),
    #[error("{reference:?} matches several images: {matches}")]
    Ambiguous { reference: String, matches: String },
    #[error("import of {path}: {message}")]
    Import { path: String, message: String },
    #[error("pulling {reference}: not done within {timeout_ms} ms")]
    Timeout { reference: String, timeout_ms: u64 },
    #[error("{path}: {message}")]
    Corrupt { path: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("background task failed: {0}")]
    Task(String),
    #[error("invalid pin owner {0:?} (letters, digits, '-' and '_', at most 128)")]
    InvalidPin(String),
    #[error("layer {0} is not in the store (removed meanwhile); pull the image again")]
    LayerMissing(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.display().to_string(), source }
    }
}

#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub registry: RegistryOptions,
    /// Layers downloaded (and unpacked) at once per pull.
    pub max_concurrent_downloads: usize,
    /// Bound on a whole pull, manifest to record.
    pub pull_timeout_ms: u64,
    pub unpack: UnpackOptions,
    /// The platform picked from image indexes.
    pub os: String,
    pub architecture: String,
    /// Where pins live; None: `<root>/pins`. A pin lasts as long as its container, so a
    /// node keeps them on tmpfs next to its runtime state (a reboot ends both), and a
    /// container start writes no file to the disk for them.
    pub pins_dir: Option<PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            registry: RegistryOptions::default(),
            max_concurrent_downloads: 3,
            pull_timeout_ms: 30 * 60 * 1000,
            unpack: UnpackOptions::default(),
            os: "linux".into(),
            architecture: "amd64".into(),
            pins_dir: None,
        }
    }
}

/// What [`ImageStore::remove`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removed {
    /// The name is gone; the image keeps other names.
    Untagged,
    /// The image record is gone (its layers stay until [`ImageStore::gc`]).
    Deleted(Box<ImageRecord>),
}

pub struct ImageStore {
    root: PathBuf,
    options: StoreOptions,
    registry_options: Arc<RegistryOptions>,
    layer_locks: KeyLocks,
}

impl std::fmt::Debug for ImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageStore").field("root", &self.root).finish_non_exhaustive()
    }
}

/// An image about to be recorded: its documents, verified, and its names.
pub(crate) struct NewImage<'a> {
    pub digest: Digest,
    pub manifest_digest: Digest,
    pub index_bytes: Option<&'a [u8]>,
    pub manifest_bytes: &'a [u8],
    pub manifest: &'a Manifest,
    pub config_bytes: &'a [u8],
    pub config: ConfigFile,
    pub names: Vec<String>,
    pub repo_digests: Vec<String>,
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>, options: StoreOptions) -> Result<Self, StoreError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "images", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
        }
        let registry_options = Arc::new(options.registry.clone());
        Ok(ImageStore { root, options, registry_options, layer_locks: KeyLocks::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The unpacked directory of a layer.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// The image's layer directories, bottom layer first (overlayfs wants `lowerdir` top
    /// first: reverse this).
    pub fn layer_dirs(&self, record: &ImageRecord) -> Vec<PathBuf> {
        record.layers.iter().map(|l| self.layer_dir(&l.diff_id)).collect()
    }

    /// A verified blob (manifest, index or config) kept by the store.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    fn record_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", digest.hex()))
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lease_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    fn refs_lock(&self) -> Result<FileLock, StoreError> {
        FileLock::acquire(&self.root.join("refs.lock"), true)
    }

    /// The image a reference names: a tag name (`busybox`, `host:5000/x:1.0`), a repo
    /// digest (`busybox@sha256:...`), a digest (the image's, its manifest's or its
    /// config's), or a unique prefix of at least 12 hex digits of the image digest.
    pub fn get(&self, reference: &str) -> Result<Option<ImageRecord>, StoreError> {
        let refs = Refs::load(&self.refs_path())?;
        let Some(digest) = self.resolve(&refs, reference)? else { return Ok(None) };
        let mut record = match read_record(&self.record_path(&digest))? {
            Some(r) => r,
            None => return Ok(None),
        };
        refs.decorate(&mut record);
        Ok(Some(record))
    }

    /// Every image, sorted by first name (untagged last), then digest.
    pub fn list(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let refs = Refs::load(&self.refs_path())?;
        let mut out = self.read_all_records()?;
        for r in &mut out {
            refs.decorate(r);
        }
        out.sort_by(|a, b| {
            (a.names.is_empty(), a.names.first(), &a.digest).cmp(&(
                b.names.is_empty(),
                b.names.first(),
                &b.digest,
            ))
        });
        Ok(out)
    }

    fn read_all_records(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StoreError::io(&dir, e))? {
            let entry = entry.map_err(|e| StoreError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else { continue };
            if Digest::parse(&format!("sha256:{hex}")).is_err() {
                continue;
            }
            if let Some(r) = read_record(&entry.path())? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn resolve(&self, refs: &Refs, reference: &str) -> Result<Option<Digest>, StoreError> {
        if let Ok(d) = Digest::parse(reference) {
            if self.record_path(&d).exists() {
                return Ok(Some(d));
            }
            let found = self
                .read_all_records()?
                .into_iter()
                .find(|r| r.manifest_digest == d || r.config_digest == d);
            return Ok(found.map(|r| r.digest));
        }
        match ImageRef::parse(reference) {
            Ok(r) => {
                if let Some(d) = &r.digest {
                    return Ok(self.record_path(d).exists().then(|| d.clone()));
                }
                if let Some(d) = r.tagged_name().and_then(|n| refs.names.get(&n)) {
                    return Ok(Some(d.clone()));
                }
            }
            Err(e) if !is_hex_prefix(reference) => return Err(e.into()),
            Err(_) => {}
        }
        if !is_hex_prefix(reference) {
            return Ok(None);
        }
        let matches: Vec<Digest> = self
            .read_all_records()?
            .into_iter()
            .map(|r| r.digest)
            .filter(|d| d.hex().starts_with(reference))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            _ => Err(StoreError::Ambiguous {
                reference: reference.to_owned(),
                matches: matches.iter().map(Digest::to_string).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// Removes a name (`busybox:1.0`) or a repo digest; the record goes when nothing names
    /// it any more. A digest or ID prefix removes the image with all its names.
    pub fn remove(&self, reference: &str) -> Result<Removed, StoreError> {
        let _lock = self.refs_lock()?;
        let mut refs = Refs::load(&self.refs_path())?;
        let not_found = || StoreError::NotFound(reference.to_owned());
        let name = match Digest::parse(reference) {
            Ok(_) => None,
            Err(_) => ImageRef::parse(reference).ok(),
        };
        let removed_name = name.as_ref().and_then(|r| match &r.digest {
            Some(d) => refs.repo_digests.remove(&r.with_digest(d)).then(|| d.clone()),
            None => r.tagged_name().and_then(|n| refs.names.remove(&n)),
        });
        let digest = match removed_name {
            Some(d) => d,
            // A digest, an image ID prefix (not a name): the whole image.
            None if name.is_none() || is_hex_prefix(reference) => {
                let d = self.resolve(&refs, reference)?.ok_or_else(not_found)?;
                refs.forget(&d);
                d
            }
            None => return Err(not_found()),
        };
        write_json(&self.refs_path(), &refs)?;
        if refs.references(&digest) {
            return Ok(Removed::Untagged);
        }
        let path = self.record_path(&digest);
        // A name left pointing at a missing record (a crash between two writes) is just
        // dropped.
        let Some(record) = read_record(&path)? else { return Ok(Removed::Untagged) };
        fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        Ok(Removed::Deleted(Box::new(record)))
    }

    /// Writes the image's documents and record, and points its names at it (moving a tag
    /// from the image it named before, which stays, untagged, until removed).
    pub(crate) fn commit(&self, image: NewImage<'_>) -> Result<ImageRecord, StoreError> {
        let mut blobs = vec![(&image.manifest_digest, image.manifest_bytes)];
        if let Some(index) = image.index_bytes {
            blobs.push((&image.digest, index));
        }
        let config_digest = Digest::parse(&image.manifest.config.digest)?;
        blobs.push((&config_digest, image.config_bytes));
        for (digest, bytes) in blobs {
            let path = self.blob_path(digest);
            if !path.exists() {
                write_atomic(&path, bytes)?;
            }
        }
        let layers = image
            .manifest
            .layers
            .iter()
            .zip(&image.config.diff_ids)
            .map(|(l, diff_id)| {
                Ok(LayerRecord {
                    diff_id: diff_id.clone(),
                    digest: Digest::parse(&l.digest)?,
                    media_type: l.media_type.clone(),
                    size_bytes: l.size.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>, DigestError>>()?;
        let size_bytes = layers.iter().map(|l| l.size_bytes).sum::<u64>()
            + image.manifest.config.size.max(0) as u64;
        let mut record = ImageRecord {
            digest: image.digest,
            manifest_digest: image.manifest_digest,
            config_digest,
            names: Vec::new(),
            repo_digests: Vec::new(),
            layers,
            size_bytes,
            os: image.config.os,
            architecture: image.config.architecture,
            config: image.config.config,
        };
        let _lock = self.refs_lock()?;
        write_json(&self.record_path(&record.digest), &record)?;
        let mut refs = Refs::load(&self.refs_path())?;
        for name in image.names {
            refs.names.insert(name, record.digest.clone());
        }
        refs.repo_digests.extend(image.repo_digests);
        write_json(&self.refs_path(), &refs)?;
        refs.decorate(&mut record);
        Ok(record)
    }

    /// Unpacks a layer blob (a local file) into `layers/<diff_id hex>` unless it is there:
    /// into `tmp/` first, verifying the uncompressed stream against `diff_id` (and the blob
    /// against `blob_digest` when given), synced, then renamed into place. Returns whether
    /// it unpacked (false: present already).
    pub(crate) async fn install_layer(
        &self,
        diff_id: &Digest,
        compression: Compression,
        blob: &Path,
        blob_digest: Option<&Digest>,
    ) -> Result<bool, StoreError> {
        let dest = self.layer_dir(diff_id);
        if dest.exists() {
            return Ok(false);
        }
        let (tmp, blob, diff_id, blob_digest, options) = (
            self.tmp_dir(),
            blob.to_path_buf(),
            diff_id.clone(),
            blob_digest.cloned(),
            self.options.unpack,
        );
        tokio::task::spawn_blocking(move || {
            unpack_layer(&tmp, &dest, &blob, compression, &diff_id, blob_digest.as_ref(), options)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn is_hex_prefix(s: &str) -> bool {
    s.len() >= 12
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn unpack_layer(
    tmp: &Path,
    dest: &Path,
    blob: &Path,
    compression: Compression,
    diff_id: &Digest,
    blob_digest: Option<&Digest>,
    options: UnpackOptions,
) -> Result<bool, StoreError> {
    let layer_err = |source| StoreError::Layer { diff_id: diff_id.to_string(), source };
    let dir = tempfile::Builder::new()
        .prefix("layer-")
        .tempdir_in(tmp)
        .map_err(|e| StoreError::io(tmp, e))?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .map_err(|e| StoreError::io(dir.path(), e))?;
    let file = fs::File::open(blob).map_err(|e| StoreError::io(blob, e))?;
    let mut compressed = HashingReader::new(BufReader::new(file));
    let mut uncompressed =
        HashingReader::new(compression.decoder(&mut compressed).map_err(layer_err)?);
    layer::unpack(&mut uncompressed, Compression::None, dir.path(), options).map_err(layer_err)?;
    let (actual, _) = uncompressed.finish().map_err(|e| StoreError::io(blob, e))?;
    actual.verify(diff_id, &format!("uncompressed layer {diff_id} (diff_id)"))?;
    if let Some(expected) = blob_digest {
        let (actual, _) = compressed.finish().map_err(|e| StoreError::io(blob, e))?;
        actual.verify(expected, &format!("layer blob {expected}"))?;
    }
    let handle = fs::File::open(dir.path()).map_err(|e| StoreError::io(dir.path(), e))?;
    nix::unistd::syncfs(&handle).map_err(|e| StoreError::io(dir.path(), e.into()))?;
    let unpacked = dir.keep();
    match fs::rename(&unpacked, dest) {
        Ok(()) => {
            record::sync_dir(dest.parent().unwrap_or(dest))?;
            Ok(true)
        }
        // Another process finished the same layer first.
        Err(_) if dest.exists() => {
            let _ = fs::remove_dir_all(&unpacked);
            Ok(false)
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&unpacked);
            Err(StoreError::io(dest, e))
        }
    }
}

/// Reads a small file fully, refusing more than `limit` bytes.
pub(crate) fn read_limited(path: &Path, limit: usize) -> Result<Vec<u8>, StoreError> {
    let file = fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut out = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut out).map_err(|e| StoreError::io(path, e))?;
    if out.len() > limit {
        return Err(
            ManifestError::TooLarge { what: "document", size: out.len() as u64, limit }.into()
        );
    }
    Ok(out)
}
