//! An image tarball (plain or gzip'd) unpacked flat into a temporary directory: every
//! regular file under a generated name, looked up by its path in the archive. Symbolic and
//! hard links between members (old `docker save` links shared layers) resolve to their
//! target. Paths that leave the archive are ignored; nothing is written outside the
//! temporary directory.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};

use super::{StoreError, read_limited};
use crate::layer::Compression;

pub(crate) struct Archive {
    source: String,
    _dir: tempfile::TempDir,
    files: HashMap<String, PathBuf>,
}

impl Archive {
    pub fn extract(path: &Path, tmp: &Path) -> Result<Archive, StoreError> {
        let source = path.display().to_string();
        let err = |message: String| StoreError::Import { path: source.clone(), message };
        let mut file = fs::File::open(path).map_err(|e| StoreError::io(path, e))?;
        let mut head = [0u8; 4];
        let n = file.read(&mut head).map_err(|e| StoreError::io(path, e))?;
        file.rewind().map_err(|e| StoreError::io(path, e))?;
        let reader = Compression::detect(&head[..n])
            .decoder(BufReader::new(file))
            .map_err(|e| err(e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(tmp)
            .map_err(|e| StoreError::io(tmp, e))?;
        let mut files = HashMap::new();
        let mut links = Vec::new();
        let mut archive = tar::Archive::new(reader);
        let entries = archive.entries().map_err(|e| err(e.to_string()))?;
        for (i, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| err(format!("reading the tarball: {e}")))?;
            let Some(name) = entry.path().ok().and_then(|p| normalise(&p)) else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = dir.path().join(i.to_string());
                    let mut out = fs::File::create(&dest).map_err(|e| StoreError::io(&dest, e))?;
                    io::copy(&mut entry, &mut out).map_err(|e| err(format!("{name}: {e}")))?;
                    files.insert(name, dest);
                }
                kind @ (tar::EntryType::Symlink | tar::EntryType::Link) => {
                    let Ok(Some(target)) = entry.link_name() else { continue };
                    let target = if kind == tar::EntryType::Symlink {
                        Path::new(&name).parent().unwrap_or(Path::new("")).join(target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(target) = normalise(&target) {
                        links.push((name, target));
                    }
                }
                _ => {}
            }
        }
        // Links to links: a few rounds are plenty for what `docker save` writes.
        for _ in 0..8 {
            let mut progressed = false;
            for (name, target) in &links {
                if !files.contains_key(name)
                    && let Some(p) = files.get(target).cloned()
                {
                    files.insert(name.clone(), p);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(Archive { source, _dir: dir, files })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    pub fn path(&self, name: &str) -> Result<&Path, StoreError> {
        self.files.get(name).map(PathBuf::as_path).ok_or_else(|| StoreError::Import {
            path: self.source.clone(),
            message: format!("{name} is missing from the tarball"),
        })
    }

    pub fn read(&self, name: &str, limit: usize) -> Result<Vec<u8>, StoreError> {
        read_limited(self.path(name)?, limit)
    }
}

/// `./a/../b` -> `b`; `None` if it leaves the root.
fn normalise(path: &Path) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}
