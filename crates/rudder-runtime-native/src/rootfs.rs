//! A container's root filesystem: an overlay mount of the image's layer directories
//! (read-only lower dirs) with a private upper and work directory.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

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

/// Mounts `<dir>/rootfs` as overlay of `layers` (bottom layer first) with `<writable>/upper`
/// and `<writable>/work`. Returns the rootfs path.
pub fn mount_overlay(
    dir: &Path,
    writable: &Path,
    layers: &[PathBuf],
) -> Result<PathBuf, RootfsError> {
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
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    if options.len() > MAX_MOUNT_OPTIONS_BYTES {
        return Err(RootfsError::TooManyLayers(options.len()));
    }
    mount(Some("overlay"), &rootfs, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
        .map_err(|e| RootfsError::Io {
            what: format!("mounting overlay on {}", rootfs.display()),
            source: e.into(),
        })?;
    Ok(rootfs)
}

/// Unmounts the rootfs if mounted (lazily: a process still inside does not block removal).
pub fn unmount(dir: &Path) -> Result<(), RootfsError> {
    let rootfs = dir.join("rootfs");
    if !is_mount_point(&rootfs) {
        return Ok(());
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

/// `MS_` flag re-export for callers that bind-mount.
pub use nix::mount::MsFlags as MountFlags;
