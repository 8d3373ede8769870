//! ControllerRevisions of a StatefulSet (upstream's `controller_history` and the revision
//! helpers of stateful_set_utils). A revision is named `<set>-<hash>`, labelled with the
//! template's labels and `controller.kubernetes.io/hash`, controlled by the set, annotated
//! with the set's annotations (kubectl shows `kubernetes.io/change-cause` from there), and
//! numbered from 1. Its data is the strategic merge patch that puts the template back:
//! `{"spec":{"template":{...,"$patch":"replace"}}}` — what `kubectl rollout undo` sends.
//! The hash is FNV-1 (32 bit) of the data's JSON and the collision count, in upstream's safe
//! alphabet; a name taken by a revision with other data bumps `status.collisionCount`.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::Client;
use kube::api::{Patch, PatchParams, PostParams};
use rudder_client::objects::controller_reference;
use rudder_workloads::api::{Target, call, delete_exactly};
use serde_json::{Value, json};

use crate::Error;
use crate::pods::{set_name, set_namespace};

/// The hash label every revision carries (upstream's ControllerRevisionHashLabel).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Longest set-name prefix of a revision name (upstream's ControllerRevisionName).
const MAX_PREFIX: usize = 223;
/// Characters of hashes in names (upstream's rand.SafeEncodeString alphabet).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Names tried before giving up on hash collisions in one reconcile.
const MAX_COLLISIONS: usize = 64;

/// The patch that restores `set`'s template (upstream's getPatch).
pub fn patch_of(set: &StatefulSet) -> Result<Value, String> {
    let template = set.spec.as_ref().map(|s| &s.template).ok_or("no spec")?;
    let mut template = serde_json::to_value(template).map_err(|e| e.to_string())?;
    let Value::Object(map) = &mut template else { return Err("template is not an object".into()) };
    map.insert("$patch".into(), json!("replace"));
    Ok(json!({ "spec": { "template": template } }))
}

fn fnv1_32(bytes: &[u8], mut hash: u32) -> u32 {
    for b in bytes {
        hash = hash.wrapping_mul(16_777_619);
        hash ^= u32::from(*b);
    }
    hash
}

/// The hash of a revision's data and the collision count (upstream's HashControllerRevision).
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mut hash = fnv1_32(&bytes, 2_166_136_261);
    if let Some(probe) = collision_count {
        hash = fnv1_32(probe.to_string().as_bytes(), hash);
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut end = prefix.len().min(MAX_PREFIX);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &prefix[..end])
}

/// A revision of `set`'s current template numbered `revision` (not created yet).
pub fn new_revision(
    set: &StatefulSet,
    revision: i64,
    collision_count: i32,
) -> Result<ControllerRevision, String> {
    let data = patch_of(set)?;
    let hash = hash_revision(&data, Some(collision_count));
    let mut labels: BTreeMap<String, String> = set
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(HASH_LABEL.into(), hash.clone());
    let mut revision_obj = ControllerRevision {
        data: Some(RawExtension(data)),
        revision,
        ..ControllerRevision::default()
    };
    let meta = &mut revision_obj.metadata;
    meta.name = Some(revision_name(set_name(set), &hash));
    meta.namespace = Some(set_namespace(set).to_owned());
    meta.labels = Some(labels);
    meta.annotations = set.metadata.annotations.clone().filter(|a| !a.is_empty());
    meta.owner_references = Some(vec![controller_reference(set)]);
    Ok(revision_obj)
}

/// `set` with the template stored in `revision` (upstream's ApplyRevision; the data is a
/// replace of the template, so the template is taken as it is).
pub fn apply_revision(
    set: &StatefulSet,
    revision: &ControllerRevision,
) -> Result<StatefulSet, String> {
    let data = revision.data.as_ref().map(|d| &d.0).ok_or("revision has no data")?;
    let mut template = data.pointer("/spec/template").cloned().ok_or("no spec.template in data")?;
    if let Value::Object(map) = &mut template {
        map.remove("$patch");
    }
    let template: PodTemplateSpec = serde_json::from_value(template).map_err(|e| e.to_string())?;
    let mut out = set.clone();
    out.spec.get_or_insert_with(Default::default).template = template;
    Ok(out)
}

