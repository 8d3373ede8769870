//! ControllerRevisions: the recorded history of a controller whose pods are not grouped in
//! ReplicaSets (DaemonSet, StatefulSet), shaped after upstream's `pkg/controller/history`.
//!
//! A revision is named `<parent>-<hash>` (the parent's name cut to 223 bytes), carries the
//! parent's template labels plus a hash label, a controller reference to its parent, opaque
//! `data` (what the parent kind records: for DaemonSets and StatefulSets a strategic merge
//! patch that restores the template) and a `revision` number that grows with every new
//! template and is raised again when an old template comes back (rollback).
//!
//! Pure helpers (names, hashes, equality, ordering, which revisions to drop beyond
//! revisionHistoryLimit) are separate from the API calls (claim, create with collision
//! handling, renumber, delete).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Client;
use kube::api::{DeleteParams, PostParams, Preconditions};
use rudder_client::Informer;
use rudder_client::objects::{controller_of, selector_matches};
use serde_json::Value;

use crate::Error;
use crate::api::{NamespacedObject, Target, call};
use crate::claim::claim_objects;
use crate::deployment::util::safe_encode;

/// The label DaemonSets and StatefulSets put on their revisions and pods: which revision a
/// pod was made from (apps/v1 `ControllerRevisionHashLabelKey`).
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The hash label upstream's generic history code adds to the revisions it makes.
pub const HISTORY_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Longest parent-name prefix in a revision name (253 minus room for the hash).
pub const MAX_PREFIX_BYTES: usize = 223;
/// Most names tried when every hash so far collided with a different revision.
pub const MAX_CREATE_ATTEMPTS: usize = 64;

/// FNV-1 (not 1a), 32 bits: what upstream's HashControllerRevision uses.
pub fn fnv32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| h.wrapping_mul(0x0100_0193) ^ u32::from(*b))
}

/// `<prefix>-<hash>`, the prefix cut to [`MAX_PREFIX_BYTES`] (on a character boundary).
pub fn controller_revision_name(prefix: &str, hash: &str) -> String {
    let mut end = prefix.len().min(MAX_PREFIX_BYTES);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &prefix[..end])
}

/// The revision's data as bytes (compact JSON, keys sorted).
pub fn data_bytes(revision: &ControllerRevision) -> Vec<u8> {
    revision.data.as_ref().map(|d| serde_json::to_vec(&d.0).unwrap_or_default()).unwrap_or_default()
}

/// Upstream's HashControllerRevision: FNV-1 over the data, then the probe (collision count)
/// in decimal, the sum in decimal safe-encoded.
pub fn hash_controller_revision(revision: &ControllerRevision, probe: Option<i32>) -> String {
    let mut bytes = data_bytes(revision);
    if let Some(p) = probe {
        bytes.extend_from_slice(p.to_string().as_bytes());
    }
    safe_encode(&fnv32(&bytes).to_string())
}

/// A revision of `parent` (given as its controller reference) holding `data`, labelled like
/// the parent's template plus [`HISTORY_HASH_LABEL`], named `<parent>-<hash>`.
pub fn new_controller_revision(
    parent: OwnerReference,
    namespace: &str,
    template_labels: &BTreeMap<String, String>,
    data: Value,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let mut cr = ControllerRevision {
        metadata: ObjectMeta {
            namespace: Some(namespace.to_owned()),
            labels: Some(template_labels.clone()),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(data)),
        revision,
    };
    let hash = hash_controller_revision(&cr, collision_count);
    cr.metadata.name = Some(controller_revision_name(&parent.name, &hash));
    cr.metadata.labels.get_or_insert_with(BTreeMap::new).insert(HISTORY_HASH_LABEL.into(), hash);
    cr.metadata.owner_references = Some(vec![parent]);
    cr
}

/// Whether two revisions hold the same data (a differing hash label settles it at once).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let hash =
        |r: &ControllerRevision| r.metadata.labels.as_ref()?.get(HISTORY_HASH_LABEL).cloned();
    if let (Some(x), Some(y)) = (hash(a), hash(b))
        && x != y
    {
        return false;
    }
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// The revisions equal to `needle`, in their order.
pub fn find_equal_revisions(
    revisions: &[Arc<ControllerRevision>],
    needle: &ControllerRevision,
) -> Vec<Arc<ControllerRevision>> {
    revisions.iter().filter(|r| equal_revision(r, needle)).cloned().collect()
}

