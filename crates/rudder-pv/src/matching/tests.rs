use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{Value, json};

use super::*;

pub fn pv(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> Value {
    let mut v = json!({
        "metadata": { "name": name, "uid": format!("uid-{name}"), "resourceVersion": "1" },
        "spec": { "capacity": { "storage": size }, "accessModes": modes },
        "status": { "phase": "Available" }
    });
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    v
}

pub fn pvc(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> Value {
    let mut v = json!({
        "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                      "resourceVersion": "1" },
        "spec": { "resources": { "requests": { "storage": size } }, "accessModes": modes }
    });
    if let Some(c) = class {
        v["spec"]["storageClassName"] = json!(c);
    }
    v
}

pub fn to_pv(v: Value) -> Arc<PersistentVolume> {
    Arc::new(serde_json::from_value(v).expect("pv JSON"))
}

pub fn to_pvc(v: Value) -> PersistentVolumeClaim {
    serde_json::from_value(v).expect("pvc JSON")
}

fn name(pv: Option<&Arc<PersistentVolume>>) -> Option<&str> {
    pv.and_then(|p| p.metadata.name.as_deref())
}

#[test]
fn smallest_fit_with_class_and_modes() {
    let vols = vec![
        to_pv(pv("big", "10Gi", &["ReadWriteOnce"], None)),
        to_pv(pv("small", "1Gi", &["ReadWriteOnce"], None)),
        to_pv(pv("tiny", "500Mi", &["ReadWriteOnce"], None)),
        to_pv(pv("slow", "1Gi", &["ReadWriteOnce"], Some("slow"))),
        to_pv(pv("rox", "1Gi", &["ReadOnlyMany"], None)),
    ];
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), Some("small"));
    // An empty class only matches volumes without a class, and the other way round.
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("slow")));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), Some("slow"));
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("")));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), Some("small"));
    // Every requested mode must be offered.
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce", "ReadOnlyMany"], None));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), None);
    // Too big for all.
    let claim = to_pvc(pvc("c", "20Gi", &["ReadWriteOnce"], None));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), None);
}

#[test]
fn fewer_modes_first_then_phase_selector_and_volume_mode() {
    let mut labelled = pv("labelled", "5Gi", &["ReadWriteOnce"], None);
    labelled["metadata"]["labels"] = json!({ "type": "hostpath" });
    let mut pending = pv("pending", "1Gi", &["ReadWriteOnce"], None);
    pending["status"]["phase"] = json!("Pending");
    let mut block = pv("block", "1Gi", &["ReadWriteOnce"], None);
    block["spec"]["volumeMode"] = json!("Block");
    let vols = vec![
        to_pv(pv("two-modes", "1Gi", &["ReadWriteOnce", "ReadWriteMany"], None)),
        to_pv(pv("one-mode", "2Gi", &["ReadWriteOnce"], None)),
        to_pv(labelled),
        to_pv(pending),
        to_pv(block),
    ];
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), Some("one-mode"));
    let mut sel = pvc("c", "1Gi", &["ReadWriteOnce"], None);
    sel["spec"]["selector"] = json!({ "matchLabels": { "type": "hostpath" } });
    assert_eq!(name(find_best_match(&to_pvc(sel), &vols, false, None)), Some("labelled"));
    let mut blk = pvc("c", "1Gi", &["ReadWriteOnce"], None);
    blk["spec"]["volumeMode"] = json!("Block");
    assert_eq!(name(find_best_match(&to_pvc(blk), &vols, false, None)), Some("block"));
}

