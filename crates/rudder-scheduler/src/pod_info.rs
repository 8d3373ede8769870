//! What the scheduler needs of a pod, computed once when the pod is seen (upstream's
//! `PodInfo`): requests, host ports, priority, affinity terms with their namespaces and
//! merged label keys, topology spread constraints.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm, TopologySpreadConstraint};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::selector_matches;

use crate::resources::{PodRequests, Resources, pod_requests};

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Priority classes by name, and the global default if one is marked so.
#[derive(Clone, Debug, Default)]
pub struct PriorityClasses {
    classes: HashMap<String, (i32, Option<String>)>,
}

impl PriorityClasses {
    pub fn upsert(&mut self, pc: &PriorityClass) {
        let name = pc.metadata.name.clone().unwrap_or_default();
        let default_marker =
            if pc.global_default == Some(true) { Some(name.clone()) } else { None };
        self.classes.insert(name, (pc.value, pc.preemption_policy.clone()));
        if let Some(d) = default_marker {
            self.classes.insert(GLOBAL_DEFAULT_KEY.to_owned(), self.classes[&d].clone());
        }
    }

    pub fn remove(&mut self, pc: &PriorityClass) {
        if let Some(name) = &pc.metadata.name {
            self.classes.remove(name);
            if pc.global_default == Some(true) {
                self.classes.remove(GLOBAL_DEFAULT_KEY);
            }
        }
    }

    /// `(priority, preemptionPolicy)` of a class; the built-in system classes are known
    /// even when not stored.
    pub fn get(&self, name: &str) -> Option<(i32, Option<String>)> {
        if let Some(c) = self.classes.get(name) {
            return Some(c.clone());
        }
        match name {
            "system-node-critical" => Some((2_000_001_000, None)),
            "system-cluster-critical" => Some((2_000_000_000, None)),
            _ => None,
        }
    }

    fn global_default(&self) -> Option<(i32, Option<String>)> {
        self.classes.get(GLOBAL_DEFAULT_KEY).cloned()
    }
}

/// A key no class can have (names are DNS subdomains).
const GLOBAL_DEFAULT_KEY: &str = " global default";

/// Labels of every namespace (for affinity terms with a namespaceSelector).
#[derive(Clone, Debug, Default)]
pub struct NamespaceLabels {
    pub labels: HashMap<String, BTreeMap<String, String>>,
}

impl NamespaceLabels {
    pub fn get(&self, namespace: &str) -> &BTreeMap<String, String> {
        self.labels.get(namespace).unwrap_or(&NO_LABELS)
    }
}

/// `hostIP`/`protocol`/`hostPort` a pod takes on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream's rule: same protocol and port, and the same IP or either is 0.0.0.0.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// One pod (anti-)affinity term, ready to match pods.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    /// Namespaces named by the term (the pod's own when neither names nor a selector).
    pub namespaces: Vec<String>,
    pub namespace_selector: Option<LabelSelector>,
    /// `None`: the term selects no pod (upstream's nil selector).
    pub selector: Option<LabelSelector>,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn new(owner: &Pod, term: &PodAffinityTerm, weight: i32) -> AffinityTerm {
        let own_ns = owner.metadata.namespace.clone().unwrap_or_default();
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(own_ns);
        }
        let labels = owner.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        let selector = term.label_selector.clone().map(|mut s| {
            let mut extra = Vec::new();
            for (keys, op) in [(&term.match_label_keys, "In"), (&term.mismatch_label_keys, "NotIn")]
            {
                for key in keys.iter().flatten() {
                    if let Some(v) = labels.get(key) {
                        extra.push(LabelSelectorRequirement {
                            key: key.clone(),
                            operator: op.into(),
                            values: Some(vec![v.clone()]),
                        });
                    }
                }
            }
            if !extra.is_empty() {
                s.match_expressions.get_or_insert_with(Vec::new).extend(extra);
            }
            s
        });
        AffinityTerm {
            namespaces,
            namespace_selector: term.namespace_selector.clone(),
            selector,
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is one of the pods this term selects.
    pub fn matches(&self, pod: &PodInfo, namespaces: &NamespaceLabels) -> bool {
        let Some(selector) = &self.selector else { return false };
        let ns_ok = self.namespaces.iter().any(|n| **n == *pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, namespaces.get(&pod.namespace)));
        ns_ok && selector_matches(selector, pod.labels())
    }
}

/// A topology spread constraint with its selector merged with matchLabelKeys.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// `None`: selects no pod.
    pub selector: Option<LabelSelector>,
    pub min_domains: i32,
    /// nodeAffinityPolicy Honor (the default): only nodes matching the pod's node affinity
    /// count.
    pub honor_node_affinity: bool,
    /// nodeTaintsPolicy Honor (default Ignore): only nodes whose taints the pod tolerates.
    pub honor_node_taints: bool,
}

