use super::*;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use serde_json::json;

fn ds(strategy: serde_json::Value, spec: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": { "name": "d", "namespace": "ns",
            "annotations": { TEMPLATE_GENERATION_ANNOTATION: "3" } },
        "spec": {
            "selector": { "matchLabels": { "app": "d" } },
            "updateStrategy": strategy,
            "template": { "metadata": { "labels": { "app": "d" } }, "spec": spec },
        },
    }))
    .unwrap()
}

fn rolling(unavailable: serde_json::Value, surge: serde_json::Value) -> serde_json::Value {
    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": unavailable, "maxSurge": surge } })
}

fn pod(spec: serde_json::Value, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({ "metadata": { "name": "p", "labels": labels }, "spec": spec }))
        .unwrap()
}

#[test]
fn pod_templates_get_daemon_tolerations_and_labels() {
    let d = ds(
        rolling(json!(1), json!(0)),
        json!({
            "containers": [{ "name": "c", "image": "i" }],
            "tolerations": [
                { "key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
                { "key": "node-role.kubernetes.io/master", "effect": "NoSchedule" },
            ],
        }),
    );
    assert_eq!(template_generation(&d), Some(3));
    let t = create_pod_template(&template(&d), template_generation(&d), "h1");
    let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert_eq!(labels[CONTROLLER_REVISION_HASH_LABEL], "h1");
    assert_eq!(labels[POD_TEMPLATE_GENERATION_LABEL], "3");
    assert_eq!(labels["app"], "d");
    let tolerations = t.spec.as_ref().unwrap().tolerations.clone().unwrap();
    // The user's master toleration, plus six daemon tolerations; the not-ready one replaced
    // (no tolerationSeconds any more).
    assert_eq!(tolerations.len(), 7, "{tolerations:?}");
    let not_ready: Vec<_> =
        tolerations.iter().filter(|t| t.key.as_deref() == Some(TAINT_NOT_READY)).collect();
    assert_eq!(not_ready.len(), 1);
    assert_eq!(not_ready[0].toleration_seconds, None);
    for key in [
        TAINT_UNREACHABLE,
        TAINT_DISK_PRESSURE,
        TAINT_MEMORY_PRESSURE,
        TAINT_PID_PRESSURE,
        TAINT_UNSCHEDULABLE,
    ] {
        assert!(tolerations.iter().any(|t| t.key.as_deref() == Some(key)), "{key}");
    }
    assert!(!tolerations.iter().any(|t| t.key.as_deref() == Some(TAINT_NETWORK_UNAVAILABLE)));

    let host = ds(rolling(json!(1), json!(0)), json!({ "hostNetwork": true, "containers": [] }));
    let t = create_pod_template(&template(&host), None, "");
    let tolerations = t.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert_eq!(tolerations.len(), 7);
    assert!(tolerations.iter().any(|t| t.key.as_deref() == Some(TAINT_NETWORK_UNAVAILABLE)));
    let labels = t.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    assert!(!labels.contains_key(POD_TEMPLATE_GENERATION_LABEL));
    assert!(!labels.contains_key(CONTROLLER_REVISION_HASH_LABEL));
}

#[test]
fn node_name_affinity_replaces_required_terms_only() {
    let a = replace_node_name_affinity(None, "n1");
    let v = serde_json::to_value(&a).unwrap();
    assert_eq!(
        v,
        json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n1"] }] }] } } })
    );
    let existing: Affinity = serde_json::from_value(json!({
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["z"] }] },
                { "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["old"] }] },
            ] },
            "preferredDuringSchedulingIgnoredDuringExecution": [{ "weight": 1, "preference": {
                "matchExpressions": [{ "key": "ssd", "operator": "Exists" }] } }],
        },
        "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [{ "topologyKey": "x" }] },
    }))
    .unwrap();
    let a = replace_node_name_affinity(Some(existing), "n2");
    let na = a.node_affinity.as_ref().unwrap();
    let terms = &na
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].match_fields.as_ref().unwrap()[0].values, Some(vec!["n2".to_string()]));
    assert!(terms[0].match_expressions.is_none());
    assert!(na.preferred_during_scheduling_ignored_during_execution.is_some(), "kept");
    assert!(a.pod_anti_affinity.is_some(), "kept");
}

#[test]
fn target_nodes_and_updated_pods() {
    let bound = pod(json!({ "nodeName": "n1", "containers": [] }), json!({}));
    assert_eq!(target_node_name(&bound).as_deref(), Some("n1"));
    let pending = pod(
        json!({ "containers": [], "affinity": serde_json::to_value(replace_node_name_affinity(None, "n2")).unwrap() }),
        json!({}),
    );
    assert_eq!(target_node_name(&pending).as_deref(), Some("n2"));
    let ambiguous = pod(
        json!({ "containers": [], "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["a", "b"] }] }] } } } }),
        json!({}),
    );
    assert_eq!(target_node_name(&ambiguous), None);
    assert_eq!(target_node_name(&pod(json!({ "containers": [] }), json!({}))), None);

    let p = pod(
        json!({}),
        json!({ CONTROLLER_REVISION_HASH_LABEL: "h", POD_TEMPLATE_GENERATION_LABEL: "2" }),
    );
    assert!(is_pod_updated(&p, "h", None));
    assert!(!is_pod_updated(&p, "other", None));
    assert!(is_pod_updated(&p, "other", Some(2)), "template generation still counts");
    assert!(!is_pod_updated(&p, "", Some(3)));
}

#[test]
fn surge_and_unavailability() {
    let d = ds(rolling(json!("25%"), json!(0)), json!({}));
    assert_eq!(unavailable_count(&d, 10), Ok(3), "rounded up");
    assert_eq!(surge_count(&d, 10), Ok(0));
    assert!(!allows_surge(&d));
    let d = ds(rolling(json!(0), json!("10%")), json!({}));
    assert_eq!(surge_count(&d, 5), Ok(1));
    assert!(allows_surge(&d));
    let d = ds(json!({ "type": "OnDelete" }), json!({}));
    assert_eq!(strategy_type(&d), ON_DELETE);
    assert_eq!((surge_count(&d, 5), unavailable_count(&d, 5)), (Ok(0), Ok(0)));
    let d = ds(rolling(json!("x%"), json!(0)), json!({}));
    assert!(unavailable_count(&d, 5).is_err());
}

#[test]
fn revision_data_is_a_template_replacing_patch() {
    let d =
        ds(rolling(json!(1), json!(0)), json!({ "containers": [{ "name": "c", "image": "i:1" }] }));
    let data = revision_data(&d);
    assert_eq!(
        data,
        json!({ "spec": { "template": {
            "$patch": "replace",
            "metadata": { "labels": { "app": "d" } },
            "spec": { "containers": [{ "name": "c", "image": "i:1" }] },
        } } })
    );
    let cr = ControllerRevision { data: Some(RawExtension(data)), ..Default::default() };
    assert!(revision_matches(&d, &cr));
    let other =
        ds(rolling(json!(1), json!(0)), json!({ "containers": [{ "name": "c", "image": "i:2" }] }));
    assert!(!revision_matches(&other, &cr));
}
