//! Pod sandbox namespaces held by bind mounts, without a pause process.
//!
//! # How a namespace is created
//!
//! A dedicated, short-lived OS thread calls `unshare(CLONE_NEWNET | CLONE_NEWIPC |
//! CLONE_NEWUTS)`, sets the hostname in its new UTS namespace, and bind-mounts
//! `/proc/thread-self/ns/{net,ipc,uts}` onto the namespace files; then the thread ends.
//! The bind mounts keep the namespaces alive; containers join them by path.
//!
//! This is safe in a multi-threaded (tokio) process because these three namespace kinds
//! belong to the calling *thread*: the kernel allows unsharing them in a thread of a
//! multi-threaded process (unlike mount and user namespaces), and no other thread — in
//! particular no runtime worker — ever runs in the new namespaces, since the thread is
//! ours, runs only this code, and exits right after. Nothing is exec'd, so it costs well
//! under a millisecond, and no `unsafe` (fork, `pre_exec`) is needed. The same trick,
//! [`run_in_netns`], runs a closure on a fresh thread that has `setns`'d into a network
//! namespace (sockets created there stay in that namespace).
//!
//! # Mount propagation
//!
//! Like `ip netns add`, the directory holding the namespace files is made a mount point of
//! its own (for `/run/netns` a recursive bind mount onto itself when it is not one yet, for
//! rudder's own directory a small tmpfs) with *shared* propagation. Then a mount namespace
//! later cloned from ours (a container being set up, `ip netns exec`) receives our later
//! unmounts as well, instead of keeping a private copy of the namespace mount that would
//! pin the namespace after teardown. `ip netns` uses the
//! same shared `/run/netns`, so both tools cooperate. Removal unmounts with `MNT_DETACH`
//! (an open file on the namespace does not block it) and then unlinks the file (which also
//! detaches copies of that mount in other mount namespaces).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// How many stacked mounts one namespace file may have before we stop unmounting.
const MAX_STACKED_MOUNTS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{what} {path:?}: {source}")]
    Sys {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("unshare(net, ipc, uts): {0}")]
    Unshare(#[source] Errno),
    #[error("sethostname({hostname:?}) in the new UTS namespace: {source}")]
    Hostname {
        hostname: String,
        #[source]
        source: Errno,
    },
    #[error("namespace {path:?} already exists")]
    Exists { path: PathBuf },
    #[error("the namespace helper thread panicked")]
    ThreadPanicked,
}

/// The three namespace files of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxNamespaces {
    /// Network namespace file (under `/run/netns`).
    pub net: PathBuf,
    /// IPC namespace file.
    pub ipc: PathBuf,
    /// UTS namespace file.
    pub uts: PathBuf,
}

/// Creates new network, IPC and UTS namespaces held by bind mounts on `paths` (the files
/// must not exist; missing directories are created, and making them shared mount points
/// first is the caller's job, see [`ensure_shared_mountpoint`]), with `hostname` set in
/// the UTS namespace. Loopback is left down; the caller brings it up with
/// the rest of the pod's interfaces.
///
/// On error, what was created stays; [`remove`] cleans it up.
pub fn create(paths: &SandboxNamespaces, hostname: &str) -> Result<(), NamespaceError> {
    for file in [&paths.net, &paths.ipc, &paths.uts] {
        let dir = file.parent().ok_or_else(|| NamespaceError::Io {
            what: "namespace file has no parent directory",
            path: file.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
        // `ip netns add` creates its files mode 0 with O_EXCL; so do we.
        let created = OpenOptions::new().write(true).create_new(true).mode(0o000).open(file);
        match created {
            Ok(_) => {}
            Err(source) if source.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NamespaceError::Exists { path: file.clone() });
            }
            Err(source) => return Err(io_err("creating namespace file", file)(source)),
        }
    }
    let paths = paths.clone();
    let hostname = hostname.to_owned();
    std::thread::Builder::new()
        .name("rudder-net-unshare".into())
        .spawn(move || unshare_and_bind(&paths, &hostname))
        .map_err(io_err("spawning the namespace thread", Path::new("")))?
        .join()
        .map_err(|_| NamespaceError::ThreadPanicked)?
}

