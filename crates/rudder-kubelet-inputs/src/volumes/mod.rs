//! A pod's volumes, prepared under `<pods_dir>/<pod uid>/volumes/<plugin>/<volume name>` with
//! upstream's plugin directory names (`kubernetes.io~empty-dir`, `kubernetes.io~configmap`,
//! `kubernetes.io~secret`, `kubernetes.io~downward-api`, `kubernetes.io~projected`). hostPath
//! and persistentVolumeClaim volumes are not copied: their node path is the bind source.
//! Secret and projected volumes (and emptyDir `medium: Memory`) live on their own tmpfs so
//! their contents never reach a disk.

pub mod atomic_writer;
mod claim;
mod content;
pub mod host_path;
mod memory;
pub mod mount;
pub mod subpath;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rudder_client::clock::{Clock, SystemClock};
use rudder_runtime::{Mount, MountSource};

use crate::source::{ObjectSource, SourceError};
use atomic_writer::Payload;
use content::{DEFAULT_MODE, Failure, ProjectionContext, TokenCache};
pub use memory::memory_volume_size;

pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";
pub const CONFIG_MAP_PLUGIN: &str = "kubernetes.io~configmap";
pub const SECRET_PLUGIN: &str = "kubernetes.io~secret";
pub const DOWNWARD_API_PLUGIN: &str = "kubernetes.io~downward-api";
pub const PROJECTED_PLUGIN: &str = "kubernetes.io~projected";

/// What volumes need to know about the node.
#[derive(Clone, Debug, Default)]
pub struct NodeInfoForVolumes {
    pub node_name: String,
    /// The node's allocatable resources: unset limits in downward API `resourceFieldRef`s and
    /// the default size of memory-backed volumes.
    pub allocatable: BTreeMap<String, Quantity>,
}

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A volume cannot be set up; the message is upstream's FailedMount event message.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    SetUp { volume: String, message: String },
    /// An object a volume needs could not be read (worth retrying).
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {source}")]
    Source {
        volume: String,
        #[source]
        source: SourceError,
    },
    /// A container's volumeMount cannot be satisfied (`CreateContainerConfigError`).
    #[error("{0}")]
    Mount(String),
    /// The pod has no usable uid.
    #[error("invalid pod uid {0:?}")]
    PodUid(String),
    /// Something under the pod's directory is still mounted after unmounting.
    #[error("pod {pod_uid}: still mounted after unmount: {paths:?}")]
    StillMounted { pod_uid: String, paths: Vec<PathBuf> },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl std::fmt::Display, path: &Path) -> impl FnOnce(io::Error) -> VolumeError {
    let context = format!("{context} {}", path.display());
    move |source| VolumeError::Io { context, source }
}

/// One prepared volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedVolume {
    /// What containers bind-mount.
    pub host_path: PathBuf,
    /// Always mounted read-only (configMap, secret, downwardAPI, projected, read-only claims).
    pub read_only: bool,
}

/// A pod's prepared volumes by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, PreparedVolume>,
}

impl PodVolumes {
    pub fn get(&self, name: &str) -> Option<&PreparedVolume> {
        self.volumes.get(name)
    }

    /// The runtime mounts for `container`'s volumeMounts; `env` is the container's environment
    /// (for `subPathExpr`). SubPaths are created when missing and must stay in the volume.
    pub fn mounts_for(
        &self,
        container: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<Mount>, VolumeError> {
        let mut mounts = Vec::new();
        for m in container.volume_mounts.iter().flatten() {
            let Some(volume) = self.volumes.get(&m.name) else {
                return Err(VolumeError::Mount(format!(
                    "cannot find volume \"{}\" to mount into container \"{}\"",
                    m.name, container.name
                )));
            };
            let mut sub_path = m.sub_path.clone().unwrap_or_default();
            if let Some(expr) = m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                sub_path = subpath::expand_sub_path_expr(expr, env).map_err(VolumeError::Mount)?;
            }
            let host_path = if sub_path.is_empty() {
                volume.host_path.clone()
            } else {
                subpath::resolve(&volume.host_path, &sub_path).map_err(VolumeError::Mount)?
            };
            mounts.push(Mount {
                container_path: m.mount_path.clone(),
                source: MountSource::Bind { host_path },
                readonly: m.read_only == Some(true) || volume.read_only,
            });
        }
        Ok(mounts)
    }
}

/// Prepares, refreshes and removes pods' volumes under one pods directory.
pub struct VolumeManager {
    pods_dir: PathBuf,
    tokens: TokenCache,
    node: Mutex<NodeInfoForVolumes>,
}

impl std::fmt::Debug for VolumeManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeManager").field("pods_dir", &self.pods_dir).finish_non_exhaustive()
    }
}

/// Which volumes a pass handles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Every volume (setup).
    All,
    /// Only the ones whose content comes from objects (refresh).
    Content,
}

