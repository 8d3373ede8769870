//! Unpacking one OCI layer (a tar stream, plain, gzip or zstd) into a directory that serves
//! as an overlayfs lower directory:
//! - OCI whiteouts (`.wh.<name>`) become overlay whiteouts (a 0:0 character device), and an
//!   opaque marker (`.wh..wh..opq`) sets `trusted.overlay.opaque=y` on its directory;
//! - no entry can write outside the directory: absolute paths are made relative, `..` is
//!   refused, parent directories that are symlinks are refused, hard links must point inside;
//! - device nodes (and whiteouts, which need them) are created only when privileged, and are
//!   counted as skipped otherwise;
//! - the uncompressed size is bounded.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer entry {path:?} would escape the layer directory")]
    PathEscape { path: String },
    #[error("layer is larger than the limit of {limit_bytes} bytes uncompressed")]
    TooLarge { limit_bytes: u64 },
    #[error("unsupported layer media type {0:?}")]
    MediaType(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LayerError {
    let what = what.into();
    move |source| LayerError::Io { what, source }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI or Docker layer media type.
    pub fn from_media_type(media_type: &str) -> Result<Self, LayerError> {
        Ok(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
            other => return Err(LayerError::MediaType(other.to_owned())),
        })
    }

    /// From the first bytes of a blob (docker-archive layers carry no media type).
    pub fn detect(head: &[u8]) -> Self {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            _ => Compression::None,
        }
    }

    /// The OCI media type of a layer compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// A reader of the uncompressed stream (gzip with several members is read whole).
    pub fn decoder<'a>(self, reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, LayerError> {
        Ok(match self {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => {
                Box::new(ruzstd::decoding::StreamingDecoder::new(reader).map_err(|e| {
                    LayerError::Io { what: "zstd".into(), source: io::Error::other(e.to_string()) }
                })?)
            }
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct UnpackOptions {
    /// Create device nodes, overlay whiteouts and file ownership (needs root).
    pub privileged: bool,
    /// Refuse layers that unpack to more than this.
    pub max_bytes: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions { privileged: nix::unistd::geteuid().is_root(), max_bytes: 16 << 30 }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Device nodes and whiteouts not created because unprivileged.
    pub skipped: u64,
}

/// A reader that fails once more than `limit` bytes went through it.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(io::ErrorKind::FileTooLarge, format!("over {} bytes", self.limit))
        })?;
        Ok(n)
    }
}

/// The entry's path relative to the layer root, or an error if it leaves it.
fn relative(path: &Path) -> Result<PathBuf, LayerError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::PathEscape { path: path.display().to_string() });
            }
        }
    }
    Ok(out)
}

/// Makes sure every parent of `rel` under `root` is a real directory (never a symlink).
fn parents(root: &Path, rel: &Path) -> Result<(), LayerError> {
    let mut dir = root.to_path_buf();
    let Some(parent) = rel.parent() else { return Ok(()) };
    for c in parent.components() {
        dir.push(c);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(LayerError::PathEscape { path: rel.display().to_string() });
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&dir).map_err(io_err(format!("replacing {}", dir.display())))?;
                fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
            }
            Err(_) => {
                fs::create_dir(&dir).map_err(io_err(format!("creating {}", dir.display())))?
            }
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (so an entry can replace it), unless it is a directory
/// and `keep_dir` is set.
fn clear(path: &Path, keep_dir: bool) -> Result<(), LayerError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() && !keep_dir => fs::remove_dir_all(path),
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .map_err(io_err(format!("replacing {}", path.display())))
}

fn mknod_at(path: &Path, kind: SFlag, mode: u32, major: u64, minor: u64) -> Result<(), LayerError> {
    mknod(path, kind, Mode::from_bits_truncate(mode & 0o7777), makedev(major, minor))
        .map_err(|e| LayerError::Io { what: format!("mknod {}", path.display()), source: e.into() })
}

