//! Where the native runtime keeps its state, and the records in it. Everything the runtime
//! knows is in files, so a restarted agent re-discovers every sandbox and container. What
//! only means something while the machine is up (records, bundles, mount points, sockets)
//! lives under `<run>` (`/run/rudder/rt-<tag>`), a tmpfs the runtime mounts there itself
//! (the host's `/run` is not always one): creating a pod then never waits on the disk's
//! inode allocator, which on ext4 after heavy file churn (`recently_deleted`
//! scans) tripled pod start times on the project's VM. Only a container's writable layer,
//! which may grow large, and the few shared init layers are on disk under `<root>`.
//!
//! ```text
//! <run>/sandboxes/<id>/sandbox.json       SandboxRecord (config, network)
//!                      hosts resolv.conf hostname
//! <run>/containers/<id>/container.json    ContainerRecord (config, image, paths)
//!                       bundle/config.json  the OCI runtime spec
//!                       rootfs/           the overlay mount point
//!                       started.json      written by the shim once the process runs
//!                       exit.json         written by the shim (or the agent) once it ended
//!                       shim.log          the shim's own diagnostics
//! <run>/libcontainer/<id>/                libcontainer's state
//! <run>/pins/<id>.json                    the image store's pin of the container's layers
//!                                         (`pins_dir`, set by the agent)
//! <root>/init/<mode>-<uid>-<gid>-<f1+f2>/etc  read-only layers with the /etc mount points
//!                                         (see `init_layer`)
//! <root>/layers/<id>/upper, work          the overlay's writable layer (disk); one
//!                                         without a container (after a reboot) is removed
//!                                         when the runtime starts
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use rudder_runtime::{ContainerConfig, PodSandboxConfig};

#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    pub run: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        Layout { root: root.into(), run: run.into() }
    }
    pub fn sandboxes(&self) -> PathBuf {
        self.run.join("sandboxes")
    }
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.sandboxes().join(id)
    }
    pub fn containers(&self) -> PathBuf {
        self.run.join("containers")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    /// Every container's writable layer.
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// A container's writable layer: the overlay's upper and work directories.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.layers().join(id)
    }
    /// The shared init layers (see `init_layer`), on disk: made once, kept.
    pub fn init_layers(&self) -> PathBuf {
        self.root.join("init")
    }
    /// libcontainer's state root.
    pub fn libcontainer_root(&self) -> PathBuf {
        self.run.join("libcontainer")
    }
}

/// Makes `run` (created if missing) a tmpfs of its own unless it is a mount point already
/// (a previous agent's, whose records it holds). Where the host's `/run` is a tmpfs this
/// only isolates the runtime's state; where it is not (some VMs and containers put `/run`
/// on the root disk) it keeps the per-container files off the disk.
pub fn mount_run_dir(run: &Path) -> io::Result<()> {
    fs::create_dir_all(run)?;
    if crate::rootfs::is_mount_point(run) {
        return Ok(());
    }
    nix::mount::mount(
        Some("rudder-run"),
        run,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(RUN_TMPFS_OPTIONS),
    )
    .map_err(io::Error::from)
}

/// Records, bundles and libcontainer state are a few KiB per container; the limit keeps a
/// runaway writer from eating the machine's memory.
const RUN_TMPFS_OPTIONS: &str = "mode=0700,size=256m";

/// Where the image store keeps the pins of the containers of the runtime with this run dir
/// (`rudder_images::StoreOptions::pins_dir`): with the records they belong with.
pub fn pins_dir(run: &Path) -> PathBuf {
    run.join("pins")
}

/// Removes a run dir that holds no sandbox and no container any more (its empty
/// subdirectories, then the tmpfs or bind mount on it, then itself); anything still in it
/// keeps it. For a node shutting down or being purged; also for the namespace run dir.
pub fn remove_run_dir_if_empty(run: &Path) {
    for sub in ["sandboxes", "containers", "libcontainer"] {
        let _ = fs::remove_dir(run.join(sub));
    }
    let _ = fs::remove_dir(pins_dir(run));
    if !fs::read_dir(run).is_ok_and(|mut d| d.next().is_none()) {
        return;
    }
    while crate::rootfs::is_mount_point(run) {
        if nix::mount::umount2(run, MntFlags::MNT_DETACH).is_err() {
            break;
        }
    }
    let _ = fs::remove_dir(run);
}

/// A sandbox as the runtime remembers it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: PodSandboxConfig,
    pub created_at_ns: i64,
    /// Namespace files the containers join (None with host networking).
    pub netns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    pub ip: Option<String>,
    /// Set once stopped: the network is released, containers are stopped.
    pub stopped: bool,
}

/// A container as the runtime remembers it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub created_at_ns: i64,
    /// Manifest digest of the image.
    pub image_ref: String,
    pub log_path: PathBuf,
    /// The memory cgroup directory, for the OOM check (cgroup v1 or v2 path).
    pub cgroups_path: String,
    /// The image's StopSignal, sent first by a graceful stop (SIGTERM when None).
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// Written by the shim once the container's process runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StartedRecord {
    pub shim_pid: i32,
    pub pid: i32,
    pub started_at_ns: i64,
}

/// Written once the container's process ended (or failed to start).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub finished_at_ns: i64,
    /// `Completed`, `Error`, `OOMKilled`, or `StartError`.
    pub reason: String,
    pub message: String,
}

/// Writes JSON atomically (temp file, rename): readers see the old or the new record,
/// never half of one. Not fsynced, on purpose: these records describe processes and mounts
/// that only exist while the machine is up. An agent killed with -9 leaves them in the page
/// cache for its successor; a power loss takes the containers, the overlay mounts and
/// libcontainer's tmpfs state with it, and the kubelet starts the pods afresh. (Each fsync
/// cost ~1 ms and serialized on the journal under a burst of pod starts.)
pub fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let tmp =
        path.with_extension(format!("tmp{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(&serde_json::to_vec_pretty(value).map_err(io::Error::other)?)
    });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Reads JSON; None if the file does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

/// The node agent's directories under /run for a data dir: the pod namespaces' run dir
/// (`rudder-net`) and the runtime's run dir (libcontainer state), `/run/rudder/{ns,rt}-<tag>`
/// with `<tag>` a hash of the data dir's path, so two agents with different data dirs never
/// share them. What `rudder down --purge`, the tests and the benchmarks clean up.
pub fn node_run_dirs(data_dir: &Path) -> [PathBuf; 2] {
    // FNV-1a of the path, low 32 bits.
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in data_dir.to_string_lossy().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let tag = format!("{:08x}", h as u32);
    [
        PathBuf::from("/run/rudder").join(format!("ns-{tag}")),
        PathBuf::from("/run/rudder").join(format!("rt-{tag}")),
    ]
}

/// A fresh random id (32 hex digits).
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
