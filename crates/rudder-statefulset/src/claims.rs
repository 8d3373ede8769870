//! PersistentVolumeClaims from volumeClaimTemplates and their ownership under
//! `persistentVolumeClaimRetentionPolicy` (upstream's claim helpers in stateful_set_utils).
//! A claim is named `<template>-<set>-<ordinal>`, carries the template's labels plus the
//! set's selector matchLabels, and is never deleted by this controller: the garbage
//! collector deletes it when an owner named here goes away.
//!
//! | whenScaled | whenDeleted | owner of the claim of a pod in range | of a condemned pod |
//! | --- | --- | --- | --- |
//! | Retain | Retain | none | none |
//! | Retain | Delete | the set | the set |
//! | Delete | Retain | none | the pod |
//! | Delete | Delete | the set | the pod |
//!
//! Owners are controller references. Claims with a reference to an earlier incarnation of
//! the set or pod (same name, other uid), or controlled by someone else, are left alone.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::pods::{claim_templates, in_ordinal_range, name_of, set_name, set_namespace};

pub const RETAIN: &str = "Retain";
pub const DELETE: &str = "Delete";

/// The claim of `template` for the pod of `ordinal` of set `set`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims the pod of `ordinal` needs, in template order (upstream's
/// getPersistentVolumeClaims): the template with its name, namespace and labels set.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector_labels =
        set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|template| {
            let mut claim = template.clone();
            let name = template.metadata.name.as_deref().unwrap_or("");
            claim.metadata.name = Some(claim_name(name, set_name(set), ordinal));
            claim.metadata.namespace = Some(set_namespace(set).to_owned());
            let labels = claim.metadata.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(selector_labels.clone());
            claim.status = None;
            claim
        })
        .collect()
}

/// `(whenScaled is Delete, whenDeleted is Delete)`; anything but Delete counts as Retain.
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let policy =
        set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some(DELETE);
    (
        delete(policy.and_then(|p| p.when_scaled.as_ref())),
        delete(policy.and_then(|p| p.when_deleted.as_ref())),
    )
}

