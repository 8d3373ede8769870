//! `rudder-bench pods` (root): a whole single node as users run it — `rudder server` with its
//! kubelet and the native runtime — inside a network namespace this suite creates (the
//! node's bridge and pod addresses never touch the host's network).
//!
//! The suite re-executes itself inside that namespace (`nsenter --net=...`) so that the
//! server, the API clients and the watches all live there; the outer process only creates
//! the namespace and the data dir, imports the busybox test image, and cleans up.
//!
//! Figures: process spawn to the Node's Ready condition; a batch (30) and a burst (100) of
//! pods created at once, per-pod create-to-Running latency and wall time, the machine's CPU
//! time per pod for starting them, delete-to-gone;
//! the shims' memory per pod; the server's idle RSS and CPU with no pods, once before any pod
//! ran (after a 10 s settle) and once after all were deleted. Comparison in the
//! same run: the `runtime` suite (the same pod start through the bare native runtime, no
//! API server, no kubelet), and the difference between the two.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::io::AsyncBufReadExt;

use crate::measure::{cpu_time, mkdir_micros, store_revision};
use crate::report::{Latencies, bench, note};

const IMAGE: &str = "rudder.test/busybox:1.0";
const NODE_NAME: &str = "bench-node";
const NAMESPACE: &str = "default";
/// Bounds every wait: a hang fails the run instead of blocking it.
const DEADLINE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(20);
/// After Node Ready, before measuring the fresh idle: start-up work (controllers' first
/// syncs, the default ServiceAccount, the first Lease renewals) settles.
const SETTLE: Duration = Duration::from_secs(10);

pub struct Options {
    rudder: Option<PathBuf>,
    /// Pods created one after the other, each once the previous one runs.
    sequential: usize,
    batch: usize,
    burst: usize,
    idle_seconds: u64,
    skip_runtime: bool,
    /// Extra `rudder server` flags (e.g. `--parallel-pod-starts 30` to compare).
    server_args: Vec<String>,
    /// Set in the re-executed process: the namespace it runs in and the prepared data dir.
    in_netns: Option<String>,
    data_dir: Option<PathBuf>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            rudder: None,
            sequential: 10,
            batch: 30,
            burst: 100,
            idle_seconds: 60,
            skip_runtime: false,
            server_args: Vec::new(),
            in_netns: None,
            data_dir: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--rudder" => o.rudder = Some(value()?.into()),
                "--sequential" => o.sequential = value()?.parse()?,
                "--batch" => o.batch = value()?.parse()?,
                "--burst" => o.burst = value()?.parse()?,
                "--idle-seconds" => o.idle_seconds = value()?.parse()?,
                "--skip-runtime" => o.skip_runtime = true,
                "--server-arg" => o.server_args.push(value()?.clone()),
                "--in-netns" => o.in_netns = Some(value()?.clone()),
                "--data-dir" => o.data_dir = Some(value()?.into()),
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

pub async fn run(o: Options) -> Result<()> {
    if o.in_netns.is_some() {
        return inner(o).await;
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the pods suite runs a real node (containers, network namespaces): run it as root");
    }
    let binary = crate::rudder_binary(o.rudder.as_deref())?;
    let node = NodeSandbox::create()?;
    let data_dir = node.dir.path().to_owned();

    // The busybox test image, in the node's store before the server starts: "image present".
    let tarball = data_dir.join("busybox.tar");
    let image = rudder_images::testing::busybox()?;
    std::fs::write(&tarball, rudder_images::testing::oci_layout_tar(&image, &[IMAGE])?)?;
    let out = std::process::Command::new(&binary)
        .args(["image", "import", "--data-dir"])
        .arg(&data_dir)
        .arg(&tarball)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!("rudder image import: {}", String::from_utf8_lossy(&out.stderr));
    }
    note(&format!(
        "rudder server with its kubelet ({}) in netns {}, busybox `sleep 3600` (image present), \
         {} cores",
        binary.display(),
        node.netns,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));

