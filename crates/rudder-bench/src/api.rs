//! `rudder-bench api`: the HTTP API under load, through a real client (the `kube` crate over
//! HTTPS with client certificates), against a rudder API server on the SQLite store and on a
//! real etcd, in the same run.
//!
//! Two phases per backend: an open-loop mixed load at a fixed rate (default 500 requests/s:
//! 40% get, 25% create, 20% update, 10% list, 5% delete) with latency per verb, while 10
//! watchers measure create-to-event delivery; then closed-loop throughput with 32 clients.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, Config};
use rand::Rng;
use rudder_apiserver::{Datastore, ServerConfig};
use rudder_store_etcd::process::EtcdProcess;
use tokio::sync::Mutex;

use crate::report::{Latencies, bench, note};

pub struct Options {
    backends: Vec<String>,
    qps: u32,
    seconds: f64,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o =
            Options { backends: vec!["sqlite".into(), "etcd".into()], qps: 500, seconds: 10.0 };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--backends" => {
                    o.backends = args
                        .next()
                        .context("--backends needs a value")?
                        .split(',')
                        .map(str::to_owned)
                        .collect()
                }
                "--qps" => o.qps = args.next().context("--qps needs a value")?.parse()?,
                "--seconds" => {
                    o.seconds = args.next().context("--seconds needs a value")?.parse()?
                }
                other => bail!("unknown option {other:?}"),
            }
        }
        Ok(o)
    }
}

const WATCHERS: usize = 10;
const THROUGHPUT_CLIENTS: usize = 32;
const PRELOADED: usize = 200;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { "bench": "api" } },
        "data": { "value": value, "padding": "x".repeat(400) },
    }))
    .expect("valid ConfigMap")
}

