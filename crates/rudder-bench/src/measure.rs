//! What the suites measure besides latencies: CPU time of processes, the store's revision,
//! how fast the file system creates directories.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

/// User + system CPU time of a process so far.
pub fn cpu_time(pid: i32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    let rest = stat.rsplit_once(')').context("/proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    // USER_HZ is 100 on every Linux architecture rudder targets.
    Ok(Duration::from_millis(ticks * 10))
}

/// The store's revision now (a list's resourceVersion): one step per write, of any kind.
pub async fn store_revision(api: &Api<Pod>) -> Result<u64> {
    let list = api.list_metadata(&ListParams::default().limit(1)).await?;
    let rv = list.metadata.resource_version.unwrap_or_default();
    rv.parse().with_context(|| format!("resourceVersion {rv:?} is not a number"))
}

/// Microseconds per `mkdir` of 100 directories in a fresh directory under `dir` (then removed).
pub fn mkdir_micros(dir: &Path) -> Result<f64> {
    const COUNT: u32 = 100;
    let probe = tempfile::Builder::new().prefix("mkdir-probe-").tempdir_in(dir)?;
    let start = Instant::now();
    for i in 0..COUNT {
        std::fs::create_dir(probe.path().join(i.to_string()))?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(COUNT))
}
