//! Test fixtures for the native runtime: a busybox layer directory, providers, a runtime
//! over temp directories, and a guard that removes everything (containers, mounts, cgroups,
//! network) even when the test fails.

#![allow(dead_code)]

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rudder_runtime::{
    ImageInfo, PodSandboxConfig, PodSandboxMetadata, Result, Runtime, RuntimeError,
};
use rudder_runtime_native::layout::Layout;
use rudder_runtime_native::providers::{
    ImageProvider, NetworkProvider, PodNetworkInfo, ResolvedImage,
};
use rudder_runtime_native::spec::ImageDefaults;
use rudder_runtime_native::{NativeRuntime, ShimCommand};

/// A layer directory holding Debian's static busybox with its applets, /etc/passwd with
/// `app` (1000), and /tmp.
pub fn busybox_layer(dir: &Path) -> PathBuf {
    let layer = dir.join("layer-busybox");
    fs::create_dir_all(layer.join("bin")).unwrap();
    fs::copy("/usr/bin/busybox", layer.join("bin/busybox")).unwrap();
    let out = std::process::Command::new("/usr/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet)).unwrap();
        }
    }
    fs::create_dir_all(layer.join("etc")).unwrap();
    fs::write(layer.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n").unwrap();
    fs::write(layer.join("etc/group"), "root:x:0:\napp:x:1000:\nnobody:x:65534:\n").unwrap();
    for d in ["tmp", "proc", "sys", "dev", "root", "var/www"] {
        fs::create_dir_all(layer.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(layer.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    layer
}

/// Images from plain directories: every reference resolves to the busybox layer; one
/// tagged `stop-<SIGNAL>` has that StopSignal.
pub struct DirImages {
    pub layer: PathBuf,
}

#[async_trait]
impl ImageProvider for DirImages {
    async fn pull(&self, image: &str, _credentials: &[Vec<u8>]) -> Result<ImageInfo> {
        Ok(self.info(image))
    }
    async fn resolve(&self, image: &str) -> Result<Option<ResolvedImage>> {
        Ok(Some(ResolvedImage {
            info: self.info(image),
            layers: vec![self.layer.clone()],
            defaults: ImageDefaults {
                cmd: vec!["sh".into()],
                env: vec!["PATH=/bin".into()],
                // `busybox:stop-QUIT` is busybox with `StopSignal: QUIT`.
                stop_signal: image.rsplit_once(":stop-").map(|(_, s)| s.to_owned()),
                ..Default::default()
            },
            user: String::new(),
        }))
    }
    async fn list(&self) -> Result<Vec<ImageInfo>> {
        Ok(vec![])
    }
    async fn remove(&self, _image: &str) -> Result<()> {
        Ok(())
    }
}

impl DirImages {
    fn info(&self, image: &str) -> ImageInfo {
        ImageInfo {
            id: "sha256:busybox-dir".into(),
            repo_tags: vec![image.into()],
            repo_digests: vec![],
            size_bytes: 0,
        }
    }
}

/// Host networking only: `setup` refuses (tests using it set `host_network`).
pub struct HostNetworkOnly;

impl NetworkProvider for HostNetworkOnly {
    fn setup(&self, _sandbox_id: &str, _hostname: &str) -> Result<PodNetworkInfo> {
        Err(RuntimeError::Unsupported("pod networks in this test"))
    }
    fn teardown(&self, _sandbox_id: &str) -> Result<()> {
        Ok(())
    }
    fn write_pod_files(
        &self,
        _dir: &Path,
        _c: &PodSandboxConfig,
        _ip: Option<Ipv4Addr>,
    ) -> Result<()> {
        Ok(())
    }
}

pub fn shim() -> ShimCommand {
    ShimCommand { program: PathBuf::from(env!("CARGO_BIN_EXE_rudder-shim")), prefix_args: vec![] }
}

pub fn pod(name: &str, host_network: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            attempt: 0,
        },
        hostname: name.into(),
        host_network,
        ..Default::default()
    }
}

/// Removes every sandbox and container of a runtime when dropped (also on panic), then
/// checks nothing is left mounted under its root.
pub struct Cleanup {
    pub runtime: Arc<NativeRuntime>,
    pub root: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let rt = self.runtime.clone();
        std::thread::spawn(move || {
            let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            tokio.block_on(async {
                for c in rt.list_containers(None).await.unwrap_or_default() {
                    let _ = rt.remove_container(&c.id).await;
                }
                for s in rt.list_pod_sandboxes().await.unwrap_or_default() {
                    let _ = rt.remove_pod_sandbox(&s.id).await;
                }
            });
        })
        .join()
        .ok();
        // The runtime's run dir is a tmpfs it mounted: gone with the last record, or
        // unmounted anyway so the temp dir can go.
        let run = self.runtime.layout().run.clone();
        rudder_runtime_native::layout::remove_run_dir_if_empty(&run);
        while rudder_runtime_native::rootfs::is_mount_point(&run) {
            if nix::mount::umount2(&run, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// Fields drop in declaration order: the cleanup removes containers and their mounts before
/// the temp dir goes (the other way round the dir cannot be removed and stays in /tmp).
pub struct TestRuntime {
    pub cleanup: Cleanup,
    pub runtime: Arc<NativeRuntime>,
    pub dir: tempfile::TempDir,
}

/// A runtime with state under a fresh temp dir and the busybox layer as every image.
pub fn runtime_with(network: Arc<dyn NetworkProvider>) -> TestRuntime {
    let dir = tempfile::tempdir().unwrap();
    let layer = busybox_layer(dir.path());
    let layout = Layout::new(dir.path().join("root"), dir.path().join("run"));
    let runtime = Arc::new(
        NativeRuntime::new(layout, shim(), Arc::new(DirImages { layer }), network).unwrap(),
    );
    TestRuntime {
        cleanup: Cleanup { runtime: runtime.clone(), root: dir.path().to_owned() },
        runtime,
        dir,
    }
}

/// Reopens a runtime over an existing state directory (an "agent restart").
pub fn reopen(dir: &Path, network: Arc<dyn NetworkProvider>) -> Arc<NativeRuntime> {
    let layout = Layout::new(dir.join("root"), dir.join("run"));
    Arc::new(
        NativeRuntime::new(
            layout,
            shim(),
            Arc::new(DirImages { layer: dir.join("layer-busybox") }),
            network,
        )
        .unwrap(),
    )
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout_s: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout_s);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// A "node" network namespace made for one test, with a pod network (unique bridge name,
/// random private /24) inside it. Bridge, nft table and host-side veths live in that netns,
/// so deleting it on drop removes them all.
pub struct NodeNet {
    pub adapter: Arc<rudder_runtime_native::net_adapter::NetworkAdapter>,
    pub netns: PathBuf,
    _guard: NetnsGuard,
    _dir: tempfile::TempDir,
}

/// Deletes the node netns and undoes rudder-net's self bind mount of the namespace run dir
/// (made shared so pod namespace unmounts propagate) before the temp dir goes.
struct NetnsGuard(String, PathBuf);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        while rudder_runtime_native::rootfs::is_mount_point(&self.1) {
            if std::process::Command::new("umount").arg("-l").arg(&self.1).status().is_err() {
                break;
            }
        }
    }
}

impl NodeNet {
    pub fn new() -> Self {
        let tag = format!("{:08x}", rand::random::<u32>());
        let name = format!("rudder-tnode-{tag}");
        let ok = std::process::Command::new("ip").args(["netns", "add", &name]).status().unwrap();
        assert!(ok.success(), "ip netns add {name}");
        let dir = tempfile::tempdir().unwrap();
        let guard = NetnsGuard(name.clone(), dir.path().join("ns"));
        let netns = PathBuf::from(format!("/run/netns/{name}"));
        let cidr = format!("10.{}.{}.0/24", 200 + rand::random::<u8>() % 50, rand::random::<u8>());
        let config = rudder_net::NetworkConfig {
            bridge: format!("rt{}", &tag[..6]),
            pod_cidr: cidr,
            node_netns: Some(netns.clone()),
            state_dir: dir.path().join("ipam"),
            run_dir: dir.path().join("ns"),
            ..Default::default()
        };
        let network = rudder_net::Network::new(config).unwrap();
        let adapter =
            Arc::new(rudder_runtime_native::net_adapter::NetworkAdapter::new(network).unwrap());
        NodeNet { adapter, netns, _guard: guard, _dir: dir }
    }
}
