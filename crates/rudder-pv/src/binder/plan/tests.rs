use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;

use super::*;
use crate::matching::tests::{pv, pvc, to_pv, to_pvc};

fn class(name: &str, wffc: bool) -> StorageClass {
    let mut v = json!({ "metadata": { "name": name }, "provisioner": "rudder.dev/local-path" });
    if wffc {
        v["volumeBindingMode"] = json!("WaitForFirstConsumer");
    }
    serde_json::from_value(v).unwrap()
}

fn inputs<'a>(volumes: &'a [Arc<PersistentVolume>]) -> ClaimInputs<'a> {
    ClaimInputs { volumes, class: None, default_class: None, consumers: &[], node_labels: None }
}

fn bound_to(plan: &ClaimPlan) -> Option<&str> {
    match plan {
        ClaimPlan::Bind(pv) => pv.metadata.name.as_deref(),
        _ => None,
    }
}

#[test]
fn unbound_claims_bind_or_wait_like_upstream() {
    let vols = vec![to_pv(pv("v1", "2Gi", &["ReadWriteOnce"], None))];
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(bound_to(&unbound_claim(&claim, inputs(&vols))), Some("v1"));
    // Nothing fits, no class, no default: FailedBinding.
    let big = to_pvc(pvc("c", "5Gi", &["ReadWriteOnce"], None));
    match unbound_claim(&big, inputs(&vols)) {
        ClaimPlan::Pending(Some(ev)) => {
            assert_eq!((ev.reason, ev.message.as_str()), ("FailedBinding", MSG_NO_CLASS));
        }
        other => panic!("unexpected {other:?}"),
    }
    // A default class exists: it is assigned (claims without a class only).
    let with_default = ClaimInputs { default_class: Some("local-path"), ..inputs(&vols) };
    assert_eq!(unbound_claim(&big, with_default), ClaimPlan::AssignClass("local-path".into()));
    let explicit_empty = to_pvc(pvc("c", "5Gi", &["ReadWriteOnce"], Some("")));
    assert!(matches!(unbound_claim(&explicit_empty, with_default), ClaimPlan::Pending(Some(_))));
    // A class that does not exist and no volume of it.
    let missing = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("slow")));
    match unbound_claim(&missing, inputs(&vols)) {
        ClaimPlan::Pending(Some(ev)) => {
            assert_eq!(ev.reason, "ProvisioningFailed");
            assert_eq!(ev.message, "storageclass.storage.k8s.io \"slow\" not found");
        }
        other => panic!("unexpected {other:?}"),
    }
    // An Immediate class with a provisioner: provision.
    let imm = class("imm", false);
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("imm")));
    assert_eq!(
        unbound_claim(&claim, ClaimInputs { class: Some(&imm), ..inputs(&vols) }),
        ClaimPlan::Provision { provisioner: "rudder.dev/local-path".into() }
    );
}