/// Revision number, then creation time, then name (upstream's byRevision).
pub fn by_revision(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| {
            let t = |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

pub fn sort_controller_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| by_revision(a, b));
}

/// The highest revision number (0 for none).
pub fn max_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0).max(0)
}

/// The number the next new revision gets.
pub fn next_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    max_revision(revisions) + 1
}

/// Which of `old` to delete to keep at most `limit` of them, oldest first, never one that
/// `live` says is still in use (pods run from it); the result may leave more than `limit`.
pub fn revisions_to_truncate(
    old: &[Arc<ControllerRevision>],
    limit: i32,
    live: impl Fn(&ControllerRevision) -> bool,
) -> Vec<Arc<ControllerRevision>> {
    let mut to_kill = old.len() as i64 - i64::from(limit.max(0));
    if to_kill <= 0 {
        return Vec::new();
    }
    let mut sorted = old.to_vec();
    sort_controller_revisions(&mut sorted);
    let mut doomed = Vec::new();
    for r in sorted {
        if to_kill <= 0 {
            break;
        }
        if live(&r) {
            continue;
        }
        doomed.push(r);
        to_kill -= 1;
    }
    doomed
}

/// The revisions in the parent's namespace that match `selector` and are controlled by the
/// parent (`parent_uid`) or by nobody (upstream's ListControllerRevisions).
pub fn list_controller_revisions(
    revisions: &Informer<ControllerRevision>,
    namespace: &str,
    parent_uid: &str,
    selector: &LabelSelector,
) -> Vec<Arc<ControllerRevision>> {
    let empty = BTreeMap::new();
    revisions
        .list_namespace(namespace)
        .into_iter()
        .filter(|r| selector_matches(selector, r.metadata.labels.as_ref().unwrap_or(&empty)))
        .filter(|r| controller_of(&r.metadata).is_none_or(|c| c.uid == parent_uid))
        .collect()
}

/// The revisions `parent` controls after adopting orphans its selector matches and
/// releasing those it controls that no longer match (upstream's ClaimControllerRevisions
/// over every revision of the namespace).
pub async fn claim_controller_revisions<K: NamespacedObject>(
    client: &Client,
    revisions: &Informer<ControllerRevision>,
    parent: &K,
    selector: &LabelSelector,
) -> Result<Vec<Arc<ControllerRevision>>, Error> {
    let namespace = parent.meta().namespace.clone().unwrap_or_default();
    let empty = BTreeMap::new();
    let all = revisions.list_namespace(&namespace);
    claim_objects(client, parent, all, |r: &ControllerRevision| {
        selector_matches(selector, r.metadata.labels.as_ref().unwrap_or(&empty))
    })
    .await
}

fn target<'a>(verb: &'static str, namespace: &'a str, name: &'a str) -> Target<'a> {
    Target { verb, kind: "ControllerRevision", namespace, name }
}

