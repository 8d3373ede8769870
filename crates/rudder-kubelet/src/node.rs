//! The Node this kubelet registers and keeps current: labels, capacity, addresses, node
//! info, conditions (posted when they change and at least every report period) and the
//! Lease heartbeat in `kube-node-lease`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use rudder_client::Clock;
use rudder_client::api::{RequestError, Target, call};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::KubeletConfig;
use crate::machine::MachineInfo;

pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Node annotation: where this node's local-path volumes live (the provisioner reads it).
pub const LOCAL_PATH_DIR_ANNOTATION: &str = "rudder.dev/local-path-dir";

/// What the Ready condition says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Not ready yet (e.g. waiting for a pod CIDR), with the reason's message.
    NotReady(String),
    Ready,
    /// The node is shutting down (SIGTERM): pods are being terminated.
    ShuttingDown,
}

pub fn labels(cfg: &KubeletConfig) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    for (k, v) in [
        ("kubernetes.io/hostname", cfg.node_name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ] {
        l.insert(k.to_owned(), v.to_owned());
    }
    l.extend(cfg.node_labels.clone());
    l
}

fn quantity(q: impl ToString) -> Quantity {
    Quantity(q.to_string())
}

pub fn capacity(cfg: &KubeletConfig, m: &MachineInfo) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), quantity(m.cpus)),
        ("memory".to_owned(), quantity(format!("{}Ki", m.memory_bytes / 1024))),
        (
            "ephemeral-storage".to_owned(),
            quantity(format!("{}Ki", m.ephemeral_storage_bytes / 1024)),
        ),
        ("pods".to_owned(), quantity(cfg.max_pods)),
        ("hugepages-2Mi".to_owned(), quantity(0)),
        ("hugepages-1Gi".to_owned(), quantity(0)),
    ])
}

/// Conditions as upstream orders them, for a node in `readiness`; each keeps the
/// lastTransitionTime it has in `previous` when its status is unchanged.
pub fn conditions(
    readiness: &Readiness,
    previous: &[NodeCondition],
    now: Timestamp,
) -> Vec<NodeCondition> {
    let (ready_status, ready_reason, ready_message) = match readiness {
        Readiness::Ready => ("True", "KubeletReady", "kubelet is posting ready status".to_owned()),
        Readiness::NotReady(m) => ("False", "KubeletNotReady", m.clone()),
        Readiness::ShuttingDown => ("False", "KubeletNotReady", "node is shutting down".to_owned()),
    };
    let wanted = [
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available".to_owned(),
        ),
        (
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure".to_owned(),
        ),
        (
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".to_owned(),
        ),
        ("Ready", ready_status, ready_reason, ready_message),
    ];
    wanted
        .into_iter()
        .map(|(type_, status, reason, message)| {
            let since = previous
                .iter()
                .find(|c| c.type_ == type_ && c.status == status)
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .unwrap_or(now);
            NodeCondition {
                type_: type_.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(Time(since)),
            }
        })
        .collect()
}