impl SpreadConstraint {
    fn new(pod: &Pod, c: &TopologySpreadConstraint) -> SpreadConstraint {
        let labels = pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS);
        let selector = c.label_selector.clone().map(|mut s| {
            for key in c.match_label_keys.iter().flatten() {
                if let Some(v) = labels.get(key) {
                    s.match_expressions.get_or_insert_with(Vec::new).push(
                        LabelSelectorRequirement {
                            key: key.clone(),
                            operator: "In".into(),
                            values: Some(vec![v.clone()]),
                        },
                    );
                }
            }
            s
        });
        SpreadConstraint {
            max_skew: c.max_skew.max(1),
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.unwrap_or(1).max(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether `pod` counts for this constraint of a pod in `namespace`.
    pub fn counts(&self, pod: &PodInfo, namespace: &str) -> bool {
        !pod.terminating
            && *pod.namespace == *namespace
            && self.selector.as_ref().is_some_and(|s| selector_matches(s, pod.labels()))
    }
}

/// A pod as the scheduler sees it.
#[derive(Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub preempt_never: bool,
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
    pub host_ports: Vec<HostPort>,
    /// The first owner reference's uid (what upstream's spreading groups pods by).
    pub owner_uid: Option<Arc<str>>,
    pub terminating: bool,
    /// When the pod started (or was created): the later, the less important as a victim.
    pub start_time: Option<Timestamp>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    pub hard_spread: Vec<SpreadConstraint>,
    pub soft_spread: Vec<SpreadConstraint>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>, classes: &PriorityClasses) -> PodInfo {
        let meta = &pod.metadata;
        let no_spec = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&no_spec);
        let uid: Arc<str> = match &meta.uid {
            Some(u) if !u.is_empty() => Arc::from(u.as_str()),
            _ => Arc::from(
                format!(
                    "{}/{}",
                    meta.namespace.as_deref().unwrap_or(""),
                    meta.name.as_deref().unwrap_or("")
                )
                .as_str(),
            ),
        };
        let class = spec.priority_class_name.as_deref().filter(|n| !n.is_empty());
        let resolved = match class {
            Some(name) => classes.get(name),
            None => classes.global_default(),
        };
        let priority = spec.priority.or(resolved.as_ref().map(|c| c.0)).unwrap_or(0);
        let policy = spec.preemption_policy.clone().or(resolved.and_then(|c| c.1));
        let PodRequests { requests, non_zero_milli_cpu, non_zero_memory } = pod_requests(spec);
        let host_network = spec.host_network == Some(true);
        let mut host_ports = Vec::new();
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        for c in spec.containers.iter().chain(sidecars) {
            for p in c.ports.iter().flatten() {
                let port = match p.host_port {
                    Some(hp) if hp > 0 => hp,
                    _ if host_network && p.container_port > 0 => p.container_port,
                    _ => continue,
                };
                host_ports.push(HostPort {
                    ip: p.host_ip.clone().filter(|i| !i.is_empty()).unwrap_or("0.0.0.0".into()),
                    protocol: p.protocol.clone().unwrap_or("TCP".into()),
                    port,
                });
            }
        }
        let affinity = spec.affinity.as_ref();
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms.into_iter().flatten().map(|t| AffinityTerm::new(&pod, t, 1)).collect()
        };
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|w| AffinityTerm::new(&pod, &w.pod_affinity_term, w.weight))
                    .collect::<Vec<_>>()
            };
        let mut hard_spread = Vec::new();
        let mut soft_spread = Vec::new();
        for c in spec.topology_spread_constraints.iter().flatten() {
            let parsed = SpreadConstraint::new(&pod, c);
            if c.when_unsatisfiable == "ScheduleAnyway" {
                soft_spread.push(parsed);
            } else {
                hard_spread.push(parsed);
            }
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(meta.creation_timestamp.as_ref())
            .map(|t| t.0);
        PodInfo {
            uid,
            namespace: Arc::from(meta.namespace.as_deref().unwrap_or("")),
            name: Arc::from(meta.name.as_deref().unwrap_or("")),
            priority,
            preempt_never: policy.as_deref() == Some("Never"),
            requests,
            non_zero_milli_cpu,
            non_zero_memory,
            host_ports,
            owner_uid: meta
                .owner_references
                .as_ref()
                .and_then(|o| o.first())
                .map(|o| Arc::from(o.uid.as_str())),
            terminating: meta.deletion_timestamp.is_some(),
            start_time,
            required_affinity: required(
                pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            required_anti_affinity: required(
                paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_affinity: preferred(
                pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            preferred_anti_affinity: preferred(
                paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref()),
            ),
            hard_spread,
            soft_spread,
            pod,
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.pod.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }

    pub fn node_name(&self) -> Option<&str> {
        self.spec().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
    }

    /// Whether the pod has any pod affinity or anti-affinity term (upstream's
    /// PodsWithAffinity).
    pub fn has_affinity(&self) -> bool {
        !(self.required_affinity.is_empty()
            && self.required_anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty())
    }

    /// Whether this pod's required affinity terms all select `pod`.
    pub fn affinity_terms_match(&self, pod: &PodInfo, ns: &NamespaceLabels) -> bool {
        self.required_affinity.iter().all(|t| t.matches(pod, ns))
    }

    /// `ns/name`, for messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// "More important" as upstream's preemption orders victims: higher priority, then
    /// started earlier.
    pub fn more_important_than(&self, other: &PodInfo) -> bool {
        if self.priority != other.priority {
            return self.priority > other.priority;
        }
        match (self.start_time, other.start_time) {
            (Some(a), Some(b)) => a < b,
            (Some(_), None) => true,
            _ => false,
        }
    }
}