#[test]
fn wait_for_first_consumer() {
    let wffc = class("local-path", true);
    let vols: Vec<Arc<PersistentVolume>> = vec![];
    let claim = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], Some("local-path")));
    let base = ClaimInputs { class: Some(&wffc), ..inputs(&vols) };
    match unbound_claim(&claim, base) {
        ClaimPlan::Pending(Some(ev)) => {
            assert_eq!(
                (ev.reason, ev.message.as_str()),
                ("WaitForFirstConsumer", MSG_WAIT_FOR_FIRST_CONSUMER)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let pending = [Consumer { pod: "p".into(), node: None }];
    match unbound_claim(&claim, ClaimInputs { consumers: &pending, ..base }) {
        ClaimPlan::Pending(Some(ev)) => {
            assert_eq!(ev.reason, "WaitForPodScheduled");
            assert_eq!(ev.message, "waiting for pod p to be scheduled");
        }
        other => panic!("unexpected {other:?}"),
    }
    let scheduled = [
        Consumer { pod: "b".into(), node: Some("n2".into()) },
        Consumer { pod: "a".into(), node: Some("n1".into()) },
    ];
    assert_eq!(
        unbound_claim(&claim, ClaimInputs { consumers: &scheduled, ..base }),
        ClaimPlan::SelectNode("n1".into())
    );
    // With the node selected: a static volume usable there, else the provisioner.
    let mut v = pvc("c", "1Gi", &["ReadWriteOnce"], Some("local-path"));
    v["metadata"]["annotations"] = json!({ "volume.kubernetes.io/selected-node": "n1" });
    let selected = to_pvc(v);
    assert_eq!(
        unbound_claim(&selected, base),
        ClaimPlan::Provision { provisioner: "rudder.dev/local-path".into() }
    );
    let mut pinned = pv("n1-disk", "1Gi", &["ReadWriteOnce"], Some("local-path"));
    pinned["spec"]["nodeAffinity"] = json!({ "required": { "nodeSelectorTerms": [{
        "matchExpressions": [{ "key": "disk", "operator": "In", "values": ["ssd"] }] }] } });
    let vols = vec![to_pv(pinned)];
    let ssd = BTreeMap::from([("disk".to_owned(), "ssd".to_owned())]);
    let on_ssd = ClaimInputs { volumes: &vols, node_labels: Some(&ssd), ..base };
    assert_eq!(bound_to(&unbound_claim(&selected, on_ssd)), Some("n1-disk"));
    let on_other = ClaimInputs { volumes: &vols, ..base };
    assert!(matches!(unbound_claim(&selected, on_other), ClaimPlan::Provision { .. }));
}

#[test]
fn claims_naming_a_volume() {
    let mut c = pvc("c", "1Gi", &["ReadWriteOnce"], None);
    c["spec"]["volumeName"] = json!("v");
    let claim = to_pvc(c);
    assert_eq!(unbound_claim(&claim, inputs(&[])), ClaimPlan::Pending(None));
    let vols = vec![to_pv(pv("v", "1Gi", &["ReadWriteOnce"], None))];
    assert_eq!(bound_to(&unbound_claim(&claim, inputs(&vols))), Some("v"));
    let small = vec![to_pv(pv("v", "500Mi", &["ReadWriteOnce"], None))];
    match unbound_claim(&claim, inputs(&small)) {
        ClaimPlan::Pending(Some(ev)) => assert_eq!(
            ev.message,
            "Cannot bind to requested volume \"v\": requested PV is too small"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let mut taken = pv("v", "1Gi", &["ReadWriteOnce"], None);
    taken["spec"]["claimRef"] = json!({ "namespace": "default", "name": "x", "uid": "ux" });
    match unbound_claim(&claim, inputs(&[to_pv(taken)])) {
        ClaimPlan::Pending(Some(ev)) => assert_eq!(ev.reason, "FailedBinding"),
        other => panic!("unexpected {other:?}"),
    }
}

fn bound_claim_json() -> PersistentVolumeClaim {
    let mut c = pvc("c", "1Gi", &["ReadWriteOnce"], None);
    c["spec"]["volumeName"] = json!("v");
    c["metadata"]["annotations"] = json!({ "pv.kubernetes.io/bind-completed": "yes" });
    to_pvc(c)
}

#[test]
fn bound_claims_are_kept_or_lost() {
    let claim = bound_claim_json();
    assert!(matches!(bound_claim(&claim, None), ClaimPlan::Lost(ev) if ev.reason == "ClaimLost"));
    let mut v = pv("v", "1Gi", &["ReadWriteOnce"], None);
    v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "c", "uid": "uid-c" });
    let v = to_pv(v);
    assert_eq!(bound_to(&bound_claim(&claim, Some(&v))), Some("v"));
    let mut other = pv("v", "1Gi", &["ReadWriteOnce"], None);
    other["spec"]["claimRef"] = json!({ "namespace": "default", "name": "d", "uid": "uid-d" });
    assert!(matches!(
        bound_claim(&claim, Some(&to_pv(other))),
        ClaimPlan::Lost(ev) if ev.reason == "ClaimMisbound"
    ));
}

#[test]
fn volumes_follow_their_claims() {
    let free = to_pv(pv("v", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(volume(&free, None), VolumePlan::Phase("Available"));
    let with_ref = |policy: &str, provisioned: bool| -> PersistentVolume {
        let mut v = pv("v", "1Gi", &["ReadWriteOnce"], None);
        v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "c", "uid": "uid-c" });
        v["spec"]["persistentVolumeReclaimPolicy"] = json!(policy);
        if provisioned {
            v["metadata"]["annotations"] = json!({ "pv.kubernetes.io/provisioned-by": "p" });
        }
        serde_json::from_value(v).unwrap()
    };
    let claim = bound_claim_json();
    assert_eq!(volume(&with_ref("Retain", false), Some(&claim)), VolumePlan::Phase("Bound"));
    assert_eq!(volume(&with_ref("Retain", false), None), VolumePlan::Release(Reclaim::Keep));
    assert_eq!(
        volume(&with_ref("Delete", false), None),
        VolumePlan::Release(Reclaim::DeleteObject)
    );
    assert_eq!(volume(&with_ref("Delete", true), None), VolumePlan::Release(Reclaim::External));
    // A new claim with the same name is not the one the volume was bound to.
    let mut newer = bound_claim_json();
    newer.metadata.uid = Some("other".into());
    assert_eq!(
        volume(&with_ref("Retain", false), Some(&newer)),
        VolumePlan::Release(Reclaim::Keep)
    );
    // The claim is not bound yet: its sync finishes.
    let unbound = to_pvc(pvc("c", "1Gi", &["ReadWriteOnce"], None));
    assert_eq!(
        volume(&with_ref("Retain", false), Some(&unbound)),
        VolumePlan::SyncClaim { namespace: "default".into(), name: "c".into() }
    );
    // The claim went to another volume: undo our half-binding.
    let mut elsewhere = bound_claim_json();
    elsewhere.spec.as_mut().unwrap().volume_name = Some("w".into());
    let mut ours = with_ref("Retain", false);
    ours.metadata.annotations =
        Some(BTreeMap::from([(crate::ANN_BOUND_BY_CONTROLLER.to_owned(), "yes".to_owned())]));
    assert_eq!(volume(&ours, Some(&elsewhere)), VolumePlan::Unbind { keep_claim_ref: false });
    assert_eq!(
        volume(&with_ref("Retain", false), Some(&elsewhere)),
        VolumePlan::Unbind { keep_claim_ref: true }
    );
}
