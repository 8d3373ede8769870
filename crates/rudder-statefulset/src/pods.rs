//! Stateful pod identities (upstream's stateful_set_utils): names `<set>-<ordinal>`, the
//! ordinal range a set controls, the identity labels, hostname and subdomain, the claim
//! volumes, and the pod states the controller decides on. All pure.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, Volume};
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::{controller_reference, pod_is_available, pod_is_ready};

use crate::claims::claim_name;

/// The pod's name, as a label (upstream's StatefulSetPodNameLabel).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The pod's ordinal, as a label (upstream's PodIndexLabel).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// The name of the ControllerRevision a pod was made from (upstream's StatefulSetRevisionLabel).
pub const REVISION_LABEL: &str = "controller-revision-hash";

pub const ORDERED_READY: &str = "OrderedReady";
pub const PARALLEL: &str = "Parallel";
pub const ROLLING_UPDATE: &str = "RollingUpdate";
pub const ON_DELETE: &str = "OnDelete";

/// The set a pod name belongs to and its ordinal: `web-12` -> `("web", 12)`; names without a
/// trailing `-<digits>` (or with an ordinal beyond i32) have none.
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i32)> {
    let (parent, digits) = pod_name.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, digits.parse().ok()?))
}

pub fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// The pod's ordinal, if its name has one.
pub fn ordinal_of(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(name_of(pod)).map(|(_, o)| o)
}

/// Whether the pod's name says it belongs to `set` (upstream's isMemberOf).
pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(name_of(pod)).is_some_and(|(parent, _)| parent == set_name(set))
}

pub fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

pub fn set_namespace(set: &StatefulSet) -> &str {
    set.metadata.namespace.as_deref().unwrap_or("")
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set_name(set))
}

/// spec.replicas (1 when unset, as defaulted; never negative).
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The first ordinal (spec.ordinals.start, else 0).
pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// The last ordinal the set keeps (inclusive; below the start when replicas is 0).
pub fn end_ordinal(set: &StatefulSet) -> i32 {
    start_ordinal(set).saturating_add(replicas(set)) - 1
}

pub fn in_ordinal_range(set: &StatefulSet, pod: &Pod) -> bool {
    ordinal_of(pod).is_some_and(|o| o >= start_ordinal(set) && o <= end_ordinal(set))
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

pub fn service_name(set: &StatefulSet) -> &str {
    set.spec.as_ref().and_then(|s| s.service_name.as_deref()).unwrap_or("")
}

/// Parallel pod management (upstream's allowsBurst).
pub fn allows_burst(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) == Some(PARALLEL)
}

/// The update strategy's type (RollingUpdate when unset, as defaulted).
pub fn strategy_type(set: &StatefulSet) -> &str {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or(ROLLING_UPDATE)
}

/// The rolling update's partition, if the strategy has a rollingUpdate (0 when unset).
pub fn partition(set: &StatefulSet) -> Option<i32> {
    let rolling = set.spec.as_ref()?.update_strategy.as_ref()?.rolling_update.as_ref()?;
    Some(rolling.partition.unwrap_or(0))
}

/// The revision a pod was made from ("" when unlabeled).
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The API server has the pod (a pod built here has no phase).
pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn is_pending(pod: &Pod) -> bool {
    phase(pod) == "Pending"
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

pub fn is_succeeded(pod: &Pod) -> bool {
    phase(pod) == "Succeeded"
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pod_is_ready(pod)
}

pub fn is_running_and_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    is_running_and_ready(pod) && pod_is_available(pod, min_ready_seconds, now)
}

pub fn is_healthy(pod: &Pod) -> bool {
    is_running_and_ready(pod) && !is_terminating(pod)
}

/// The pod has the name, namespace and identity labels of its ordinal in `set`.
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some((parent, ordinal)) = parent_and_ordinal(name_of(pod)) else { return false };
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    parent == set_name(set)
        && name_of(pod) == pod_name(set, ordinal)
        && pod.metadata.namespace.as_deref().unwrap_or("") == set_namespace(set)
        && label(POD_NAME_LABEL) == Some(name_of(pod))
        && label(POD_INDEX_LABEL) == Some(ordinal.to_string().as_str())
}

/// The pod's volumes reference its claims for every volumeClaimTemplate.
pub fn storage_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let Some(ordinal) = ordinal_of(pod) else { return false };
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    claim_templates(set).iter().all(|t| {
        let template = t.metadata.name.as_deref().unwrap_or("");
        volumes.into_iter().flatten().any(|v| {
            v.name == template
                && v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim_name(template, set_name(set), ordinal))
        })
    })
}

