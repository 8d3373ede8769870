//! Writes a set of files into a volume directory so that readers always see one whole
//! version (upstream's atomic writer layout):
//!
//! ```text
//! <dir>/..2025_01_02_15_04_05.123456   the files of one version (a "timestamped" dir)
//! <dir>/..data -> ..2025_01_02_15_04_05.123456
//! <dir>/key    -> ..data/key             one link per top-level name
//! ```
//!
//! An update writes a new timestamped dir, points `..data_tmp` at it and renames it over
//! `..data` (one atomic rename), then removes the links of names that went away and the old
//! dir. Nothing is written when the content and modes are unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// Files by relative path (`a`, `dir/b`).
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path like upstream: relative, no `..` element, not starting with `..`,
/// bounded length.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".to_owned());
    }
    if path.len() > 4096 {
        return Err(format!(
            "invalid path: must be less than or equal to 4096 characters: {path:?}"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    for segment in path.split('/') {
        if segment == ".." {
            return Err(format!("invalid path: must not contain '..': {path}"));
        }
        if segment.len() > 255 {
            return Err(format!("invalid path: path segment too long: {path}"));
        }
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// `a//b/./c` -> `a/b/c`.
fn clean(path: &str) -> String {
    let parts: Vec<&str> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    parts.join("/")
}

/// Writes `payload` into `dir` (which must exist). Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> io::Result<bool> {
    let mut clean_payload = Payload::new();
    for (path, file) in payload {
        validate_path(path).map_err(|m| io::Error::new(io::ErrorKind::InvalidInput, m))?;
        let p = clean(path);
        if p.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path: {path}"),
            ));
        }
        clean_payload.insert(p, file.clone());
    }
    // A path cannot be both a file and a directory.
    for p in clean_payload.keys() {
        let mut prefix = String::new();
        for part in p.split('/') {
            if !prefix.is_empty() && clean_payload.contains_key(&prefix) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("invalid payload: {prefix} is both a file and a directory"),
                ));
            }
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
        }
    }

    let old_ts = current_version(dir)?;
    if let Some(old) = &old_ts
        && same_content(&dir.join(old), &clean_payload)?
    {
        remove_stale_versions(dir, Some(old))?;
        return Ok(false);
    }

    let new_ts = create_version_dir(dir)?;
    let new_path = dir.join(&new_ts);
    if let Err(e) = write_files(&new_path, &clean_payload) {
        let _ = std::fs::remove_dir_all(&new_path);
        return Err(e);
    }

    let new_names = top_level_names(&clean_payload);
    for name in &new_names {
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &visible)?;
        }
    }

    let tmp = dir.join(DATA_DIR_TMP);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    symlink(&new_ts, &tmp)?;
    std::fs::rename(&tmp, dir.join(DATA_DIR))?;

    // Links of names that went away (only links: never what a link points to).
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || new_names.contains(&name) {
            continue;
        }
        if entry.file_type()?.is_symlink() {
            std::fs::remove_file(entry.path())?;
        }
    }
    remove_stale_versions(dir, Some(&new_ts))?;
    Ok(true)
}

/// The timestamped dir `..data` points at, if any.
pub fn current_version(dir: &Path) -> io::Result<Option<String>> {
    match std::fs::read_link(dir.join(DATA_DIR)) {
        Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes `..`-prefixed dirs other than `keep` (left by an interrupted or earlier write).
fn remove_stale_versions(dir: &Path, keep: Option<&str>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") || name == DATA_DIR || Some(name.as_str()) == keep {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else if name == DATA_DIR_TMP {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn top_level_names(payload: &Payload) -> BTreeSet<String> {
    payload.keys().map(|p| p.split('/').next().unwrap_or(p).to_owned()).collect()
}

fn create_version_dir(dir: &Path) -> io::Result<String> {
    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S").to_string();
    for _ in 0..16 {
        let name = format!("..{stamp}.{}", rand::random::<u32>());
        match std::fs::create_dir(dir.join(&name)) {
            Ok(()) => {
                std::fs::set_permissions(dir.join(&name), std::fs::Permissions::from_mode(0o755))?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free name for a new version"))
}

fn write_files(root: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let full = root.join(path);
        if let Some(parent) = full.parent()
            && parent != root
        {
            create_dirs(root, parent)?;
        }
        std::fs::write(&full, &file.data)?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    Ok(())
}

fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    let mut current = PathBuf::from(root);
    for part in dir.strip_prefix(root).map_err(io::Error::other)?.components() {
        current.push(part);
        match std::fs::create_dir(&current) {
            Ok(()) => std::fs::set_permissions(&current, std::fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether the version at `version` holds exactly `payload` (bytes and modes).
fn same_content(version: &Path, payload: &Payload) -> io::Result<bool> {
    let mut existing = BTreeSet::new();
    if !collect_files(version, version, &mut existing)? {
        return Ok(false);
    }
    if existing.len() != payload.len() || !payload.keys().all(|k| existing.contains(k)) {
        return Ok(false);
    }
    for (path, file) in payload {
        let full = version.join(path);
        let meta = std::fs::symlink_metadata(&full)?;
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != file.mode & 0o7777 {
            return Ok(false);
        }
        if std::fs::read(&full)? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Relative paths of the regular files under `dir`; false when the tree holds anything else
/// (or is missing).
fn collect_files(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> io::Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !collect_files(root, &entry.path(), out)? {
                return Ok(false);
            }
        } else if kind.is_file() {
            let rel = entry.path().strip_prefix(root).map_err(io::Error::other)?.to_owned();
            out.insert(rel.to_string_lossy().into_owned());
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
#[path = "atomic_writer_tests.rs"]
mod tests;
