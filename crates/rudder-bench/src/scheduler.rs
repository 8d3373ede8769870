//! `rudder-bench scheduler`: the scheduler at scale, inside a real `rudder server` process
//! (API server, store, scheduler and controller manager, as users run it), with simulated
//! nodes from `rudder-sim` in this process.
//!
//! Phase 1 (throughput): N simulated nodes, then P pods created through the API by 32
//! concurrent clients; a watch records when each pod is bound. Figures: create-to-bound
//! pods/s and p50/p99 create-to-bound latency. Comparison in the same run: the same P pods
//! created for a scheduler nobody runs (so they stay Pending) — the API's create rate, the
//! ceiling the scheduler cannot beat.
//!
//! Phase 2 (memory): a fresh server with M nodes; its resident memory with no pods, then
//! after Q pods are bound and Running.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::watcher;
use kube::{Api, Client};
use rudder_sim::{SimConfig, SimNodes};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::measure::{cpu_time, store_revision};
use crate::report::{Latencies, bench, note};

pub struct Options {
    nodes: usize,
    pods: usize,
    memory_nodes: usize,
    memory_pods: usize,
    rudder: Option<PathBuf>,
    server_args: Vec<String>,
    only: Option<String>,
    /// The simulated nodes' Lease renewal period (a kubelet's is 10 s).
    heartbeat_interval: Duration,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Options {
            nodes: 5000,
            pods: 10_000,
            memory_nodes: 1000,
            memory_pods: 30_000,
            rudder: None,
            server_args: Vec::new(),
            only: None,
            heartbeat_interval: SimConfig::default().heartbeat_interval,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--nodes" => o.nodes = value()?.parse()?,
                "--pods" => o.pods = value()?.parse()?,
                "--memory-nodes" => o.memory_nodes = value()?.parse()?,
                "--memory-pods" => o.memory_pods = value()?.parse()?,
                "--rudder" => o.rudder = Some(value()?.into()),
                "--server-arg" => o.server_args.push(value()?.clone()),
                "--only" => o.only = Some(value()?.clone()),
                "--heartbeat-seconds" => {
                    let seconds: f64 = value()?.parse()?;
                    o.heartbeat_interval = Duration::try_from_secs_f64(seconds)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .with_context(|| {
                            format!("--heartbeat-seconds must be a positive number, not {seconds}")
                        })?;
                }
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

const CREATORS: usize = 32;

/// A `rudder server` child process on a temporary data dir, killed on drop.
struct ServerProcess {
    child: Child,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(binary: &Path, extra: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("rudder-bench-sched-").tempdir()?;
        let mut child = Command::new(binary)
            .args(["server", "--bind-address", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(dir.path())
            // Room for thousands of nodes: a /24 each out of a /8.
            .args(["--cluster-cidr", "10.0.0.0/8"])
            // Simulated nodes only: no kubelet of the server's own (it would be one more
            // node, start real sandboxes for the pods bound to it, in the host's network
            // namespace, and leave them behind when the server is killed).
            .arg("--disable-agent")
            .args(extra)
            // Warnings only, unless the caller asks for more (`RUDDER_LOG=info rudder-bench ...`).
            .env("RUDDER_LOG", std::env::var("RUDDER_LOG").unwrap_or_else(|_| "warn".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening on https://") => break,
                Some(Ok(_)) => continue,
                _ => bail!("rudder server did not start"),
            }
        }
        std::thread::spawn(move || for _ in lines {});
        Ok(ServerProcess { child, kubeconfig: dir.path().join("admin.kubeconfig"), _dir: dir })
    }

    fn client(&self) -> Result<Client> {
        Ok(rudder_client::client_from_kubeconfig_file(&self.kubeconfig)?)
    }

    fn rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .context("VmRSS")?
            .parse()?;
        Ok(kib / 1024.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pod(name: &str, scheduler: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "bench": "scheduler" } },
        "spec": {
            "schedulerName": scheduler,
            "containers": [{
                "name": "c",
                "image": "busybox",
                "resources": { "requests": { "cpu": "10m", "memory": "16Mi" } },
            }],
        },
    }))
    .expect("valid pod")
}

async fn start_sim(
    client: Client,
    nodes: usize,
    heartbeat_interval: Duration,
    cancel: CancellationToken,
) -> Result<SimNodes> {
    let mut config = SimConfig::with_count(nodes);
    config.prefix = "bench-node".into();
    config.heartbeat_interval = heartbeat_interval;
    let sim = SimNodes::start(client, config, cancel).await?;
    let start = Instant::now();
    sim.wait_registered().await?;
    note(&format!("{nodes} simulated nodes registered in {:.1} s", start.elapsed().as_secs_f64()));
    Ok(sim)
}

/// Creates `count` pods named `<prefix>-<i>` from `CREATORS` concurrent clients; returns
/// each pod's create start time and the total wall time.
async fn create_pods(
    client: &Client,
    namespace: &str,
    prefix: &str,
    count: usize,
    scheduler: &str,
) -> Result<(HashMap<String, Instant>, Duration)> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let started = Arc::new(Mutex::new(HashMap::with_capacity(count)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let begin = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CREATORS {
        let (api, started, next) = (api.clone(), started.clone(), next.clone());
        let (prefix, scheduler) = (prefix.to_owned(), scheduler.to_owned());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(());
                }
                let name = format!("{prefix}-{i}");
                started.lock().await.insert(name.clone(), Instant::now());
                api.create(&PostParams::default(), &pod(&name, &scheduler)).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let elapsed = begin.elapsed();
    let started = std::mem::take(&mut *started.lock().await);
    Ok((started, elapsed))
}

/// Watches pods in `namespace` and reports each pod's first bound moment, until `count`
/// pods are bound (or the deadline passes).
fn watch_bound(
    client: &Client,
    namespace: &str,
    count: usize,
) -> tokio::task::JoinHandle<HashMap<String, Instant>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    tokio::spawn(async move {
        let mut bound = HashMap::with_capacity(count);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let deadline = tokio::time::sleep(Duration::from_secs(600));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                event = stream.next() => {
                    let pods = match event {
                        Some(Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p))) => vec![p],
                        Some(_) => continue,
                        None => break,
                    };
                    for p in pods {
                        let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                        if on_node && let Some(name) = p.metadata.name {
                            bound.entry(name).or_insert_with(Instant::now);
                        }
                    }
                    if bound.len() >= count {
                        break;
                    }
                }
            }
        }
        bound
    })
}