pub fn claim_templates(set: &StatefulSet) -> &[k8s_openapi::api::core::v1::PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or(&[])
}

/// Sets the identity labels (and name and namespace) of the pod's ordinal.
pub fn update_identity(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    pod.metadata.name = Some(pod_name(set, ordinal));
    pod.metadata.namespace = Some(set_namespace(set).to_owned());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), pod_name(set, ordinal));
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
}

/// Makes the pod's volumes named after claim templates reference the ordinal's claims
/// (replacing any template volume of the same name), keeping its other volumes after them.
pub fn update_storage(set: &StatefulSet, pod: &mut Pod, ordinal: i32) {
    let templates: Vec<&str> =
        claim_templates(set).iter().map(|t| t.metadata.name.as_deref().unwrap_or("")).collect();
    if templates.is_empty() {
        return;
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    let mut volumes: Vec<Volume> = templates
        .iter()
        .map(|t| Volume {
            name: (*t).to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(t, set_name(set), ordinal),
                read_only: None,
            }),
            ..Volume::default()
        })
        .collect();
    for v in spec.volumes.take().into_iter().flatten() {
        if !templates.contains(&v.name.as_str()) {
            volumes.push(v);
        }
    }
    spec.volumes = Some(volumes);
}

/// The pod of `ordinal` from `set`'s template (upstream's newStatefulSetPod), labelled with
/// `revision`: controller reference, identity, hostname and subdomain, claim volumes.
pub fn new_pod(set: &StatefulSet, ordinal: i32, revision: &str) -> Result<Pod, String> {
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = rudder_workloads::pod_control::pod_from_template(
        &template,
        set_namespace(set),
        set_name(set),
        controller_reference(set),
    )?;
    update_identity(set, &mut pod, ordinal);
    let name = pod_name(set, ordinal);
    let subdomain = service_name(set).to_owned();
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = (!subdomain.is_empty()).then_some(subdomain);
    update_storage(set, &mut pod, ordinal);
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(REVISION_LABEL.into(), revision.to_owned());
    Ok(pod)
}

/// Whether a new pod of `ordinal` is made at the current revision rather than the update
/// revision (upstream's newVersionedStatefulSetPod): below the partition of a rolling update.
/// `current_set` is the set as of its current revision.
pub fn uses_current_revision(current_set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(current_set);
    match partition(current_set) {
        Some(p) => ordinal < start.saturating_add(p),
        None => {
            let current = current_set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
            strategy_type(current_set) == ROLLING_UPDATE && ordinal < start.saturating_add(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::set;
    use serde_json::json;

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-"), None);
        assert_eq!(parent_and_ordinal("web-1a"), None);
        assert_eq!(parent_and_ordinal("web-99999999999"), None);
        let s = set(json!({ "spec": { "ordinals": { "start": 5 } } }));
        assert_eq!((start_ordinal(&s), end_ordinal(&s)), (5, 7));
        let zero = set(json!({ "spec": { "replicas": 0 } }));
        assert!(end_ordinal(&zero) < start_ordinal(&zero));
    }

    #[test]
    fn new_pods_have_their_identity_and_claims() {
        let s = set(json!({}));
        let pod = new_pod(&s, 2, "web-abc").unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        let labels = pod.metadata.labels.clone().unwrap();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[REVISION_LABEL], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.clone().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("svc"));
        let volumes = spec.volumes.unwrap();
        assert_eq!(volumes.len(), 2, "the template's www is replaced, tmp kept");
        assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "www-web-2");
        assert_eq!(volumes[1].name, "tmp");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("StatefulSet", "set-uid"));
        assert!(identity_matches(&s, &pod));
        assert!(storage_matches(&s, &pod));

        let mut other = pod.clone();
        other.metadata.labels.as_mut().unwrap().remove(POD_INDEX_LABEL);
        assert!(!identity_matches(&s, &other));
        other.spec.as_mut().unwrap().volumes = None;
        assert!(!storage_matches(&s, &other));
    }

    #[test]
    fn partition_decides_the_revision_of_new_pods() {
        let s =
            set(json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 2 } } } }));
        assert!(uses_current_revision(&s, 1));
        assert!(!uses_current_revision(&s, 2));
        let on_delete = set(
            json!({ "spec": { "updateStrategy": { "type": "OnDelete", "rollingUpdate": null } } }),
        );
        assert!(!uses_current_revision(&on_delete, 0));
    }
}