#[test]
fn prebound_volumes_and_delay_binding() {
    let mut pre = pv("pre", "100Gi", &["ReadWriteOnce"], Some("other"));
    pre["spec"]["claimRef"] = json!({ "namespace": "default", "name": "c" });
    pre["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
        "matchExpressions": [{ "key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"] }]
    }]}});
    let mut elsewhere = pv("elsewhere", "1Gi", &["ReadWriteOnce"], None);
    elsewhere["spec"]["claimRef"] = json!({ "namespace": "default", "name": "other" });
    let free = pv("free", "1Gi", &["ReadWriteOnce"], None);
    let vols = vec![to_pv(elsewhere), to_pv(free), to_pv(pre)];
    // The volume pre-bound to the claim wins even if class and size differ.
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(name(find_best_match(&claim, &vols, false, None)), Some("pre"));
    // A claimRef with another uid is not this claim.
    let mut other_uid = (*vols[2]).clone();
    other_uid.spec.as_mut().unwrap().claim_ref.as_mut().unwrap().uid = Some("old".into());
    assert!(!is_volume_bound_to_claim(&other_uid, &claim));
    // Delay binding without a node: only pre-bound volumes.
    let other = to_pvc(pvc("d", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(name(find_best_match(&other, &vols, true, None)), None);
    let labels = BTreeMap::from([("kubernetes.io/hostname".to_owned(), "n1".to_owned())]);
    let n1 = NodeRef { name: "n1", labels: &labels };
    assert_eq!(name(find_best_match(&other, &vols, true, Some(n1))), Some("free"));
    // Pre-bound but pinned to another node: nothing on n2.
    let labels2 = BTreeMap::from([("kubernetes.io/hostname".to_owned(), "n2".to_owned())]);
    let n2 = NodeRef { name: "n2", labels: &labels2 };
    assert_eq!(name(find_best_match(&claim, &vols, true, Some(n2))), None);
    assert_eq!(name(find_best_match(&claim, &vols, true, Some(n1))), Some("pre"));
}

#[test]
fn node_affinity_operators() {
    let mut v = pv("v", "1Gi", &["ReadWriteOnce"], None);
    v["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [
        { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] },
                               { "key": "gpu", "operator": "DoesNotExist" }] },
        { "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["special"] }] }
    ]}});
    let v = to_pv(v);
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let zone_a = l(&[("zone", "a")]);
    let zone_a_gpu = l(&[("zone", "a"), ("gpu", "1")]);
    let none = l(&[]);
    assert!(node_affinity_allows(&v, NodeRef { name: "x", labels: &zone_a }));
    assert!(!node_affinity_allows(&v, NodeRef { name: "x", labels: &zone_a_gpu }));
    assert!(!node_affinity_allows(&v, NodeRef { name: "x", labels: &none }));
    assert!(node_affinity_allows(&v, NodeRef { name: "special", labels: &none }));
    let free = to_pv(pv("f", "1Gi", &[], None));
    assert!(node_affinity_allows(&free, NodeRef { name: "x", labels: &none }));
}

#[test]
fn satisfies_and_classes() {
    let v = to_pv(pv("v", "1Gi", &["ReadWriteOnce"], Some("fast")));
    let ok = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("fast")));
    assert_eq!(check_volume_satisfies_claim(&v, &ok), Ok(()));
    let big = to_pvc(pvc("c", "2Gi", &["ReadWriteOnce"], Some("fast")));
    assert_eq!(check_volume_satisfies_claim(&v, &big), Err("requested PV is too small".into()));
    let other = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(
        check_volume_satisfies_claim(&v, &other),
        Err("storageClassName does not match".into())
    );
    let rwx = to_pvc(pvc("c", "1Gi", &["ReadWriteMany"], Some("fast")));
    assert_eq!(check_volume_satisfies_claim(&v, &rwx), Err("incompatible accessMode".into()));
    // The beta annotation wins over the field.
    let mut beta = pvc("c", "1Gi", &[], Some("x"));
    beta["metadata"]["annotations"] = json!({ "volume.beta.kubernetes.io/storage-class": "fast" });
    assert_eq!(claim_class(&to_pvc(beta)), "fast");
    assert!(!claim_has_class(&to_pvc(pvc("c", "1Gi", &[], None))));
    assert!(claim_has_class(&to_pvc(pvc("c", "1Gi", &[], Some("")))));
}

#[test]
fn default_class_is_the_newest_marked_one() {
    let sc = |name: &str, default: bool, created: &str| -> Arc<StorageClass> {
        let mut v = json!({ "metadata": { "name": name, "creationTimestamp": created },
                            "provisioner": "p" });
        if default {
            v["metadata"]["annotations"] =
                json!({ "storageclass.kubernetes.io/is-default-class": "true" });
        }
        Arc::new(serde_json::from_value(v).unwrap())
    };
    let classes = vec![
        sc("old", true, "2024-01-01T00:00:00Z"),
        sc("new", true, "2025-01-01T00:00:00Z"),
        sc("newest-not-default", false, "2026-01-01T00:00:00Z"),
    ];
    assert_eq!(default_class(&classes).and_then(|c| c.metadata.name.as_deref()), Some("new"));
    assert!(default_class(&classes[2..]).is_none());
    let wffc: StorageClass =
        serde_json::from_value(json!({ "metadata": { "name": "w" }, "provisioner": "p",
                "volumeBindingMode": "WaitForFirstConsumer" }))
        .unwrap();
    assert!(is_delay_binding(Some(&wffc)));
    assert!(!is_delay_binding(Some(&classes[0])));
    assert!(!is_delay_binding(None));
}
