//! The OCI runtime spec (`config.json`) for one container, from the kubelet's
//! [`ContainerConfig`], the image config and the sandbox's namespaces.

use std::path::PathBuf;

use serde_json::{Value, json};

use rudder_runtime::{ContainerConfig, MountSource, resolve_process_args};

use crate::rootfs::Overlay;

/// The image's config fields a container needs.
#[derive(Clone, Debug, Default)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// The image's `StopSignal` (`SIGQUIT`, `QUIT`, `3`); SIGTERM when None.
    pub stop_signal: Option<String>,
}

/// A signal as images name it (`SIGQUIT`, `QUIT`, `3`, any case).
pub fn parse_signal(name: &str) -> Option<nix::sys::signal::Signal> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).ok();
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    full.parse().ok()
}

/// Namespaces and per-pod files the container shares with its sandbox.
#[derive(Clone, Debug, Default)]
pub struct SandboxPaths {
    pub netns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    pub hostname_file: Option<PathBuf>,
    pub hostname: String,
}

/// The sandbox's files a container gets bind-mounted (destination, source): `/etc/hosts`,
/// `/etc/resolv.conf` and `/etc/hostname` where the sandbox has them, unless a volume is
/// mounted at the same path (it wins, as upstream).
pub fn sandbox_file_mounts<'a>(
    config: &ContainerConfig,
    sandbox: &'a SandboxPaths,
) -> Vec<(&'static str, &'a PathBuf)> {
    [
        ("/etc/hosts", &sandbox.hosts),
        ("/etc/resolv.conf", &sandbox.resolv_conf),
        ("/etc/hostname", &sandbox.hostname_file),
    ]
    .into_iter()
    .filter_map(|(dest, src)| Some((dest, src.as_ref()?)))
    .filter(|(dest, _)| !config.mounts.iter().any(|m| m.container_path == *dest))
    .collect()
}

/// Capabilities a container gets by default (containerd's default set, which upstream
/// Kubernetes users see).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `NET_ADMIN` and `CAP_NET_ADMIN` both name the same capability (Kubernetes uses the
/// former, OCI the latter).
pub fn normalize_capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") }
}

fn capabilities(config: &ContainerConfig) -> Vec<String> {
    if config.security.privileged {
        return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    }
    let drop: Vec<String> =
        config.security.capabilities_drop.iter().map(|c| normalize_capability(c)).collect();
    let drop_all = drop.iter().any(|d| d == "CAP_ALL");
    let mut caps: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).filter(|c| !drop.contains(c)).collect()
    };
    for add in &config.security.capabilities_add {
        let add = normalize_capability(add);
        if add == "CAP_ALL" {
            return ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
        }
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

/// Image env, then the container's env; a later `NAME=` replaces an earlier one in place.
pub fn merge_env(image_env: &[String], hostname: &str, envs: &[(String, String)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let key = entry.split('=').next().unwrap_or("").to_owned();
        match out.iter_mut().find(|e| e.split('=').next() == Some(key.as_str())) {
            Some(e) => *e = entry,
            None => out.push(entry),
        }
    };
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned());
    }
    for e in image_env {
        set(e.clone());
    }
    set(format!("HOSTNAME={hostname}"));
    for (k, v) in envs {
        set(format!("{k}={v}"));
    }
    out
}

