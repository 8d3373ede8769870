//! VolumeBinding (upstream's plugin, without its Reserve/PreBind half): a pod's
//! PersistentVolumeClaims decide where it may go. PreFilter (whole pod): a claim that does not
//! exist or is being deleted, or an unbound claim of an `Immediate` class, makes the pod
//! unschedulable everywhere (the binder must act first). Filter (per node): a bound claim's
//! volume must allow the node by its required node affinity; an unbound
//! `WaitForFirstConsumer` claim fits any node unless it already has another selected node,
//! or its class has no provisioner (`kubernetes.io/no-provisioner`) and no available volume
//! usable on the node matches it. The binder (rudder-pv) records the node once the pod is
//! bound and binds or provisions there.
//!
//! Reads the process's PVC, PV and StorageClass informers (upstream reads its listers).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_client::{Informer, Informers};
use rudder_pv::matching::{self, NodeRef};

use crate::filters::{Plugin, Rejection};
use crate::node_info::NodeInfo;
use crate::pod_info::PodInfo;

pub const REASON_UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const REASON_NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const REASON_BIND_CONFLICT: &str = "node(s) didn't find available persistent volumes to bind";
pub const REASON_PV_NOT_EXIST: &str =
    "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// The caches the plugin reads.
#[derive(Clone, Debug)]
pub struct VolumeListers {
    pub claims: Arc<Informer<PersistentVolumeClaim>>,
    pub volumes: Arc<Informer<PersistentVolume>>,
    pub classes: Arc<Informer<StorageClass>>,
}

impl VolumeListers {
    pub fn new(informers: &Informers) -> VolumeListers {
        VolumeListers {
            claims: informers.get::<PersistentVolumeClaim>(),
            volumes: informers.get::<PersistentVolume>(),
            classes: informers.get::<StorageClass>(),
        }
    }

    pub async fn wait_synced(&self) {
        self.claims.wait_synced().await;
        self.volumes.wait_synced().await;
        self.classes.wait_synced().await;
    }
}

/// One claim of the pod, as the per-node filter needs it.
#[derive(Clone, Debug)]
enum ClaimCheck {
    /// Bound: its volume (None: the volume does not exist).
    Bound(Option<Arc<PersistentVolume>>),
    /// Unbound, waiting for its first consumer.
    Delayed {
        claim: Arc<PersistentVolumeClaim>,
        /// Only pre-created volumes can serve it.
        static_only: bool,
    },
}

/// What PreFilter computed for one pod.
#[derive(Clone, Debug)]
pub struct VolumeFilterState {
    checks: Vec<ClaimCheck>,
    volumes: Vec<Arc<PersistentVolume>>,
}

