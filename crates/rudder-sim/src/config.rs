//! What a simulation is configured with, and the parsers a command line fills it with
//! (`--label k=v`, `--taint k=v:NoSchedule`, `--resource cpu=8`, `--heartbeat-interval 10s`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

use crate::cidr::Ipv4Cidr;
use crate::error::SimError;

/// The label every simulated node carries (`type=sim`, like kwok's `type=kwok`), so tests
/// and benchmarks can select or avoid them.
pub const SIM_NODE_LABEL: (&str, &str) = ("type", "sim");
/// The annotation every simulated node carries.
pub const SIM_NODE_ANNOTATION: (&str, &str) = ("sim.rudder.dev/node", "true");

/// Configuration of one simulation. `SimConfig::default()` is `rudder sim nodes` without
/// flags except `--count`.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// How many nodes, named `<prefix>-<i>` for i in 0..count. Ignored when `names` is set.
    pub count: usize,
    /// Default `sim-node`.
    pub prefix: String,
    /// Explicit node names (`--node-name a --node-name b`); overrides `count`/`prefix`.
    pub names: Vec<String>,
    /// Node capacity by resource name. Default: cpu 4, memory 16Gi, pods 110,
    /// ephemeral-storage 100Gi. Extra entries (e.g. `nvidia.com/gpu`) are advertised too.
    pub capacity: BTreeMap<String, String>,
    /// Allocatable overrides; a resource not named here is allocatable as its capacity.
    pub allocatable: BTreeMap<String, String>,
    /// Labels added to every node (on top of hostname, os, arch, `type=sim`).
    pub labels: BTreeMap<String, String>,
    /// Taints of newly registered nodes (an existing Node keeps the taints it has: taints
    /// belong to the controllers once a node exists, as with upstream's kubelet).
    pub taints: Vec<Taint>,
    /// If not empty, node i gets `topology.kubernetes.io/zone=zones[i % len]`.
    pub zones: Vec<String>,
    /// If set, every node gets `topology.kubernetes.io/region=<region>`.
    pub region: Option<String>,
    /// Node i's InternalIP is the (i+1)-th address of this block. Default 198.18.0.0/15
    /// (reserved for benchmarking, RFC 2544).
    pub node_ip_cidr: Ipv4Cidr,
    /// Where a node's pod subnet is carved from when its `spec.podCIDR` is not set.
    /// Default 10.42.0.0/16.
    pub cluster_cidr: Ipv4Cidr,
    /// Size of the carved per-node subnets. Default 24.
    pub node_cidr_mask_size: u8,
    /// Lease renewal period (upstream: a quarter of the lease duration). Default 10 s.
    pub heartbeat_interval: Duration,
    /// `leaseDurationSeconds` of the node Leases. Default 40.
    pub lease_duration_seconds: i32,
    /// Node status is re-posted when it differs from what the node reports, and at least this
    /// often otherwise (upstream's nodeStatusReportFrequency). Default 5 min.
    pub status_report_interval: Duration,
    /// From seeing a pod bound to a node to its containers running. Default 10 ms.
    pub ready_delay: Duration,
    /// How long containers of `restartPolicy: Never`/`OnFailure` pods run before exiting 0
    /// when no annotation says otherwise; `None`: they run until deleted. Default 1 s.
    pub succeed_after: Option<Duration>,
    /// First crash-loop back-off delay (upstream 10 s), doubling per restart.
    pub crash_loop_backoff_base: Duration,
    /// Back-off cap (upstream 5 min).
    pub crash_loop_backoff_max: Duration,
    /// At most this many pod writes (status, delete) at once. Default 32.
    pub max_concurrent_pod_writes: usize,
    /// At most this many node writes (lease, status, registration) at once. Default 16.
    pub max_concurrent_node_writes: usize,
    /// Deadline of every API request. Default 10 s.
    pub request_timeout: Duration,
    /// `status.nodeInfo.kubeletVersion`. Default `v1.33.0`.
    pub kubelet_version: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        let capacity =
            [("cpu", "4"), ("memory", "16Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        SimConfig {
            count: 1,
            prefix: "sim-node".into(),
            names: Vec::new(),
            capacity,
            allocatable: BTreeMap::new(),
            labels: BTreeMap::new(),
            taints: Vec::new(),
            zones: Vec::new(),
            region: None,
            node_ip_cidr: Ipv4Cidr::new(Ipv4Addr::new(198, 18, 0, 0), 15).expect("valid CIDR"),
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 42, 0, 0), 16).expect("valid CIDR"),
            node_cidr_mask_size: 24,
            heartbeat_interval: Duration::from_secs(10),
            lease_duration_seconds: 40,
            status_report_interval: Duration::from_secs(300),
            ready_delay: Duration::from_millis(10),
            succeed_after: Some(Duration::from_secs(1)),
            crash_loop_backoff_base: Duration::from_secs(10),
            crash_loop_backoff_max: Duration::from_secs(300),
            max_concurrent_pod_writes: 32,
            max_concurrent_node_writes: 16,
            request_timeout: Duration::from_secs(10),
            kubelet_version: "v1.33.0".into(),
        }
    }
}