/// An owner as the references name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn of_set(set: &StatefulSet) -> Owner {
        Owner {
            api_version: "apps/v1",
            kind: "StatefulSet",
            name: set_name(set).to_owned(),
            uid: set.metadata.uid.clone().unwrap_or_default(),
        }
    }

    pub fn of_pod(pod: &Pod) -> Owner {
        Owner {
            api_version: "v1",
            kind: "Pod",
            name: name_of(pod).to_owned(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The reference names this owner's kind and name (whatever the uid).
    fn named_by(&self, r: &OwnerReference) -> bool {
        r.api_version == self.api_version && r.kind == self.kind && r.name == self.name
    }

    fn controller_reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: self.api_version.into(),
            kind: self.kind.into(),
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or(&[])
}

fn has_ref(claim: &PersistentVolumeClaim, owner: &Owner) -> bool {
    !owner.uid.is_empty() && refs(claim).iter().any(|r| r.uid == owner.uid)
}

/// The first reference naming `owner` points at another incarnation of it.
fn has_stale_ref(claim: &PersistentVolumeClaim, owner: &Owner) -> bool {
    refs(claim).iter().find(|r| owner.named_by(r)).is_some_and(|r| r.uid != owner.uid)
}

/// Controlled by something other than the set or pod, under a Delete policy (with Retain
/// everywhere others may manage the claim).
fn has_unexpected_controller(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Owner,
) -> bool {
    if retention(set) == (false, false) {
        return false;
    }
    let owner = Owner::of_set(set);
    refs(claim).iter().any(|r| {
        if owner.named_by(r) {
            return r.uid != owner.uid;
        }
        if pod.named_by(r) {
            return r.uid != pod.uid;
        }
        r.controller == Some(true)
    })
}

/// The set or pod is an owner without being the controller.
fn has_non_controller_owner(claim: &PersistentVolumeClaim, set: &Owner, pod: &Owner) -> bool {
    refs(claim).iter().any(|r| {
        ((!set.uid.is_empty() && r.uid == set.uid) || (!pod.uid.is_empty() && r.uid == pod.uid))
            && r.controller != Some(true)
    })
}

/// Whether the claim's owners already are what the retention policy wants (upstream's
/// isClaimOwnerUpToDate); claims in an unknown state (stale or foreign owners) count as
/// up to date so that they are not touched.
pub fn owners_up_to_date(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    let (set_owner, pod_owner) = (Owner::of_set(set), Owner::of_pod(pod));
    if has_stale_ref(claim, &set_owner) || has_stale_ref(claim, &pod_owner) {
        return true;
    }
    if has_unexpected_controller(claim, set, &pod_owner) {
        return !(has_ref(claim, &set_owner) || has_ref(claim, &pod_owner));
    }
    if has_non_controller_owner(claim, &set_owner, &pod_owner) {
        return false;
    }
    let (scaled_delete, deleted_delete) = retention(set);
    let scaled_down = !in_ordinal_range(set, pod);
    let (want_set, want_pod) = wanted_owners(scaled_delete, deleted_delete, scaled_down);
    has_ref(claim, &set_owner) == want_set && has_ref(claim, &pod_owner) == want_pod
}

/// Whether the claim should be owned by the set and by the pod.
fn wanted_owners(scaled_delete: bool, deleted_delete: bool, scaled_down: bool) -> (bool, bool) {
    match (scaled_delete, deleted_delete) {
        (false, false) => (false, false),
        (false, true) => (true, false),
        (true, false) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    }
}

/// The claim's owner references as the retention policy wants them (upstream's
/// updateClaimOwnerRefForSetAndPod): references to the set and pod are dropped, then the
/// wanted ones added as controller references (none if someone else controls the claim).
pub fn updated_owner_refs(
    claim: &PersistentVolumeClaim,
    set: &StatefulSet,
    pod: &Pod,
) -> Vec<OwnerReference> {
    let (set_owner, pod_owner) = (Owner::of_set(set), Owner::of_pod(pod));
    let unexpected = has_unexpected_controller(claim, set, &pod_owner);
    let mut out: Vec<OwnerReference> = refs(claim)
        .iter()
        .filter(|r| !set_owner.named_by(r) && !pod_owner.named_by(r))
        .cloned()
        .collect();
    if unexpected {
        return out;
    }
    let (scaled_delete, deleted_delete) = retention(set);
    let (want_set, want_pod) =
        wanted_owners(scaled_delete, deleted_delete, !in_ordinal_range(set, pod));
    if want_set && !set_owner.uid.is_empty() {
        out.push(set_owner.controller_reference());
    }
    if want_pod && !pod_owner.uid.is_empty() {
        out.push(pod_owner.controller_reference());
    }
    out
}

/// The claim still belongs to an earlier pod of this name (it will be garbage collected):
/// the new pod must wait (upstream's PodClaimIsStale). Only with whenScaled Delete.
pub fn is_stale_for(claim: &PersistentVolumeClaim, set: &StatefulSet, pod: &Pod) -> bool {
    retention(set).0 && has_stale_ref(claim, &Owner::of_pod(pod))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::set;
    use serde_json::json;

    fn pod(name: &str, uid: &str) -> Pod {
        serde_json::from_value(
            json!({ "metadata": { "name": name, "namespace": "ns", "uid": uid } }),
        )
        .unwrap()
    }

    fn policy(scaled: &str, deleted: &str) -> StatefulSet {
        set(json!({ "spec": { "persistentVolumeClaimRetentionPolicy": {
            "whenScaled": scaled, "whenDeleted": deleted } } }))
    }

    fn owners(refs: &[OwnerReference]) -> Vec<(&str, &str, Option<bool>)> {
        refs.iter().map(|r| (r.kind.as_str(), r.uid.as_str(), r.controller)).collect()
    }

    #[test]
    fn claims_from_templates() {
        let s = set(json!({ "spec": { "volumeClaimTemplates": [
            { "metadata": { "name": "www", "labels": { "tier": "db" } }, "spec": { "storageClassName": "standard" } },
            { "metadata": { "name": "logs" }, "spec": {} }
        ] } }));
        let claims = claims_for(&s, 4);
        assert_eq!(claims.len(), 2);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-4"));
        assert_eq!(claims[0].metadata.namespace.as_deref(), Some("ns"));
        let labels = claims[0].metadata.labels.clone().unwrap();
        assert_eq!((labels["tier"].as_str(), labels["app"].as_str()), ("db", "web"));
        assert_eq!(
            claims[0].spec.as_ref().unwrap().storage_class_name.as_deref(),
            Some("standard")
        );
        assert_eq!(claims[1].metadata.name.as_deref(), Some("logs-web-4"));
    }

    #[test]
    fn retention_policies_decide_the_owners() {
        let in_range = pod("web-1", "p1");
        let condemned = pod("web-5", "p5");
        let claim = PersistentVolumeClaim::default();
        let cases = [
            (("Retain", "Retain"), vec![], vec![]),
            (
                ("Retain", "Delete"),
                vec![("StatefulSet", "set-uid", Some(true))],
                vec![("StatefulSet", "set-uid", Some(true))],
            ),
            (("Delete", "Retain"), vec![], vec![("Pod", "p5", Some(true))]),
            (
                ("Delete", "Delete"),
                vec![("StatefulSet", "set-uid", Some(true))],
                vec![("Pod", "p5", Some(true))],
            ),
        ];
        for ((scaled, deleted), want_in_range, want_condemned) in cases {
            let s = policy(scaled, deleted);
            let got = updated_owner_refs(&claim, &s, &in_range);
            assert_eq!(owners(&got), want_in_range, "{scaled}/{deleted} in range");
            let got = updated_owner_refs(&claim, &s, &condemned);
            assert_eq!(owners(&got), want_condemned, "{scaled}/{deleted} condemned");
            // Applying the update makes the claim up to date.
            let mut updated = claim.clone();
            updated.metadata.owner_references = Some(got);
            assert!(owners_up_to_date(&updated, &s, &condemned), "{scaled}/{deleted}");
            let fresh = owners_up_to_date(&claim, &s, &condemned);
            assert_eq!(fresh, want_condemned.is_empty(), "{scaled}/{deleted} before");
        }
    }

    #[test]
    fn foreign_and_stale_owners_are_left_alone() {
        let s = policy("Delete", "Delete");
        let condemned = pod("web-5", "p5");
        let mut claim = PersistentVolumeClaim::default();
        claim.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "web-5".into(),
            uid: "old".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(owners_up_to_date(&claim, &s, &condemned), "stale: not touched");
        assert!(is_stale_for(&claim, &s, &pod("web-5", "")), "a new web-5 must wait");
        assert!(!is_stale_for(&claim, &policy("Retain", "Delete"), &pod("web-5", "")));

        let mut foreign = PersistentVolumeClaim::default();
        foreign.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "x/v1".into(),
            kind: "Other".into(),
            name: "o".into(),
            uid: "o".into(),
            controller: Some(true),
            ..Default::default()
        }]);
        assert!(owners_up_to_date(&foreign, &s, &condemned));
        assert_eq!(
            owners(&updated_owner_refs(&foreign, &s, &condemned)),
            vec![("Other", "o", Some(true))]
        );
    }
}