/// Builds `config.json`. `uid`/`gid` are resolved already (numeric or from the image's
/// /etc/passwd); `cgroups_path` is the container's cgroup (`/rudder/<id>`).
#[allow(clippy::too_many_arguments)]
pub fn build(
    config: &ContainerConfig,
    image: &ImageDefaults,
    sandbox: &SandboxPaths,
    rootfs: &Overlay,
    uid: u32,
    gid: u32,
    additional_gids: &[u32],
    cgroups_path: &str,
) -> Result<Value, String> {
    let args = resolve_process_args(&config.command, &config.args, &image.entrypoint, &image.cmd);
    if args.is_empty() {
        return Err(
            "no command specified: the image has no Entrypoint or Cmd and the container no command"
                .into(),
        );
    }
    let cwd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(format!("workingDir {cwd:?} must be an absolute path"));
    }
    let caps = capabilities(config);
    let oom_score_adj = config.resources.oom_score_adj.unwrap_or(0).max(0);

    let mut mounts = vec![
        // First: everything after it is mounted on top of the overlay (see `rootfs`).
        json!({"destination": "/", "type": "overlay", "source": "overlay", "options": rootfs.options}),
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if config.security.privileged { "rw" } else { "ro" }]}),
    ];
    for (dest, src) in sandbox_file_mounts(config, sandbox) {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate", "rw"]}));
    }
    for m in &config.mounts {
        if !m.container_path.starts_with('/') {
            return Err(format!("mount path {:?} must be absolute", m.container_path));
        }
        let rw = if m.readonly { "ro" } else { "rw" };
        mounts.push(match &m.source {
            MountSource::Bind { host_path } => json!({
                "destination": m.container_path, "type": "bind", "source": host_path,
                "options": ["rbind", "rprivate", rw],
            }),
            MountSource::Tmpfs { size_bytes } => {
                let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "mode=1777".to_owned(), rw.to_owned()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": m.container_path, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
    // The hostname lives in the sandbox's UTS namespace (set when it was made); without one
    // (hostNetwork) the container shares the node's, as upstream. IPC is always private.
    for (kind, path) in
        [("network", &sandbox.netns), ("ipc", &sandbox.ipc_ns), ("uts", &sandbox.uts_ns)]
    {
        match path {
            Some(p) => namespaces.push(json!({"type": kind, "path": p})),
            None if kind == "ipc" => namespaces.push(json!({"type": "ipc"})),
            None => {}
        }
    }

    let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let r = &config.resources;
    if let Some(limit) = r.memory_limit_bytes.filter(|l| *l > 0) {
        // swap = limit: no swap on top of the memory limit, as the kubelet does.
        resources["memory"] = json!({"limit": limit, "swap": limit});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = r.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(q) = r.cpu_quota.filter(|q| *q > 0) {
        cpu.insert("quota".into(), json!(q));
        cpu.insert("period".into(), json!(r.cpu_period.filter(|p| *p > 0).unwrap_or(100_000)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = r.pids_limit.filter(|p| *p > 0) {
        resources["pids"] = json!({"limit": p});
    }
    if config.security.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": resources,
    });
    if !config.security.privileged {
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap"
        ]);
        linux["readonlyPaths"] =
            json!(["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
    }

    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty,
            "user": {"uid": uid, "gid": gid, "additionalGids": additional_gids},
            "args": args,
            "env": merge_env(&image.env, &sandbox.hostname, &config.envs),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            // No rlimits: containers inherit the node's (raising the hard NOFILE limit needs
            // CAP_SYS_RESOURCE, which root here lacks).
            "noNewPrivileges": config.security.no_new_privileges,
            "oomScoreAdj": oom_score_adj,
        },
        "root": {"path": rootfs.rootfs, "readonly": config.security.read_only_rootfs},
        "mounts": mounts,
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_runtime::{Mount, SecurityContext};

    #[test]
    fn env_merges_image_then_container_values() {
        let env = merge_env(
            &["PATH=/bin".into(), "A=image".into()],
            "web",
            &[("A".into(), "pod".into()), ("B".into(), "x=y".into())],
        );
        assert_eq!(env, vec!["PATH=/bin", "A=pod", "HOSTNAME=web", "B=x=y"]);
        assert!(merge_env(&[], "h", &[])[0].starts_with("PATH=/usr/local/sbin"));
    }

    #[test]
    fn capabilities_add_drop_and_privileged() {
        let mut c = ContainerConfig {
            security: SecurityContext {
                capabilities_add: vec!["NET_ADMIN".into()],
                capabilities_drop: vec!["KILL".into(), "cap_chown".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let caps = capabilities(&c);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!caps.contains(&"CAP_KILL".to_owned()));
        assert!(!caps.contains(&"CAP_CHOWN".to_owned()));
        c.security.capabilities_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&c), vec!["CAP_NET_ADMIN"]);
        c.security.privileged = true;
        assert!(capabilities(&c).contains(&"CAP_SYS_ADMIN".to_owned()));
    }

    #[test]
    fn spec_carries_limits_mounts_and_clamped_oom_score() {
        let mut c = ContainerConfig {
            command: vec!["sleep".into()],
            args: vec!["10".into()],
            ..Default::default()
        };
        c.resources.memory_limit_bytes = Some(64 << 20);
        c.resources.cpu_quota = Some(50_000);
        c.resources.pids_limit = Some(100);
        c.resources.oom_score_adj = Some(-998);
        c.mounts.push(Mount {
            container_path: "/data".into(),
            source: MountSource::Tmpfs { size_bytes: Some(1 << 20) },
            readonly: false,
        });
        let sandbox = SandboxPaths {
            netns: Some("/run/netns/x".into()),
            hostname: "pod-a".into(),
            ..Default::default()
        };
        let overlay = Overlay { rootfs: "/r/rootfs".into(), options: vec!["lowerdir=/l".into()] };
        let spec =
            build(&c, &ImageDefaults::default(), &sandbox, &overlay, 1000, 1000, &[], "/rudder/c1")
                .unwrap();
        assert_eq!(spec["process"]["args"], json!(["sleep", "10"]));
        assert_eq!(spec["process"]["oomScoreAdj"], json!(0));
        assert_eq!(spec["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(spec["linux"]["resources"]["cpu"]["period"], json!(100_000));
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], json!(100));
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/x"})));
        let data = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/data")
            .unwrap();
        assert!(data["options"].as_array().unwrap().contains(&json!("size=1048576")));
        // The overlay is the first mount, on /, of the (empty) root path.
        assert_eq!(spec["root"]["path"], json!("/r/rootfs"));
        assert_eq!(
            spec["mounts"][0],
            json!({"destination": "/", "type": "overlay", "source": "overlay", "options": ["lowerdir=/l"]})
        );

        let err = build(
            &ContainerConfig::default(),
            &ImageDefaults::default(),
            &sandbox,
            &overlay,
            0,
            0,
            &[],
            "/x",
        )
        .unwrap_err();
        assert!(err.contains("no command"), "{err}");
    }
}
