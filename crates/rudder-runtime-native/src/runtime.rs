//! [`NativeRuntime`]: the [`Runtime`] trait over libcontainer, shims, overlay rootfs and the
//! pod network. It keeps nothing in memory that is not also on disk (see
//! [`crate::layout`]), so a new instance over the same directories adopts whatever an
//! earlier one (or an earlier agent process) started.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use rudder_runtime::{
    AttachRequest, AttachSession, BoxStream, ContainerConfig, ContainerState, ContainerStatus,
    ExecRequest, ExecResult, ExecSession, ImageInfo, PodSandboxConfig, PodSandboxState,
    PodSandboxStatus, Result, Runtime, RuntimeError,
};

use crate::layout::{
    ContainerRecord, ExitRecord, Layout, SandboxRecord, StartedRecord, new_id, now_ns, read_json,
    write_json,
};
use crate::providers::{ImageProvider, NetworkProvider};
use crate::record_cache::{Facts, RecordCache};
use crate::shim::{ShimArgs, cleanup_libcontainer};
use crate::spec::{self, SandboxPaths};
use crate::streaming;
use crate::{init_layer, rootfs, user};

/// How long a shim may take to report that its container runs.
const SHIM_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after SIGKILL the exit must be recorded.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap on the output `exec_sync` keeps per stream.
const EXEC_SYNC_MAX_OUTPUT_BYTES: usize = 16 << 20;

/// How to start a shim: the rudder binary and the arguments before `run ...`
/// (`["shim"]` for `rudder shim run ...`).
#[derive(Clone, Debug)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub prefix_args: Vec<String>,
}

pub struct NativeRuntime {
    layout: Layout,
    shim: ShimCommand,
    images: Arc<dyn ImageProvider>,
    network: Arc<dyn NetworkProvider>,
    sandboxes: RecordCache<SandboxRecord>,
    containers: RecordCache<ContainerRecord>,
    started: RecordCache<StartedRecord>,
    /// Sandbox id -> its labels; container id -> its sandbox id (see [`Facts`]).
    sandbox_labels: Facts<Arc<BTreeMap<String, String>>>,
    container_sandbox: Facts<Arc<str>>,
}

impl std::fmt::Debug for NativeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeRuntime").field("layout", &self.layout).finish_non_exhaustive()
    }
}

fn internal(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Internal(what.to_string())
}