    let mut figures = HashMap::new();
    let mut inner_cmd = tokio::process::Command::new("nsenter");
    inner_cmd
        .arg(format!("--net=/run/netns/{}", node.netns))
        .arg(std::env::current_exe()?)
        .args(["pods", "--in-netns", &node.netns, "--data-dir"])
        .arg(&data_dir)
        .arg("--rudder")
        .arg(&binary)
        .args(["--sequential", &o.sequential.to_string()])
        .args(["--batch", &o.batch.to_string(), "--burst", &o.burst.to_string()])
        .args(["--idle-seconds", &o.idle_seconds.to_string()]);
    for arg in &o.server_args {
        inner_cmd.arg("--server-arg").arg(arg);
    }
    let inner_ok = forward(inner_cmd, &mut figures).await?;
    drop(node);
    if !inner_ok {
        bail!("the in-namespace part of the pods suite failed");
    }
    if o.skip_runtime {
        return Ok(());
    }

    // Comparison: the bare runtime starting the same pods (no API server, no kubelet).
    let mut runtime_cmd = tokio::process::Command::new(std::env::current_exe()?);
    // Without its layer unpack part: that writes and deletes thousands of files, which
    // slows the next run's inode allocations on ext4 (see BENCHMARKS.md).
    runtime_cmd.args([
        "runtime",
        "--pods",
        &o.batch.to_string(),
        "--only",
        "sequential,concurrent",
    ]);
    if !forward(runtime_cmd, &mut figures).await? {
        bail!("the runtime suite failed");
    }
    let b = o.batch;
    for q in ["p50", "p99"] {
        if let (Some(kubelet), Some(bare)) = (
            figures.get(&format!("pods.sequential.create_to_running.{q}")),
            figures.get(&format!("runtime.pod_start.sequential.{q}")),
        ) {
            bench(&format!("pods.sequential.overhead_over_runtime.{q}"), kubelet - bare, "ms");
        }
        let (Some(kubelet), Some(bare)) = (
            figures.get(&format!("pods.batch{b}.create_to_running.{q}")),
            figures.get(&format!("runtime.pod_start.concurrent.{q}")),
        ) else {
            continue;
        };
        bench(&format!("pods.batch{b}.overhead_over_runtime.{q}"), kubelet - bare, "ms");
    }
    Ok(())
}

/// Runs a child process, printing its stdout lines as they come and keeping its `BENCH`
/// figures; returns whether it succeeded.
async fn forward(
    mut cmd: tokio::process::Command,
    figures: &mut HashMap<String, f64>,
) -> Result<bool> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting a child benchmark")?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        println!("{line}");
        let mut words = line.split_whitespace();
        if words.next() == Some("BENCH")
            && let (Some(name), Some(Ok(value))) = (words.next(), words.next().map(str::parse))
        {
            figures.insert(name.to_owned(), value);
        }
    }
    Ok(child.wait().await?.success())
}

/// The node's network namespace and data dir. Dropping it removes whatever the run left:
/// processes started from the data dir, mounts under it and under the agent's /run dirs,
/// the namespace (with the bridge inside it), the data dir.
struct NodeSandbox {
    netns: String,
    dir: tempfile::TempDir,
}

impl NodeSandbox {
    fn create() -> Result<Self> {
        let netns = format!("rb-pods-{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = tempfile::Builder::new().prefix("rudder-bench-pods-").tempdir()?;
        let ok = std::process::Command::new("ip").args(["netns", "add", &netns]).status()?;
        if !ok.success() {
            bail!("ip netns add {netns} failed");
        }
        let sandbox = NodeSandbox { netns, dir };
        let ok = std::process::Command::new("ip")
            .args(["-n", &sandbox.netns, "link", "set", "lo", "up"])
            .status()?;
        if !ok.success() {
            bail!("ip -n {} link set lo up failed", sandbox.netns);
        }
        Ok(sandbox)
    }
}

impl Drop for NodeSandbox {
    fn drop(&mut self) {
        let data_dir = self.dir.path().to_string_lossy().into_owned();
        for pid in processes_mentioning(&data_dir) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        // The agent's runtime and namespace dirs under /run/rudder.
        let run_dirs = rudder_runtime_native::layout::node_run_dirs(self.dir.path());
        let mut prefixes = vec![data_dir];
        prefixes.extend(run_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut under: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| prefixes.iter().any(|p| m.starts_with(p.as_str())))
            .collect();
        under.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in under {
            let _ = std::process::Command::new("umount").args(["-l", m]).status();
        }
        for d in &run_dirs {
            while rudder_runtime_native::rootfs::is_mount_point(d) {
                let ok = std::process::Command::new("umount").arg("-l").arg(d).status();
                if !ok.is_ok_and(|s| s.success()) {
                    break;
                }
            }
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.netns]).status();
    }
}