use kube::runtime::WatchStreamExt;

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({ "metadata": { "name": name } }))?;
    api.create(&PostParams::default(), &ns).await?;
    Ok(())
}

async fn throughput(binary: &Path, options: &Options) -> Result<()> {
    let server = ServerProcess::start(binary, &options.server_args)?;
    let client = server.client()?;
    let cancel = CancellationToken::new();
    let _sim = start_sim(client.clone(), options.nodes, options.heartbeat_interval, cancel.clone())
        .await?;
    // One pod first: the scheduler has seen the nodes once it is bound.
    create_namespace(&client, "warmup").await?;
    let warm = watch_bound(&client, "warmup", 1);
    create_pods(&client, "warmup", "warm", 1, "default-scheduler").await?;
    if warm.await?.is_empty() {
        bail!("the warm-up pod was never bound");
    }

    // Comparison: the API's create rate for the same pods, which nobody schedules.
    create_namespace(&client, "baseline").await?;
    note(&format!("creating {} pods nobody schedules", options.pods));
    let cpu = CpuMeter::start(&server)?;
    let (_, took) = create_pods(&client, "baseline", "idle", options.pods, "nobody").await?;
    let create_rate = options.pods as f64 / took.as_secs_f64();
    let create_cpu = cpu.per_pod(options.pods)?;

    create_namespace(&client, "bench").await?;
    let watch = watch_bound(&client, "bench", options.pods);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");
    let revision_before = store_revision(&pods).await?;
    let cpu = CpuMeter::start(&server)?;
    note(&format!("creating {} pods for the scheduler", options.pods));
    let (started, _) =
        create_pods(&client, "bench", "p", options.pods, "default-scheduler").await?;
    let bound = watch.await?;
    let bound_cpu = cpu.per_pod(options.pods)?;
    let writes = store_revision(&pods).await?.saturating_sub(revision_before);
    if bound.len() < options.pods {
        bail!("only {} of {} pods were bound", bound.len(), options.pods);
    }
    let first = started.values().min().copied().context("no pods")?;
    let last = bound.values().max().copied().context("no pods")?;
    let mut latencies = Latencies::default();
    for (name, t0) in &started {
        if let Some(t1) = bound.get(name) {
            latencies.record(t1.saturating_duration_since(*t0));
        }
    }
    let n = options.nodes;
    bench(
        &format!("scheduler.{n}_nodes.create_to_bound"),
        options.pods as f64 / (last - first).as_secs_f64(),
        "pods/s",
    );
    bench(&format!("scheduler.{n}_nodes.create_to_bound.p50"), latencies.quantile_ms(0.5), "ms");
    bench(&format!("scheduler.{n}_nodes.create_to_bound.p99"), latencies.quantile_ms(0.99), "ms");
    bench(&format!("scheduler.{n}_nodes.api_create_only"), create_rate, "pods/s");
    // Where the 2 cores went: the server's CPU per pod, and this process's (the creating
    // clients, the watch and the simulated nodes), for either phase.
    bench(&format!("scheduler.{n}_nodes.create_to_bound.server_cpu_per_pod"), bound_cpu.0, "ms");
    bench(&format!("scheduler.{n}_nodes.create_to_bound.bench_cpu_per_pod"), bound_cpu.1, "ms");
    // Every API write until the last pod was bound (creates, bindings, events, the simulated
    // nodes' status updates and Lease renewals), per pod.
    bench(
        &format!("scheduler.{n}_nodes.create_to_bound.writes_per_pod"),
        writes as f64 / options.pods as f64,
        "writes",
    );
    bench(&format!("scheduler.{n}_nodes.api_create_only.server_cpu_per_pod"), create_cpu.0, "ms");
    bench(&format!("scheduler.{n}_nodes.api_create_only.bench_cpu_per_pod"), create_cpu.1, "ms");
    bench(&format!("scheduler.{n}_nodes.server_rss"), server.rss_mib()?, "MiB");
    cancel.cancel();
    Ok(())
}

