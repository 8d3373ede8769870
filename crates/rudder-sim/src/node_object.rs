//! The Node objects and Leases of simulated nodes, as a kubelet would register and report
//! them (pure logic: building objects and comparing them with what the API holds).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use crate::cidr::Ipv4Cidr;
use crate::config::{SIM_NODE_ANNOTATION, SIM_NODE_LABEL, SimConfig};

/// Where node Leases live.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet port a node advertises (nothing listens on a simulated node).
pub const KUBELET_PORT: i32 = 10250;

/// What identifies one simulated node.
#[derive(Clone, Debug)]
pub(crate) struct NodeIdentity {
    pub index: usize,
    pub name: String,
    pub internal_ip: Ipv4Addr,
}

impl NodeIdentity {
    pub fn new(cfg: &SimConfig, index: usize, name: String) -> Self {
        let internal_ip = cfg.node_ip_cidr.nth(index as u64 + 1).unwrap_or(Ipv4Addr::UNSPECIFIED);
        NodeIdentity { index, name, internal_ip }
    }

    /// The per-node subnet carved from the cluster CIDR when the node has no podCIDR.
    pub fn fallback_pod_cidr(&self, cfg: &SimConfig) -> Ipv4Cidr {
        cfg.cluster_cidr.subnet(cfg.node_cidr_mask_size, self.index as u64)
    }
}

/// The node's labels: hostname, os, arch (and their beta twins, which upstream's kubelet
/// still sets), the simulation marker, zone/region, then the configured labels.
pub(crate) fn labels(cfg: &SimConfig, id: &NodeIdentity) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        l.insert(k.to_owned(), v.to_owned());
    };
    put("kubernetes.io/hostname", &id.name);
    put("kubernetes.io/os", "linux");
    put("kubernetes.io/arch", "amd64");
    put("beta.kubernetes.io/os", "linux");
    put("beta.kubernetes.io/arch", "amd64");
    put(SIM_NODE_LABEL.0, SIM_NODE_LABEL.1);
    if !cfg.zones.is_empty() {
        put("topology.kubernetes.io/zone", &cfg.zones[id.index % cfg.zones.len()]);
    }
    if let Some(region) = &cfg.region {
        put("topology.kubernetes.io/region", region);
    }
    for (k, v) in &cfg.labels {
        put(k, v);
    }
    l
}

pub(crate) fn annotations() -> BTreeMap<String, String> {
    BTreeMap::from([(SIM_NODE_ANNOTATION.0.to_owned(), SIM_NODE_ANNOTATION.1.to_owned())])
}

/// The Node a kubelet registers: metadata, taints, and a full status.
pub(crate) fn new_node(cfg: &SimConfig, id: &NodeIdentity, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(labels(cfg, id)),
            annotations: Some(annotations()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: (!cfg.taints.is_empty()).then(|| cfg.taints.clone()),
            ..NodeSpec::default()
        }),
        status: Some(status(cfg, id, &[], now)),
    }
}

/// One condition as the API holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ObservedCondition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub last_transition_time: Option<Timestamp>,
}

/// The conditions a healthy kubelet reports: (type, status, reason, message), in upstream's
/// order.
const CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
];

fn quantities(map: &BTreeMap<String, String>) -> BTreeMap<String, Quantity> {
    map.iter().map(|(k, v)| (k.clone(), Quantity(v.clone()))).collect()
}

/// 64-bit FNV-1a, for stable fake machine ids.
fn fnv(data: &str, seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in data.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fake_id(name: &str, seed: u64) -> String {
    format!("{:016x}{:016x}", fnv(name, seed), fnv(name, seed.wrapping_add(1)))
}

fn uuid_form(hex: &str) -> String {
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// The status a healthy kubelet posts at `now`. A condition keeps the lastTransitionTime the
/// API already has for it when its status does not change (`observed`).
pub(crate) fn status(
    cfg: &SimConfig,
    id: &NodeIdentity,
    observed: &[ObservedCondition],
    now: Timestamp,
) -> NodeStatus {
    let conditions = CONDITIONS
        .iter()
        .map(|(type_, status, reason, message)| {
            let since = observed
                .iter()
                .find(|o| o.type_ == *type_ && o.status == *status)
                .and_then(|o| o.last_transition_time)
                .unwrap_or(now);
            NodeCondition {
                type_: (*type_).into(),
                status: (*status).into(),
                reason: Some((*reason).into()),
                message: Some((*message).into()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(Time(since)),
            }
        })
        .collect();
    let machine = fake_id(&id.name, 1);
    NodeStatus {
        capacity: Some(quantities(&cfg.capacity)),
        allocatable: Some(quantities(&cfg.effective_allocatable())),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: id.internal_ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: id.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: KUBELET_PORT }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: machine.clone(),
            system_uuid: uuid_form(&machine),
            boot_id: uuid_form(&fake_id(&id.name, 7)),
            kernel_version: "rudder-sim".into(),
            os_image: "rudder simulated node".into(),
            container_runtime_version: "sim://0.1.0".into(),
            kubelet_version: cfg.kubelet_version.clone(),
            kube_proxy_version: String::new(),
            operating_system: "linux".into(),
            architecture: "amd64".into(),
            swap: None,
        }),
        ..NodeStatus::default()
    }
}