/// Processes (other than this one) whose command line contains `needle`, with their argv.
fn processes_with_cmdline(needle: &str) -> Vec<(i32, Vec<String>)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        if pid == std::process::id() as i32 {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let text = String::from_utf8_lossy(&cmd);
            if text.contains(needle) {
                found.push((pid, text.split('\0').map(str::to_owned).collect()));
            }
        }
    }
    found
}

fn processes_mentioning(needle: &str) -> Vec<i32> {
    processes_with_cmdline(needle).into_iter().map(|(pid, _)| pid).collect()
}

/// A field (in KiB) of `/proc/<pid>/status` or `/proc/<pid>/smaps_rollup`.
fn proc_kib(pid: i32, file: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .with_context(|| format!("{field} in /proc/{pid}/{file}"))?
        .parse()
        .with_context(|| format!("{field} in /proc/{pid}/{file}"))
}

/// The `rudder server` child (in this process's namespace), stopped on drop.
struct Server {
    child: Child,
    data_dir: PathBuf,
}

impl Server {
    /// Starts the server; returns it and when it printed that it listens.
    async fn start(binary: &Path, data_dir: &Path, extra: &[String]) -> Result<(Self, Instant)> {
        let mut child = std::process::Command::new(binary)
            .args(["server", "--data-dir"])
            .arg(data_dir)
            .args(["--bind-address", "127.0.0.1", "--port", "0"])
            .args(["--node-name", NODE_NAME, "--node-ip", "127.0.0.1"])
            .args(extra)
            .env("RUDDER_LOG", std::env::var("RUDDER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let server = Server { child, data_dir: data_dir.to_owned() };
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening on https://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(Instant::now());
                }
            }
        });
        let listening = tokio::time::timeout(DEADLINE, rx)
            .await
            .context("the server did not listen in time")?
            .context("the server ended before listening")?;
        Ok((server, listening))
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn client(&self) -> Result<Client> {
        Ok(rudder_client::client_from_kubeconfig_file(&self.data_dir.join("admin.kubeconfig"))?)
    }

    /// Deletes every pod (through the kubelet: sandboxes and mounts go with them), then
    /// stops the server with SIGTERM (node shutdown) and waits for it.
    async fn stop(mut self, client: Option<&Client>) {
        if let Some(client) = client {
            let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
            if let Ok(pods) = api.list(&ListParams::default()).await {
                let names: Vec<String> =
                    pods.items.into_iter().filter_map(|p| p.metadata.name).collect();
                if !names.is_empty() {
                    let _ = delete_and_wait(&api, &names).await;
                }
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        note("the server did not stop within 60 s of SIGTERM: killed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The part that runs inside the node's network namespace.
async fn inner(o: Options) -> Result<()> {
    let data_dir = o.data_dir.clone().context("--in-netns needs --data-dir")?;
    let binary = crate::rudder_binary(o.rudder.as_deref())?;
    let spawned = Instant::now();
    let (server, listening) = Server::start(&binary, &data_dir, &o.server_args).await?;
    let client = server.client();
    let result = match &client {
        Ok(client) => measure(&server, client, &o, spawned, listening).await,
        Err(e) => Err(anyhow::anyhow!("admin client: {e}")),
    };
    server.stop(client.as_ref().ok()).await;
    result
}

async fn measure(
    server: &Server,
    client: &Client,
    o: &Options,
    spawned: Instant,
    listening: Instant,
) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(node)) = nodes.get_opt(NODE_NAME).await
            && node_is_ready(&node)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("node {NODE_NAME} was not Ready within {DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let ready = spawned.elapsed();
    bench("pods.up_to_listening", (listening - spawned).as_secs_f64() * 1000.0, "ms");
    bench("pods.up_to_node_ready", ready.as_secs_f64() * 1000.0, "ms");

    // Idle with nothing ever run: the node Ready, controllers synced, no pods.
    tokio::time::sleep(SETTLE).await;
    let (rss, cpu) = idle(server.pid(), o.idle_seconds).await?;
    bench("pods.idle_fresh_rss", rss, "MiB");
    bench("pods.idle_fresh_cpu", cpu, "%core");

    // The file system's state: on this project's VM (ext4 without a journal) creating a
    // directory slows from ~30 to ~300 us after a few runs have created and removed
    // thousands, and every pod start creates a few; the figures below move with it.
    bench("pods.disk_mkdir", mkdir_micros(&server.data_dir)?, "us");

    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    run_sequential(&api, o.sequential).await?;
    let batch = format!("batch{}", o.batch);
    run_group(&api, &batch, o.batch, None).await?;
    let burst = format!("burst{}", o.burst);
    run_group(&api, &burst, o.burst, Some(server)).await?;

    // Idle again: no pods left (all deleted above), for --idle-seconds.
    let (rss, cpu) = idle(server.pid(), o.idle_seconds).await?;
    bench("pods.idle_rss", rss, "MiB");
    bench("pods.idle_cpu", cpu, "%core");
    Ok(())
}

/// The server's RSS (MiB) at the end of `seconds` of waiting, and the CPU it used meanwhile
/// (% of one core).
async fn idle(pid: i32, seconds: u64) -> Result<(f64, f64)> {
    let cpu_before = cpu_time(pid)?;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before).as_secs_f64();
    let rss = proc_kib(pid, "status", "VmRSS:")? as f64 / 1024.0;
    Ok((rss, cpu / t.elapsed().as_secs_f64() * 100.0))
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod(name: &str, group: &str) -> Result<Pod> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "bench": group } },
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "sleep",
                "image": IMAGE,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
            }],
        },
    }))?)
}