/// PreFilter: `Ok(None)` when the pod has no claims, `Err(message)` when it fits nowhere.
pub fn prefilter(
    pod: &PodInfo,
    listers: Option<&VolumeListers>,
) -> Result<Option<VolumeFilterState>, String> {
    let Some(listers) = listers else { return Ok(None) };
    let ns = pod.pod.metadata.namespace.as_deref().unwrap_or("");
    let names: Vec<&str> = matching::pod_claim_names(&pod.pod).collect();
    if names.is_empty() {
        return Ok(None);
    }
    let mut checks = Vec::with_capacity(names.len());
    let mut unbound_immediate = false;
    let mut needs_volumes = false;
    for name in names {
        let Some(claim) = listers.claims.get(ns, name) else {
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        if matching::claim_fully_bound(&claim) {
            let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            checks.push(ClaimCheck::Bound(volume_name.and_then(|v| listers.volumes.get("", v))));
            continue;
        }
        let class_name = matching::claim_class(&claim);
        let class = if class_name.is_empty() { None } else { listers.classes.get("", class_name) };
        if !matching::is_delay_binding(class.as_deref()) {
            unbound_immediate = true;
            continue;
        }
        let static_only =
            class.as_ref().is_some_and(|c| c.provisioner == rudder_pv::NO_PROVISIONER);
        needs_volumes |= static_only;
        checks.push(ClaimCheck::Delayed { claim, static_only });
    }
    if unbound_immediate {
        return Err(REASON_UNBOUND_IMMEDIATE.to_owned());
    }
    let volumes = if needs_volumes { listers.volumes.list() } else { Vec::new() };
    Ok(Some(VolumeFilterState { checks, volumes }))
}

impl VolumeFilterState {
    /// Filter: whether the pod's volumes can be used on `node`.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Rejection> {
        let at = NodeRef { name: &node.name, labels: node.labels() };
        for check in &self.checks {
            match check {
                ClaimCheck::Bound(None) => {
                    return Err(Rejection::new(Plugin::VolumeBinding, true, REASON_PV_NOT_EXIST));
                }
                ClaimCheck::Bound(Some(pv)) => {
                    if !matching::node_affinity_allows(pv, at) {
                        return Err(Rejection::new(
                            Plugin::VolumeBinding,
                            true,
                            REASON_NODE_CONFLICT,
                        ));
                    }
                }
                ClaimCheck::Delayed { claim, static_only } => {
                    let elsewhere = matching::selected_node(claim).is_some_and(|n| n != at.name);
                    let no_volume = *static_only
                        && matching::find_best_match(claim, &self.volumes, true, Some(at))
                            .is_none();
                    if elsewhere || no_volume {
                        return Err(Rejection::new(
                            Plugin::VolumeBinding,
                            true,
                            REASON_BIND_CONFLICT,
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{info, node, pod, snapshot, with_spec};
    use serde_json::{Value, json};

    fn listers(claims: Vec<Value>, volumes: Vec<Value>, classes: Vec<Value>) -> VolumeListers {
        let l = VolumeListers {
            claims: Informer::new(),
            volumes: Informer::new(),
            classes: Informer::new(),
        };
        for (i, c) in claims.into_iter().enumerate() {
            let mut c = c;
            c["metadata"]["resourceVersion"] = json!(i.to_string());
            l.claims.apply(serde_json::from_value(c).unwrap());
        }
        for v in volumes {
            l.volumes.apply(serde_json::from_value(v).unwrap());
        }
        for c in classes {
            l.classes.apply(serde_json::from_value(c).unwrap());
        }
        l
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> Value {
        let mut v = json!({
            "metadata": { "name": name, "namespace": "default", "uid": name },
            "spec": { "storageClassName": class, "accessModes": ["ReadWriteOnce"],
                      "resources": { "requests": { "storage": "1Gi" } } }
        });
        if let Some(vol) = volume {
            v["spec"]["volumeName"] = json!(vol);
            v["metadata"]["annotations"] = json!({ "pv.kubernetes.io/bind-completed": "yes" });
        }
        v
    }

    fn pinned_volume(name: &str, node: &str) -> Value {
        json!({
            "metadata": { "name": name },
            "spec": { "capacity": { "storage": "1Gi" }, "accessModes": ["ReadWriteOnce"],
                      "storageClassName": "local",
                      "nodeAffinity": { "required": { "nodeSelectorTerms": [{ "matchExpressions": [
                          { "key": "kubernetes.io/hostname", "operator": "In", "values": [node] }
                      ]}]}}},
            "status": { "phase": "Available" }
        })
    }

    fn class(name: &str, provisioner: &str, wffc: bool) -> Value {
        let mode = if wffc { "WaitForFirstConsumer" } else { "Immediate" };
        json!({ "metadata": { "name": name }, "provisioner": provisioner,
                "volumeBindingMode": mode })
    }

    fn using(claim: &str) -> std::sync::Arc<PodInfo> {
        info(with_spec(
            pod("p", "", ""),
            "volumes",
            json!([{ "name": "v", "persistentVolumeClaim": { "claimName": claim } }]),
        ))
    }

    #[test]
    fn prefilter_rejects_missing_and_unbound_immediate_claims() {
        let l = listers(
            vec![claim("imm", "fast", None), claim("wffc", "local-path", None)],
            vec![],
            vec![
                class("fast", "example.com/x", false),
                class("local-path", "rudder.dev/local-path", true),
            ],
        );
        assert_eq!(
            prefilter(&using("nope"), Some(&l)).unwrap_err(),
            "persistentvolumeclaim \"nope\" not found"
        );
        assert_eq!(prefilter(&using("imm"), Some(&l)).unwrap_err(), REASON_UNBOUND_IMMEDIATE);
        assert!(prefilter(&using("wffc"), Some(&l)).unwrap().is_some());
        assert!(prefilter(&info(pod("p", "", "")), Some(&l)).unwrap().is_none());
        assert!(prefilter(&using("nope"), None).unwrap().is_none());
    }

    #[test]
    fn filter_follows_volume_node_affinity() {
        let snap = snapshot(vec![node("n1", "1", "1Gi"), node("n2", "1", "1Gi")], vec![]);
        let (n1, n2) = (snap.node_by_name("n1").unwrap(), snap.node_by_name("n2").unwrap());
        let l = listers(
            vec![
                claim("bound", "local", Some("pv1")),
                claim("lost", "local", Some("gone")),
                claim("static", "local", None),
                claim("dynamic", "local-path", None),
            ],
            vec![
                {
                    let mut v = pinned_volume("pv1", "n1");
                    v["spec"]["claimRef"] = json!({ "namespace": "default", "name": "bound" });
                    v["status"]["phase"] = json!("Bound");
                    v
                },
                pinned_volume("free", "n2"),
            ],
            vec![
                class("local", "kubernetes.io/no-provisioner", true),
                class("local-path", "rudder.dev/local-path", true),
            ],
        );
        let state = |c: &str| prefilter(&using(c), Some(&l)).unwrap().unwrap();
        assert!(state("bound").filter(n1).is_ok());
        let r = state("bound").filter(n2).unwrap_err();
        assert_eq!(
            (r.plugin, r.reasons[0].as_ref()),
            (Plugin::VolumeBinding, REASON_NODE_CONFLICT)
        );
        assert_eq!(state("lost").filter(n1).unwrap_err().reasons[0], REASON_PV_NOT_EXIST);
        // Static-only class: only where a matching volume can be used.
        assert_eq!(state("static").filter(n1).unwrap_err().reasons[0], REASON_BIND_CONFLICT);
        assert!(state("static").filter(n2).is_ok());
        // A provisioner follows the pod anywhere.
        assert!(state("dynamic").filter(n1).is_ok());
        assert!(state("dynamic").filter(n2).is_ok());
    }
}