impl VolumeManager {
    pub fn new(pods_dir: PathBuf) -> Self {
        Self::with_clock(pods_dir, Arc::new(SystemClock))
    }

    /// The clock decides when service account tokens are renewed.
    pub fn with_clock(pods_dir: PathBuf, clock: Arc<dyn Clock>) -> Self {
        VolumeManager {
            pods_dir,
            tokens: TokenCache::new(clock),
            node: Mutex::new(NodeInfoForVolumes::default()),
        }
    }

    pub fn pods_dir(&self) -> &Path {
        &self.pods_dir
    }

    /// `<pods_dir>/<uid>`.
    pub fn pod_dir(&self, pod_uid: &str) -> Result<PathBuf, VolumeError> {
        let valid = !pod_uid.is_empty()
            && pod_uid != "."
            && pod_uid != ".."
            && !pod_uid.contains('/')
            && !pod_uid.contains('\0');
        if !valid {
            return Err(VolumeError::PodUid(pod_uid.to_owned()));
        }
        Ok(self.pods_dir.join(pod_uid))
    }

    fn pod_uid(pod: &Pod) -> Result<&str, VolumeError> {
        Ok(pod.metadata.uid.as_deref().unwrap_or(""))
    }

    /// Prepares every volume of `pod` (idempotent: call it on every sync). Every volume is
    /// attempted; the first failure is returned.
    pub async fn setup(
        &self,
        pod: &Pod,
        source: &dyn ObjectSource,
        node: &NodeInfoForVolumes,
    ) -> Result<PodVolumes, VolumeError> {
        *self.node.lock().unwrap_or_else(|e| e.into_inner()) = node.clone();
        let (volumes, _) = self.pass(pod, source, node, Pass::All).await?;
        Ok(volumes)
    }

    /// Re-reads the configMap, secret, downwardAPI and projected volumes of `pod` and swaps in
    /// new contents where they changed (atomically per volume). Returns whether anything
    /// changed. Uses the node information of the last `setup`.
    pub async fn refresh(&self, pod: &Pod, source: &dyn ObjectSource) -> Result<bool, VolumeError> {
        let node = self.node.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (_, changed) = self.pass(pod, source, &node, Pass::Content).await?;
        Ok(changed)
    }

    async fn pass(
        &self,
        pod: &Pod,
        source: &dyn ObjectSource,
        node: &NodeInfoForVolumes,
        pass: Pass,
    ) -> Result<(PodVolumes, bool), VolumeError> {
        let uid = Self::pod_uid(pod)?;
        let volumes_dir = self.pod_dir(uid)?.join("volumes");
        // A pod without volumes gets no directory: two inodes less on the node's disk per
        // pod start (and removal), which the disk's inode allocator makes dear under churn.
        let has_volumes =
            pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).is_some_and(|v| !v.is_empty());
        if has_volumes {
            std::fs::create_dir_all(&volumes_dir).map_err(io_error("creating", &volumes_dir))?;
        }
        let mut prepared = PodVolumes::default();
        let mut changed = false;
        let mut first_error = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let content = volume.config_map.is_some()
                || volume.secret.is_some()
                || volume.downward_api.is_some()
                || volume.projected.is_some();
            if pass == Pass::Content && !content {
                continue;
            }
            match self.prepare(pod, volume, &volumes_dir, source, node).await {
                Ok((p, c)) => {
                    changed |= c;
                    prepared.volumes.insert(volume.name.clone(), p);
                }
                Err(e) => {
                    tracing::debug!(volume = %volume.name, error = %e, "volume not ready");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((prepared, changed)),
        }
    }