/// What one watch on a group of pods saw: when each pod was first Running and when each
/// was deleted.
#[derive(Default)]
struct Seen {
    synced: bool,
    /// When the pod was first seen with a node (bound by the scheduler).
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
    gone: HashMap<String, Instant>,
}

/// One watch on the pods labelled `bench=<group>`, feeding a `Seen`.
fn watch_group(
    api: &Api<Pod>,
    group: &str,
) -> (tokio::sync::watch::Receiver<Seen>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = tokio::sync::watch::channel(Seen::default());
    let config = watcher::Config::default().labels(&format!("bench={group}"));
    let stream = watcher(api.clone(), config).default_backoff();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let now = Instant::now();
            match event {
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    let running =
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                    let bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                    if let Some(name) = p.metadata.name {
                        tx.send_modify(|s| {
                            if bound {
                                s.bound.entry(name.clone()).or_insert(now);
                            }
                            if running {
                                s.running.entry(name).or_insert(now);
                            }
                        });
                    }
                }
                Ok(watcher::Event::Delete(p)) => {
                    if let Some(name) = p.metadata.name {
                        tx.send_modify(|s| {
                            s.gone.entry(name).or_insert(now);
                        });
                    }
                }
                Ok(watcher::Event::InitDone) => tx.send_modify(|s| s.synced = true),
                Ok(watcher::Event::Init) => {}
                Err(e) => note(&format!("pod watch: {e}")),
            }
        }
    });
    (rx, task)
}

async fn wait_seen(
    rx: &mut tokio::sync::watch::Receiver<Seen>,
    what: &str,
    done: impl FnMut(&Seen) -> bool,
) -> Result<()> {
    match tokio::time::timeout(DEADLINE, rx.wait_for(done)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => bail!("the pod watch ended while waiting for {what}"),
        Err(_) => bail!("timed out waiting for {what}"),
    }
}

