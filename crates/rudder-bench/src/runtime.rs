//! `runtime`: real containers through the native runtime (root): pod start (sandbox with
//! network + container) and container start latency, sequential and concurrent, against a
//! bare libcontainer create+start of the same bundle measured in the same run; and layer
//! unpack throughput against GNU tar on the same tarball.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rudder_images::layer::{Compression, UnpackOptions, unpack};
use rudder_images::{ImageStore, StoreOptions, testing};
use rudder_runtime::{
    ContainerConfig, ContainerMetadata, PodSandboxConfig, PodSandboxMetadata, Runtime,
};
use rudder_runtime_native::image_adapter::ImageStoreAdapter;
use rudder_runtime_native::layout::Layout;
use rudder_runtime_native::net_adapter::NetworkAdapter;
use rudder_runtime_native::{NativeRuntime, ShimCommand};

use crate::report::{Latencies, bench, note};

pub struct Options {
    pods: usize,
    /// Parts of the suite to run: `sequential` (with the bare libcontainer baseline),
    /// `concurrent`, `unpack`; all of them when empty.
    only: Vec<String>,
}

const PARTS: [&str; 3] = ["sequential", "concurrent", "unpack"];

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options { pods: 30, only: Vec::new() };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--pods" => o.pods = it.next().context("--pods N")?.parse()?,
                "--only" => {
                    let parts = it.next().context("--only sequential,concurrent,unpack")?;
                    for part in parts.split(',') {
                        if !PARTS.contains(&part) {
                            bail!("--only {part}: expected some of {}", PARTS.join(","));
                        }
                        o.only.push(part.to_owned());
                    }
                }
                other => bail!("unknown option {other}"),
            }
        }
        Ok(o)
    }

    fn runs(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// A node netns for the benchmark's pods, deleted on drop (with the bridge inside it), and
/// rudder-net's self bind mount of the namespace run dir undone.
/// The node netns and the node's run dirs (`/run/rudder/{ns,rt}-<tag>`, as the agent's).
struct NodeNetns(String, [PathBuf; 2]);

impl Drop for NodeNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        for d in &self.1 {
            while rudder_runtime_native::rootfs::is_mount_point(d) {
                if std::process::Command::new("umount").arg("-l").arg(d).status().is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn pod(i: usize) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: PodSandboxMetadata {
            name: format!("bench-{i}"),
            namespace: "default".into(),
            uid: format!("uid-{i}"),
            attempt: 0,
        },
        hostname: format!("bench-{i}"),
        ..Default::default()
    }
}

fn sleeper(image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata { name: "sleep".into(), attempt: 0 },
        image: image.into(),
        command: vec!["sleep".into(), "3600".into()],
        ..Default::default()
    }
}

/// One pod: sandbox, then container create + start. Returns (pod start, container start).
async fn start_pod(rt: &NativeRuntime, i: usize, image: &str) -> Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let cfg = pod(i);
    let sb = rt.run_pod_sandbox(&cfg).await?;
    let t1 = Instant::now();
    let id = rt.create_container(&sb, &sleeper(image), &cfg).await?;
    rt.start_container(&id).await?;
    Ok((t0.elapsed(), t1.elapsed()))
}

async fn remove_all(rt: &NativeRuntime) {
    for s in rt.list_pod_sandboxes().await.unwrap_or_default() {
        if let Err(e) = rt.remove_pod_sandbox(&s.id).await {
            eprintln!("removing pod sandbox {} failed: {e}", s.id);
        }
    }
}

fn report(name: &str, l: &mut Latencies) {
    bench(&format!("{name}.p50"), l.quantile_ms(0.5), "ms");
    bench(&format!("{name}.p99"), l.quantile_ms(0.99), "ms");
}