fn io_ctx(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::Internal(format!("{what}: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// Whether a process with this pid exists and its command line mentions `needle` (guards
/// against pid reuse).
fn process_alive(pid: i32, needle: &str) -> bool {
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => needle.is_empty() || cmd.windows(needle.len()).any(|w| w == needle.as_bytes()),
        Err(_) => false,
    }
}

fn memory_cgroup_dir(cgroups_path: &str) -> PathBuf {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if v1.is_dir() { v1.join(rel) } else { Path::new("/sys/fs/cgroup").join(rel) }
}

impl NativeRuntime {
    pub fn new(
        layout: Layout,
        shim: ShimCommand,
        images: Arc<dyn ImageProvider>,
        network: Arc<dyn NetworkProvider>,
    ) -> Result<Self> {
        crate::layout::mount_run_dir(&layout.run)
            .map_err(io_ctx(format!("mounting a tmpfs on {}", layout.run.display())))?;
        for d in
            [layout.sandboxes(), layout.containers(), layout.libcontainer_root(), layout.layers()]
        {
            fs::create_dir_all(&d).map_err(io_ctx(format!("creating {}", d.display())))?;
        }
        init_layer::remove_leftovers(&layout.init_layers());
        // Writable layers of containers the run dir no longer knows (it is a tmpfs: after a
        // reboot) are nobody's.
        for id in Self::ids_in(&layout.layers()) {
            if !layout.container_dir(&id).exists() {
                let orphan = layout.layer_dir(&id);
                if let Err(e) = fs::remove_dir_all(&orphan) {
                    tracing::warn!(error = %e, dir = %orphan.display(), "removing an orphaned writable layer failed");
                }
            }
        }
        Ok(NativeRuntime {
            layout,
            shim,
            images,
            network,
            sandboxes: RecordCache::default(),
            containers: RecordCache::default(),
            started: RecordCache::default(),
            sandbox_labels: Facts::default(),
            container_sandbox: Facts::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn sandbox_record(&self, id: &str) -> Result<Arc<SandboxRecord>> {
        let rec = self
            .sandboxes
            .read(&self.layout.sandbox_dir(id).join("sandbox.json"))
            .map_err(internal)?
            .ok_or_else(|| RuntimeError::SandboxNotFound(id.to_owned()))?;
        self.sandbox_labels.remember(id, || Arc::new(rec.config.labels.clone()));
        Ok(rec)
    }

    fn container_record(&self, id: &str) -> Result<Arc<ContainerRecord>> {
        let rec = self
            .containers
            .read(&self.layout.container_dir(id).join("container.json"))
            .map_err(internal)?
            .ok_or_else(|| RuntimeError::ContainerNotFound(id.to_owned()))?;
        self.container_sandbox.remember(id, || Arc::from(rec.sandbox_id.as_str()));
        Ok(rec)
    }

    fn started_record(&self, id: &str) -> Result<Option<Arc<StartedRecord>>> {
        self.started.read(&self.layout.container_dir(id).join("started.json")).map_err(internal)
    }

    fn ids_in(dir: &Path) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    fn status_of(&self, rec: &ContainerRecord) -> Result<ContainerStatus> {
        let dir = self.layout.container_dir(&rec.id);
        let started = self.started_record(&rec.id)?;
        let exit: Option<ExitRecord> = read_json(&dir.join("exit.json")).map_err(internal)?;
        let mut st = ContainerStatus {
            id: rec.id.clone(),
            sandbox_id: rec.sandbox_id.clone(),
            metadata: rec.config.metadata.clone(),
            state: ContainerState::Created,
            created_at_ns: rec.created_at_ns,
            started_at_ns: started.as_ref().map(|s| s.started_at_ns).unwrap_or(0),
            finished_at_ns: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: rec.config.image.clone(),
            image_ref: rec.image_ref.clone(),
            log_path: Some(rec.log_path.clone()),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        };
        match (exit, started) {
            (Some(exit), _) => {
                st.state = ContainerState::Exited;
                st.exit_code = exit.exit_code;
                st.finished_at_ns = exit.finished_at_ns;
                st.reason = exit.reason;
                st.message = exit.message;
            }
            (None, Some(s)) => {
                if process_alive(s.shim_pid, &rec.id) || process_alive(s.pid, "") {
                    st.state = ContainerState::Running;
                } else {
                    // The shim died without recording the exit (killed with its container).
                    st.state = ContainerState::Exited;
                    st.exit_code = 255;
                    st.reason = "Error".into();
                    st.message = "the container's shim ended without recording an exit code".into();
                }
            }
            (None, None) => {}
        }
        Ok(st)
    }

    async fn wait_exited(&self, id: &str, timeout: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rec = self.container_record(id)?;
            if self.status_of(&rec)?.state != ContainerState::Running {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn exec_command(
        &self,
        id: &str,
        command: &[String],
        tty: bool,
        control: Option<&str>,
    ) -> Command {
        let mut cmd = Command::new(&self.shim.program);
        cmd.args(&self.shim.prefix_args)
            .arg("exec")
            .arg("--state-root")
            .arg(self.layout.libcontainer_root())
            .arg("--id")
            .arg(id)
            .arg("--dir")
            .arg(self.layout.container_dir(id));
        if tty {
            cmd.arg("--tty");
        }
        if let Some(name) = control {
            cmd.arg("--control").arg(name);
        }
        cmd.arg("--").args(command).kill_on_drop(true);
        cmd
    }

    async fn require_running(&self, id: &str, action: &'static str) -> Result<()> {
        let rec = self.container_record(id)?;
        let st = self.status_of(&rec)?;
        if st.state != ContainerState::Running {
            return Err(RuntimeError::WrongState {
                id: id.to_owned(),
                state: st.state,
                action,
                needed: "Running",
            });
        }
        Ok(())
    }

    fn sandbox_status(rec: &SandboxRecord) -> PodSandboxStatus {
        PodSandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: if rec.stopped { PodSandboxState::NotReady } else { PodSandboxState::Ready },
            created_at_ns: rec.created_at_ns,
            ip: if rec.stopped { None } else { rec.ip.clone() },
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
        }
    }

    async fn create_container_inner(
        &self,
        id: &str,
        dir: &Path,
        sandbox: &SandboxRecord,
        config: &ContainerConfig,
    ) -> Result<ContainerRecord> {
        let image = self
            .images
            .resolve(&config.image)
            .await?
            .ok_or_else(|| RuntimeError::ImageNotPresent(config.image.clone()))?;
        // The layers stay while the container exists, even if the image goes meanwhile.
        self.images.pin(id, &image).await?;
        let sb_dir = self.layout.sandbox_dir(&sandbox.id);
        let paths = SandboxPaths {
            netns: sandbox.netns.clone(),
            ipc_ns: sandbox.ipc_ns.clone(),
            uts_ns: sandbox.uts_ns.clone(),
            hosts: Some(sb_dir.join("hosts")).filter(|p| p.exists()),
            resolv_conf: Some(sb_dir.join("resolv.conf")).filter(|p| p.exists()),
            hostname_file: Some(sb_dir.join("hostname")).filter(|p| p.exists()),
            hostname: sandbox.config.hostname.clone(),
        };
        let mount_points: Vec<&str> =
            spec::sandbox_file_mounts(config, &paths).into_iter().map(|(d, _)| d).collect();
        let mut layers = image.layers.clone();
        let init = init_layer::ensure(&self.layout.init_layers(), &layers, &mount_points)
            .map_err(io_ctx("making the init layer"))?;
        layers.extend(init);
        let rootfs =
            rootfs::prepare_overlay(dir, &self.layout.layer_dir(id), &layers).map_err(internal)?;

        let sec = &config.security;
        let (mut uid, mut gid, mut extra) = match sec.run_as_user {
            Some(u) => user::resolve(&layers, &u.to_string()),
            None => user::resolve(&layers, &image.user),
        }
        .map_err(RuntimeError::InvalidConfig)?;
        if let Some(u) = sec.run_as_user {
            uid = u;
        }
        if let Some(g) = sec.run_as_group {
            gid = g;
        }
        extra.extend(sec.supplemental_groups.iter().copied().filter(|g| *g != gid));

        let log_path = match (&sandbox.config.log_directory, &config.log_path) {
            (Some(d), Some(p)) => d.join(p),
            _ => dir.join("container.log"),
        };
        if let Some(parent) = log_path.parent() {
            fs::create_dir_all(parent).map_err(io_ctx(format!("creating {}", parent.display())))?;
        }
        let cgroups_path = format!("/rudder/{id}");
        extra.sort_unstable();
        extra.dedup();
        let oci =
            spec::build(config, &image.defaults, &paths, &rootfs, uid, gid, &extra, &cgroups_path)
                .map_err(RuntimeError::InvalidConfig)?;
        let bundle = dir.join("bundle");
        fs::create_dir_all(&bundle).map_err(io_ctx("creating the bundle"))?;
        write_json(&bundle.join("config.json"), &oci).map_err(io_ctx("writing config.json"))?;
        let rec = ContainerRecord {
            id: id.to_owned(),
            sandbox_id: sandbox.id.clone(),
            config: config.clone(),
            created_at_ns: now_ns(),
            image_ref: image.info.id.clone(),
            log_path,
            cgroups_path,
            stop_signal: image.defaults.stop_signal.clone(),
        };
        write_json(&dir.join("container.json"), &rec).map_err(io_ctx("writing container.json"))?;
        Ok(rec)
    }

    async fn remove_container_dir(&self, id: &str) -> Result<()> {
        let dir = self.layout.container_dir(id);
        let writable = self.layout.layer_dir(id);
        let root = self.layout.libcontainer_root();
        let owner = id.to_owned();
        self.containers.forget(&dir);
        self.started.forget(&dir);
        self.container_sandbox.forget(id);
        blocking(move || {
            cleanup_libcontainer(&root, &owner);
            rootfs::unmount(&dir).map_err(internal)?;
            for d in [&dir, &writable] {
                match fs::remove_dir_all(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(internal(format!("removing {}: {e}", d.display()))),
                }
            }
            Ok(())
        })
        .await?;
        // Only once nothing is mounted over the layers may gc take them.
        self.images.unpin(id).await
    }
}

#[async_trait]
impl Runtime for NativeRuntime {
    fn name(&self) -> &'static str {
        "native"
    }

    async fn pull_image(&self, image: &str, credentials: &[Vec<u8>]) -> Result<ImageInfo> {
        self.images.pull(image, credentials).await
    }

    async fn image_status(&self, image: &str) -> Result<Option<ImageInfo>> {
        Ok(self.images.resolve(image).await?.map(|r| r.info))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.images.list().await
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.images.remove(image).await
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String> {
        let id = new_id();
        let dir = self.layout.sandbox_dir(&id);
        fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        let mut rec = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            created_at_ns: now_ns(),
            netns: None,
            ipc_ns: None,
            uts_ns: None,
            ip: None,
            stopped: false,
        };
        // Recorded before the network exists, so a crash half-way leaves something that
        // remove_pod_sandbox (or an orphan sweep) can find and tear down.
        write_json(&dir.join("sandbox.json"), &rec).map_err(io_ctx("writing sandbox.json"))?;
        let result = async {
            let net = if config.host_network {
                None
            } else {
                let network = self.network.clone();
                let (sid, host) = (id.clone(), config.hostname.clone());
                Some(blocking(move || network.setup(&sid, &host)).await?)
            };
            let network = self.network.clone();
            let (d, cfg, ip) = (dir.clone(), config.clone(), net.as_ref().map(|n| n.ip));
            blocking(move || network.write_pod_files(&d, &cfg, ip)).await?;
            if let Some(n) = net {
                rec.netns = Some(n.netns);
                rec.ipc_ns = Some(n.ipc_ns);
                rec.uts_ns = Some(n.uts_ns);
                rec.ip = Some(n.ip.to_string());
            }
            write_json(&dir.join("sandbox.json"), &rec).map_err(io_ctx("writing sandbox.json"))
        }
        .await;
        if let Err(e) = result {
            let _ = self.remove_pod_sandbox(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let mut rec = match self.sandbox_record(sandbox_id) {
            Ok(r) => SandboxRecord::clone(&r),
            Err(RuntimeError::SandboxNotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self.list_containers(Some(sandbox_id)).await? {
            self.stop_container(&c.id, 0).await?;
        }
        if !rec.config.host_network {
            let network = self.network.clone();
            let sid = sandbox_id.to_owned();
            blocking(move || network.teardown(&sid)).await?;
        }
        rec.stopped = true;
        write_json(&self.layout.sandbox_dir(sandbox_id).join("sandbox.json"), &rec)
            .map_err(io_ctx("writing sandbox.json"))
    }

    async fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<()> {
        let dir = self.layout.sandbox_dir(sandbox_id);
        if !dir.exists() {
            return Ok(());
        }
        for c in self.list_containers(Some(sandbox_id)).await? {
            self.remove_container(&c.id).await?;
        }
        // Tear down even if the record is unreadable (crash during creation).
        let network = self.network.clone();
        let sid = sandbox_id.to_owned();
        blocking(move || network.teardown(&sid)).await?;
        self.sandboxes.forget(&dir);
        self.sandbox_labels.forget(sandbox_id);
        fs::remove_dir_all(&dir).map_err(io_ctx(format!("removing {}", dir.display())))
    }

    async fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<PodSandboxStatus> {
        Ok(Self::sandbox_status(&*self.sandbox_record(sandbox_id)?))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>> {
        let mut out = Vec::new();
        for id in Self::ids_in(&self.layout.sandboxes()) {
            if let Ok(rec) = self.sandbox_record(&id) {
                out.push(Self::sandbox_status(&rec));
            }
        }
        Ok(out)
    }

    async fn list_pod_sandboxes_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<PodSandboxStatus>> {
        let matches =
            |labels: &BTreeMap<String, String>| labels.get(key).map(String::as_str) == Some(value);
        let mut out = Vec::new();
        for id in Self::ids_in(&self.layout.sandboxes()) {
            if self.sandbox_labels.get(&id).is_some_and(|labels| !matches(&labels)) {
                continue;
            }
            if let Ok(rec) = self.sandbox_record(&id)
                && matches(&rec.config.labels)
            {
                out.push(Self::sandbox_status(&rec));
            }
        }
        Ok(out)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
        _sandbox: &PodSandboxConfig,
    ) -> Result<String> {
        let sandbox = self.sandbox_record(sandbox_id)?;
        if sandbox.stopped {
            return Err(internal(format!("pod sandbox {sandbox_id} is stopped")));
        }
        let id = new_id();
        let dir = self.layout.container_dir(&id);
        fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        match self.create_container_inner(&id, &dir, &sandbox, config).await {
            Ok(_) => Ok(id),
            Err(e) => {
                let _ = self.remove_container_dir(&id).await;
                Err(e)
            }
        }
    }

    async fn start_container(&self, container_id: &str) -> Result<()> {
        let rec = self.container_record(container_id)?;
        let st = self.status_of(&rec)?;
        if st.state != ContainerState::Created {
            return Err(RuntimeError::WrongState {
                id: container_id.to_owned(),
                state: st.state,
                action: "start",
                needed: "Created",
            });
        }
        let dir = self.layout.container_dir(container_id);
        let args = ShimArgs {
            id: container_id.to_owned(),
            container_dir: dir.clone(),
            libcontainer_root: self.layout.libcontainer_root(),
            log_path: rec.log_path.clone(),
            memory_cgroup: Some(memory_cgroup_dir(&rec.cgroups_path)),
            tty: rec.config.tty,
            stdin: rec.config.stdin,
            stdin_once: rec.config.stdin_once,
        };
        let shim_log =
            fs::File::create(dir.join("shim.log")).map_err(io_ctx("creating shim.log"))?;
        let mut child = Command::new(&self.shim.program)
            .args(&self.shim.prefix_args)
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .kill_on_drop(false)
            .spawn()
            .map_err(io_ctx(format!("starting the shim {}", self.shim.program.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| internal("shim stdout"))?;
        let mut line = String::new();
        let read =
            tokio::time::timeout(SHIM_START_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
                .await;
        // Reap the shim whenever it ends; if this process goes first, init adopts it.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        match read {
            Err(_) => Err(RuntimeError::Timeout {
                what: format!("starting container {container_id}"),
                timeout_ms: SHIM_START_TIMEOUT.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(internal(format!("reading from the shim: {e}"))),
            Ok(Ok(_)) => {
                let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| {
                    let log = fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
                    serde_json::json!({ "error": format!("the shim ended without reporting: {}", log.trim()) })
                });
                match v.get("error").and_then(|e| e.as_str()) {
                    Some(e) => Err(internal(e)),
                    None => Ok(()),
                }
            }
        }
    }

    async fn stop_container(&self, container_id: &str, timeout_s: u64) -> Result<()> {
        let rec = self.container_record(container_id)?;
        if self.status_of(&rec)?.state != ContainerState::Running {
            return Ok(());
        }
        let started = self
            .started_record(container_id)?
            .ok_or_else(|| internal("running container without started.json"))?;
        let pid = Pid::from_raw(started.pid);
        if timeout_s > 0 {
            let signal =
                rec.stop_signal.as_deref().and_then(spec::parse_signal).unwrap_or(Signal::SIGTERM);
            let _ = kill(pid, signal);
            if self.wait_exited(container_id, Duration::from_secs(timeout_s)).await? {
                return Ok(());
            }
        }
        let _ = kill(pid, Signal::SIGKILL);
        if self.wait_exited(container_id, KILL_TIMEOUT).await? {
            return Ok(());
        }
        Err(RuntimeError::Timeout {
            what: format!("stopping container {container_id}"),
            timeout_ms: (timeout_s * 1000) + KILL_TIMEOUT.as_millis() as u64,
        })
    }

    async fn remove_container(&self, container_id: &str) -> Result<()> {
        match self.container_record(container_id) {
            Ok(_) => self.stop_container(container_id, 0).await?,
            Err(RuntimeError::ContainerNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.remove_container_dir(container_id).await
    }

    async fn container_status(&self, container_id: &str) -> Result<ContainerStatus> {
        self.status_of(&*self.container_record(container_id)?)
    }

    async fn list_containers(&self, sandbox_id: Option<&str>) -> Result<Vec<ContainerStatus>> {
        let mut out = Vec::new();
        for id in Self::ids_in(&self.layout.containers()) {
            if let (Some(wanted), Some(owner)) = (sandbox_id, self.container_sandbox.get(&id))
                && *owner != *wanted
            {
                continue;
            }
            let Ok(rec) = self.container_record(&id) else { continue };
            if sandbox_id.is_none_or(|s| rec.sandbox_id == s) {
                out.push(self.status_of(&rec)?);
            }
        }
        Ok(out)
    }

    async fn exec_sync(
        &self,
        container_id: &str,
        command: &[String],
        timeout_s: u64,
    ) -> Result<ExecResult> {
        self.require_running(container_id, "exec").await?;
        let mut child = self
            .exec_command(container_id, command, false, None)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_ctx("starting the exec helper"))?;
        let mut out = child.stdout.take().ok_or_else(|| internal("exec stdout"))?;
        let mut err = child.stderr.take().ok_or_else(|| internal("exec stderr"))?;
        let collect = async {
            let mut o = Vec::new();
            let mut e = Vec::new();
            let mut out = (&mut out).take(EXEC_SYNC_MAX_OUTPUT_BYTES as u64);
            let mut err = (&mut err).take(EXEC_SYNC_MAX_OUTPUT_BYTES as u64);
            let (r1, r2) = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            r1.and(r2)?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((o, e, status))
        };
        let timeout = Duration::from_secs(if timeout_s == 0 { 3600 } else { timeout_s });
        match tokio::time::timeout(timeout, collect).await {
            Err(_) => Err(RuntimeError::Timeout {
                what: format!("exec in {container_id}"),
                timeout_ms: timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(internal(format!("exec: {e}"))),
            Ok(Ok((stdout, stderr, status))) => {
                Ok(ExecResult { stdout, stderr, exit_code: status.code().unwrap_or(255) })
            }
        }
    }

    async fn exec(&self, container_id: &str, request: &ExecRequest) -> Result<ExecSession> {
        self.require_running(container_id, "exec").await?;
        let (control, resize) = if request.tty {
            let (name, tx) = streaming::exec_control(&self.layout.container_dir(container_id))?;
            (Some(name), Some(tx))
        } else {
            (None, None)
        };
        let mut cmd =
            self.exec_command(container_id, &request.command, request.tty, control.as_deref());
        cmd.stdin(if request.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(io_ctx("starting the exec helper"))?;
        let stdin = child.stdin.take().map(|s| Box::pin(s) as rudder_runtime::BoxWrite);
        let stdout = Box::pin(child.stdout.take().ok_or_else(|| internal("exec stdout"))?);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as rudder_runtime::BoxRead);
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(255);
            let _ = tx.send(code);
        });
        Ok(ExecSession { stdin, stdout, stderr, resize, exit: rx })
    }

    async fn attach(&self, container_id: &str, request: &AttachRequest) -> Result<AttachSession> {
        let rec = self.container_record(container_id)?;
        self.require_running(container_id, "attach").await?;
        if request.stdin && !rec.config.stdin {
            return Err(RuntimeError::InvalidConfig(format!(
                "container {container_id} was not created with stdin: true; cannot attach its stdin"
            )));
        }
        streaming::attach(&self.layout.container_dir(container_id), rec.config.tty, request).await
    }

    async fn port_forward(&self, sandbox_id: &str, port: u16) -> Result<BoxStream> {
        let rec = self.sandbox_record(sandbox_id)?;
        if rec.stopped {
            return Err(internal(format!("pod sandbox {sandbox_id} is stopped")));
        }
        streaming::port_forward(rec.netns.clone(), port).await
    }
}