/// Same stored template (upstream compares the hash labels when both are numeric, which
/// safe-encoded hashes never are, then the data).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    a.data.as_ref().map(|d| &d.0) == b.data.as_ref().map(|d| &d.0)
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort_revisions(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// One more than the newest revision's number (1 for none); `sorted` oldest first.
pub fn next_revision(sorted: &[ControllerRevision]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// How to get the update revision (upstream's getStatefulSetRevisions).
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateRevision {
    /// The newest revision already holds the template: use `sorted[i]`.
    Existing(usize),
    /// An older revision holds it (a rollback): give `sorted[i]` the next number.
    Renumber(usize, i64),
    /// No revision holds it: create this one.
    Create(Box<ControllerRevision>),
}

/// Decides the update revision from the revisions (`sorted`, oldest first) and a `candidate`
/// made from the set's template with the next number.
pub fn decide_update_revision(
    sorted: &[ControllerRevision],
    candidate: ControllerRevision,
) -> UpdateRevision {
    let last_equal = sorted.iter().rposition(|r| equal_revision(r, &candidate));
    match last_equal {
        Some(i) if i + 1 == sorted.len() => UpdateRevision::Existing(i),
        Some(i) => UpdateRevision::Renumber(i, candidate.revision),
        None => UpdateRevision::Create(Box::new(candidate)),
    }
}

/// Revisions to delete to keep at most `limit` that are not live (the current and update
/// revisions and any revision a pod is at), oldest first (upstream's truncateHistory).
pub fn history_to_delete<'a>(
    sorted: &'a [ControllerRevision],
    live: &HashSet<&str>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> = sorted
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or("")))
        .collect();
    let limit = limit.max(0) as usize;
    if history.len() <= limit {
        return Vec::new();
    }
    history[..history.len() - limit].to_vec()
}

fn target<'a>(verb: &'static str, revision: &'a ControllerRevision) -> Target<'a> {
    Target {
        verb,
        kind: "ControllerRevision",
        namespace: revision.metadata.namespace.as_deref().unwrap_or(""),
        name: revision.metadata.name.as_deref().unwrap_or(""),
    }
}