pub async fn run(o: Options) -> Result<()> {
    if !nix_is_root() {
        bail!("the runtime suite runs real containers: run it as root");
    }
    let dir = tempfile::tempdir()?;
    let tag = format!("{:08x}", rand::random::<u32>());
    let netns_name = format!("rudder-bench-{tag}");
    let ok = std::process::Command::new("ip").args(["netns", "add", &netns_name]).status()?;
    if !ok.success() {
        bail!("ip netns add {netns_name} failed");
    }
    // Namespace and runtime state on tmpfs under /run, where the agent keeps them.
    let [ns_dir, rt_dir] = rudder_runtime_native::layout::node_run_dirs(dir.path());
    let _netns = NodeNetns(netns_name.clone(), [ns_dir.clone(), rt_dir.clone()]);
    let network = rudder_net::Network::new(rudder_net::NetworkConfig {
        bridge: format!("rb{}", &tag[..6]),
        pod_cidr: "10.250.0.0/24".into(),
        node_netns: Some(PathBuf::from(format!("/run/netns/{netns_name}"))),
        state_dir: dir.path().join("ipam"),
        run_dir: ns_dir,
        ..Default::default()
    })?;

    // The busybox test image, imported from an OCI layout tarball: "image present".
    // Pins next to the runtime's records, as the agent keeps them.
    let options = StoreOptions {
        pins_dir: Some(rudder_runtime_native::layout::pins_dir(&rt_dir)),
        ..Default::default()
    };
    let store = Arc::new(ImageStore::open(dir.path().join("images"), options)?);
    let tarball = dir.path().join("busybox.tar");
    std::fs::write(
        &tarball,
        testing::oci_layout_tar(&testing::busybox()?, &["bench/busybox:1.0"])?,
    )?;
    let records = store.import(&tarball).await?;
    let image = records
        .first()
        .context("import gave no image")?
        .names
        .first()
        .cloned()
        .context("no name")?;

    let rt = Arc::new(NativeRuntime::new(
        Layout::new(dir.path().join("root"), rt_dir),
        ShimCommand { program: std::env::current_exe()?, prefix_args: vec!["shim".into()] },
        Arc::new(ImageStoreAdapter::new(store.clone())),
        Arc::new(NetworkAdapter::new(network)?),
    )?);
    note(&format!("{} pods, busybox `sleep 3600`, sandbox = netns+veth+IPAM, 2 cores", o.pods));

    // Warm-up (page cache, first cgroup dirs).
    start_pod(&rt, 9999, &image).await?;
    remove_all(&rt).await;

    let result = async {
        if o.runs("sequential") {
            sequential(&rt, &image, o.pods, &tag).await?;
        }
        if o.runs("concurrent") {
            concurrent(&rt, &image, o.pods).await?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    remove_all(&rt).await;
    result?;

    if o.runs("unpack") {
        unpack_throughput(dir.path())?;
    }
    Ok(())
}

/// One pod at a time, then the bare libcontainer baseline over the same bundle.
async fn sequential(rt: &NativeRuntime, image: &str, pods: usize, tag: &str) -> Result<()> {
    let (mut pod_seq, mut ctr_seq) = (Latencies::default(), Latencies::default());
    for i in 0..pods {
        let (p, c) = start_pod(rt, i, image).await?;
        pod_seq.record(p);
        ctr_seq.record(c);
    }
    report("runtime.pod_start.sequential", &mut pod_seq);
    report("runtime.container_start.sequential", &mut ctr_seq);

    // Baseline: the same bundle (config.json of a created container, its mounted rootfs
    // and its pod's netns), created and started by libcontainer alone.
    let mut bare = Latencies::default();
    let any = rt.list_containers(None).await?.into_iter().next().context("no container")?;
    let bundle_src = rt.layout().container_dir(&any.id).join("bundle/config.json");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle_src)?)?;
    // Its bundles and state on the same tmpfs as the runtime's.
    let bare_root = rt.layout().run.join("bare-state");
    let mut bare_pids = Vec::new();
    for i in 0..pods {
        let id = format!("bare{tag}{i}");
        let b = rt.layout().run.join(&id);
        std::fs::create_dir_all(&b)?;
        let mut s = spec.clone();
        s["linux"]["cgroupsPath"] = format!("/rudder/{id}").into();
        std::fs::write(b.join("config.json"), serde_json::to_vec(&s)?)?;
        let t = Instant::now();
        let out = tokio::process::Command::new(std::env::current_exe()?)
            .args(["shim", "bare", "--bundle"])
            .arg(&b)
            .args(["--id", &id, "--state-root"])
            .arg(&bare_root)
            .output()
            .await?;
        bare.record(t.elapsed());
        if !out.status.success() {
            bail!("bare start: {}", String::from_utf8_lossy(&out.stderr));
        }
        bare_pids.push((id, String::from_utf8_lossy(&out.stdout).trim().parse::<i32>()?));
    }
    report("runtime.baseline.bare_libcontainer_start.sequential", &mut bare);
    for (id, pid) in bare_pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        wait_gone(pid).await;
        rudder_runtime_native::shim::cleanup_libcontainer(&bare_root, &id);
    }
    remove_all(rt).await;
    Ok(())
}

