//! Which volume a claim may bind to, pure (upstream's `findMatchingVolume`,
//! `checkVolumeSatisfyClaim` and the storage helpers): the same class (an empty class only
//! matches volumes without one), every requested access mode, the same volume mode, at least
//! the requested capacity (the smallest such volume wins, volumes with fewer access modes
//! first), the claim's label selector, and, for a node, the volume's required node affinity.
//! A volume pre-bound to the claim (by `claimRef`) wins over everything else.

use rudder_client::objects::node_selector_term_matches;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rudder_client::objects::selector_matches;

use crate::{ANN_BETA_DEFAULT_CLASS, ANN_BETA_STORAGE_CLASS, ANN_DEFAULT_CLASS, ANN_SELECTED_NODE};

/// A node as the matching rules see it: its name and labels.
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'a> {
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(String::as_str)
}

/// The class a claim asks for ("" = none): the beta annotation, then `storageClassName`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// Whether the claim names a class at all (an explicit "" counts: it opts out of the default).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS).is_some()
        || claim.spec.as_ref().is_some_and(|s| s.storage_class_name.is_some())
}

/// A volume's class ("" = none).
pub fn volume_class(pv: &PersistentVolume) -> &str {
    if let Some(class) = annotation(&pv.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    pv.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("")
}

/// The node a `WaitForFirstConsumer` claim was given, if any.
pub fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    annotation(&claim.metadata, ANN_SELECTED_NODE).filter(|n| !n.is_empty())
}

/// `storage` of a resource list, in thousandths of a byte.
pub fn storage_milli(resources: Option<&BTreeMap<String, Quantity>>) -> Option<i128> {
    resources?.get("storage").and_then(|q| rudder_api::quantity::parse_milli(&q.0).ok())
}

/// What the claim requests (0 when it says nothing).
pub fn requested_milli(claim: &PersistentVolumeClaim) -> i128 {
    storage_milli(
        claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()),
    )
    .unwrap_or(0)
}

pub fn capacity_milli(pv: &PersistentVolume) -> i128 {
    storage_milli(pv.spec.as_ref().and_then(|s| s.capacity.as_ref())).unwrap_or(0)
}

fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

fn volume_modes(pv: &PersistentVolume) -> &[String] {
    pv.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

/// Every access mode the claim requests is one the volume offers.
pub fn access_modes_ok(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let offered = volume_modes(pv);
    claim_modes(claim).iter().all(|m| offered.contains(m))
}

/// Both use the same volume mode (unset means `Filesystem`).
pub fn volume_mode_ok(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let claim_mode =
        claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    let pv_mode = pv.spec.as_ref().and_then(|s| s.volume_mode.as_deref()).unwrap_or("Filesystem");
    claim_mode == pv_mode
}

/// The volume's `claimRef` names this claim (and, if it has a uid, this very claim).
pub fn is_volume_bound_to_claim(pv: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else { return false };
    if r.name != claim.metadata.name || r.namespace != claim.metadata.namespace {
        return false;
    }
    match r.uid.as_deref().filter(|u| !u.is_empty()) {
        None => true,
        Some(uid) => claim.metadata.uid.as_deref() == Some(uid),
    }
}

/// Why a volume the claim asks for by name cannot serve it (upstream's wording).
pub fn check_volume_satisfies_claim(
    pv: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if pv.metadata.deletion_timestamp.is_some() {
        return Err(format!(
            "the volume is marked for deletion {:?}",
            pv.metadata.name.as_deref().unwrap_or("")
        ));
    }
    if capacity_milli(pv) < requested_milli(claim) {
        return Err("requested PV is too small".into());
    }
    if volume_class(pv) != claim_class(claim) {
        return Err("storageClassName does not match".into());
    }
    if !volume_mode_ok(pv, claim) {
        return Err("incompatible volumeMode".into());
    }
    if !access_modes_ok(pv, claim) {
        return Err("incompatible accessMode".into());
    }
    Ok(())
}

/// The volume's required node affinity lets it be used on `node` (no affinity: anywhere).
pub fn node_affinity_allows(pv: &PersistentVolume, node: NodeRef<'_>) -> bool {
    let required =
        pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node.name, node.labels)),
    }
}

fn phase(pv: &PersistentVolume) -> &str {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The best volume for an unbound claim, or none. `delay_binding`: the claim's class waits
/// for its first consumer; without a `node` only volumes pre-bound to the claim qualify then
/// (the scheduler's side, or the selected node, picks the others).
pub fn find_best_match<'v>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'v Arc<PersistentVolume>>,
    delay_binding: bool,
    node: Option<NodeRef<'_>>,
) -> Option<&'v Arc<PersistentVolume>> {
    let requested = requested_milli(claim);
    let class = claim_class(claim);
    let selector = claim.spec.as_ref().and_then(|s| s.selector.as_ref());
    let mut best: Option<(&'v Arc<PersistentVolume>, (usize, i128))> = None;
    for pv in volumes {
        if !volume_mode_ok(pv, claim) || pv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if is_volume_bound_to_claim(pv, claim) {
            // Pre-bound (by the user or a provisioner): this one or nothing.
            if node.is_some_and(|n| !node_affinity_allows(pv, n)) {
                return None;
            }
            return Some(pv);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        let labels = pv.metadata.labels.clone().unwrap_or_default();
        if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_some())
            || selector.is_some_and(|s| !selector_matches(s, &labels))
            || phase(pv) != "Available"
            || volume_class(pv) != class
            || !access_modes_ok(pv, claim)
            || node.is_some_and(|n| !node_affinity_allows(pv, n))
        {
            continue;
        }
        let capacity = capacity_milli(pv);
        if capacity < requested {
            continue;
        }
        let rank = (volume_modes(pv).len(), capacity);
        if best.as_ref().is_none_or(|(_, r)| rank < *r) {
            best = Some((pv, rank));
        }
    }
    best.map(|(pv, _)| pv)
}

/// `Immediate` or `WaitForFirstConsumer`, as a flag (an unknown class binds at once).
pub fn is_delay_binding(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The default class (upstream: the newest of those marked default, then by name).
pub fn default_class<'c>(
    classes: impl IntoIterator<Item = &'c Arc<StorageClass>>,
) -> Option<&'c Arc<StorageClass>> {
    classes
        .into_iter()
        .filter(|c| {
            let a = c.metadata.annotations.as_ref();
            let is = |k: &str| a.and_then(|a| a.get(k)).is_some_and(|v| v == "true");
            is(ANN_DEFAULT_CLASS) || is(ANN_BETA_DEFAULT_CLASS)
        })
        .max_by(|a, b| {
            let ts = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            ts(a).cmp(&ts(b)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
        })
}

/// The claims a pod's volumes name (`persistentVolumeClaim` sources), in volume order.
pub fn pod_claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()))
}

/// A claim is fully bound: a volume name and the binding completed.
pub fn claim_fully_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
        && annotation(&claim.metadata, crate::ANN_BIND_COMPLETED).is_some()
}

#[cfg(test)]
pub(crate) mod tests;