pub fn status(
    cfg: &KubeletConfig,
    m: &MachineInfo,
    readiness: &Readiness,
    previous: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let cap = capacity(cfg, m);
    NodeStatus {
        allocatable: Some(cap.clone()),
        capacity: Some(cap),
        conditions: Some(conditions(readiness, previous, now)),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: cfg.node_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: cfg.node_name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(cfg.port) }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: m.machine_id.clone(),
            system_uuid: m.system_uuid.clone(),
            boot_id: m.boot_id.clone(),
            kernel_version: m.kernel_version.clone(),
            os_image: m.os_image.clone(),
            container_runtime_version: format!("rudder://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: cfg.kubelet_version.clone(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

pub fn new_node(
    cfg: &KubeletConfig,
    m: &MachineInfo,
    readiness: &Readiness,
    now: Timestamp,
) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(cfg.node_name.clone()),
            labels: Some(labels(cfg)),
            annotations: Some(BTreeMap::from([(
                LOCAL_PATH_DIR_ANNOTATION.to_owned(),
                cfg.local_path_dir.display().to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.register_with_taints.is_empty())
                .then(|| cfg.register_with_taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(status(cfg, m, readiness, &[], now)),
    }
}

/// A status with its heartbeat times removed, to tell real changes from heartbeats.
fn without_heartbeats(s: &NodeStatus) -> NodeStatus {
    let mut s = s.clone();
    for c in s.conditions.iter_mut().flatten() {
        c.last_heartbeat_time = None;
    }
    s
}

pub fn pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr.clone().or_else(|| spec.pod_cidrs.as_ref()?.first().cloned())
}

/// Registers the Node (or takes over an existing one: our labels, annotation and status are
/// patched on) and returns it as the API holds it.
pub async fn register(
    client: &Client,
    cfg: &KubeletConfig,
    m: &MachineInfo,
    readiness: &Readiness,
    now: Timestamp,
) -> Result<Node, RequestError> {
    let api: Api<Node> = Api::all(client.clone());
    let name = cfg.node_name.as_str();
    let t = |verb| Target { verb, kind: "Node", namespace: "", name };
    let node = new_node(cfg, m, readiness, now);
    match call(t("create"), cfg.request_timeout, api.create(&PostParams::default(), &node)).await {
        Ok(created) => return Ok(created),
        Err(e) if e.status().is_some_and(|s| s.code == 409) => {}
        Err(e) => return Err(e),
    }
    let existing = call(t("get"), cfg.request_timeout, api.get(name)).await?;
    let previous = existing.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let patch = serde_json::json!({
        "metadata": { "labels": node.metadata.labels, "annotations": node.metadata.annotations },
    });
    call(
        t("patch"),
        cfg.request_timeout,
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await?;
    let st = status(cfg, m, readiness, &previous, now);
    call(
        t("patch status"),
        cfg.request_timeout,
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({ "status": st })),
        ),
    )
    .await
}

/// Posts node status every update period when it changed, when `readiness` changes, and at
/// least every report period.
pub async fn run_status_loop(
    client: Client,
    cfg: Arc<KubeletConfig>,
    machine: MachineInfo,
    clock: Arc<dyn Clock>,
    mut readiness: watch::Receiver<Readiness>,
    cancel: CancellationToken,
) {
    let api: Api<Node> = Api::all(client);
    let name = cfg.node_name.clone();
    let mut last_posted: Option<(NodeStatus, std::time::Instant)> = None;
    loop {
        let current = readiness.borrow_and_update().clone();
        let now = clock.now();
        let t = |verb| Target { verb, kind: "Node", namespace: "", name: &name };
        match call(t("get"), cfg.request_timeout, api.get(&name)).await {
            Ok(node) => {
                let previous =
                    node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                let want = status(&cfg, &machine, &current, &previous, now);
                let api_has = node.status.as_ref().map(without_heartbeats);
                let changed = api_has.as_ref() != Some(&without_heartbeats(&want));
                let stale = last_posted
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() >= cfg.node_status_report_frequency);
                if changed || stale {
                    let patch = serde_json::json!({ "status": want });
                    match call(
                        t("patch status"),
                        cfg.request_timeout,
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)),
                    )
                    .await
                    {
                        Ok(_) => last_posted = Some((want, std::time::Instant::now())),
                        Err(e) => tracing::warn!(error = %e, "posting node status failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the node failed"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.node_status_update_frequency) => {}
            r = readiness.changed() => if r.is_err() { return },
        }
    }
}

/// Keeps the node's Lease renewed (created, owned by the Node, if missing).
pub async fn run_lease_loop(
    client: Client,
    cfg: Arc<KubeletConfig>,
    node_uid: Option<String>,
    clock: Arc<dyn Clock>,
    cancel: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, NODE_LEASE_NAMESPACE);
    let name = cfg.node_name.clone();
    let duration = cfg.node_lease_duration_seconds;
    loop {
        let now = clock.now();
        let t = |verb| Target { verb, kind: "Lease", namespace: NODE_LEASE_NAMESPACE, name: &name };
        let renewal = serde_json::json!({
            "spec": { "holderIdentity": name, "leaseDurationSeconds": duration, "renewTime": MicroTime(now) }
        });
        let renewed = call(
            t("patch"),
            cfg.request_timeout,
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&renewal)),
        )
        .await;
        if let Err(e) = renewed {
            if e.status().is_some_and(|s| s.code == 404) {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(NODE_LEASE_NAMESPACE.into()),
                        owner_references: node_uid.as_ref().map(|uid| {
                            vec![OwnerReference {
                                api_version: "v1".into(),
                                kind: "Node".into(),
                                name: name.clone(),
                                uid: uid.clone(),
                                ..OwnerReference::default()
                            }]
                        }),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.clone()),
                        lease_duration_seconds: Some(duration),
                        renew_time: Some(MicroTime(now)),
                        ..LeaseSpec::default()
                    }),
                };
                if let Err(e) = call(
                    t("create"),
                    cfg.request_timeout,
                    api.create(&PostParams::default(), &lease),
                )
                .await
                {
                    tracing::warn!(error = %e, "creating the node lease failed");
                }
            } else {
                tracing::warn!(error = %e, "renewing the node lease failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(cfg.lease_renew_interval()) => {}
        }
    }
}

