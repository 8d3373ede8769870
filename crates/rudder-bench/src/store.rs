//! `rudder-bench store`: the same workload through every backend in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rand::Rng;
use rudder_store::{SqliteConfig, SqliteStorage, Storage};
use rudder_store_etcd::process::EtcdProcess;

use crate::report::{Latencies, bench, note};

pub struct Options {
    backends: Vec<String>,
    seconds: f64,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut options = Options { backends: vec!["sqlite".into(), "etcd".into()], seconds: 3.0 };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--backends" => {
                    let list = args.next().context("--backends needs a value")?;
                    options.backends = list.split(',').map(str::to_owned).collect();
                }
                "--seconds" => {
                    options.seconds = args.next().context("--seconds needs a value")?.parse()?;
                }
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(options)
    }
}

const CONCURRENCY: [usize; 3] = [1, 16, 128];
const VALUE_BYTES: usize = 512;
const WATCHERS: usize = 1000;
const WATCHED_WRITES: usize = 200;
const READERS: usize = 16;
const KEYS: usize = 1000;

pub async fn run(options: Options) -> Result<()> {
    note(&format!(
        "store benchmark: {VALUE_BYTES}-byte values, {}s per figure, durable (fsync'd) writes",
        options.seconds
    ));
    note(&format!("machine: {} cores, {}", cores(), kernel()));
    let duration = Duration::from_secs_f64(options.seconds);
    let mut writes_c128 = Vec::new();
    for backend in &options.backends {
        let (store, _guard): (Arc<dyn Storage>, Box<dyn std::any::Any>) = match backend.as_str() {
            "sqlite" => {
                let dir =
                    tempfile::Builder::new().prefix("rudder-bench-").tempdir_in(bench_dir())?;
                let store = SqliteStorage::open(SqliteConfig::new(dir.path().join("state.db")))?;
                (Arc::new(store), Box::new(dir))
            }
            "etcd" => {
                let etcd = EtcdProcess::start().await?;
                let store = etcd.storage().await?;
                (Arc::new(store), Box::new(etcd))
            }
            other => bail!("unknown backend {other:?} (sqlite, etcd)"),
        };
        for writers in CONCURRENCY {
            let (rate, mut lat) = writes(&store, writers, duration).await?;
            bench(&format!("store.{backend}.writes_per_s.c{writers}"), rate, "writes/s");
            bench(&format!("store.{backend}.write_p50.c{writers}"), lat.quantile_ms(0.50), "ms");
            bench(&format!("store.{backend}.write_p99.c{writers}"), lat.quantile_ms(0.99), "ms");
            if writers == 128 {
                writes_c128.push((backend.clone(), rate));
            }
        }
        let rate = reads(&store, duration).await?;
        bench(&format!("store.{backend}.reads_per_s.c{READERS}"), rate, "reads/s");
        let mut lat = watch_delivery(&store).await?;
        bench(
            &format!("store.{backend}.watch_delivery_p50.w{WATCHERS}"),
            lat.quantile_ms(0.50),
            "ms",
        );
        bench(
            &format!("store.{backend}.watch_delivery_p99.w{WATCHERS}"),
            lat.quantile_ms(0.99),
            "ms",
        );
    }
    if let [(a, ra), (b, rb)] = writes_c128.as_slice() {
        bench(&format!("store.compare.{a}_over_{b}.writes_per_s.c128"), ra / rb, "x");
    }
    Ok(())
}

/// Where temporary databases live: the same disk etcd's temporary data dir uses.
fn bench_dir() -> std::path::PathBuf {
    std::env::temp_dir()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "unknown kernel".into())
}

/// `writers` tasks each create a key, then update it (compare-and-swap) until time is up.
async fn writes(
    store: &Arc<dyn Storage>,
    writers: usize,
    duration: Duration,
) -> Result<(f64, Latencies)> {
    let value = Bytes::from(vec![b'v'; VALUE_BYTES]);
    let run_id: u32 = rand::thread_rng().r#gen();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("/bench/w/{run_id:08x}/{w}");
            let mut lat = Latencies::default();
            let t = Instant::now();
            let mut kv = store.create(&key, value.clone()).await?;
            lat.record(t.elapsed());
            while start.elapsed() < duration {
                let t = Instant::now();
                kv = store.update(&key, value.clone(), kv.mod_revision).await?;
                lat.record(t.elapsed());
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Latencies::default();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((all.len() as f64 / elapsed, all))
}

/// Point reads of random existing keys from `READERS` tasks.
async fn reads(store: &Arc<dyn Storage>, duration: Duration) -> Result<f64> {
    let value = Bytes::from(vec![b'r'; VALUE_BYTES]);
    futures::future::try_join_all((0..KEYS).map(|k| {
        let (store, value) = (store.clone(), value.clone());
        async move { store.create(&format!("/bench/r/{k:05}"), value).await }
    }))
    .await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..READERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < duration {
                let k = rand::thread_rng().gen_range(0..KEYS);
                let got = store.get(&format!("/bench/r/{k:05}")).await?;
                anyhow::ensure!(got.is_some(), "key {k} missing");
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// `WATCHERS` watchers on one prefix; each write's latency is from the start of the write
/// to its arrival at each watcher.
async fn watch_delivery(store: &Arc<dyn Storage>) -> Result<Latencies> {
    let prefix = "/bench/watch/";
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        watchers.push(store.watch(prefix, 0).await?);
    }
    let sent: Arc<std::sync::Mutex<Vec<(i64, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for mut w in watchers {
        tasks.push(tokio::spawn(async move {
            let mut arrivals = Vec::with_capacity(WATCHED_WRITES);
            while arrivals.len() < WATCHED_WRITES {
                let event = tokio::time::timeout(Duration::from_secs(60), w.next())
                    .await
                    .context("watch delivery timed out")?
                    .context("watch ended")??;
                arrivals.push((event.revision(), Instant::now()));
            }
            anyhow::Ok(arrivals)
        }));
    }
    let value = Bytes::from(vec![b'w'; VALUE_BYTES]);
    for i in 0..WATCHED_WRITES {
        let t = Instant::now();
        let kv = store.create(&format!("{prefix}{i:05}"), value.clone()).await?;
        sent.lock().unwrap().push((kv.mod_revision, t));
    }
    let sent: std::collections::HashMap<i64, Instant> =
        sent.lock().unwrap().iter().copied().collect();
    let mut lat = Latencies::default();
    for t in tasks {
        for (revision, arrived) in t.await?? {
            let started = sent.get(&revision).context("event for an unknown write")?;
            lat.record(arrived.saturating_duration_since(*started));
        }
    }
    Ok(lat)
}