async fn start_server(data_dir: &std::path::Path, datastore: Datastore) -> Result<Client> {
    let config = ServerConfig {
        data_dir: data_dir.to_owned(),
        bind_address: "127.0.0.1".parse()?,
        port: 0,
        datastore,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = rudder_apiserver::run(config, tx).await {
            eprintln!("API server failed: {e}");
        }
    });
    let started = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .context("server start timed out")??;
    let kubeconfig = kube::config::Kubeconfig::read_from(&started.kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

pub async fn run(options: Options) -> Result<()> {
    note(&format!(
        "api benchmark: kube client over HTTPS, in-process server; {} requests/s mixed for {}s, then {THROUGHPUT_CLIENTS} closed-loop clients; {WATCHERS} watchers",
        options.qps, options.seconds
    ));
    for backend in &options.backends {
        let dir = tempfile::Builder::new().prefix("rudder-bench-api-").tempdir()?;
        let _etcd;
        let datastore = match backend.as_str() {
            "sqlite" => Datastore::Sqlite,
            "etcd" => {
                let etcd = EtcdProcess::start().await?;
                let url = format!("etcd://{}", etcd.client_url().trim_start_matches("http://"));
                _etcd = etcd;
                Datastore::Etcd(url)
            }
            other => bail!("unknown backend {other:?}"),
        };
        let client = start_server(dir.path(), datastore).await?;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        for i in 0..PRELOADED {
            api.create(&PostParams::default(), &config_map(&format!("pre-{i}"), "0")).await?;
        }
        let (mut by_verb, mut delivery) =
            mixed_load(&api, options.qps, Duration::from_secs_f64(options.seconds)).await?;
        for (verb, lat) in by_verb.iter_mut() {
            bench(&format!("api.{backend}.{verb}_p50"), lat.quantile_ms(0.50), "ms");
            bench(&format!("api.{backend}.{verb}_p99"), lat.quantile_ms(0.99), "ms");
        }
        let mutating = by_verb
            .iter()
            .filter(|(v, _)| matches!(v.as_str(), "create" | "update" | "delete"))
            .fold(Latencies::default(), |mut all, (_, l)| {
                all.extend(l.clone());
                all
            });
        let mut mutating = mutating;
        bench(&format!("api.{backend}.mutating_p99"), mutating.quantile_ms(0.99), "ms");
        bench(
            &format!("api.{backend}.watch_delivery_p99.w{WATCHERS}"),
            delivery.quantile_ms(0.99),
            "ms",
        );
        let rate = throughput(&api, Duration::from_secs_f64(options.seconds / 2.0)).await?;
        bench(&format!("api.{backend}.requests_per_s.c{THROUGHPUT_CLIENTS}"), rate, "requests/s");
    }
    Ok(())
}

/// Open loop: one request every 1/qps seconds, whatever the previous ones are doing.
async fn mixed_load(
    api: &Api<ConfigMap>,
    qps: u32,
    duration: Duration,
) -> Result<(BTreeMap<String, Latencies>, Latencies)> {
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent_at: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let results: Arc<Mutex<BTreeMap<String, Latencies>>> = Arc::default();
    let mut watch_tasks = Vec::new();
    let delivery: Arc<Mutex<Latencies>> = Arc::default();
    for _ in 0..WATCHERS {
        let api = api.clone();
        let sent_at = sent_at.clone();
        let delivery = delivery.clone();
        watch_tasks.push(tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(cm)) = event
                    && let Some(name) = cm.metadata.name
                    && let Some(t) = sent_at.lock().await.get(&name)
                {
                    delivery.lock().await.record(t.elapsed());
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(qps)));
    let start = Instant::now();
    let mut inflight = Vec::new();
    let mut n = 0u64;
    while start.elapsed() < duration {
        ticker.tick().await;
        n += 1;
        let api = api.clone();
        let created = created.clone();
        let sent_at = sent_at.clone();
        let results = results.clone();
        inflight.push(tokio::spawn(async move {
            let roll = rand::thread_rng().gen_range(0..100);
            let t = Instant::now();
            let verb = match roll {
                0..40 => {
                    let i = rand::thread_rng().gen_range(0..PRELOADED);
                    api.get(&format!("pre-{i}")).await.map(|_| "get")
                }
                40..65 => {
                    let name = format!("load-{n}");
                    sent_at.lock().await.insert(name.clone(), t);
                    let r = api
                        .create(&PostParams::default(), &config_map(&name, "0"))
                        .await
                        .map(|_| "create");
                    created.lock().await.push(name);
                    r
                }
                65..85 => {
                    let i = rand::thread_rng().gen_range(0..PRELOADED);
                    let name = format!("pre-{i}");
                    let mut cm = api.get(&name).await?;
                    let t = Instant::now();
                    cm.data.get_or_insert_default().insert("value".into(), n.to_string());
                    let r = api.replace(&name, &PostParams::default(), &cm).await;
                    // A conflict with a concurrent update is a normal outcome under load.
                    let ok = match r {
                        Ok(_) => true,
                        Err(kube::Error::Api(s)) if s.code == 409 => true,
                        Err(e) => return Err(e),
                    };
                    if ok {
                        results
                            .lock()
                            .await
                            .entry("update".into())
                            .or_default()
                            .record(t.elapsed());
                    }
                    return Ok(());
                }
                85..95 => api.list(&ListParams::default().limit(50)).await.map(|_| "list"),
                _ => {
                    let victim = created.lock().await.pop();
                    match victim {
                        Some(name) => {
                            api.delete(&name, &DeleteParams::default()).await.map(|_| "delete")
                        }
                        None => return Ok(()),
                    }
                }
            }?;
            results.lock().await.entry(verb.into()).or_default().record(t.elapsed());
            Ok::<(), kube::Error>(())
        }));
    }
    for t in inflight {
        t.await??;
    }
    for w in watch_tasks {
        w.abort();
    }
    let by_verb = std::mem::take(&mut *results.lock().await);
    let delivery = std::mem::take(&mut *delivery.lock().await);
    Ok((by_verb, delivery))
}

/// Closed loop: `THROUGHPUT_CLIENTS` clients issuing gets and creates back to back.
async fn throughput(api: &Api<ConfigMap>, duration: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..THROUGHPUT_CLIENTS {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while start.elapsed() < duration {
                if n.is_multiple_of(2) {
                    api.get(&format!("pre-{}", (n as usize + c) % PRELOADED)).await?;
                } else {
                    api.create(&PostParams::default(), &config_map(&format!("tp-{c}-{n}"), "0"))
                        .await?;
                }
                n += 1;
            }
            Ok::<u64, kube::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}
