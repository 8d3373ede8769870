//! Garbage collection: with the lease lock held exclusively (no pull or import running, in
//! this process or another), delete the layers and blobs no image record references and no
//! container pins (see `pins`), and
//! everything left in `tmp/` by interrupted pulls. A layer is first renamed into `tmp/` and
//! then deleted, so a crash half-way never leaves a partial layer under `layers/`.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use super::lock::FileLock;
use super::{ImageStore, StoreError};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub layers_removed: u64,
    pub blobs_removed: u64,
    /// Leftovers of interrupted pulls and imports.
    pub tmp_removed: u64,
    pub layers_kept: u64,
    pub blobs_kept: u64,
}

impl ImageStore {
    /// Deletes what no image references. Waits for running pulls and imports to finish;
    /// pulls started meanwhile wait for gc.
    pub async fn gc(&self) -> Result<GcStats, StoreError> {
        let lease = FileLock::acquire_async(&self.lease_path(), true).await?;
        self.collect_garbage(lease).await
    }

    /// Like [`ImageStore::gc`], but returns None at once if a pull or import is running.
    pub async fn try_gc(&self) -> Result<Option<GcStats>, StoreError> {
        match FileLock::try_acquire(&self.lease_path(), true)? {
            Some(lease) => self.collect_garbage(lease).await.map(Some),
            None => Ok(None),
        }
    }

    async fn collect_garbage(&self, _lease: FileLock) -> Result<GcStats, StoreError> {
        let root = self.root.clone();
        let records = self.read_all_records()?;
        let pinned = self.pinned_layers()?;
        tokio::task::spawn_blocking(move || {
            let mut layers = pinned;
            let mut blobs = HashSet::new();
            for r in &records {
                layers.extend(r.layers.iter().map(|l| l.diff_id.hex().to_owned()));
                for d in [&r.digest, &r.manifest_digest, &r.config_digest] {
                    blobs.insert(d.hex().to_owned());
                }
            }
            collect(&root, &layers, &blobs)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn collect(
    root: &Path,
    layers: &HashSet<String>,
    blobs: &HashSet<String>,
) -> Result<GcStats, StoreError> {
    let mut stats = GcStats::default();
    let tmp = root.join("tmp");
    // Leftovers first (nothing is in progress while we hold the lease exclusively).
    for entry in read_dir(&tmp)? {
        remove_any(&entry)?;
        stats.tmp_removed += 1;
    }
    for entry in read_dir(&root.join("layers"))? {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if layers.contains(&name) {
            stats.layers_kept += 1;
            continue;
        }
        let doomed = tmp.join(format!("gc-{name}"));
        fs::rename(&entry, &doomed).map_err(|e| StoreError::io(&entry, e))?;
        remove_any(&doomed)?;
        stats.layers_removed += 1;
    }
    for entry in read_dir(&root.join("blobs/sha256"))? {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if blobs.contains(name) {
            stats.blobs_kept += 1;
            continue;
        }
        remove_any(&entry)?;
        stats.blobs_removed += 1;
    }
    Ok(stats)
}

fn read_dir(dir: &Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        out.push(entry.map_err(|e| StoreError::io(dir, e))?.path());
    }
    Ok(out)
}

fn remove_any(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, e))?;
    if meta.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
        .map_err(|e| StoreError::io(path, e))
}
