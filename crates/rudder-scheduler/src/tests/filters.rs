use serde_json::json;

use super::*;
use crate::filters::*;
use crate::node_info::NodeInfo;

fn node_info(v: serde_json::Value) -> NodeInfo {
    NodeInfo::of(&to_node(v))
}

#[test]
fn unschedulable_nodes_take_only_pods_tolerating_it() {
    let mut n = node("n1", "4", "8Gi");
    n["spec"]["unschedulable"] = json!(true);
    let nd = node_info(n);
    let r = node_unschedulable(&info(pod("p", "", "")), &nd).unwrap_err();
    assert_eq!(r.reasons, ["node(s) were unschedulable"]);
    assert!(r.unresolvable);
    let tolerant = with_spec(
        pod("p", "", ""),
        "tolerations",
        json!([{ "key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule" }]),
    );
    assert!(node_unschedulable(&info(tolerant), &nd).is_ok());
    assert!(
        node_unschedulable(&info(pod("p", "", "")), &node_info(node("n2", "1", "1Gi"))).is_ok()
    );
}

#[test]
fn untolerated_no_schedule_and_no_execute_taints_reject_prefer_only_scores() {
    let nd = node_info(with_taint(node("n1", "4", "8Gi"), "dedicated", "gpu", "NoSchedule"));
    let plain = info(pod("p", "", ""));
    let r = taint_toleration(&plain, &nd).unwrap_err();
    assert_eq!(r.reasons, ["node(s) had untolerated taint {dedicated: gpu}"]);
    let equal = info(with_spec(
        pod("p", "", ""),
        "tolerations",
        json!([{ "key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule" }]),
    ));
    assert!(taint_toleration(&equal, &nd).is_ok());
    let wrong_value = info(with_spec(
        pod("p", "", ""),
        "tolerations",
        json!([{ "key": "dedicated", "value": "cpu" }]),
    ));
    assert!(taint_toleration(&wrong_value, &nd).is_err());
    let exists_all =
        info(with_spec(pod("p", "", ""), "tolerations", json!([{ "operator": "Exists" }])));
    assert!(taint_toleration(&exists_all, &nd).is_ok());

    let no_exec = node_info(with_taint(node("n2", "4", "8Gi"), "k", "", "NoExecute"));
    assert_eq!(
        taint_toleration(&plain, &no_exec).unwrap_err().reasons,
        ["node(s) had untolerated taint {k: }"]
    );
    let prefer = node_info(with_taint(node("n3", "4", "8Gi"), "k", "v", "PreferNoSchedule"));
    assert!(taint_toleration(&plain, &prefer).is_ok());
    assert_eq!(intolerable_prefer_no_schedule(&plain, &prefer), 1);
}

