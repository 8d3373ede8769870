use std::path::Path;

use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::*;
use crate::matching::tests::{pvc, to_pvc};

fn class(mode: &str) -> StorageClass {
    serde_json::from_value(json!({
        "metadata": { "name": "local-path" },
        "provisioner": "rudder.dev/local-path",
        "reclaimPolicy": "Delete",
        "volumeBindingMode": mode
    }))
    .unwrap()
}

fn claim_on(node: Option<&str>, modes: &[&str]) -> PersistentVolumeClaim {
    let mut v = pvc("data", "2Gi", modes, Some("local-path"));
    if let Some(n) = node {
        v["metadata"]["annotations"] = json!({ "volume.kubernetes.io/selected-node": n });
    }
    to_pvc(v)
}

fn node(annotations: serde_json::Value) -> Node {
    serde_json::from_value(json!({
        "metadata": { "name": "n1", "labels": { "kubernetes.io/hostname": "host-1" },
                      "annotations": annotations }
    }))
    .unwrap()
}

#[test]
fn creates_a_pinned_hostpath_volume() {
    let config = LocalPathConfig::default();
    let claim = claim_on(Some("n1"), &["ReadWriteOnce"]);
    let n = node(json!({ "rudder.dev/local-path-dir": "/data/local/" }));
    let ProvisionPlan::Create(pv) =
        plan(&config, &claim, Some(&class("WaitForFirstConsumer")), Some(&n), false)
    else {
        panic!("expected a volume")
    };
    let got = serde_json::to_value(&*pv).unwrap();
    assert_eq!(got["metadata"]["name"], "pvc-uid-data");
    assert_eq!(
        got["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "rudder.dev/local-path"
    );
    assert_eq!(got["metadata"]["annotations"]["rudder.dev/local-path-node"], "n1");
    let spec = &got["spec"];
    assert_eq!(
        spec["hostPath"],
        json!({ "path": "/data/local/pvc-uid-data_default_data", "type": "DirectoryOrCreate" })
    );
    assert_eq!(spec["capacity"], json!({ "storage": "2Gi" }));
    assert_eq!(spec["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(spec["persistentVolumeReclaimPolicy"], "Delete");
    assert_eq!(spec["storageClassName"], "local-path");
    assert_eq!(spec["claimRef"]["uid"], "uid-data");
    assert_eq!(spec["claimRef"]["name"], "data");
    assert_eq!(
        spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0],
        json!({ "key": "kubernetes.io/hostname", "operator": "In", "values": ["host-1"] })
    );
    // A node not cached yet: the default directory and the node's name.
    let ProvisionPlan::Create(pv) =
        plan(&config, &claim, Some(&class("WaitForFirstConsumer")), None, false)
    else {
        panic!("expected a volume")
    };
    let got = serde_json::to_value(&*pv).unwrap();
    assert_eq!(
        got["spec"]["hostPath"]["path"],
        "/var/lib/rudder/storage/pvc-uid-data_default_data"
    );
    assert_eq!(
        got["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["n1"])
    );
}

#[test]
fn waits_skips_and_refuses() {
    let config = LocalPathConfig::default();
    let wffc = class("WaitForFirstConsumer");
    // No node yet: wait.
    assert_eq!(
        plan(&config, &claim_on(None, &["ReadWriteOnce"]), Some(&wffc), None, false),
        ProvisionPlan::Nothing
    );
    // Immediate classes have no node to go to.
    assert!(matches!(
        plan(&config, &claim_on(None, &["ReadWriteOnce"]), Some(&class("Immediate")), None, false),
        ProvisionPlan::Fail(ev) if ev.message == "configuration error, no node was specified"
    ));
    // Done already, or another provisioner's class.
    let claim = claim_on(Some("n1"), &["ReadWriteOnce"]);
    assert_eq!(plan(&config, &claim, Some(&wffc), None, true), ProvisionPlan::Nothing);
    let mut other = wffc.clone();
    other.provisioner = "example.com/nfs".into();
    assert_eq!(plan(&config, &claim, Some(&other), None, false), ProvisionPlan::Nothing);
    assert_eq!(plan(&config, &claim, None, None, false), ProvisionPlan::Nothing);
    // Shared access modes cannot be served from one node's directory.
    assert!(matches!(
        plan(&config, &claim_on(Some("n1"), &["ReadWriteMany"]), Some(&wffc), None, false),
        ProvisionPlan::Fail(ev) if ev.reason == "ProvisioningFailed"
    ));
    assert!(matches!(
        plan(&config, &claim_on(Some("n1"), &["ReadWriteOncePod"]), Some(&wffc), None, false),
        ProvisionPlan::Create(_)
    ));
}

#[test]
fn reclaimable_dirs_stay_inside_the_base() {
    let base = Path::new("/var/lib/rudder/storage");
    assert_eq!(
        reclaimable_dir(base, "/var/lib/rudder/storage/pvc-1_default_data").unwrap(),
        Path::new("/var/lib/rudder/storage/pvc-1_default_data")
    );
    for bad in [
        "/var/lib/rudder/storage",
        "/var/lib/rudder/storage/",
        "/var/lib/rudder/storage/data",
        "/var/lib/rudder/storage/../pvc-1",
        "/var/lib/rudder/storage/x/pvc-1",
        "/var/lib/rudder/pvc-1",
        "/etc/pvc-1",
        "pvc-1",
        "",
    ] {
        assert!(reclaimable_dir(base, bad).is_err(), "{bad:?} must be refused");
    }
}