/// CPU time of the server and of this process since `start`.
struct CpuMeter {
    server_pid: i32,
    server: Duration,
    own: Duration,
}

impl CpuMeter {
    fn start(server: &ServerProcess) -> Result<Self> {
        let server_pid = server.child.id() as i32;
        let own = cpu_time(std::process::id() as i32)?;
        Ok(CpuMeter { server_pid, server: cpu_time(server_pid)?, own })
    }

    /// (server, own) milliseconds of CPU per pod since `start`.
    fn per_pod(&self, pods: usize) -> Result<(f64, f64)> {
        let server = cpu_time(self.server_pid)?.saturating_sub(self.server);
        let own = cpu_time(std::process::id() as i32)?.saturating_sub(self.own);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0 / pods as f64;
        Ok((ms(server), ms(own)))
    }
}

async fn memory(binary: &Path, options: &Options) -> Result<()> {
    let server = ServerProcess::start(binary, &options.server_args)?;
    let client = server.client()?;
    let cancel = CancellationToken::new();
    let _sim =
        start_sim(client.clone(), options.memory_nodes, options.heartbeat_interval, cancel.clone())
            .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = options.memory_nodes;
    bench(&format!("scheduler.memory.{m}_nodes.no_pods.server_rss"), server.rss_mib()?, "MiB");
    create_namespace(&client, "bench").await?;
    let watch = watch_bound(&client, "bench", options.memory_pods);
    create_pods(&client, "bench", "m", options.memory_pods, "default-scheduler").await?;
    let bound = watch.await?;
    if bound.len() < options.memory_pods {
        bail!("only {} of {} pods were bound", bound.len(), options.memory_pods);
    }
    // Let the simulated nodes report the pods Running and the controllers settle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let q = options.memory_pods;
    bench(&format!("scheduler.memory.{m}_nodes.{q}_pods.server_rss"), server.rss_mib()?, "MiB");
    cancel.cancel();
    Ok(())
}

pub async fn run(options: Options) -> Result<()> {
    let binary = crate::rudder_binary(options.rudder.as_deref())?;
    note(&format!(
        "rudder server process ({}), simulated nodes in this process, {} cores",
        binary.display(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    ));
    if options.only.as_deref() != Some("memory") {
        throughput(&binary, &options).await?;
    }
    if options.only.as_deref() != Some("throughput") {
        memory(&binary, &options).await?;
    }
    Ok(())
}