/// All pods at once.
async fn concurrent(rt: &Arc<NativeRuntime>, image: &str, pods: usize) -> Result<()> {
    let t = Instant::now();
    let tasks: Vec<_> = (0..pods)
        .map(|i| {
            let rt = rt.clone();
            let image = image.to_owned();
            tokio::spawn(async move { start_pod(&rt, 100 + i, &image).await })
        })
        .collect();
    let (mut pod_conc, mut ctr_conc) = (Latencies::default(), Latencies::default());
    for task in tasks {
        let (p, c) = task.await??;
        pod_conc.record(p);
        ctr_conc.record(c);
    }
    let wall = t.elapsed();
    report("runtime.pod_start.concurrent", &mut pod_conc);
    report("runtime.container_start.concurrent", &mut ctr_conc);
    bench("runtime.pod_start.concurrent.wall", wall.as_secs_f64() * 1000.0, "ms");
    Ok(())
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

async fn wait_gone(pid: i32) {
    for _ in 0..500 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if status.contains(") Z ") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A ~160 MiB layer (40 files of 4 MiB, 2,000 small files), unpacked by rudder and by GNU tar.
fn unpack_throughput(dir: &Path) -> Result<()> {
    let tar_path = dir.join("layer.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&tar_path)?);
        let mut big = vec![0u8; 4 << 20];
        for (i, byte) in big.iter_mut().enumerate() {
            *byte = (i * 7 % 251) as u8;
        }
        for i in 0..40 {
            let mut h = tar::Header::new_gnu();
            h.set_size(big.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("big/{i}.bin"), &big[..])?;
        }
        for i in 0..2000 {
            let data = format!("small file {i}\n").repeat(20);
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("small/{}/{i}.txt", i % 50), data.as_bytes())?;
        }
        b.finish()?;
    }
    let size = std::fs::metadata(&tar_path)?.len() as f64;
    let mb = size / (1 << 20) as f64;
    note(&format!("layer: {mb:.0} MiB uncompressed tar, 40 x 4 MiB + 2,000 small files"));

    let dest = dir.join("unpacked-rudder");
    let t = Instant::now();
    unpack(std::fs::File::open(&tar_path)?, Compression::None, &dest, UnpackOptions::default())?;
    let rudder_s = t.elapsed().as_secs_f64();
    bench("runtime.layer_unpack.rudder", mb / rudder_s, "MB/s");

    let dest_tar = dir.join("unpacked-gnu-tar");
    std::fs::create_dir_all(&dest_tar)?;
    let t = Instant::now();
    let ok = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar_path)
        .arg("-C")
        .arg(&dest_tar)
        .status()?;
    let tar_s = t.elapsed().as_secs_f64();
    if !ok.success() {
        bail!("tar -xf failed");
    }
    bench("runtime.layer_unpack.baseline_gnu_tar", mb / tar_s, "MB/s");
    Ok(())
}
