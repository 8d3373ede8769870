//! Upstream's per-node filter plugins that need nothing but the pod and the node: pure
//! functions returning the rejection (with upstream's reason strings) when the pod cannot go
//! there.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::node_info::{NodeInfo, TAINT_UNSCHEDULABLE};
use crate::pod_info::PodInfo;

/// The filter (and score) plugins, in upstream's filter order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Plugin {
    NodeUnschedulable,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    PodTopologySpread,
    InterPodAffinity,
    VolumeBinding,
}

impl Plugin {
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Why a node was filtered out. `unresolvable` (upstream's UnschedulableAndUnresolvable)
/// means preempting pods on the node would not help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub plugin: Plugin,
    pub unresolvable: bool,
    pub reasons: Vec<Cow<'static, str>>,
}

impl Rejection {
    pub fn new(plugin: Plugin, unresolvable: bool, reason: impl Into<Cow<'static, str>>) -> Self {
        Rejection { plugin, unresolvable, reasons: vec![reason.into()] }
    }
}

pub const REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const REASON_NODE_AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const REASON_NODE_PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
pub const REASON_TOO_MANY_PODS: &str = "Too many pods";

pub use rudder_client::objects::tolerates;

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.spec().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

/// NodeUnschedulable: `spec.unschedulable` nodes take only pods tolerating the
/// `node.kubernetes.io/unschedulable:NoSchedule` taint.
pub fn node_unschedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if !node.facts.unschedulable {
        return Ok(());
    }
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.to_owned(),
        effect: "NoSchedule".to_owned(),
        ..Taint::default()
    };
    if tolerated(pod_tolerations(pod), &taint) {
        return Ok(());
    }
    Err(Rejection::new(Plugin::NodeUnschedulable, true, REASON_UNSCHEDULABLE))
}

/// TaintToleration: every NoSchedule and NoExecute taint must be tolerated; the first one
/// that is not names the rejection.
pub fn taint_toleration(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let tolerations = pod_tolerations(pod);
    for taint in &node.facts.taints {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerated(tolerations, taint)
        {
            return Err(Rejection::new(
                Plugin::TaintToleration,
                true,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    taint.key,
                    taint.value.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

/// How many PreferNoSchedule taints of the node the pod does not tolerate (the
/// TaintToleration score's raw count).
pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    let tolerations: Vec<&Toleration> = pod_tolerations(pod)
        .iter()
        .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
        .collect();
    node.facts
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

pub use rudder_client::objects::node_selector_term_matches;

/// The pod's nodeSelector and required node affinity, against a node's name and labels.
pub fn required_node_affinity_matches(
    pod: &PodInfo,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let Some(spec) = pod.spec() else { return true };
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        None => true,
        Some(sel) => {
            sel.node_selector_terms.iter().any(|t| node_selector_term_matches(t, node_name, labels))
        }
    }
}

/// NodeAffinity (filter): nodeSelector and requiredDuringScheduling terms.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    if required_node_affinity_matches(pod, &node.name, node.labels()) {
        Ok(())
    } else {
        Err(Rejection::new(Plugin::NodeAffinity, true, REASON_NODE_AFFINITY))
    }
}

/// The node names the pod's required affinity limits it to, when every term pins
/// `metadata.name In [...]` (how DaemonSet pods are targeted); `None` means any node.
pub fn required_node_names(pod: &PodInfo) -> Option<Vec<String>> {
    let terms = &pod
        .spec()?
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut names = Vec::new();
    for term in terms {
        let pinned = term.match_fields.iter().flatten().find(|f| {
            f.key == "metadata.name"
                && f.operator == "In"
                && f.values.as_ref().is_some_and(|v| !v.is_empty())
        })?;
        names.extend(pinned.values.iter().flatten().cloned());
    }
    if terms.is_empty() {
        return None;
    }
    names.sort();
    names.dedup();
    Some(names)
}

/// NodePorts: none of the pod's host ports may be taken on the node.
pub fn node_ports(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let conflict =
        pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
    if conflict { Err(Rejection::new(Plugin::NodePorts, false, REASON_NODE_PORTS)) } else { Ok(()) }
}

/// NodeResourcesFit (filter): room for one more pod and for every requested resource. A
/// request larger than the whole node is unresolvable (preemption cannot help).
pub fn node_resources_fit(pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
    let mut reasons: Vec<Cow<'static, str>> = Vec::new();
    let mut unresolvable = false;
    if node.pods.len() as i64 + 1 > node.facts.allowed_pods {
        reasons.push(REASON_TOO_MANY_PODS.into());
    }
    let want = &pod.requests;
    if !want.is_empty() {
        let alloc = &node.facts.allocatable;
        let used = &node.requested;
        let mut check = |want: i64, alloc: i64, used: i64, reason: Cow<'static, str>| {
            if want > 0 && want > alloc - used {
                reasons.push(reason);
                unresolvable |= want > alloc;
            }
        };
        check(want.milli_cpu, alloc.milli_cpu, used.milli_cpu, "Insufficient cpu".into());
        check(want.memory, alloc.memory, used.memory, "Insufficient memory".into());
        check(
            want.ephemeral_storage,
            alloc.ephemeral_storage,
            used.ephemeral_storage,
            "Insufficient ephemeral-storage".into(),
        );
        for (name, amount) in &want.scalars {
            check(
                *amount,
                alloc.scalar(name),
                used.scalar(name),
                format!("Insufficient {name}").into(),
            );
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection { plugin: Plugin::NodeResourcesFit, unresolvable, reasons })
    }
}
