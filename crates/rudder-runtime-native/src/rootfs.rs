//! A container's root filesystem: an overlay of the image's layer directories (read-only
//! lower dirs) with a private upper and work directory.
//!
//! The overlay is mounted by the container's init process, inside the container's own mount
//! namespace (the first entry of `config.json`'s mounts, on `/`), never on the node: the
//! node's mount table keeps no line per container (every reader of `/proc/self/mountinfo`,
//! libcontainer's several per container start included, pays for each line), and the mount
//! goes away with the container's last process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};

/// The kernel takes mount options up to one page; the lowerdir list must fit.
const MAX_MOUNT_OPTIONS_BYTES: usize = 4000;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("the image has no layers")]
    NoLayers,
    #[error("overlay options are {0} bytes, over the kernel's one-page limit (too many layers)")]
    TooManyLayers(usize),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

/// A container's overlay, to be mounted by its init process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// `<dir>/rootfs`: the empty directory the overlay is mounted on (the OCI root path).
    pub rootfs: PathBuf,
    /// `lowerdir=...`, `upperdir=...`, `workdir=...`.
    pub options: Vec<String>,
}

/// Prepares `<dir>/rootfs` as the mount point of an overlay of `layers` (bottom layer
/// first) with `<writable>/upper` and `<writable>/work`; mounts nothing.
pub fn prepare_overlay(
    dir: &Path,
    writable: &Path,
    layers: &[PathBuf],
) -> Result<Overlay, RootfsError> {
    if layers.is_empty() {
        return Err(RootfsError::NoLayers);
    }
    let rootfs = dir.join("rootfs");
    let upper = writable.join("upper");
    let work = writable.join("work");
    for d in [&rootfs, &upper, &work] {
        fs::create_dir_all(d).map_err(|source| RootfsError::Io {
            what: format!("creating {}", d.display()),
            source,
        })?;
    }
    // overlayfs lists lower dirs top-most first.
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let options = vec![
        format!("lowerdir={}", lower.join(":")),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
    ];
    let len = options.iter().map(|o| o.len() + 1).sum::<usize>();
    if len > MAX_MOUNT_OPTIONS_BYTES {
        return Err(RootfsError::TooManyLayers(len));
    }
    Ok(Overlay { rootfs, options })
}

/// The file at `rel` (a relative path such as `etc/passwd`) in the merged view of `layers`
/// (bottom layer first) before anything is mounted: the top-most layer's copy, unless a
/// layer above hides it (an overlay whiteout of it or of a parent, a parent that is not a
/// directory there, or an opaque parent). Only regular files count; symlinks are not
/// followed (they could point at the node's files).
pub fn find_in_layers(layers: &[PathBuf], rel: &str) -> Option<PathBuf> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let whiteout = |m: &fs::Metadata| m.file_type().is_char_device() && m.rdev() == 0;
    for layer in layers.iter().rev() {
        let mut path = layer.clone();
        // An opaque parent in this layer hides the layers below, whatever this one holds.
        let mut opaque = false;
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let Ok(meta) = fs::symlink_metadata(&path) else { break };
            if whiteout(&meta) {
                return None;
            }
            if i + 1 == parts.len() {
                return meta.file_type().is_file().then_some(path);
            }
            if !meta.is_dir() {
                return None;
            }
            opaque |= xattr::get(&path, "trusted.overlay.opaque").ok().flatten().as_deref()
                == Some(b"y".as_slice());
        }
        if opaque {
            return None;
        }
    }
    None
}

/// Unmounts the rootfs if it is mounted on the node: only an older agent mounted it there
/// (lazily: a process still inside does not block removal).
pub fn unmount(dir: &Path) -> Result<(), RootfsError> {
    let rootfs = dir.join("rootfs");
    // An overlay is a filesystem of its own: a device other than its parent's. Cheaper than
    // reading the mount table once per container removal.
    let dev = |p: &Path| fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::dev(&m));
    match (dev(&rootfs), dev(dir)) {
        (Ok(a), Ok(b)) if a != b => {}
        _ => return Ok(()),
    }
    umount2(&rootfs, MntFlags::MNT_DETACH).map_err(|e| RootfsError::Io {
        what: format!("unmounting {}", rootfs.display()),
        source: e.into(),
    })
}

/// Whether `path` is a mount point, from /proc/self/mountinfo.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.display().to_string();
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mp| unescape_mountinfo(mp) == want)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// Mount points at or under `dir` (for leak checks and cleanup).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_in_the_top_most_layer_that_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let layer = |name: &str, files: &[(&str, &str)]| {
            let root = dir.path().join(name);
            for (rel, text) in files {
                let p = root.join(rel);
                fs::create_dir_all(p.parent().unwrap()).unwrap();
                fs::write(p, text).unwrap();
            }
            fs::create_dir_all(&root).unwrap();
            root
        };
        let base = layer("base", &[("etc/passwd", "base"), ("etc/group", "base")]);
        let top = layer("top", &[("etc/passwd", "top")]);
        let layers = vec![base.clone(), top.clone()];
        let read = |rel: &str| find_in_layers(&layers, rel).map(|p| fs::read_to_string(p).unwrap());
        assert_eq!(read("etc/passwd").as_deref(), Some("top"));
        assert_eq!(read("etc/group").as_deref(), Some("base"));
        assert_eq!(read("etc/shadow"), None);
        // A directory is not a file, and a layer whose parent is a file hides the rest.
        assert_eq!(read("etc"), None);
        let hidden = layer("hidden", &[("etc", "not a directory")]);
        assert_eq!(find_in_layers(&[base.clone(), hidden], "etc/group"), None);
        // A symlink is not followed.
        let link = layer("link", &[]);
        fs::create_dir_all(link.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", link.join("etc/group")).unwrap();
        assert_eq!(find_in_layers(&[base.clone(), link], "etc/group"), None);
    }

    #[test]
    fn whiteouts_and_opaque_directories_hide_lower_layers() {
        // Whiteouts are 0:0 character devices and opaque markers trusted xattrs: root only,
        // as the runtime itself.
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(base.join("etc/passwd"), "base").unwrap();
        fs::write(base.join("etc/group"), "base").unwrap();
        let mknod_whiteout = |p: &Path| {
            nix::sys::stat::mknod(
                p,
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::from_bits_truncate(0o600),
                0,
            )
            .unwrap()
        };
        let gone = dir.path().join("gone");
        fs::create_dir_all(gone.join("etc")).unwrap();
        mknod_whiteout(&gone.join("etc/passwd"));
        assert_eq!(find_in_layers(&[base.clone(), gone.clone()], "etc/passwd"), None);
        assert!(find_in_layers(&[base.clone(), gone], "etc/group").is_some());
        let no_etc = dir.path().join("no-etc");
        fs::create_dir_all(&no_etc).unwrap();
        mknod_whiteout(&no_etc.join("etc"));
        assert_eq!(find_in_layers(&[base.clone(), no_etc], "etc/group"), None);
        let opaque = dir.path().join("opaque");
        fs::create_dir_all(opaque.join("etc")).unwrap();
        fs::write(opaque.join("etc/passwd"), "opaque").unwrap();
        xattr::set(opaque.join("etc"), "trusted.overlay.opaque", b"y").unwrap();
        let layers = vec![base, opaque];
        assert_eq!(find_in_layers(&layers, "etc/group"), None);
        let passwd = find_in_layers(&layers, "etc/passwd").unwrap();
        assert_eq!(fs::read_to_string(passwd).unwrap(), "opaque");
    }
}