/// What the simulator needs to know of a Node as the API holds it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ObservedNode {
    pub uid: Option<String>,
    pub pod_cidr: Option<Ipv4Cidr>,
    pub conditions: Vec<ObservedCondition>,
    /// The API's status is what a healthy node of this configuration reports.
    pub healthy: bool,
}

fn same_quantities(
    want: &BTreeMap<String, String>,
    got: Option<&BTreeMap<String, Quantity>>,
) -> bool {
    let Some(got) = got else { return want.is_empty() };
    want.len() == got.len()
        && want.iter().all(|(k, v)| {
            got.get(k).is_some_and(|q| {
            q.0 == *v
                || matches!(
                    (rudder_api::quantity::parse_milli(&q.0), rudder_api::quantity::parse_milli(v)),
                    (Ok(a), Ok(b)) if a == b
                )
        })
        })
}

pub(crate) fn observe(cfg: &SimConfig, id: &NodeIdentity, node: &Node) -> ObservedNode {
    let status = node.status.as_ref();
    let conditions: Vec<ObservedCondition> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| ObservedCondition {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            last_transition_time: c.last_transition_time.as_ref().map(|t| t.0),
        })
        .collect();
    let conditions_ok = CONDITIONS.iter().all(|(type_, st, reason, _)| {
        conditions
            .iter()
            .any(|c| c.type_ == *type_ && c.status == *st && c.reason.as_deref() == Some(*reason))
    });
    let addresses_ok = status.and_then(|s| s.addresses.as_ref()).is_some_and(|a| {
        a.iter().any(|a| a.type_ == "InternalIP" && a.address == id.internal_ip.to_string())
    });
    let info_ok = status
        .and_then(|s| s.node_info.as_ref())
        .is_some_and(|i| i.kubelet_version == cfg.kubelet_version);
    let healthy = conditions_ok
        && addresses_ok
        && info_ok
        && same_quantities(&cfg.capacity, status.and_then(|s| s.capacity.as_ref()))
        && same_quantities(
            &cfg.effective_allocatable(),
            status.and_then(|s| s.allocatable.as_ref()),
        );
    let pod_cidr = node
        .spec
        .as_ref()
        .and_then(|s| {
            s.pod_cidr.as_deref().or_else(|| s.pod_cidrs.as_ref()?.first().map(String::as_str))
        })
        .and_then(|c| c.parse().ok());
    ObservedNode { uid: node.metadata.uid.clone(), pod_cidr, conditions, healthy }
}

/// Labels and annotations of ours that `node` lacks or has with another value (what a
/// restarted simulator patches onto an existing Node; it removes nothing).
pub(crate) fn missing_metadata(
    cfg: &SimConfig,
    id: &NodeIdentity,
    node: &Node,
) -> Option<serde_json::Value> {
    let want_labels = labels(cfg, id);
    let want_annotations = annotations();
    let has = |have: &Option<BTreeMap<String, String>>, k: &String, v: &String| {
        have.as_ref().and_then(|m| m.get(k)) == Some(v)
    };
    let labels: serde_json::Map<String, serde_json::Value> = want_labels
        .iter()
        .filter(|(k, v)| !has(&node.metadata.labels, k, v))
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let annotations: serde_json::Map<String, serde_json::Value> = want_annotations
        .iter()
        .filter(|(k, v)| !has(&node.metadata.annotations, k, v))
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    if labels.is_empty() && annotations.is_empty() {
        return None;
    }
    Some(serde_json::json!({ "metadata": { "labels": labels, "annotations": annotations } }))
}

