//! tmpfs mounts for memory-backed volumes, and finding/unmounting what is mounted under a
//! pod's directory (from `/proc/self/mountinfo`).

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Mount points (absolute, unescaped) of this process's mount namespace.
pub fn mount_points() -> io::Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

/// The mount point field (5th) of each mountinfo line.
pub fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> io::Result<bool> {
    let path = std::fs::canonicalize(path)?;
    Ok(mount_points()?.contains(&path))
}

/// Mounts a fresh tmpfs on `dir` (nosuid, nodev) whose root has permissions `mode`,
/// size-limited when `size_bytes` is set.
pub fn mount_tmpfs(dir: &Path, size_bytes: Option<u64>, mode: u32) -> io::Result<()> {
    let mut options = format!("mode={:o}", mode & 0o7777);
    if let Some(size) = size_bytes {
        options.push_str(&format!(",size={size}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(io::Error::from)
}

/// Unmounts everything mounted at or under `root`, deepest first (lazily when busy). Returns
/// the mount points that are still there afterwards.
pub fn unmount_all_under(root: &Path) -> io::Result<Vec<PathBuf>> {
    let root = match std::fs::canonicalize(root) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut under: Vec<PathBuf> =
        mount_points()?.into_iter().filter(|m| m.starts_with(&root)).collect();
    // Deepest first; the same point may be stacked several times.
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in &under {
        match nix::mount::umount2(point, MntFlags::empty()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EBUSY) => {
                tracing::warn!(path = %point.display(), "busy, detaching");
                nix::mount::umount2(point, MntFlags::MNT_DETACH).map_err(io::Error::from)?;
            }
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(mount_points()?.into_iter().filter(|m| m.starts_with(&root)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mount_points_with_escapes() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    90 22 0:50 / /var/lib/x\\040y rw - tmpfs tmpfs rw\n";
        assert_eq!(parse_mountinfo(text), vec![PathBuf::from("/"), PathBuf::from("/var/lib/x y")]);
    }
}