#[test]
fn a_node_that_is_not_ready_carries_the_not_ready_taint() {
    let mut n = node("n1", "4", "8Gi");
    n["status"]["conditions"] = json!([{ "type": "Ready", "status": "False" }]);
    let r = taint_toleration(&info(pod("p", "", "")), &node_info(n.clone())).unwrap_err();
    assert_eq!(r.reasons, ["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]);
    n["status"]["conditions"] = json!([{ "type": "Ready", "status": "Unknown" }]);
    let r = taint_toleration(&info(pod("p", "", "")), &node_info(n.clone())).unwrap_err();
    assert_eq!(r.reasons, ["node(s) had untolerated taint {node.kubernetes.io/unreachable: }"]);
    n["status"]["conditions"] = json!([]);
    let daemon = info(with_spec(
        pod("p", "", ""),
        "tolerations",
        json!([{ "key": "node.kubernetes.io/not-ready", "operator": "Exists" }]),
    ));
    assert!(taint_toleration(&daemon, &node_info(n)).is_ok());
}

#[test]
fn node_selector_and_required_node_affinity() {
    let ssd = node_info(with_labels(node("n1", "4", "8Gi"), &[("disk", "ssd"), ("gen", "5")]));
    let hdd = node_info(with_labels(node("n2", "4", "8Gi"), &[("disk", "hdd")]));
    let p = info(with_spec(pod("p", "", ""), "nodeSelector", json!({ "disk": "ssd" })));
    assert!(node_affinity(&p, &ssd).is_ok());
    let r = node_affinity(&p, &hdd).unwrap_err();
    assert_eq!(r.reasons, ["node(s) didn't match Pod's node affinity/selector"]);
    assert!(r.unresolvable);

    let affinity = |exprs: serde_json::Value| {
        info(with_spec(
            pod("p", "", ""),
            "affinity",
            json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": exprs } } }),
        ))
    };
    let gt = affinity(
        json!([{ "matchExpressions": [{ "key": "gen", "operator": "Gt", "values": ["4"] }] }]),
    );
    assert!(node_affinity(&gt, &ssd).is_ok());
    assert!(node_affinity(&gt, &hdd).is_err());
    // terms are ORed, expressions ANDed
    let either = affinity(json!([
        { "matchExpressions": [{ "key": "disk", "operator": "In", "values": ["nvme"] }] },
        { "matchExpressions": [{ "key": "disk", "operator": "NotIn", "values": ["ssd"] },
                               { "key": "gen", "operator": "DoesNotExist" }] }
    ]));
    assert!(node_affinity(&either, &ssd).is_err());
    assert!(node_affinity(&either, &hdd).is_ok());
    let by_name = affinity(
        json!([{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n2"] }] }]),
    );
    assert!(node_affinity(&by_name, &hdd).is_ok());
    assert!(node_affinity(&by_name, &ssd).is_err());
    assert_eq!(required_node_names(&by_name), Some(vec!["n2".to_owned()]));
    assert_eq!(required_node_names(&either), None);
    let empty_term = affinity(json!([{}]));
    assert!(node_affinity(&empty_term, &ssd).is_err());
}

#[test]
fn host_ports_conflict_on_same_protocol_port_and_overlapping_ip() {
    let with_port = |name: &str, port: i64, ip: Option<&str>, proto: &str| {
        let mut p = pod(name, "", "");
        let mut port = json!({ "containerPort": 80, "hostPort": port, "protocol": proto });
        if let Some(ip) = ip {
            port["hostIP"] = json!(ip);
        }
        p["spec"]["containers"][0]["ports"] = json!([port]);
        p
    };
    let snap = snapshot(
        vec![node("n1", "4", "8Gi")],
        vec![(with_port("a", 8080, Some("10.0.0.1"), "TCP"), "n1")],
    );
    let n1 = snap.node_by_name("n1").unwrap();
    let same = info(with_port("b", 8080, None, "TCP"));
    assert_eq!(
        node_ports(&same, n1).unwrap_err().reasons,
        ["node(s) didn't have free ports for the requested pod ports"]
    );
    assert!(node_ports(&info(with_port("c", 8080, Some("10.0.0.2"), "TCP")), n1).is_ok());
    assert!(node_ports(&info(with_port("d", 8080, None, "UDP")), n1).is_ok());
    assert!(node_ports(&info(with_port("e", 8081, None, "TCP")), n1).is_ok());
}

#[test]
fn resources_fit_counts_requests_pods_and_extended_resources() {
    let mut n = node("n1", "2", "4Gi");
    n["status"]["allocatable"]["pods"] = json!("2");
    n["status"]["allocatable"]["example.com/gpu"] = json!("1");
    let snap = snapshot(vec![n], vec![(pod("a", "1500m", "1Gi"), "n1")]);
    let n1 = snap.node_by_name("n1").unwrap();
    assert!(node_resources_fit(&info(pod("b", "500m", "3Gi")), n1).is_ok());
    let r = node_resources_fit(&info(pod("b", "600m", "3Gi")), n1).unwrap_err();
    assert_eq!(r.reasons, ["Insufficient cpu"]);
    assert!(!r.unresolvable, "preempting the 1500m pod would make room");
    let r = node_resources_fit(&info(pod("b", "3", "8Gi")), n1).unwrap_err();
    assert_eq!(r.reasons, ["Insufficient cpu", "Insufficient memory"]);
    assert!(r.unresolvable, "more than the whole node");
    let mut gpu = pod("g", "", "");
    gpu["spec"]["containers"][0]["resources"]["limits"] = json!({ "example.com/gpu": "2" });
    assert_eq!(
        node_resources_fit(&info(gpu), n1).unwrap_err().reasons,
        ["Insufficient example.com/gpu"]
    );

    let full =
        snapshot(vec![with_labels(node("n1", "2", "4Gi"), &[])], vec![(pod("a", "", ""), "n1")]);
    let mut one_pod = full.node_by_name("n1").unwrap().clone();
    one_pod.facts.allowed_pods = 1;
    let r = node_resources_fit(&info(pod("b", "", "")), &one_pod).unwrap_err();
    assert_eq!(r.reasons, ["Too many pods"]);
}