    async fn prepare(
        &self,
        pod: &Pod,
        volume: &Volume,
        volumes_dir: &Path,
        source: &dyn ObjectSource,
        node: &NodeInfoForVolumes,
    ) -> Result<(PreparedVolume, bool), VolumeError> {
        let name = volume.name.as_str();
        let set_up = |message: String| VolumeError::SetUp { volume: name.to_owned(), message };
        let failure = |f: Failure| match f {
            Failure::Message(message) => VolumeError::SetUp { volume: name.to_owned(), message },
            Failure::Source(source) => VolumeError::Source { volume: name.to_owned(), source },
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let dir_of = |plugin: &str| volumes_dir.join(plugin).join(name);

        if let Some(e) = &volume.empty_dir {
            let dir = dir_of(EMPTY_DIR_PLUGIN);
            match e.medium.as_deref().unwrap_or("") {
                "" => make_dir(&dir, 0o777)?,
                "Memory" => {
                    let size = memory_volume_size(pod, &node.allocatable, e.size_limit.as_ref());
                    make_tmpfs_dir(&dir, size, 0o777)?;
                }
                other => return Err(set_up(format!("emptyDir medium {other:?} is not supported"))),
            }
            return Ok((PreparedVolume { host_path: dir, read_only: false }, false));
        }
        if let Some(h) = &volume.host_path {
            let path = PathBuf::from(&h.path);
            host_path::check_type(&path, h.type_.as_deref()).map_err(set_up)?;
            return Ok((PreparedVolume { host_path: path, read_only: false }, false));
        }
        if let Some(c) = &volume.persistent_volume_claim {
            let path = claim::resolve(source, namespace, &c.claim_name).await.map_err(failure)?;
            let read_only = c.read_only == Some(true);
            return Ok((PreparedVolume { host_path: path, read_only }, false));
        }

        let mut payload = Payload::new();
        let (dir, memory) = if let Some(c) = &volume.config_map {
            let mode = c.default_mode.unwrap_or(DEFAULT_MODE);
            let optional = c.optional == Some(true);
            let items = c.items.as_deref();
            content::config_map_payload(
                source,
                namespace,
                &c.name,
                items,
                mode,
                optional,
                &mut payload,
            )
            .await
            .map_err(failure)?;
            (dir_of(CONFIG_MAP_PLUGIN), false)
        } else if let Some(s) = &volume.secret {
            let mode = s.default_mode.unwrap_or(DEFAULT_MODE);
            let optional = s.optional == Some(true);
            let secret_name = s.secret_name.as_deref().unwrap_or("");
            let items = s.items.as_deref();
            content::secret_payload(
                source,
                namespace,
                secret_name,
                items,
                mode,
                optional,
                &mut payload,
            )
            .await
            .map_err(failure)?;
            (dir_of(SECRET_PLUGIN), true)
        } else if let Some(d) = &volume.downward_api {
            let mode = d.default_mode.unwrap_or(DEFAULT_MODE);
            let items = d.items.as_deref().unwrap_or(&[]);
            content::downward_api_payload(pod, items, mode, &node.allocatable, &mut payload)
                .map_err(failure)?;
            (dir_of(DOWNWARD_API_PLUGIN), false)
        } else if let Some(p) = &volume.projected {
            let mode = p.default_mode.unwrap_or(DEFAULT_MODE);
            let sources = p.sources.as_deref().unwrap_or(&[]);
            let ctx =
                ProjectionContext { source, allocatable: &node.allocatable, tokens: &self.tokens };
            content::projected_payload(pod, sources, mode, &ctx, &mut payload)
                .await
                .map_err(failure)?;
            (dir_of(PROJECTED_PLUGIN), true)
        } else {
            return Err(set_up("this volume type is not supported by this node".to_owned()));
        };
        if memory {
            let size = memory_volume_size(pod, &node.allocatable, None);
            make_tmpfs_dir(&dir, size, 0o755)?;
        } else {
            make_dir(&dir, 0o755)?;
        }
        let changed = atomic_writer::write(&dir, &payload)
            .map_err(|e| set_up(format!("failed to write volume contents: {e}")))?;
        if changed {
            tracing::debug!(volume = name, dir = %dir.display(), "volume contents written");
        }
        Ok((PreparedVolume { host_path: dir, read_only: true }, changed))
    }

    /// Unmounts every tmpfs under the pod's directory and removes the directory. Symlinks are
    /// removed, never followed; hostPath and claim data are never under the pod's directory.
    /// Refuses (and removes nothing) while something under it is still mounted.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), VolumeError> {
        let dir = self.pod_dir(pod_uid)?;
        self.tokens.forget_pod(pod_uid);
        let uid = pod_uid.to_owned();
        tokio::task::spawn_blocking(move || teardown_dir(&dir, &uid)).await.map_err(|e| {
            VolumeError::Io { context: "teardown".to_owned(), source: io::Error::other(e) }
        })?
    }

    /// The uids of the pods that have a directory (for orphan cleanup).
    pub fn list_pod_uids(&self) -> Result<Vec<String>, VolumeError> {
        let entries = match std::fs::read_dir(&self.pods_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading", &self.pods_dir)(e)),
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("reading", &self.pods_dir))?;
            if entry.file_type().map_err(io_error("reading", &entry.path()))?.is_dir() {
                uids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        uids.sort();
        Ok(uids)
    }
}

fn teardown_dir(dir: &Path, pod_uid: &str) -> Result<(), VolumeError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let remaining = mount::unmount_all_under(dir).map_err(io_error("unmounting under", dir))?;
    if !remaining.is_empty() {
        return Err(VolumeError::StillMounted { pod_uid: pod_uid.to_owned(), paths: remaining });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", dir)(e)),
    }
}

fn make_dir(dir: &Path, mode: u32) -> Result<(), VolumeError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", dir))?;
    }
    Ok(())
}

fn make_tmpfs_dir(dir: &Path, size_bytes: Option<u64>, mode: u32) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    if !mount::is_mount_point(dir).map_err(io_error("checking mounts of", dir))? {
        mount::mount_tmpfs(dir, size_bytes, mode).map_err(io_error("mounting tmpfs on", dir))?;
    }
    Ok(())
}