/// The node's Lease as upstream's node lease controller writes it: holder = node name, owned
/// by the Node (so it goes with it).
pub(crate) fn lease(
    name: &str,
    node_uid: Option<&str>,
    duration_seconds: i32,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NODE_LEASE_NAMESPACE.into()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: name.to_owned(),
                    uid: uid.to_owned(),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(name.to_owned()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// The merge patch that renews a Lease.
pub(crate) fn lease_renewal(
    name: &str,
    duration_seconds: i32,
    now: Timestamp,
) -> serde_json::Value {
    serde_json::json!({
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": MicroTime(now),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn registers_like_a_kubelet() {
        let mut cfg = SimConfig::with_count(3);
        cfg.zones = vec!["a".into(), "b".into()];
        cfg.add_label("team=x").unwrap();
        cfg.add_taint("dedicated=sim:NoSchedule").unwrap();
        let id = NodeIdentity::new(&cfg, 2, "sim-node-2".into());
        assert_eq!(id.internal_ip, Ipv4Addr::new(198, 18, 0, 3));
        assert_eq!(id.fallback_pod_cidr(&cfg).to_string(), "10.42.2.0/24");
        let node = new_node(&cfg, &id, ts("2025-01-01T00:00:00Z"));
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "sim-node-2");
        assert_eq!(labels["topology.kubernetes.io/zone"], "a");
        assert_eq!(labels["type"], "sim");
        assert_eq!(labels["team"], "x");
        assert_eq!(node.spec.as_ref().unwrap().taints.as_ref().unwrap()[0].key, "dedicated");
        let st = node.status.as_ref().unwrap();
        assert_eq!(st.capacity.as_ref().unwrap()["pods"].0, "110");
        let ready = st.conditions.as_ref().unwrap().iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        // What we wrote reads back as healthy; a Ready=Unknown does not.
        let observed = observe(&cfg, &id, &node);
        assert!(observed.healthy);
        assert!(missing_metadata(&cfg, &id, &node).is_none());
        let mut unknown = node.clone();
        for c in unknown.status.as_mut().unwrap().conditions.as_mut().unwrap() {
            if c.type_ == "Ready" {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
            }
        }
        let observed = observe(&cfg, &id, &unknown);
        assert!(!observed.healthy);
        // Re-posting: Ready transitions now, the unchanged conditions keep their time.
        let later = ts("2025-01-01T01:00:00Z");
        let again = status(&cfg, &id, &observed.conditions, later);
        for c in again.conditions.unwrap() {
            let want = if c.type_ == "Ready" { later } else { ts("2025-01-01T00:00:00Z") };
            assert_eq!(c.last_transition_time.unwrap().0, want, "{}", c.type_);
            assert_eq!(c.last_heartbeat_time.unwrap().0, later);
        }
    }

    #[test]
    fn reads_pod_cidr_and_equivalent_quantities() {
        let cfg = SimConfig::with_count(1);
        let id = NodeIdentity::new(&cfg, 0, "sim-node-0".into());
        let mut node = new_node(&cfg, &id, ts("2025-01-01T00:00:00Z"));
        node.spec.as_mut().unwrap().pod_cidr = Some("10.9.8.0/24".into());
        let caps = node.status.as_mut().unwrap().capacity.as_mut().unwrap();
        caps.insert("cpu".into(), Quantity("4000m".into()));
        let observed = observe(&cfg, &id, &node);
        assert_eq!(observed.pod_cidr.unwrap().to_string(), "10.9.8.0/24");
        assert!(observed.healthy, "4000m is 4");
        node.metadata.labels.as_mut().unwrap().remove("type");
        let patch = missing_metadata(&cfg, &id, &node).unwrap();
        assert_eq!(patch["metadata"]["labels"], serde_json::json!({"type": "sim"}));
    }

    #[test]
    fn lease_is_owned_by_its_node() {
        let l = lease("n", Some("uid-1"), 40, ts("2025-01-01T00:00:00Z"));
        assert_eq!(l.metadata.namespace.as_deref(), Some(NODE_LEASE_NAMESPACE));
        let owner = &l.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("Node", "uid-1", None)
        );
        let spec = l.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("n"));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let p = lease_renewal("n", 40, ts("2025-01-01T00:00:00.5Z"));
        assert_eq!(p["spec"]["renewTime"], "2025-01-01T00:00:00.500000Z");
    }
}
