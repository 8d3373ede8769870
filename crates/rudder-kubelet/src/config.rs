//! Kubelet settings (upstream's KubeletConfiguration names where one exists).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;

#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The Node's name (upstream: the hostname, lower-cased).
    pub node_name: String,
    /// The address reported as InternalIP (and used for hostNetwork pods and probes).
    pub node_ip: Ipv4Addr,
    /// The port the kubelet's HTTPS server listens on (reported in daemonEndpoints).
    pub port: u16,
    /// Per-pod kubelet state (`<root_dir>/pods/<uid>/volumes/...`).
    pub root_dir: PathBuf,
    /// Container logs: `<pod_log_dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.
    pub pod_log_dir: PathBuf,
    /// Where local-path volumes of this node live (published as a Node annotation).
    pub local_path_dir: PathBuf,
    pub cluster_dns: Vec<String>,
    pub cluster_domain: String,
    pub max_pods: u32,
    /// Pods that start (volumes, sandbox, containers) at once; more wait their turn
    /// (`start_slots`). Default: twice the CPUs.
    pub parallel_pod_starts: usize,
    /// Extra node labels (`--node-labels`) and registration taints (`--register-with-taints`).
    pub node_labels: BTreeMap<String, String>,
    pub register_with_taints: Vec<Taint>,
    /// Lease: `nodeLeaseDurationSeconds` (renewed every quarter of it).
    pub node_lease_duration_seconds: i32,
    /// How often node status is computed, and the longest time between two posts of an
    /// unchanged status (`nodeStatusUpdateFrequency`, `nodeStatusReportFrequency`).
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    /// How often the runtime is relisted to notice container exits (upstream's PLEG).
    pub relist_period: Duration,
    /// A pod worker's periodic resync (configMap/secret volume refresh, missed wake-ups).
    pub sync_frequency: Duration,
    /// Crash-loop back-off: first delay, cap, and how long a container must run before its
    /// back-off is forgotten.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub backoff_reset: Duration,
    /// Image pull back-off (ImagePullBackOff): first delay and cap.
    pub image_backoff_initial: Duration,
    pub image_backoff_max: Duration,
    /// Timeout of one API request.
    pub request_timeout: Duration,
    /// On SIGTERM (node shutdown): how long pods get in all (`shutdownGracePeriod`).
    pub shutdown_grace_period: Duration,
    /// The version string reported in nodeInfo.kubeletVersion.
    pub kubelet_version: String,
}

impl KubeletConfig {
    /// Defaults for a node named `node_name` at `node_ip`, state under `root_dir`.
    pub fn new(node_name: &str, node_ip: Ipv4Addr, root_dir: PathBuf) -> Self {
        KubeletConfig {
            node_name: node_name.to_owned(),
            node_ip,
            port: 10250,
            pod_log_dir: root_dir.join("logs/pods"),
            local_path_dir: root_dir.join("storage"),
            root_dir,
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            max_pods: 110,
            parallel_pod_starts: crate::start_slots::default_size(),
            node_labels: BTreeMap::new(),
            register_with_taints: Vec::new(),
            node_lease_duration_seconds: 40,
            node_status_update_frequency: Duration::from_secs(10),
            node_status_report_frequency: Duration::from_secs(300),
            relist_period: Duration::from_secs(1),
            sync_frequency: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            backoff_reset: Duration::from_secs(600),
            image_backoff_initial: Duration::from_secs(10),
            image_backoff_max: Duration::from_secs(300),
            request_timeout: Duration::from_secs(15),
            shutdown_grace_period: Duration::from_secs(30),
            kubelet_version: "v1.33.0-rudder".into(),
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root_dir.join("pods")
    }

    pub fn lease_renew_interval(&self) -> Duration {
        Duration::from_secs((self.node_lease_duration_seconds.max(4) / 4) as u64)
    }
}
