//! The controller reference manager (upstream's `BaseControllerRefManager.ClaimObject`):
//! an owner adopts orphans its selector matches, releases objects it controls that its
//! selector no longer matches, and never touches objects another controller controls.
//! Adoption is refused while the owner is being deleted, and checked once per reconcile
//! against a fresh read of the owner (upstream's RecheckDeletionTimestamp).
//!
//! Both writes are strategic merge patches of `metadata.ownerReferences` that also carry the
//! object's `uid` (upstream's precondition) and the `resourceVersion` the decision was made
//! from, so an object that changed meanwhile (say, got another controller) is not touched.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::Error;
use crate::api::{NamespacedObject, api_for, call};

/// What an owner does with one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by this owner and selected: it is the owner's.
    Owned,
    /// An orphan the owner selects: take it.
    Adopt,
    /// Controlled by this owner but no longer selected: let it go.
    Release,
    /// Someone else's, or not selected, or going away: not the owner's business.
    Ignore,
}

/// The decision for one object. `owner_deleting`: the owner has a deletionTimestamp;
/// `selected`: the owner's selector (and any extra filter) matches the object.
pub fn claim(
    owner_uid: &str,
    owner_namespace: &str,
    owner_deleting: bool,
    obj: &ObjectMeta,
    selected: bool,
) -> Claim {
    if let Some(controller) = rudder_client::objects::controller_of(obj) {
        if controller.uid != owner_uid {
            return Claim::Ignore;
        }
        if selected {
            return Claim::Owned;
        }
        if owner_deleting {
            return Claim::Ignore;
        }
        return Claim::Release;
    }
    if owner_deleting || !selected || obj.deletion_timestamp.is_some() {
        return Claim::Ignore;
    }
    if !owner_namespace.is_empty() && obj.namespace.as_deref().unwrap_or("") != owner_namespace {
        return Claim::Ignore;
    }
    Claim::Adopt
}

/// Makes `owner` (given as its controller reference) the controller of `obj`. `Ok(None)`:
/// the object is gone.
pub async fn adopt<K: NamespacedObject>(
    client: &Client,
    owner: &OwnerReference,
    obj: &K,
) -> Result<Option<K>, Error> {
    let meta = obj.meta();
    let patch = json!({
        "metadata": {
            "ownerReferences": [owner],
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
        }
    });
    write(client, "adopt", obj, &patch).await
}

/// Removes `owner_uid`'s reference from `obj`. `Ok(None)`: the object is gone.
pub async fn release<K: NamespacedObject>(
    client: &Client,
    owner_uid: &str,
    obj: &K,
) -> Result<Option<K>, Error> {
    let meta = obj.meta();
    let patch = json!({
        "metadata": {
            "ownerReferences": [{ "$patch": "delete", "uid": owner_uid }],
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
        }
    });
    write(client, "release", obj, &patch).await
}

/// Before the first adoption: `owner`, read fresh from the API, is still the same object
/// (same uid) and not being deleted (upstream's RecheckDeletionTimestamp). `Err` carries the
/// reason adoption is refused.
pub async fn recheck_owner<K: NamespacedObject>(client: &Client, owner: &K) -> Result<(), String> {
    let (api, target) = api_for::<K, K>(client, "get", owner);
    let fresh = call(target, api.get(target.name)).await.map_err(|e| e.to_string())?;
    if fresh.meta().uid != owner.meta().uid {
        return Err(format!(
            "the original {} {}/{} is gone: got uid {:?}, wanted {:?}",
            K::KIND,
            target.namespace,
            target.name,
            fresh.meta().uid,
            owner.meta().uid
        ));
    }
    if fresh.meta().deletion_timestamp.is_some() {
        return Err(format!(
            "{} {}/{} has just been deleted",
            K::KIND,
            target.namespace,
            target.name
        ));
    }
    Ok(())
}

/// The objects of `candidates` that `owner` controls after adopting the orphans `selected`
/// accepts and releasing the ones it controls that `selected` no longer accepts (upstream's
/// ClaimObject loop: ClaimPods, ClaimControllerRevisions). The owner is re-read once before
/// the first adoption. Every object is handled; the errors are returned together.
pub async fn claim_objects<K: NamespacedObject, O: NamespacedObject>(
    client: &Client,
    owner: &K,
    candidates: Vec<std::sync::Arc<O>>,
    selected: impl Fn(&O) -> bool,
) -> Result<Vec<std::sync::Arc<O>>, Error> {
    let meta = owner.meta();
    let uid = meta.uid.clone().unwrap_or_default();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let deleting = meta.deletion_timestamp.is_some();
    let mut owned = Vec::with_capacity(candidates.len());
    let mut errors = Vec::new();
    let mut can_adopt: Option<Result<(), String>> = None;
    for obj in candidates {
        match claim(&uid, &namespace, deleting, obj.meta(), selected(&obj)) {
            Claim::Owned => owned.push(obj),
            Claim::Ignore => {}
            Claim::Release => {
                if let Err(e) = release(client, &uid, &*obj).await {
                    errors.push(e);
                }
            }
            Claim::Adopt => {
                if can_adopt.is_none() {
                    can_adopt = Some(recheck_owner(client, owner).await);
                }
                if let Some(Err(reason)) = &can_adopt {
                    errors.push(Error::CannotAdopt {
                        kind: K::KIND,
                        namespace: namespace.clone(),
                        name: meta.name.clone().unwrap_or_default(),
                        reason: reason.clone(),
                    });
                    continue;
                }
                let reference = rudder_client::objects::controller_reference(owner);
                match adopt(client, &reference, &*obj).await {
                    Ok(Some(adopted)) => owned.push(std::sync::Arc::new(adopted)),
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    Error::aggregate(errors)?;
    Ok(owned)
}

async fn write<K: NamespacedObject>(
    client: &Client,
    verb: &'static str,
    obj: &K,
    patch: &serde_json::Value,
) -> Result<Option<K>, Error> {
    let (api, target) = api_for::<K, K>(client, verb, obj);
    match call(target, api.patch(target.name, &PatchParams::default(), &Patch::Strategic(patch)))
        .await
    {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn meta(controller_uid: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            namespace: Some("ns".into()),
            owner_references: controller_uid.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            deletion_timestamp: deleting.then_some(Time(Timestamp::UNIX_EPOCH)),
            ..Default::default()
        }
    }

    #[test]
    fn claim_decisions() {
        let me = "me";
        assert_eq!(claim(me, "ns", false, &meta(Some(me), false), true), Claim::Owned);
        assert_eq!(claim(me, "ns", false, &meta(Some(me), false), false), Claim::Release);
        assert_eq!(claim(me, "ns", true, &meta(Some(me), false), false), Claim::Ignore);
        assert_eq!(claim(me, "ns", false, &meta(Some("other"), false), true), Claim::Ignore);
        assert_eq!(claim(me, "ns", false, &meta(None, false), true), Claim::Adopt);
        assert_eq!(claim(me, "ns", false, &meta(None, false), false), Claim::Ignore);
        assert_eq!(claim(me, "ns", true, &meta(None, false), true), Claim::Ignore);
        assert_eq!(claim(me, "ns", false, &meta(None, true), true), Claim::Ignore);
        assert_eq!(claim(me, "other-ns", false, &meta(None, false), true), Claim::Ignore);
        // A non-controller owner reference does not make an object someone else's.
        let mut shared = meta(None, false);
        shared.owner_references = Some(vec![OwnerReference {
            uid: "x".into(),
            controller: Some(false),
            ..Default::default()
        }]);
        assert_eq!(claim(me, "ns", false, &shared, true), Claim::Adopt);
    }
}