/// Creates `revision` under the name `<parent>-<hash with collision_count>`: when that name
/// is taken by a revision with the same data, that one is returned; when by a different one,
/// `collision_count` is raised and the next name tried (upstream's CreateControllerRevision).
pub async fn create_controller_revision(
    client: &Client,
    parent_name: &str,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let namespace = revision.metadata.namespace.clone().unwrap_or_default();
    let api: kube::Api<ControllerRevision> = kube::Api::namespaced(client.clone(), &namespace);
    let mut attempts = 0;
    loop {
        let mut clone = revision.clone();
        let hash = hash_controller_revision(revision, Some(*collision_count));
        let name = controller_revision_name(parent_name, &hash);
        clone.metadata.name = Some(name.clone());
        match call(target("create", &namespace, &name), api.create(&PostParams::default(), &clone))
            .await
        {
            Err(e) if e.is_already_exists() => {
                let existing = call(target("get", &namespace, &name), api.get(&name)).await?;
                if existing.data.as_ref().map(|d| &d.0) == clone.data.as_ref().map(|d| &d.0) {
                    return Ok(existing);
                }
                attempts += 1;
                if attempts >= MAX_CREATE_ATTEMPTS {
                    return Err(e);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// Sets the revision number of `revision` to `new_revision` (re-read and retried on a
/// conflict, a few times).
pub async fn update_controller_revision(
    client: &Client,
    revision: &ControllerRevision,
    new_revision: i64,
) -> Result<ControllerRevision, Error> {
    let namespace = revision.metadata.namespace.clone().unwrap_or_default();
    let name = revision.metadata.name.clone().unwrap_or_default();
    let api: kube::Api<ControllerRevision> = kube::Api::namespaced(client.clone(), &namespace);
    let mut current = revision.clone();
    let mut attempt = 0;
    loop {
        if current.revision == new_revision {
            return Ok(current);
        }
        current.revision = new_revision;
        let t = target("update", &namespace, &name);
        match call(t, api.replace(&name, &PostParams::default(), &current)).await {
            Ok(updated) => return Ok(updated),
            Err(e) if e.is_conflict() && attempt < 4 => {
                attempt += 1;
                current = call(target("get", &namespace, &name), api.get(&name)).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Deletes exactly this revision (uid precondition); gone already is fine.
pub async fn delete_controller_revision(
    client: &Client,
    revision: &ControllerRevision,
) -> Result<(), Error> {
    let namespace = revision.metadata.namespace.clone().unwrap_or_default();
    let name = revision.metadata.name.clone().unwrap_or_default();
    let api: kube::Api<ControllerRevision> = kube::Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: revision.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match call(target("delete", &namespace, &name), api.delete(&name, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rev(name: &str, revision: i64, data: Value) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(RawExtension(data)),
            revision,
        })
    }

    #[test]
    fn names_and_hashes() {
        assert_eq!(controller_revision_name("web", "abc"), "web-abc");
        let long = "a".repeat(300);
        assert_eq!(controller_revision_name(&long, "h").len(), MAX_PREFIX_BYTES + 2);
        // FNV-1 reference values (the empty input is the offset basis; "a" from the spec).
        assert_eq!(fnv32(b""), 0x811c_9dc5);
        assert_eq!(fnv32(b"a"), 0x050c_5d7e);
        let r = rev("x", 1, json!({"a": 1}));
        let h0 = hash_controller_revision(&r, None);
        assert_eq!(h0, hash_controller_revision(&r, None), "stable");
        assert_ne!(h0, hash_controller_revision(&r, Some(1)), "the probe changes the hash");
        assert!(h0.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn new_revisions_are_named_labelled_and_owned() {
        let parent = OwnerReference {
            name: "web".into(),
            uid: "u".into(),
            kind: "StatefulSet".into(),
            controller: Some(true),
            ..Default::default()
        };
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let cr = new_controller_revision(parent, "ns", &labels, json!({"x": 1}), 3, None);
        let hash = cr.metadata.labels.as_ref().unwrap()[HISTORY_HASH_LABEL].clone();
        assert_eq!(cr.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
        assert_eq!(cr.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(cr.revision, 3);
        assert_eq!(controller_of(&cr.metadata).unwrap().uid, "u");
    }

    #[test]
    fn equality_ordering_and_truncation() {
        let a = rev("a", 1, json!({"t": 1}));
        let b = rev("b", 2, json!({"t": 2}));
        let c = rev("c", 3, json!({"t": 1}));
        assert!(equal_revision(&a, &c));
        assert!(!equal_revision(&a, &b));
        let all = vec![c.clone(), a.clone(), b.clone()];
        let eq: Vec<_> = find_equal_revisions(&all, &a).iter().map(|r| r.revision).collect();
        assert_eq!(eq, vec![3, 1]);
        let mut sorted = all.clone();
        sort_controller_revisions(&mut sorted);
        assert_eq!(sorted.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(max_revision(&all), 3);
        assert_eq!(next_revision(&all), 4);
        assert_eq!(next_revision(&[]), 1);

        // Keep 1 of 3: the two oldest go, unless live.
        let doomed = revisions_to_truncate(&all, 1, |_| false);
        assert_eq!(doomed.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2]);
        let doomed = revisions_to_truncate(&all, 1, |r| r.revision == 1);
        assert_eq!(doomed.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![2, 3]);
        assert!(revisions_to_truncate(&all, 3, |_| false).is_empty());
        assert_eq!(revisions_to_truncate(&all, 0, |_| false).len(), 3);
    }
}