/// Unpacks the layer read from `reader` into `dest` (created if missing).
pub fn unpack(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    options: UnpackOptions,
) -> Result<UnpackStats, LayerError> {
    let decoded = compression.decoder(reader)?;
    let bounded = Bounded {
        inner: decoded,
        left: options.max_bytes.saturating_add(1 << 20),
        limit: options.max_bytes,
    };
    fs::create_dir_all(dest).map_err(io_err(format!("creating {}", dest.display())))?;
    let mut archive = tar::Archive::new(bounded);
    let mut stats = UnpackStats::default();
    let entries = archive.entries().map_err(io_err("reading the layer"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if e.kind() == io::ErrorKind::FileTooLarge {
                LayerError::TooLarge { limit_bytes: options.max_bytes }
            } else {
                LayerError::Io { what: "reading the layer".into(), source: e }
            }
        })?;
        let rel = relative(&entry.path().map_err(io_err("entry path"))?)?;
        if rel.as_os_str().is_empty() {
            continue; // the root itself
        }
        stats.entries += 1;
        parents(dest, &rel)?;
        let path = dest.join(&rel);
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name == ".wh..wh..opq" {
            let dir = path.parent().unwrap_or(dest);
            if options.privileged {
                xattr::set(dir, "trusted.overlay.opaque", b"y")
                    .map_err(io_err(format!("marking {} opaque", dir.display())))?;
                stats.opaque_dirs += 1;
            } else {
                stats.skipped += 1;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = path.with_file_name(hidden);
            clear(&target, false)?;
            if options.privileged {
                mknod_at(&target, SFlag::S_IFCHR, 0, 0, 0)?;
                stats.whiteouts += 1;
            } else {
                stats.skipped += 1;
            }
            continue;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let kind = header.entry_type();
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        match kind {
            tar::EntryType::Directory => {
                clear(&path, true)?;
                if !path.is_dir() {
                    fs::create_dir(&path)
                        .map_err(io_err(format!("creating {}", path.display())))?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io_err(format!("chmod {}", path.display())))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&path, false)?;
                let mut file = fs::File::create(&path)
                    .map_err(io_err(format!("creating {}", path.display())))?;
                let n = io::copy(&mut entry, &mut file).map_err(|e| {
                    if e.kind() == io::ErrorKind::FileTooLarge {
                        LayerError::TooLarge { limit_bytes: options.max_bytes }
                    } else {
                        LayerError::Io { what: format!("writing {}", path.display()), source: e }
                    }
                })?;
                stats.bytes += n;
                if stats.bytes > options.max_bytes {
                    return Err(LayerError::TooLarge { limit_bytes: options.max_bytes });
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io_err(format!("chmod {}", path.display())))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_err("symlink target"))?
                    .ok_or_else(|| LayerError::PathEscape { path: rel.display().to_string() })?;
                clear(&path, false)?;
                symlink(&target, &path).map_err(io_err(format!("symlink {}", path.display())))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err("hard link target"))?
                    .ok_or_else(|| LayerError::PathEscape { path: rel.display().to_string() })?;
                let source = dest.join(relative(&target)?);
                if fs::symlink_metadata(&source).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(LayerError::PathEscape { path: target.display().to_string() });
                }
                clear(&path, false)?;
                fs::hard_link(&source, &path)
                    .map_err(io_err(format!("linking {}", path.display())))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                if !options.privileged && kind != tar::EntryType::Fifo {
                    stats.skipped += 1;
                    continue;
                }
                clear(&path, false)?;
                let flag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                mknod_at(&path, flag, mode, major.into(), minor.into())?;
            }
            _ => continue, // pax headers and the like carry no file
        }
        if options.privileged {
            let (uid, gid) = (Some(uid as u32), Some(gid as u32));
            std::os::unix::fs::lchown(&path, uid, gid)
                .map_err(io_err(format!("chown {}", path.display())))?;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