/// Runs on its own thread, which ends right after: the namespaces it enters are never used
/// by anything else in this process.
fn unshare_and_bind(paths: &SandboxNamespaces, hostname: &str) -> Result<(), NamespaceError> {
    unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
        .map_err(NamespaceError::Unshare)?;
    nix::unistd::sethostname(hostname)
        .map_err(|source| NamespaceError::Hostname { hostname: hostname.to_owned(), source })?;
    for (kind, target) in [("net", &paths.net), ("ipc", &paths.ipc), ("uts", &paths.uts)] {
        let source = PathBuf::from(format!("/proc/thread-self/ns/{kind}"));
        mount(Some(&source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(sys_err("bind-mounting the namespace onto", target))?;
    }
    Ok(())
}

/// Unmounts and deletes namespace files. Missing files and files that are not mounted are
/// fine, so this is idempotent and cleans up a half-created sandbox.
pub fn remove(paths: &SandboxNamespaces) -> Result<(), NamespaceError> {
    let mut first_error = None;
    for file in [&paths.net, &paths.ipc, &paths.uts] {
        if let Err(err) = remove_file(file) {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Unmounts every mount stacked on `file` and deletes it; a missing file is fine.
pub fn remove_file(file: &Path) -> Result<(), NamespaceError> {
    for _ in 0..MAX_STACKED_MOUNTS {
        match umount2(file, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more); ENOENT: no such file.
            Err(Errno::EINVAL | Errno::ENOENT) => break,
            Err(errno) => return Err(sys_err("unmounting", file)(errno)),
        }
    }
    match fs::remove_file(file) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(io_err("deleting namespace file", file)(err))
        }
        _ => Ok(()),
    }
}

/// Whether `file` is currently a namespace bind mount (an nsfs inode) rather than the
/// plain placeholder file it is mounted on.
pub fn is_namespace_mounted(file: &Path) -> bool {
    // Every bind-mounted namespace file reads as an nsfs inode; the placeholder is a
    // regular file on the directory's filesystem.
    match nix::sys::statfs::statfs(file) {
        Ok(fs) => fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC,
        Err(_) => false,
    }
}

/// Makes `dir` (created if missing) a mount point with shared propagation, as `ip netns
/// add` does for `/run/netns`: `mount --make-rshared dir`, and if `dir` is not a mount
/// point yet, a recursive bind mount of `dir` onto itself first. An flock on the
/// directory serialises this between threads and processes, so two callers never stack
/// two bind mounts.
pub fn ensure_shared_mountpoint(dir: &Path) -> Result<(), NamespaceError> {
    ensure_shared(dir, || {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(sys_err("bind-mounting onto itself", dir))
    })
}

/// Like [`ensure_shared_mountpoint`], but a directory that is not a mount point yet gets a
/// small tmpfs of its own rather than a bind mount onto itself. For the sandboxes'
/// namespace files: they only mean something while the machine is up, and where the
/// host's `/run` is not a tmpfs (some VMs and containers) a disk would otherwise allocate
/// and free inodes for every pod.
pub fn ensure_shared_tmpfs(dir: &Path) -> Result<(), NamespaceError> {
    ensure_shared(dir, || {
        mount(
            Some("rudder-ns"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(NS_TMPFS_OPTIONS),
        )
        .map_err(sys_err("mounting a tmpfs on", dir))
    })
}

/// The namespace files' tmpfs: empty files only, so little space; one directory and two
/// files per sandbox.
const NS_TMPFS_OPTIONS: &str = "mode=0700,size=1m,nr_inodes=65536";

fn ensure_shared(
    dir: &Path,
    make_mount_point: impl FnOnce() -> Result<(), NamespaceError>,
) -> Result<(), NamespaceError> {
    fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
    let handle = File::open(dir).map_err(io_err("opening directory", dir))?;
    let _lock = Flock::lock(handle, FlockArg::LockExclusive)
        .map_err(|(_, errno)| sys_err("locking directory", dir)(errno))?;
    let make_shared = || {
        mount(None::<&str>, dir, None::<&str>, MsFlags::MS_SHARED | MsFlags::MS_REC, None::<&str>)
    };
    match make_shared() {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            make_mount_point()?;
            make_shared().map_err(sys_err("making shared", dir))
        }
        Err(errno) => Err(sys_err("making shared", dir)(errno)),
    }
}

/// Runs `f` on a fresh thread that has joined the network namespace held by `netns` (None:
/// the current one), and returns its result. Sockets `f` creates belong to that namespace
/// for their whole life, so this is how to listen or connect inside a pod (port-forward,
/// probes) or the node namespace.
pub fn run_in_netns<T, F>(netns: Option<&Path>, f: F) -> Result<T, NamespaceError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns_file = match netns {
        None => None,
        Some(path) => Some(File::open(path).map_err(io_err("opening netns", path))?),
    };
    let path = netns.map(Path::to_path_buf).unwrap_or_default();
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("rudder-net-setns".into())
            .spawn_scoped(scope, move || {
                if let Some(file) = ns_file {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(sys_err("entering netns", &path))?;
                }
                Ok(f())
            })
            .map_err(io_err("spawning the netns thread", Path::new("")))?
            .join()
            .map_err(|_| NamespaceError::ThreadPanicked)?
    })
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> NamespaceError {
    let path = path.to_path_buf();
    move |source| NamespaceError::Io { what, path, source }
}

fn sys_err(what: &'static str, path: &Path) -> impl FnOnce(Errno) -> NamespaceError {
    let path = path.to_path_buf();
    move |source| NamespaceError::Sys { what, path, source }
}