/// Waits until the Node has a pod CIDR (node IPAM assigns it), polling every `every`.
pub async fn wait_pod_cidr(
    client: &Client,
    cfg: &KubeletConfig,
    every: Duration,
    cancel: &CancellationToken,
) -> Option<String> {
    let api: Api<Node> = Api::all(client.clone());
    let name = cfg.node_name.as_str();
    loop {
        let t = Target { verb: "get", kind: "Node", namespace: "", name };
        if let Ok(node) = call(t, cfg.request_timeout, api.get(name)).await
            && let Some(cidr) = pod_cidr(&node)
        {
            return Some(cidr);
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn machine() -> MachineInfo {
        MachineInfo {
            cpus: 2,
            memory_bytes: 4 << 30,
            ephemeral_storage_bytes: 10 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn node_reports_capacity_addresses_and_endpoint() {
        let mut cfg = KubeletConfig::new("n1", "10.0.0.5".parse().unwrap(), "/tmp/x".into());
        cfg.port = 12345;
        cfg.node_labels.insert("node-role.kubernetes.io/control-plane".into(), "true".into());
        let node = new_node(&cfg, &machine(), &Readiness::Ready, ts("2026-01-01T00:00:00Z"));
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(
            node.metadata.annotations.as_ref().unwrap()[LOCAL_PATH_DIR_ANNOTATION],
            "/tmp/x/storage"
        );
        let st = node.status.unwrap();
        let cap = st.capacity.unwrap();
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port, 12345);
        assert_eq!(st.addresses.unwrap()[0].address, "10.0.0.5");
        let ready = st.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn transition_times_only_move_on_change() {
        let t0 = ts("2026-01-01T00:00:00Z");
        let t1 = ts("2026-01-01T00:01:00Z");
        let first = conditions(&Readiness::NotReady("waiting for a pod CIDR".into()), &[], t0);
        let ready = first.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_deref()),
            ("False", Some("waiting for a pod CIDR"))
        );
        let second = conditions(&Readiness::Ready, &first, t1);
        for c in &second {
            let want = if c.type_ == "Ready" { t1 } else { t0 };
            assert_eq!(c.last_transition_time.as_ref().unwrap().0, want, "{}", c.type_);
        }
        let down = conditions(&Readiness::ShuttingDown, &second, t1);
        let ready = down.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.message.as_deref()),
            ("False", Some("node is shutting down"))
        );
    }
}
