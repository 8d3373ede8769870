//! `rudder-bench <suite>`: runs one benchmark suite and prints one line per figure:
//! `BENCH <suite>.<subject>.<metric> <value> <unit>`. Every suite measures its comparison
//! (another backend, a bare baseline) in the same run.

mod api;
mod measure;
mod pods;
mod report;
mod runtime;
mod scheduler;
mod store;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The allocator the `rudder` binary uses, so that the simulated nodes and clients in this
/// process cost what `rudder sim nodes` costs.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The `rudder` binary the server suites start: `--rudder PATH`, else the one next to this
/// binary.
fn rudder_binary(given: Option<&Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?.with_file_name("rudder"),
    };
    if !path.exists() {
        bail!(
            "{} not found: build it (cargo build --release -p rudder) or pass --rudder PATH",
            path.display()
        );
    }
    Ok(path)
}

const USAGE: &str = "usage: rudder-bench <suite> [options]

suites:
  store [--backends sqlite,etcd] [--seconds N]
      durable writes/s and p50/p99 latency at 1, 16 and 128 concurrent writers, reads/s,
      and watch delivery p99 with 1,000 watchers, per backend
  api [--backends sqlite,etcd] [--qps 500] [--seconds 10]
      the HTTP API through the kube client: p50/p99 per verb at a fixed mixed rate, watch
      delivery, and closed-loop requests/s, per datastore
  runtime [--pods 30] [--only sequential,concurrent,unpack]  (root)
      real containers: pod and container create-to-running p50/p99, 30 sequential and 30
      concurrent, against a bare libcontainer create+start of the same bundle; layer unpack
      MB/s against GNU tar
  scheduler [--nodes 5000] [--pods 10000] [--memory-nodes 1000] [--memory-pods 30000]
            [--rudder PATH] [--only throughput|memory] [--server-arg ARG]... [--heartbeat-seconds 10]
      a rudder server process (next to this binary) with simulated nodes: create-to-bound
      pods/s and p50/p99 against the API's create-only rate; server RSS with and without
      pods
  pods [--sequential 10] [--batch 30] [--burst 100] [--idle-seconds 60] [--rudder PATH]
       [--skip-runtime] [--server-arg FLAG]...  (root)
      a whole node (rudder server with its kubelet, next to this binary) in its own network
      namespace: spawn to Node Ready, create-to-Running p50/p99/max of a batch and a burst of
      pods created at once, delete-to-gone, shim memory per pod, idle server RSS and CPU;
      then the runtime suite's pod start for the same pods without API server and kubelet";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(suite) = args.first() else {
        eprintln!("{USAGE}");
        bail!("no suite given");
    };
    // The runtime suite re-executes this binary as its container shim: that must happen
    // before any thread exists (libcontainer forks).
    if suite == "shim" {
        std::process::exit(rudder_runtime_native::shim::main(&args[1..]));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match suite.as_str() {
        "store" => runtime.block_on(store::run(store::Options::parse(&args[1..])?)),
        "api" => runtime.block_on(api::run(api::Options::parse(&args[1..])?)),
        "runtime" => runtime.block_on(runtime::run(runtime::Options::parse(&args[1..])?)),
        "pods" => runtime.block_on(pods::run(pods::Options::parse(&args[1..])?)),
        "scheduler" => runtime.block_on(scheduler::run(scheduler::Options::parse(&args[1..])?)),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => {
            eprintln!("{USAGE}");
            bail!("unknown suite {other:?}")
        }
    }
}
