//! The data the kubelet hands the runtime and gets back. Field names follow the CRI
//! (`runtime.v1`) where one exists.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

/// Metadata identifying a pod sandbox (CRI `PodSandboxMetadata`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxMetadata {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

/// Cluster DNS settings for a pod's /etc/resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostAlias {
    pub ip: String,
    pub hostnames: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxConfig {
    pub metadata: PodSandboxMetadata,
    /// The pod's hostname (pod name unless `spec.hostname` is set), at most 63 characters.
    pub hostname: String,
    /// `spec.subdomain`: with it, /etc/hosts carries the pod's FQDN.
    pub subdomain: Option<String>,
    pub cluster_domain: String,
    pub dns: DnsConfig,
    pub host_aliases: Vec<HostAlias>,
    /// `spec.hostNetwork`: no network namespace of its own.
    pub host_network: bool,
    /// Directory under which container logs go (`/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Cgroup parent for the pod (cgroupsPath prefix), e.g. `rudder/pod<uid>`.
    pub cgroup_parent: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodSandboxState {
    Ready,
    NotReady,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSandboxStatus {
    pub id: String,
    pub metadata: PodSandboxMetadata,
    pub state: PodSandboxState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at_ns: i64,
    /// The pod IP (None with host networking or once stopped).
    pub ip: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A volume mount into a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub source: MountSource,
    pub readonly: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A host directory or file, bind-mounted.
    Bind { host_path: PathBuf },
    /// A fresh tmpfs, optionally size-limited.
    Tmpfs { size_bytes: Option<u64> },
}

/// Linux resources (CRI `LinuxContainerResources`); zero/None means unset.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Clamped to >= 0 (root here lacks CAP_SYS_RESOURCE, design.md §3).
    pub oom_score_adj: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    pub privileged: bool,
    /// Numeric user; when None, the image's `User` decides (name looked up in the image's
    /// /etc/passwd).
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// A user name from the image (`User: "app"`) when `run_as_user` is None.
    pub read_only_rootfs: bool,
    pub capabilities_add: Vec<String>,
    pub capabilities_drop: Vec<String>,
    pub no_new_privileges: bool,
    pub supplemental_groups: Vec<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub metadata: ContainerMetadata,
    /// Image reference as in the pod spec.
    pub image: String,
    /// Kubernetes `command` (overrides the image Entrypoint) and `args` (override Cmd).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: Option<String>,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub resources: LinuxResources,
    pub security: SecurityContext,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// Log file path relative to the sandbox's `log_directory` (`<name>/<attempt>.log`).
    pub log_path: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub id: String,
    pub sandbox_id: String,
    pub metadata: ContainerMetadata,
    pub state: ContainerState,
    pub created_at_ns: i64,
    pub started_at_ns: i64,
    pub finished_at_ns: i64,
    pub exit_code: i32,
    /// `OOMKilled`, `Error` or `Completed` once exited (the kubelet's terminated reasons).
    pub reason: String,
    pub message: String,
    pub image: String,
    /// The image id (manifest digest) the container runs.
    pub image_ref: String,
    /// Absolute path of the CRI-format log file.
    pub log_path: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Manifest digest (`sha256:...`).
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub size_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// A byte stream both ways (a port-forward connection).
pub trait AsyncStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> AsyncStream for T {}
pub type BoxStream = Pin<Box<dyn AsyncStream>>;

/// A terminal's size in character cells (CRI `Resize`; kubectl's `TerminalSize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

/// Where terminal size changes go while a TTY session runs. Sending fails once the session
/// ended; a full channel drops the change (the next one carries the latest size).
pub type ResizeSender = tokio::sync::mpsc::Sender<TerminalSize>;

/// A running exec: stdio streams and the exit code. With a TTY, stderr is merged into
/// stdout (as upstream) and `stderr` is None.
pub struct ExecSession {
    pub stdin: Option<BoxWrite>,
    pub stdout: BoxRead,
    pub stderr: Option<BoxRead>,
    /// Terminal size changes, with a TTY.
    pub resize: Option<ResizeSender>,
    /// Resolves to the command's exit code once it ends.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

/// What an attach to a container's main process wants (CRI `AttachRequest`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// Write to the process's stdin (the container must have been created with `stdin`).
    pub stdin: bool,
    pub stdout: bool,
    /// Ignored with a TTY: the terminal merges stderr into stdout.
    pub stderr: bool,
}

/// An attach to a container's main process: its output from now on, its stdin when asked
/// for, and its exit code if it ends while attached. Dropping the session detaches; with
/// `stdinOnce`, the first detach of a session holding stdin closes the process's stdin.
pub struct AttachSession {
    pub stdin: Option<BoxWrite>,
    pub stdout: Option<BoxRead>,
    pub stderr: Option<BoxRead>,
    /// Terminal size changes, when the container has a TTY.
    pub resize: Option<ResizeSender>,
    /// Resolves to the exit code when the process ends during the attach; closed (an
    /// error) when the session ends first.
    pub exit: tokio::sync::oneshot::Receiver<i32>,
}

impl std::fmt::Debug for AttachSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachSession").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession").finish_non_exhaustive()
    }
}

/// Kubernetes' rule for the process a container runs: `command` replaces the image's
/// Entrypoint (and then the image's Cmd is not used); `args` replaces Cmd.
pub fn resolve_process_args(
    command: &[String],
    args: &[String],
    image_entrypoint: &[String],
    image_cmd: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if !command.is_empty() {
        out.extend_from_slice(command);
        out.extend_from_slice(args);
    } else {
        out.extend_from_slice(image_entrypoint);
        if !args.is_empty() {
            out.extend_from_slice(args);
        } else {
            out.extend_from_slice(image_cmd);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::resolve_process_args;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let ep = v(&["/entry"]);
        let cmd = v(&["default"]);
        assert_eq!(resolve_process_args(&[], &[], &ep, &cmd), v(&["/entry", "default"]));
        assert_eq!(resolve_process_args(&v(&["sh"]), &[], &ep, &cmd), v(&["sh"]));
        assert_eq!(resolve_process_args(&[], &v(&["x"]), &ep, &cmd), v(&["/entry", "x"]));
        assert_eq!(
            resolve_process_args(&v(&["sh"]), &v(&["-c", "true"]), &ep, &cmd),
            v(&["sh", "-c", "true"])
        );
        assert_eq!(resolve_process_args(&[], &[], &[], &cmd), v(&["default"]));
    }
}