impl SimConfig {
    /// `count` nodes named `sim-node-<i>`, everything else default.
    pub fn with_count(count: usize) -> Self {
        SimConfig { count, ..SimConfig::default() }
    }

    /// The node names, in index order.
    pub fn node_names(&self) -> Vec<String> {
        if !self.names.is_empty() {
            return self.names.clone();
        }
        (0..self.count).map(|i| format!("{}-{i}", self.prefix)).collect()
    }

    /// Adds a `--label k=v`.
    pub fn add_label(&mut self, flag: &str) -> Result<(), SimError> {
        let (k, v) = parse_label(flag)?;
        self.labels.insert(k, v);
        Ok(())
    }

    /// Adds a `--taint k[=v]:Effect`.
    pub fn add_taint(&mut self, flag: &str) -> Result<(), SimError> {
        self.taints.push(parse_taint(flag)?);
        Ok(())
    }

    /// Sets a `--resource name=quantity` (capacity; allocatable follows unless overridden).
    pub fn set_capacity(&mut self, flag: &str) -> Result<(), SimError> {
        let (k, v) = parse_resource(flag)?;
        self.capacity.insert(k, v);
        Ok(())
    }

    /// Sets an `--allocatable name=quantity`.
    pub fn set_allocatable(&mut self, flag: &str) -> Result<(), SimError> {
        let (k, v) = parse_resource(flag)?;
        self.allocatable.insert(k, v);
        Ok(())
    }

