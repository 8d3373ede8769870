//! The mount points a container needs in `/etc`, provided by a shared read-only layer on
//! top of the image's (Docker calls its equivalent the init layer).
//!
//! A pod's `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` are bind mounts of the
//! sandbox's files. Their mount points must exist in the rootfs; when the image lacks
//! them, libcontainer creates them, and each creation in the overlay copies `/etc` up into
//! the container's writable layer and adds a file there: four inodes on the disk for every
//! container, which on a filesystem slow at allocating inodes was a visible part of a
//! pod's start. With this layer the mount points exist already and the writable layer
//! stays empty until the container writes.
//!
//! The layer holds `etc/` (with the mode and owner of the image's own `/etc`, since the
//! top layer that has a directory decides what the merged one shows) and an empty file for
//! each mount point, and nothing else: only files that are mounted over are in it, so the
//! container never sees one of its empty files (a host-network pod without a hosts file
//! keeps the image's `/etc/hosts`). Layers are keyed by that content, so a node has a
//! handful of them whatever its images; they are made once and kept.
//!
//! An image whose `/etc` is not a directory (a symlink, or deleted by a whiteout) gets no
//! init layer: the merged view would change, so libcontainer creates what is missing as
//! before.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// The mount destinations an init layer can provide: files directly under `/etc`.
fn etc_file(destination: &str) -> Option<&str> {
    destination.strip_prefix("/etc/").filter(|f| !f.is_empty() && !f.contains('/'))
}

/// The init layer for a container over `layers` (bottom first) with bind mounts at
/// `destinations`, made under `root` if it does not exist yet; None when no destination
/// is a file under `/etc` or the image's `/etc` is not a plain directory.
pub fn ensure(
    root: &Path,
    layers: &[PathBuf],
    destinations: &[&str],
) -> io::Result<Option<PathBuf>> {
    let mut files: Vec<&str> = destinations.iter().filter_map(|d| etc_file(d)).collect();
    if files.iter().any(|f| !f.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))) {
        return Ok(None);
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.sort_unstable();
    files.dedup();
    let (mode, uid, gid) = match image_etc(layers)? {
        EtcInImage::Dir { mode, uid, gid } => (mode, uid, gid),
        EtcInImage::Missing => (0o755, 0, 0),
        EtcInImage::NotADirectory => return Ok(None),
    };
    // No commas: the path goes into the overlay's comma-separated mount options.
    let dir = root.join(format!("{mode:o}-{uid}-{gid}-{}", files.join("+")));
    if dir.is_dir() {
        return Ok(Some(dir));
    }
    fs::create_dir_all(root)?;
    // Made aside and renamed into place: a crash never leaves half a layer under its name
    // (a leftover `.tmp-` directory is removed by the next runtime start).
    let tmp = root.join(format!("{TMP_PREFIX}{:016x}", rand::random::<u64>()));
    let made = (|| {
        let etc = tmp.join("etc");
        fs::create_dir_all(&etc)?;
        for f in &files {
            let file = fs::File::create(etc.join(f))?;
            file.set_permissions(fs::Permissions::from_mode(0o644))?;
        }
        lchown(&etc, Some(uid), Some(gid))?;
        fs::set_permissions(&etc, fs::Permissions::from_mode(mode))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        fs::rename(&tmp, &dir)
    })();
    match made {
        Ok(()) => Ok(Some(dir)),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            // Another container made the same layer meanwhile.
            if dir.is_dir() { Ok(Some(dir)) } else { Err(e) }
        }
    }
}

const TMP_PREFIX: &str = ".tmp-";

/// Removes init layers left half-made under `root` (a crash while making one).
pub fn remove_leftovers(root: &Path) {
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

enum EtcInImage {
    Dir { mode: u32, uid: u32, gid: u32 },
    Missing,
    NotADirectory,
}

/// What the merged view of `layers` shows at `/etc`: the top-most layer with an entry
/// there decides (a directory in a lower layer merges, but its metadata is the top one's).
fn image_etc(layers: &[PathBuf]) -> io::Result<EtcInImage> {
    for layer in layers.iter().rev() {
        match fs::symlink_metadata(layer.join("etc")) {
            Ok(meta) if meta.is_dir() => {
                return Ok(EtcInImage::Dir {
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                });
            }
            // A symlink, a file, or a whiteout (a character device) hiding the layers below.
            Ok(_) => return Ok(EtcInImage::NotADirectory),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(EtcInImage::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let l = root.join(name);
        fs::create_dir_all(&l).unwrap();
        l
    }

    #[test]
    fn the_layer_has_the_etc_files_mounted_over_and_the_images_etc_metadata() {
        let t = tempfile::tempdir().unwrap();
        let (bottom, top) = (layer(t.path(), "bottom"), layer(t.path(), "top"));
        fs::create_dir(bottom.join("etc")).unwrap();
        fs::create_dir(top.join("etc")).unwrap();
        fs::set_permissions(top.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        let init = t.path().join("init");
        let destinations = ["/etc/resolv.conf", "/etc/hosts", "/data", "/etc/ssl/certs"];
        let dir = ensure(&init, &[bottom.clone(), top.clone()], &destinations).unwrap().unwrap();
        let mut names: Vec<String> = fs::read_dir(dir.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hosts", "resolv.conf"]);
        assert_eq!(fs::metadata(dir.join("etc")).unwrap().mode() & 0o7777, 0o750);
        assert_eq!(fs::metadata(dir.join("etc/hosts")).unwrap().len(), 0);
        // Made once: the same request gives the same directory, nothing else is added.
        assert_eq!(ensure(&init, &[bottom, top], &destinations).unwrap().unwrap(), dir);
        assert_eq!(fs::read_dir(&init).unwrap().count(), 1);
    }

    #[test]
    fn no_layer_without_etc_files_or_over_an_etc_that_is_not_a_directory() {
        let t = tempfile::tempdir().unwrap();
        let init = t.path().join("init");
        let plain = layer(t.path(), "plain");
        assert!(ensure(&init, std::slice::from_ref(&plain), &["/data"]).unwrap().is_none());
        // No /etc at all: one is provided, root's 0755.
        let dir = ensure(&init, std::slice::from_ref(&plain), &["/etc/hostname"]).unwrap();
        assert_eq!(fs::metadata(dir.unwrap().join("etc")).unwrap().mode() & 0o7777, 0o755);

        let linked = layer(t.path(), "linked");
        std::os::unix::fs::symlink("usr/etc", linked.join("etc")).unwrap();
        let layers = [plain.clone(), linked];
        assert!(ensure(&init, &layers, &["/etc/hosts"]).unwrap().is_none());
        // A directory above the symlink decides again.
        let over = layer(t.path(), "over");
        fs::create_dir(over.join("etc")).unwrap();
        let layers = [plain, layers[1].clone(), over];
        assert!(ensure(&init, &layers, &["/etc/hosts"]).unwrap().is_some());
    }
}