/// Creates `count` pods one at a time (each after the previous one is Running): the
/// latency of a single pod start on an otherwise quiet node. Then deletes them.
async fn run_sequential(api: &Api<Pod>, count: usize) -> Result<()> {
    if count == 0 {
        return Ok(());
    }
    let group = "sequential";
    let (mut rx, watch) = watch_group(api, group);
    let result = async {
        wait_seen(&mut rx, "the pod watch to sync", |s| s.synced).await?;
        let names: Vec<String> = (0..count).map(|i| format!("{group}-{i}")).collect();
        let mut latencies = Latencies::default();
        for name in &names {
            let sent = Instant::now();
            api.create(&PostParams::default(), &pod(name, group)?).await?;
            wait_seen(&mut rx, name, |s| s.running.contains_key(name)).await?;
            let t1 = rx.borrow().running[name];
            latencies.record(t1.saturating_duration_since(sent));
        }
        let prefix = format!("pods.{group}.create_to_running");
        bench(&format!("{prefix}.p50"), latencies.quantile_ms(0.5), "ms");
        bench(&format!("{prefix}.p99"), latencies.quantile_ms(0.99), "ms");
        delete_all(api, &names).await?;
        wait_seen(&mut rx, "sequential pods gone", |s| {
            names.iter().all(|n| s.gone.contains_key(n))
        })
        .await?;
        Ok(())
    }
    .await;
    watch.abort();
    result
}

/// Creates `count` pods at once, measures create-to-Running per pod, then deletes them all
/// and measures delete-to-gone. With `server`: also the shims' memory while all run.
async fn run_group(
    api: &Api<Pod>,
    group: &str,
    count: usize,
    server: Option<&Server>,
) -> Result<()> {
    let (mut rx, watch) = watch_group(api, group);
    let result = async {
        wait_seen(&mut rx, "the pod watch to sync", |s| s.synced).await?;
        let names: Vec<String> = (0..count).map(|i| format!("{group}-{i}")).collect();
        let revision_before = store_revision(api).await?;
        let cpu_before = NodeCpu::now();
        let begin = Instant::now();
        let creates: Vec<_> = names
            .iter()
            .map(|name| {
                let (api, pod) = (api.clone(), pod(name, group));
                tokio::spawn(async move {
                    let sent = Instant::now();
                    api.create(&PostParams::default(), &pod?).await?;
                    Ok::<_, anyhow::Error>((sent, sent.elapsed()))
                })
            })
            .collect();
        let mut sent = HashMap::with_capacity(count);
        let mut create_latencies = Latencies::default();
        for (name, task) in names.iter().zip(creates) {
            let (at, took) = task.await??;
            sent.insert(name.clone(), at);
            create_latencies.record(took);
        }
        let what = format!("{count} pods Running");
        wait_seen(&mut rx, &what, |s| names.iter().all(|n| s.running.contains_key(n))).await?;
        let cpu = NodeCpu::now().since(&cpu_before);
        let writes = store_revision(api).await?.saturating_sub(revision_before);
        let mut latencies = Latencies::default();
        let mut to_bound = Latencies::default();
        let mut last = begin;
        {
            let seen = rx.borrow();
            for (name, t0) in &sent {
                let t1 = seen.running[name];
                latencies.record(t1.saturating_duration_since(*t0));
                // A pod seen Running is bound: the watch may skip the event in between.
                let bound = seen.bound.get(name).copied().unwrap_or(t1);
                to_bound.record(bound.saturating_duration_since(*t0));
                last = last.max(t1);
            }
        }
        let prefix = format!("pods.{group}.create_to_running");
        bench(&format!("{prefix}.p50"), latencies.quantile_ms(0.5), "ms");
        bench(&format!("{prefix}.p99"), latencies.quantile_ms(0.99), "ms");
        bench(&format!("{prefix}.min"), latencies.quantile_ms(0.0), "ms");
        bench(&format!("{prefix}.max"), latencies.quantile_ms(1.0), "ms");
        bench(&format!("{prefix}.wall"), (last - begin).as_secs_f64() * 1000.0, "ms");
        // The control plane's share (create, schedule, bind): the rest is the node's.
        bench(&format!("pods.{group}.create_request.p50"), create_latencies.quantile_ms(0.5), "ms");
        bench(&format!("pods.{group}.create_to_bound.p50"), to_bound.quantile_ms(0.5), "ms");
        // What starting them cost in CPU, whoever spent it (server, shims, containers),
        // per pod: unlike the latencies, independent of the order pods got the CPU in.
        bench(&format!("pods.{group}.cpu_per_pod"), cpu / count as f64, "ms");
        // Every API write (pods, bindings, status, events, leases) moves the store's revision.
        bench(&format!("pods.{group}.writes_per_pod"), writes as f64 / count as f64, "writes");

        if let Some(server) = server {
            shim_memory(server, count)?;
        }

        let begin = Instant::now();
        delete_all(api, &names).await?;
        let what = format!("{count} pods gone");
        wait_seen(&mut rx, &what, |s| names.iter().all(|n| s.gone.contains_key(n))).await?;
        let last = rx.borrow().gone.values().max().copied().unwrap_or(begin);
        bench(
            &format!("pods.{group}.delete_to_gone.wall"),
            (last - begin).as_secs_f64() * 1000.0,
            "ms",
        );
        Ok(())
    }
    .await;
    watch.abort();
    result
}