/// Creates `revision`, trying further names while a revision with other data holds the name
/// (each bumps `collision_count`); a revision with the same data under the name is reused.
pub async fn create_revision(
    client: &Client,
    set: &StatefulSet,
    revision: &ControllerRevision,
    collision_count: &mut i32,
) -> Result<ControllerRevision, Error> {
    let api: kube::Api<ControllerRevision> =
        kube::Api::namespaced(client.clone(), set_namespace(set));
    let data = revision.data.as_ref().map(|d| d.0.clone()).unwrap_or(Value::Null);
    for _ in 0..MAX_COLLISIONS {
        let mut attempt = revision.clone();
        attempt.metadata.name =
            Some(revision_name(set_name(set), &hash_revision(&data, Some(*collision_count))));
        let created =
            call(target("create", &attempt), api.create(&PostParams::default(), &attempt)).await;
        match created {
            Ok(r) => return Ok(r),
            Err(e) if e.is_already_exists() => {
                let name = attempt.metadata.name.as_deref().unwrap_or("");
                let existing = call(target("get", &attempt), api.get(name)).await?;
                if equal_revision(&existing, &attempt) {
                    return Ok(existing);
                }
                *collision_count = collision_count.saturating_add(1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Invalid {
        namespace: set_namespace(set).to_owned(),
        name: set_name(set).to_owned(),
        message: format!("no free revision name after {MAX_COLLISIONS} hash collisions"),
    })
}

/// Gives `revision` the number `number` (a rollback to it).
pub async fn renumber(
    client: &Client,
    revision: &ControllerRevision,
    number: i64,
) -> Result<ControllerRevision, Error> {
    let ns = revision.metadata.namespace.as_deref().unwrap_or("");
    let api: kube::Api<ControllerRevision> = kube::Api::namespaced(client.clone(), ns);
    let patch = json!({
        "metadata": { "resourceVersion": revision.metadata.resource_version },
        "revision": number,
    });
    let t = target("renumber", revision);
    Ok(call(t, api.patch(t.name, &PatchParams::default(), &Patch::Merge(&patch))).await?)
}

/// Deletes `revision` (that incarnation); gone already is fine.
pub async fn delete(client: &Client, revision: &ControllerRevision) -> Result<(), Error> {
    let ns = revision.metadata.namespace.as_deref().unwrap_or("");
    let api: kube::Api<ControllerRevision> = kube::Api::namespaced(client.clone(), ns);
    let t = target("delete", revision);
    let params = delete_exactly(revision.metadata.uid.as_deref(), None);
    match call(t, api.delete(t.name, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::set;

    fn rev(set: &StatefulSet, number: i64) -> ControllerRevision {
        new_revision(set, number, 0).unwrap()
    }

    fn image(s: &mut StatefulSet, image: &str) {
        s.spec.as_mut().unwrap().template.spec.as_mut().unwrap().containers[0].image =
            Some(image.into());
    }

    #[test]
    fn revisions_hold_the_template_as_a_replace_patch() {
        let mut s =
            set(json!({ "metadata": { "annotations": { "kubernetes.io/change-cause": "v1" } } }));
        let r = rev(&s, 1);
        let name = r.metadata.name.clone().unwrap();
        let hash = name.strip_prefix("web-").unwrap();
        assert!(!hash.is_empty() && hash.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{name}");
        assert_eq!(r.metadata.labels.as_ref().unwrap()[HASH_LABEL], hash);
        assert_eq!(r.metadata.labels.as_ref().unwrap()["app"], "web");
        assert_eq!(r.metadata.annotations.as_ref().unwrap()["kubernetes.io/change-cause"], "v1");
        assert_eq!(r.metadata.owner_references.as_ref().unwrap()[0].kind, "StatefulSet");
        let data = &r.data.as_ref().unwrap().0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(data["spec"]["template"]["spec"]["containers"][0]["image"], "i");
        assert_eq!(data.as_object().unwrap().len(), 1);
        assert_eq!(data["spec"].as_object().unwrap().len(), 1);

        // Deterministic; another template or collision count gives another name.
        assert_eq!(rev(&s, 1).metadata.name, r.metadata.name);
        assert_ne!(new_revision(&s, 1, 1).unwrap().metadata.name, r.metadata.name);
        let old = s.clone();
        image(&mut s, "j");
        assert_ne!(rev(&s, 2).metadata.name, r.metadata.name);

        // Applying the old revision gives the old template back.
        let back = apply_revision(&s, &r).unwrap();
        assert_eq!(back.spec.unwrap().template, old.spec.unwrap().template);
    }

    #[test]
    fn hashing_is_upstreams_fnv1() {
        // FNV-1 32 of "a" is 0x050c5d7e; its decimal string safe-encoded.
        assert_eq!(fnv1_32(b"a", 2_166_136_261), 0x050c_5d7e);
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn update_revision_is_reused_renumbered_or_created() {
        let mut s = set(json!({}));
        let r1 = rev(&s, 1);
        image(&mut s, "v2");
        let r2 = rev(&s, 2);
        let sorted = vec![r1.clone(), r2.clone()];
        assert_eq!(decide_update_revision(&sorted, rev(&s, 3)), UpdateRevision::Existing(1));
        image(&mut s, "i"); // back to the first template: a rollback
        assert_eq!(decide_update_revision(&sorted, rev(&s, 3)), UpdateRevision::Renumber(0, 3));
        image(&mut s, "v3");
        assert!(matches!(decide_update_revision(&sorted, rev(&s, 3)), UpdateRevision::Create(_)));
        assert!(matches!(decide_update_revision(&[], rev(&s, 1)), UpdateRevision::Create(_)));
        assert_eq!(next_revision(&sorted), 3);
        assert_eq!(next_revision(&[]), 1);
    }

    #[test]
    fn history_beyond_the_limit_that_is_not_live_goes_oldest_first() {
        let mut s = set(json!({}));
        let revisions: Vec<ControllerRevision> = (1..=5)
            .map(|n| {
                image(&mut s, &format!("v{n}"));
                rev(&s, n)
            })
            .collect();
        let mut shuffled = vec![
            revisions[3].clone(),
            revisions[0].clone(),
            revisions[4].clone(),
            revisions[1].clone(),
            revisions[2].clone(),
        ];
        sort_revisions(&mut shuffled);
        assert_eq!(shuffled.iter().map(|r| r.revision).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        let name = |i: usize| revisions[i].metadata.name.clone().unwrap();
        let (n1, n4, n5) = (name(0), name(3), name(4));
        let live: HashSet<&str> = [n1.as_str(), n4.as_str(), n5.as_str()].into();
        let gone: Vec<i64> =
            history_to_delete(&shuffled, &live, 1).iter().map(|r| r.revision).collect();
        assert_eq!(gone, vec![2], "live revisions stay; one of 2 and 3 is kept");
        assert!(history_to_delete(&shuffled, &live, 2).is_empty());
        assert_eq!(history_to_delete(&shuffled, &live, 0).len(), 2);
    }
}