    /// Allocatable by resource name: capacity with the overrides applied.
    pub fn effective_allocatable(&self) -> BTreeMap<String, String> {
        let mut all = self.capacity.clone();
        all.extend(self.allocatable.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// Checks the whole configuration; [`crate::SimNodes::start`] calls it.
    pub fn validate(&self) -> Result<(), SimError> {
        let names = self.node_names();
        if names.is_empty() {
            return Err(SimError::Config("no nodes (count is 0 and no names given)".into()));
        }
        let mut seen = BTreeSet::new();
        for n in &names {
            let errors = rudder_api::names::dns1123_subdomain(n);
            if !errors.is_empty() {
                return Err(SimError::invalid("node name", n, errors.join("; ")));
            }
            check_label("kubernetes.io/hostname", n)?;
            if !seen.insert(n) {
                return Err(SimError::Config(format!("node name {n:?} given twice")));
            }
        }
        if (names.len() as u64) + 1 >= self.node_ip_cidr.size() {
            return Err(SimError::Config(format!(
                "{} nodes do not fit node_ip_cidr {}",
                names.len(),
                self.node_ip_cidr
            )));
        }
        for (k, v) in self.capacity.iter().chain(self.allocatable.iter()) {
            check_resource(k, v)?;
        }
        for (k, v) in &self.labels {
            check_label(k, v)?;
        }
        for z in self.zones.iter().chain(self.region.iter()) {
            check_label("topology.kubernetes.io/zone", z)?;
        }
        if self.node_cidr_mask_size < self.cluster_cidr.prefix_len()
            || self.node_cidr_mask_size > 30
        {
            return Err(SimError::Config(format!(
                "node_cidr_mask_size {} does not fit cluster_cidr {} (at most /30)",
                self.node_cidr_mask_size, self.cluster_cidr
            )));
        }
        for (what, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("request_timeout", self.request_timeout),
            ("crash_loop_backoff_base", self.crash_loop_backoff_base),
        ] {
            if d.is_zero() {
                return Err(SimError::Config(format!("{what} must be above zero")));
            }
        }
        if self.lease_duration_seconds <= 0 {
            return Err(SimError::Config("lease_duration_seconds must be above zero".into()));
        }
        if self.max_concurrent_pod_writes == 0 || self.max_concurrent_node_writes == 0 {
            return Err(SimError::Config("write concurrency must be above zero".into()));
        }
        Ok(())
    }
}

fn check_label(k: &str, v: &str) -> Result<(), SimError> {
    rudder_api::labels::check_key(k).map_err(|e| SimError::invalid("label key", k, e))?;
    rudder_api::labels::check_value(v).map_err(|e| SimError::invalid("label value", v, e))?;
    Ok(())
}

fn check_resource(k: &str, v: &str) -> Result<(), SimError> {
    if k.is_empty() {
        return Err(SimError::invalid("resource", &format!("{k}={v}"), "empty resource name"));
    }
    match rudder_api::quantity::parse_milli(v) {
        Ok(m) if m >= 0 => Ok(()),
        Ok(_) => Err(SimError::invalid("resource quantity", v, "must not be negative")),
        Err(e) => Err(SimError::invalid("resource quantity", v, e.to_string())),
    }
}

/// `key=value` (a label; the value may be empty).
pub fn parse_label(flag: &str) -> Result<(String, String), SimError> {
    let (k, v) = flag
        .split_once('=')
        .ok_or_else(|| SimError::invalid("label", flag, "expected key=value"))?;
    check_label(k, v)?;
    Ok((k.to_owned(), v.to_owned()))
}

/// `key=value:Effect` or `key:Effect` (kubectl taint's syntax), Effect one of NoSchedule,
/// PreferNoSchedule, NoExecute.
pub fn parse_taint(flag: &str) -> Result<Taint, SimError> {
    let (kv, effect) = flag
        .rsplit_once(':')
        .ok_or_else(|| SimError::invalid("taint", flag, "expected key[=value]:Effect"))?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(SimError::invalid(
            "taint",
            flag,
            format!("effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"),
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    rudder_api::labels::check_key(key).map_err(|e| SimError::invalid("taint key", key, e))?;
    if let Some(v) = value {
        rudder_api::labels::check_value(v).map_err(|e| SimError::invalid("taint value", v, e))?;
    }
    Ok(Taint {
        key: key.to_owned(),
        value: value.filter(|v| !v.is_empty()).map(str::to_owned),
        effect: effect.to_owned(),
        time_added: None,
    })
}

/// `name=quantity` (`cpu=8`, `memory=32Gi`, `nvidia.com/gpu=2`).
pub fn parse_resource(flag: &str) -> Result<(String, String), SimError> {
    let (k, v) = flag
        .split_once('=')
        .ok_or_else(|| SimError::invalid("resource", flag, "expected name=quantity"))?;
    check_resource(k, v)?;
    Ok((k.to_owned(), v.to_owned()))
}

/// A duration flag: a number with a unit `ms`, `s`, `m` or `h` (`250ms`, `10s`, `1.5s`,
/// `5m`); a bare number is seconds.
pub fn parse_duration(flag: &str) -> Result<Duration, SimError> {
    let s = flag.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| SimError::invalid("duration", flag, "expected e.g. 250ms, 10s, 5m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(SimError::invalid("duration", flag, "unit must be ms, s, m or h")),
    };
    Duration::try_from_secs_f64(secs)
        .map_err(|e| SimError::invalid("duration", flag, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        assert_eq!(parse_label("a.b/c=d").unwrap(), ("a.b/c".into(), "d".into()));
        assert_eq!(parse_label("empty=").unwrap(), ("empty".into(), String::new()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("bad key=x").is_err());

        let t = parse_taint("dedicated=gpu:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("dedicated", Some("gpu"), "NoSchedule")
        );
        let t = parse_taint("node.kubernetes.io/special:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("node.kubernetes.io/special", None, "NoExecute")
        );
        assert!(parse_taint("k=v:Sometimes").is_err());
        assert!(parse_taint("k=v").is_err());

        assert_eq!(
            parse_resource("nvidia.com/gpu=2").unwrap(),
            ("nvidia.com/gpu".into(), "2".into())
        );
        assert!(parse_resource("cpu=lots").is_err());
        assert!(parse_resource("cpu=-1").is_err());

        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn validates_and_names() {
        let mut c = SimConfig::with_count(3);
        c.prefix = "n".into();
        assert_eq!(c.node_names(), ["n-0", "n-1", "n-2"]);
        c.validate().unwrap();
        c.set_capacity("cpu=8").unwrap();
        c.set_allocatable("cpu=7500m").unwrap();
        assert_eq!(c.effective_allocatable()["cpu"], "7500m");
        assert_eq!(c.effective_allocatable()["memory"], "16Gi");
        c.names = vec!["a".into(), "a".into()];
        assert!(c.validate().is_err());
        c.names = vec!["Not_A_Name".into()];
        assert!(c.validate().is_err());
        assert!(SimConfig::with_count(0).validate().is_err());
        let mut c = SimConfig::with_count(2);
        c.node_cidr_mask_size = 8;
        assert!(c.validate().is_err());
    }
}
