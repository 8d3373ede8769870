//! Persistent IP address management for the node's pod CIDR, in the style of CNI's
//! `host-local` plugin.
//!
//! State directory layout:
//! - `<ip>` (e.g. `10.42.0.7`): one file per allocated address, holding the sandbox id;
//! - `last`: the address handed out last; the next search starts after it and wraps, so a
//!   released address is reused only once the range has wrapped around;
//! - `lock`: every operation holds an `flock` on it, which serialises threads (each
//!   operation opens its own descriptor) and processes alike.
//!
//! An allocation file is written under a temporary name and then hard-linked to its
//! address name: `link(2)` fails if the name exists (the O_EXCL guarantee, even for a
//! writer that ignored the lock) and the file never appears empty, even after a crash.
//! Leftover temporary files are removed by the next allocation. Files are not fsync'd: a
//! crash of the process keeps them (page cache); a crash of the machine also loses every
//! pod namespace, and the agent garbage-collects allocations whose sandbox is gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::cidr::Ipv4Cidr;
use crate::names::{NameError, validate_sandbox_id};

const LOCK_FILE: &str = "lock";
const CURSOR_FILE: &str = "last";
const TMP_PREFIX: &str = ".tmp-";
/// How long an operation waits for another holder of the lock (held for milliseconds).
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
const LOCK_RETRY_MAX: Duration = Duration::from_millis(16);

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("locking {path:?}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("timed out after {timeout_ms} ms waiting for the IPAM lock {path:?}")]
    LockTimeout { path: PathBuf, timeout_ms: u128 },
    #[error("no free pod IP address left in {cidr} ({capacity} addresses, all allocated)")]
    Exhausted { cidr: Ipv4Cidr, capacity: u32 },
    #[error(transparent)]
    Name(#[from] NameError),
}

/// One allocated address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub sandbox_id: String,
}

/// The allocator for one pod CIDR, backed by a state directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Cidr,
}

impl Ipam {
    /// Opens (creating if needed) the state directory for `cidr`.
    pub fn open(dir: impl Into<PathBuf>, cidr: Ipv4Cidr) -> Result<Self, IpamError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_err("creating IPAM directory", &dir))?;
        Ok(Ipam { dir, cidr })
    }

    pub fn cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The address of `sandbox_id`: its existing one if it has one, else the next free
    /// address after the last one handed out (wrapping around the range).
    pub fn allocate(&self, sandbox_id: &str) -> Result<Ipv4Addr, IpamError> {
        validate_sandbox_id(sandbox_id)?;
        let _lock = self.lock(FlockArg::LockExclusiveNonblock)?;
        let allocations = self.scan(true)?;
        if let Some(existing) = allocations.iter().find(|a| a.sandbox_id == sandbox_id) {
            return Ok(existing.ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> = allocations.iter().map(|a| a.ip).collect();
        let first = u32::from(self.cidr.first_pod_ip());
        let capacity = self.cidr.pod_capacity();
        let start = match self.read_cursor() {
            Some(last) => u32::from(last) - first + 1,
            None => 0,
        };
        for step in 0..capacity {
            let ip = Ipv4Addr::from(first + (start + step) % capacity);
            if used.contains(&ip) {
                continue;
            }
            if self.claim(ip, sandbox_id)? {
                self.write_cursor(ip)?;
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted { cidr: self.cidr, capacity })
    }

    /// Releases every address held by `sandbox_id`; returns the (first) one released.
    /// Releasing an id without an address is fine.
    pub fn release(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        validate_sandbox_id(sandbox_id)?;
        let _lock = self.lock(FlockArg::LockExclusiveNonblock)?;
        let mut released = None;
        for allocation in self.scan(false)?.into_iter().filter(|a| a.sandbox_id == sandbox_id) {
            let path = self.dir.join(allocation.ip.to_string());
            match fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("deleting allocation", &path)(err));
                }
                _ => {}
            }
            released.get_or_insert(allocation.ip);
        }
        Ok(released)
    }

    /// The address held by `sandbox_id`, if any.
    pub fn lookup(&self, sandbox_id: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        validate_sandbox_id(sandbox_id)?;
        Ok(self.allocations()?.into_iter().find(|a| a.sandbox_id == sandbox_id).map(|a| a.ip))
    }

    /// Every allocation on disk, sorted by address (including addresses outside the
    /// current CIDR left by an earlier configuration, so they can be released).
    pub fn allocations(&self) -> Result<Vec<Allocation>, IpamError> {
        let _lock = self.lock(FlockArg::LockSharedNonblock)?;
        self.scan(false)
    }

    /// Reads the allocation files; with `clean_tmp` (only under the exclusive lock), also
    /// deletes temporary files left by an interrupted allocation.
    fn scan(&self, clean_tmp: bool) -> Result<Vec<Allocation>, IpamError> {
        let entries = fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))?;
        let mut allocations = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if clean_tmp && name.starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Ok(ip) = name.parse::<Ipv4Addr>() else { continue };
            let sandbox_id = match fs::read_to_string(entry.path()) {
                Ok(text) => text.trim().to_owned(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(io_err("reading allocation", &entry.path())(err)),
            };
            allocations.push(Allocation { ip, sandbox_id });
        }
        allocations.sort_by_key(|a| a.ip);
        Ok(allocations)
    }

    /// Creates the allocation file for `ip`; false if it already exists.
    fn claim(&self, ip: Ipv4Addr, sandbox_id: &str) -> Result<bool, IpamError> {
        let tmp = self.write_tmp(format!("{sandbox_id}\n").as_bytes())?;
        let path = self.dir.join(ip.to_string());
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(io_err("creating allocation", &path)(err)),
        }
    }

    fn read_cursor(&self) -> Option<Ipv4Addr> {
        let text = fs::read_to_string(self.dir.join(CURSOR_FILE)).ok()?;
        let ip: Ipv4Addr = text.trim().parse().ok()?;
        self.cidr.is_pod_ip(ip).then_some(ip)
    }

    fn write_cursor(&self, ip: Ipv4Addr) -> Result<(), IpamError> {
        let tmp = self.write_tmp(format!("{ip}\n").as_bytes())?;
        let path = self.dir.join(CURSOR_FILE);
        fs::rename(&tmp, &path).map_err(io_err("replacing", &path))
    }

    fn write_tmp(&self, content: &[u8]) -> Result<PathBuf, IpamError> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io_err("creating", &path))?;
        file.write_all(content).map_err(io_err("writing", &path))?;
        Ok(path)
    }

    /// Takes the lock file, retrying a non-blocking flock until [`LOCK_TIMEOUT`].
    fn lock(&self, arg: FlockArg) -> Result<Flock<File>, IpamError> {
        let path = self.dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening", &path))?;
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut pause = Duration::from_micros(250);
        loop {
            match Flock::lock(file, arg) {
                Ok(lock) => return Ok(lock),
                Err((back, Errno::EWOULDBLOCK)) => file = back,
                Err((_, errno)) => return Err(IpamError::Lock { path, source: errno }),
            }
            if Instant::now() >= deadline {
                return Err(IpamError::LockTimeout { path, timeout_ms: LOCK_TIMEOUT.as_millis() });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LOCK_RETRY_MAX);
        }
    }
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IpamError {
    let path = path.to_path_buf();
    move |source| IpamError::Io { what, path, source }
}
