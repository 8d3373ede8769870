//! Which nodes a DaemonSet runs on (upstream's NodeShouldRunDaemonPod): the pod the
//! DaemonSet would put there (its template plus the daemon tolerations) must fit the node's
//! name (spec.nodeName), nodeSelector and required node affinity, and tolerate the node's
//! NoSchedule and NoExecute taints. A pod already running may stay while every NoExecute
//! taint is tolerated.

use rudder_client::objects::node_selector_term_matches;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, PodSpec, Taint, Toleration};

use super::util::add_daemon_tolerations;

/// The two answers for one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should be created here if there is none.
    pub should_run: bool,
    /// A daemon pod already here may keep running.
    pub should_continue_running: bool,
}

impl Placement {
    const NO: Placement = Placement { should_run: false, should_continue_running: false };
}

/// The spec of the pod the DaemonSet would run on `node` (upstream's NewPod).
pub fn daemon_pod_spec(ds: &DaemonSet, node: &str) -> PodSpec {
    let mut spec = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    spec.node_name = Some(node.to_owned());
    add_daemon_tolerations(&mut spec);
    spec
}

pub use rudder_client::objects::tolerates;

/// The first taint accepted by `effects` that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effects: &[&str],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// nodeSelector and requiredDuringSchedulingIgnoredDuringExecution against the node.
pub fn required_affinity_matches(
    spec: &PodSpec,
    node: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
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
            sel.node_selector_terms.iter().any(|t| node_selector_term_matches(t, node, labels))
        }
    }
}

/// Whether `ds` should run (and may keep running) a pod on `node`.
pub fn node_should_run_daemon_pod(node: &Node, ds: &DaemonSet) -> Placement {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let wanted_node = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    if !wanted_node.is_empty() && wanted_node != name {
        return Placement::NO;
    }
    let spec = daemon_pod_spec(ds, name);
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if !required_affinity_matches(&spec, name, labels) {
        return Placement::NO;
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    if untolerated_taint(taints, tolerations, &["NoSchedule", "NoExecute"]).is_some() {
        let keeps = untolerated_taint(taints, tolerations, &["NoExecute"]).is_none();
        return Placement { should_run: false, should_continue_running: keeps };
    }
    Placement { should_run: true, should_continue_running: true }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": { "taints": taints },
        }))
        .unwrap()
    }

    fn ds(template_spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": { "name": "d", "namespace": "ns" },
            "spec": {
                "selector": { "matchLabels": { "app": "d" } },
                "template": { "metadata": { "labels": { "app": "d" } }, "spec": template_spec },
            },
        }))
        .unwrap()
    }

    const YES: Placement = Placement { should_run: true, should_continue_running: true };
    const NO: Placement = Placement::NO;

    #[test]
    fn taints_need_tolerations_and_daemon_tolerations_are_implicit() {
        let plain = ds(json!({ "containers": [{ "name": "c", "image": "i" }] }));
        let master = node(
            "m",
            json!({}),
            json!([{ "key": "node-role.kubernetes.io/master", "effect": "NoSchedule" }]),
        );
        assert_eq!(
            node_should_run_daemon_pod(&master, &plain),
            Placement { should_run: false, should_continue_running: true }
        );
        let tolerant = ds(json!({
            "containers": [{ "name": "c", "image": "i" }],
            "tolerations": [{ "key": "node-role.kubernetes.io/master", "effect": "NoSchedule" }],
        }));
        assert_eq!(node_should_run_daemon_pod(&master, &tolerant), YES);

        let evicting =
            node("e", json!({}), json!([{ "key": "x", "value": "y", "effect": "NoExecute" }]));
        assert_eq!(node_should_run_daemon_pod(&evicting, &plain), NO);

        // The implicit daemon tolerations: not-ready/unreachable, pressure, unschedulable.
        for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
            let n = node("n", json!({}), json!([{ "key": key, "effect": "NoExecute" }]));
            assert_eq!(node_should_run_daemon_pod(&n, &plain), YES, "{key}");
        }
        for key in [
            "node.kubernetes.io/disk-pressure",
            "node.kubernetes.io/memory-pressure",
            "node.kubernetes.io/pid-pressure",
            "node.kubernetes.io/unschedulable",
        ] {
            let n = node("n", json!({}), json!([{ "key": key, "effect": "NoSchedule" }]));
            assert_eq!(node_should_run_daemon_pod(&n, &plain), YES, "{key}");
        }
        let net = node(
            "n",
            json!({}),
            json!([{ "key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule" }]),
        );
        assert!(!node_should_run_daemon_pod(&net, &plain).should_run);
        let host_net =
            ds(json!({ "hostNetwork": true, "containers": [{ "name": "c", "image": "i" }] }));
        assert_eq!(node_should_run_daemon_pod(&net, &host_net), YES);
        // PreferNoSchedule never keeps a daemon pod away.
        let prefer = node("p", json!({}), json!([{ "key": "x", "effect": "PreferNoSchedule" }]));
        assert_eq!(node_should_run_daemon_pod(&prefer, &plain), YES);
    }

    #[test]
    fn node_selector_affinity_and_node_name() {
        let selective = ds(json!({
            "nodeSelector": { "disk": "ssd" },
            "containers": [{ "name": "c", "image": "i" }],
        }));
        assert_eq!(
            node_should_run_daemon_pod(&node("a", json!({"disk": "ssd"}), json!([])), &selective),
            YES
        );
        assert_eq!(
            node_should_run_daemon_pod(&node("b", json!({"disk": "hdd"}), json!([])), &selective),
            NO
        );
        assert_eq!(node_should_run_daemon_pod(&node("c", json!({}), json!([])), &selective), NO);

        let affine = ds(json!({
            "containers": [{ "name": "c", "image": "i" }],
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["z1"] }] },
                    { "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["special"] }] },
                ] } } },
        }));
        assert_eq!(
            node_should_run_daemon_pod(&node("a", json!({"zone": "z1"}), json!([])), &affine),
            YES
        );
        assert_eq!(
            node_should_run_daemon_pod(&node("b", json!({"zone": "z2"}), json!([])), &affine),
            NO
        );
        assert_eq!(
            node_should_run_daemon_pod(&node("special", json!({}), json!([])), &affine),
            YES
        );

        let pinned = ds(json!({ "nodeName": "a", "containers": [{ "name": "c", "image": "i" }] }));
        assert_eq!(node_should_run_daemon_pod(&node("a", json!({}), json!([])), &pinned), YES);
        assert_eq!(node_should_run_daemon_pod(&node("b", json!({}), json!([])), &pinned), NO);
    }

    #[test]
    fn operators() {
        use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
        let labels = BTreeMap::from([("n".to_string(), "5".to_string())]);
        let req = |op: &str, values: &[&str]| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: "n".into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        };
        assert!(node_selector_term_matches(&req("Gt", &["4"]), "x", &labels));
        assert!(!node_selector_term_matches(&req("Lt", &["4"]), "x", &labels));
        assert!(node_selector_term_matches(&req("NotIn", &["4"]), "x", &labels));
        assert!(node_selector_term_matches(&req("Exists", &[]), "x", &labels));
        assert!(!node_selector_term_matches(&req("DoesNotExist", &[]), "x", &labels));
        assert!(
            !node_selector_term_matches(&NodeSelectorTerm::default(), "x", &labels),
            "empty term"
        );
    }
}
