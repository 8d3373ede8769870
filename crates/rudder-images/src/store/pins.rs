//! Pins: the layers a container's root filesystem is built from, kept by gc for as long as
//! the container exists, even if its image is removed meanwhile (containerd keeps a
//! container's snapshot the same way). One file per owner, `pins/<owner>.json`, listing
//! layer directory names.
//!
//! A pin is written before the overlay is mounted and checked against the layers still
//! present: a gc that ran between resolving the image and pinning it makes [`ImageStore::pin`]
//! fail rather than leave a container over a deleted layer.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::{ImageStore, StoreError};

impl ImageStore {
    fn pins_dir(&self) -> PathBuf {
        self.options.pins_dir.clone().unwrap_or_else(|| self.root.join("pins"))
    }

    fn pin_path(&self, owner: &str) -> Result<PathBuf, StoreError> {
        let valid = !owner.is_empty()
            && owner.len() <= 128
            && owner.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(StoreError::InvalidPin(owner.to_owned()));
        }
        Ok(self.pins_dir().join(format!("{owner}.json")))
    }

    /// Keeps `layer_dirs` (directories under `layers/`) from gc until [`ImageStore::unpin`].
    /// Fails with [`StoreError::LayerMissing`] if one of them is already gone.
    pub fn pin(&self, owner: &str, layer_dirs: &[PathBuf]) -> Result<(), StoreError> {
        let path = self.pin_path(owner)?;
        let layers = self.root.join("layers");
        let mut names = Vec::new();
        for dir in layer_dirs {
            match dir.strip_prefix(&layers).ok().and_then(|p| p.to_str()) {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    names.push(name.to_owned())
                }
                _ => return Err(StoreError::LayerMissing(dir.display().to_string())),
            }
        }
        fs::create_dir_all(self.pins_dir()).map_err(|e| StoreError::io(&self.pins_dir(), e))?;
        // Atomic but not fsynced: a pin matters only while its container's overlay is
        // mounted, which a power loss ends too.
        let bytes = serde_json::to_vec(&names).map_err(|e| StoreError::Corrupt {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let dir = self.pins_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(|e| StoreError::io(&dir, e))?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(|e| StoreError::io(&path, e))?;
        tmp.persist(&path).map_err(|e| StoreError::io(&path, e.error))?;
        if let Some(missing) = layer_dirs.iter().find(|d| !d.is_dir()) {
            let _ = fs::remove_file(&path);
            return Err(StoreError::LayerMissing(missing.display().to_string()));
        }
        Ok(())
    }

    /// Releases a pin; succeeds if there is none.
    pub fn unpin(&self, owner: &str) -> Result<(), StoreError> {
        let path = self.pin_path(owner)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StoreError::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Every pinned layer directory name.
    pub(crate) fn pinned_layers(&self) -> Result<HashSet<String>, StoreError> {
        let mut out = HashSet::new();
        let dir = self.pins_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(StoreError::io(&dir, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| StoreError::io(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "json") {
                out.extend(read_pin(&path)?);
            }
        }
        Ok(out)
    }
}

fn read_pin(path: &Path) -> Result<Vec<String>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        // Unpinned while we listed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}