/// The shims of the server's containers (`<rudder> shim ...` processes started from its
/// data dir): their summed RSS (shared pages counted in each) and PSS, per pod.
fn shim_memory(server: &Server, pods: usize) -> Result<()> {
    let needle = server.data_dir.to_string_lossy().into_owned();
    let shims: Vec<i32> = processes_with_cmdline(&needle)
        .into_iter()
        .filter(|(pid, argv)| {
            *pid != server.pid() && argv.get(1).map(String::as_str) == Some("shim")
        })
        .map(|(pid, _)| pid)
        .collect();
    let (mut rss, mut pss) = (0u64, 0u64);
    for pid in &shims {
        rss += proc_kib(*pid, "status", "VmRSS:").unwrap_or(0);
        pss += proc_kib(*pid, "smaps_rollup", "Pss:").unwrap_or(0);
    }
    note(&format!("{} shim processes for {pods} pods", shims.len()));
    let per_pod = |kib: u64| kib as f64 / 1024.0 / pods.max(1) as f64;
    bench("pods.shim_rss_per_pod", per_pod(rss), "MiB");
    bench("pods.shim_pss_per_pod", per_pod(pss), "MiB");
    bench(
        "pods.server_rss_with_pods",
        proc_kib(server.pid(), "status", "VmRSS:")? as f64 / 1024.0,
        "MiB",
    );
    Ok(())
}

/// Deletes the named pods, all requests at once (the pods' own grace period applies).
async fn delete_all(api: &Api<Pod>, names: &[String]) -> Result<()> {
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let (api, name) = (api.clone(), name.clone());
            tokio::spawn(async move { api.delete(&name, &DeleteParams::default()).await })
        })
        .collect();
    for task in tasks {
        match task.await? {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Deletes the named pods and polls until they are gone (cleanup; no figures).
async fn delete_and_wait(api: &Api<Pod>, names: &[String]) -> Result<()> {
    delete_all(api, names).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if api.list(&ListParams::default()).await?.items.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("pods still present 60 s after deletion")
}

/// CPU time the machine spent busy, minus this process's own (the bench's client work):
/// `/proc/stat` and `/proc/self/stat`, in clock ticks. The machine must be otherwise idle.
struct NodeCpu {
    busy_ticks: u64,
    own_ticks: u64,
}

impl NodeCpu {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu  user nice system idle iowait irq softirq steal ...
        let fields: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let busy_ticks = [0, 1, 2, 5, 6].iter().filter_map(|&i| fields.get(i)).sum();
        let own = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // After the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let after_name = own.rsplit_once(')').map_or("", |(_, rest)| rest);
        let own_fields: Vec<u64> =
            after_name.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        NodeCpu { busy_ticks, own_ticks: own_fields.iter().sum() }
    }

    /// Milliseconds of CPU spent by everyone but this process since `before`.
    fn since(&self, before: &NodeCpu) -> f64 {
        // Both files count in USER_HZ, which Linux fixes at 100 for user space.
        let ticks_per_s = 100.0;
        let busy = self.busy_ticks.saturating_sub(before.busy_ticks);
        let own = self.own_ticks.saturating_sub(before.own_ticks);
        busy.saturating_sub(own) as f64 * 1000.0 / ticks_per_s
    }
}
