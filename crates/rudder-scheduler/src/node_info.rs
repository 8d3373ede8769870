//! One node and the pods on it, with the sums the filters read kept up to date as pods come
//! and go (upstream's `NodeInfo`).

use crate::FastMap as HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::pod_info::{HostPort, LABEL_HOSTNAME, LABEL_ZONE, PodInfo};
use crate::resources::{Resources, allowed_pods};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// The parts of a Node the scheduler decides on; two nodes with equal `NodeFacts` schedule
/// the same (so a heartbeat that changes nothing here wakes no pod).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub labels: BTreeMap<String, String>,
    /// The node's taints plus the ones its Ready condition implies (`not-ready` or
    /// `unreachable` with NoSchedule, as upstream's node lifecycle controller would add).
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub allowed_pods: i64,
}

impl NodeFacts {
    pub fn of(node: &Node) -> NodeFacts {
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let mut taints: Vec<Taint> = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let implied = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = implied
            && !taints.iter().any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_owned(),
                effect: "NoSchedule".to_owned(),
                ..Taint::default()
            });
        }
        let allocatable = status.and_then(|s| s.allocatable.as_ref());
        NodeFacts {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.and_then(|s| s.unschedulable) == Some(true),
            allocatable: allocatable.map(Resources::from_list).unwrap_or_default(),
            allowed_pods: allowed_pods(allocatable),
        }
    }
}

/// A node in the snapshot.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: Arc<str>,
    pub facts: NodeFacts,
    /// The `topology.kubernetes.io/zone` label (default spreading reads it per pod).
    pub zone: Option<Arc<str>>,
    /// The `kubernetes.io/hostname` label.
    pub hostname: Option<Arc<str>>,
    /// Whether any taint has effect PreferNoSchedule (scoring skips the rest).
    pub has_prefer_no_schedule: bool,
    pub pods: Vec<Arc<PodInfo>>,
    pub requested: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub used_ports: Vec<HostPort>,
    /// Pods per owner uid (default spreading).
    pub owner_counts: HashMap<Arc<str>, u32>,
    pub pods_with_affinity: u32,
    pub pods_with_required_anti_affinity: u32,
}

impl NodeInfo {
    pub fn new(name: &str, facts: NodeFacts) -> NodeInfo {
        NodeInfo {
            name: Arc::from(name),
            has_prefer_no_schedule: facts.taints.iter().any(|t| t.effect == "PreferNoSchedule"),
            zone: facts.labels.get(LABEL_ZONE).map(|z| Arc::from(z.as_str())),
            hostname: facts.labels.get(LABEL_HOSTNAME).map(|z| Arc::from(z.as_str())),
            facts,
            pods: Vec::new(),
            requested: Resources::default(),
            non_zero_milli_cpu: 0,
            non_zero_memory: 0,
            used_ports: Vec::new(),
            owner_counts: HashMap::default(),
            pods_with_affinity: 0,
            pods_with_required_anti_affinity: 0,
        }
    }

    /// A node built from a Node object.
    pub fn of(node: &Node) -> NodeInfo {
        NodeInfo::new(node.metadata.name.as_deref().unwrap_or(""), NodeFacts::of(node))
    }

    pub fn set_facts(&mut self, facts: NodeFacts) {
        self.has_prefer_no_schedule = facts.taints.iter().any(|t| t.effect == "PreferNoSchedule");
        self.zone = facts.labels.get(LABEL_ZONE).map(|z| Arc::from(z.as_str()));
        self.hostname = facts.labels.get(LABEL_HOSTNAME).map(|z| Arc::from(z.as_str()));
        self.facts = facts;
    }

    /// One label's value (the zone and hostname labels without a map lookup).
    pub fn label(&self, key: &str) -> Option<&str> {
        match key {
            LABEL_ZONE => self.zone.as_deref(),
            LABEL_HOSTNAME => self.hostname.as_deref(),
            _ => self.facts.labels.get(key).map(String::as_str),
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        if self.facts.labels.is_empty() { &NO_LABELS } else { &self.facts.labels }
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_milli_cpu += pod.non_zero_milli_cpu;
        self.non_zero_memory += pod.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner_uid {
            *self.owner_counts.entry(owner.clone()).or_insert(0) += 1;
        }
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`, returning it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| &*p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_milli_cpu -= pod.non_zero_milli_cpu;
        self.non_zero_memory -= pod.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(j);
            }
        }
        if let Some(owner) = &pod.owner_uid
            && let Some(n) = self.owner_counts.get_mut(owner)
        {
            *n -= 1;
            if *n == 0 {
                self.owner_counts.remove(owner);
            }
        }
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        Some(pod)
    }

    /// Pods of `owner` on this node.
    pub fn owner_count(&self, owner: &str) -> u32 {
        self.owner_counts.get(owner).copied().unwrap_or(0)
    }
}
