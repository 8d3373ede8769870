//! The garbage collector's API work: look at one object (delete it, drop references to gone
//! owners, or finish a foreground deletion), and orphan the dependents of an owner.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use rudder_client::{EventType, Outcome};
use serde_json::{Value, json};

use super::Shared;
use super::decide::{Decision, ItemFacts, OwnerState, Propagation, decide};
use super::graph::{GraphEvent, Identity, ItemState, Uid};
use super::monitors::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER, owner_ref};
use crate::discovery::ServedResource;
use crate::error::{Error, call};
use crate::meta::{MetaObject, has_finalizer};

/// How many dependents are orphaned at once.
const ORPHAN_CONCURRENCY: usize = 8;
/// Attempts of a read-modify-write that keeps meeting conflicts.
const CONFLICT_RETRIES: usize = 5;

fn resolve(shared: &Shared, api_version: &str, kind: &str) -> Result<ServedResource, Error> {
    shared
        .resources
        .read()
        .expect("resources lock")
        .for_kind(api_version, kind)
        .cloned()
        .ok_or_else(|| Error::UnknownResource {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
}

fn api_for(shared: &Shared, served: &ServedResource, namespace: &str) -> Api<MetaObject> {
    if served.namespaced {
        Api::namespaced_with(shared.client.clone(), namespace, &served.resource)
    } else {
        Api::all_with(shared.client.clone(), &served.resource)
    }
}

/// `identity` with the namespace its resource's scope gives it, and the API to reach it.
fn locate(shared: &Shared, identity: &Identity) -> Result<(Identity, Api<MetaObject>), Error> {
    let served = resolve(shared, &identity.api_version, &identity.kind)?;
    let mut located = identity.clone();
    if !served.namespaced {
        located.namespace = "".into();
    } else if located.namespace.is_empty() {
        return Err(Error::Invalid(format!(
            "{} {} is namespaced but has no namespace",
            identity.kind, identity.name
        )));
    }
    let api = api_for(shared, &served, &located.namespace);
    Ok((located, api))
}

/// The live object with `uid` at `name`, or `None` when there is none.
async fn get_live(
    api: &Api<MetaObject>,
    name: &str,
    uid: &str,
) -> Result<Option<MetaObject>, Error> {
    match call("get", api.get(name)).await {
        Ok(obj) if obj.metadata.uid.as_deref() == Some(uid) => Ok(Some(obj)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// upstream's `attemptToDeleteItem`.
pub async fn attempt_to_delete(shared: &Arc<Shared>, uid: Uid) -> Result<Outcome, Error> {
    let item = shared.graph.lock().expect("graph lock").item(&uid);
    let Some(item) = item else { return Ok(Outcome::Done) };
    if item.being_deleted && !item.deleting_dependents {
        return Ok(Outcome::Done);
    }
    let (identity, api) = match locate(shared, &item.identity) {
        Ok(found) => found,
        Err(Error::Invalid(message)) => {
            tracing::info!(%message, "garbage collector: skipping");
            return Ok(Outcome::Done);
        }
        Err(e) => return Err(e),
    };
    let Some(latest) = get_live(&api, &identity.name, &uid).await? else {
        shared.apply(GraphEvent::VirtualDelete(identity));
        return Ok(Outcome::Done);
    };
    if item.deleting_dependents {
        process_deleting_dependents(shared, &identity, &api, latest).await?;
    } else {
        match collect(shared, &item, &identity, &api, latest).await {
            Ok(()) => {}
            Err(Error::Invalid(message)) => {
                tracing::info!(%message, "garbage collector: skipping");
                return Ok(Outcome::Done);
            }
            Err(e) => return Err(e),
        }
    }
    if !item.observed {
        // Exists, but its watch has not shown it yet: look again until it does.
        return Err(Error::Retry(format!("{} {} not observed yet", identity.kind, identity.name)));
    }
    Ok(Outcome::Done)
}

/// An owner deleted in the foreground: once no dependent blocks it, drop the finalizer.
async fn process_deleting_dependents(
    shared: &Shared,
    identity: &Identity,
    api: &Api<MetaObject>,
    latest: MetaObject,
) -> Result<(), Error> {
    let blocking = shared.graph.lock().expect("graph lock").blocking_dependents(&identity.uid);
    if blocking.is_empty() {
        tracing::debug!(kind = %identity.kind, name = %identity.name, "garbage collector: dependents gone; removing foregroundDeletion");
        return remove_finalizer(api, identity, latest, FOREGROUND_FINALIZER).await;
    }
    for (dep, deleting_dependents) in blocking {
        if !deleting_dependents {
            shared.delete_queue.add(dep);
        }
    }
    Ok(())
}

/// Classifies the owners of an object that is not being deleted and acts on the decision.
async fn collect(
    shared: &Shared,
    item: &ItemState,
    identity: &Identity,
    api: &Api<MetaObject>,
    latest: MetaObject,
) -> Result<(), Error> {
    let refs = latest.metadata.owner_references.clone().unwrap_or_default();
    if refs.is_empty() {
        return Ok(());
    }
    let mut states = Vec::with_capacity(refs.len());
    for r in &refs {
        states.push((Uid::from(r.uid.as_str()), owner_state(shared, r, identity).await?));
    }
    let facts = ItemFacts {
        has_orphan_finalizer: has_finalizer(&latest.metadata, ORPHAN_FINALIZER),
        has_foreground_finalizer: has_finalizer(&latest.metadata, FOREGROUND_FINALIZER),
        has_dependents: item.has_dependents,
        dependent_deleting_dependents: item.dependent_deleting_dependents,
    };
    let decision = decide(&states, facts);
    tracing::debug!(kind = %identity.kind, name = %identity.name, ?states, ?decision, "garbage collector: decided");
    let rv = latest.metadata.resource_version.clone().unwrap_or_default();
    let result = match decision {
        Decision::Keep => Ok(()),
        Decision::RemoveReferences(uids) => {
            let kept: Vec<OwnerReference> =
                refs.into_iter().filter(|r| !uids.iter().any(|u| **u == *r.uid)).collect();
            patch_owner_references(api, &identity.name, &rv, kept).await.map(|_| ())
        }
        Decision::DeleteForeground { unblock } => {
            let mut rv = rv;
            if unblock {
                let unblocked: Vec<OwnerReference> = refs
                    .into_iter()
                    .map(|mut r| {
                        r.block_owner_deletion = Some(false);
                        r
                    })
                    .collect();
                let patched = patch_owner_references(api, &identity.name, &rv, unblocked).await?;
                rv = patched.metadata.resource_version.unwrap_or_default();
            }
            delete(api, identity, &rv, Propagation::Foreground).await
        }
        Decision::Delete(policy) => delete(api, identity, &rv, policy).await,
    };
    match result {
        Err(e) if e.is_not_found() => {
            shared.apply(GraphEvent::VirtualDelete(identity.clone()));
            Ok(())
        }
        other => other,
    }
}

/// Where one ownerReference points (the graph when it knows, else the API).
async fn owner_state(
    shared: &Shared,
    r: &OwnerReference,
    dependent: &Identity,
) -> Result<OwnerState, Error> {
    let reduced = owner_ref(r);
    let known =
        shared.graph.lock().expect("graph lock").observed_owner(&reduced, &dependent.namespace);
    if let Some(waiting) = known {
        return Ok(if waiting {
            OwnerState::WaitingForDependentsDeletion
        } else {
            OwnerState::Solid
        });
    }
    let served = resolve(shared, &r.api_version, &r.kind)?;
    if served.namespaced && dependent.namespace.is_empty() {
        let message = format!(
            "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
            r.api_version, r.kind, r.name, r.uid
        );
        shared.recorder.event_for(
            event_reference(dependent),
            EventType::Warning,
            "OwnerRefInvalidNamespace",
            message.clone(),
        );
        return Err(Error::Invalid(message));
    }
    let namespace: Arc<str> =
        if served.namespaced { dependent.namespace.clone() } else { "".into() };
    let owner = Identity {
        api_version: reduced.api_version,
        kind: reduced.kind,
        namespace: namespace.clone(),
        name: reduced.name,
        uid: reduced.uid,
    };
    let key = owner.absent_key();
    if shared.graph.lock().expect("graph lock").is_absent(&key) {
        return Ok(OwnerState::Dangling);
    }
    let api = api_for(shared, &served, &namespace);
    match get_live(&api, &r.name, &r.uid).await? {
        None => {
            shared.graph.lock().expect("graph lock").mark_absent(key);
            Ok(OwnerState::Dangling)
        }
        Some(o) => {
            let waiting = o.metadata.deletion_timestamp.is_some()
                && has_finalizer(&o.metadata, FOREGROUND_FINALIZER);
            Ok(if waiting { OwnerState::WaitingForDependentsDeletion } else { OwnerState::Solid })
        }
    }
}

fn event_reference(identity: &Identity) -> ObjectReference {
    ObjectReference {
        api_version: Some(identity.api_version.to_string()),
        kind: Some(identity.kind.to_string()),
        name: Some(identity.name.to_string()),
        namespace: Some(identity.namespace.to_string()).filter(|n| !n.is_empty()),
        uid: Some(identity.uid.to_string()),
        ..ObjectReference::default()
    }
}

async fn patch_owner_references(
    api: &Api<MetaObject>,
    name: &str,
    resource_version: &str,
    refs: Vec<OwnerReference>,
) -> Result<MetaObject, Error> {
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    let patch =
        json!({ "metadata": { "resourceVersion": resource_version, "ownerReferences": refs } });
    call("patch ownerReferences", api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)))
        .await
}

async fn delete(
    api: &Api<MetaObject>,
    identity: &Identity,
    resource_version: &str,
    policy: Propagation,
) -> Result<(), Error> {
    tracing::debug!(kind = %identity.kind, namespace = %identity.namespace, name = %identity.name, ?policy, "garbage collector: deleting");
    let params = DeleteParams {
        propagation_policy: Some(policy.as_kube()),
        preconditions: Some(Preconditions {
            uid: Some(identity.uid.to_string()),
            resource_version: Some(resource_version.to_owned()).filter(|r| !r.is_empty()),
        }),
        ..DeleteParams::default()
    };
    call("delete", api.delete(&identity.name, &params)).await.map(|_| ())
}

/// Removes `finalizer` from the object (retrying on conflicts with a fresh read).
async fn remove_finalizer(
    api: &Api<MetaObject>,
    identity: &Identity,
    latest: MetaObject,
    finalizer: &str,
) -> Result<(), Error> {
    let mut obj = latest;
    for _ in 0..CONFLICT_RETRIES {
        if !has_finalizer(&obj.metadata, finalizer) {
            return Ok(());
        }
        let remaining: Vec<&String> =
            obj.metadata.finalizers.iter().flatten().filter(|f| *f != finalizer).collect();
        let finalizers = if remaining.is_empty() { Value::Null } else { json!(remaining) };
        let patch = json!({ "metadata": {
            "resourceVersion": obj.metadata.resource_version,
            "finalizers": finalizers,
        }});
        match call(
            "remove finalizer",
            api.patch(&identity.name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if e.is_conflict() => {
                match get_live(api, &identity.name, &identity.uid).await? {
                    Some(fresh) => obj = fresh,
                    None => return Ok(()),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Retry(format!("removing {finalizer} from {} kept conflicting", identity.name)))
}

/// upstream's `attemptToOrphanWorker`: drops the owner's uid from every dependent's
/// ownerReferences, then the owner's `orphan` finalizer.
pub async fn attempt_to_orphan(shared: &Arc<Shared>, uid: Uid) -> Result<Outcome, Error> {
    let (item, dependents) = {
        let graph = shared.graph.lock().expect("graph lock");
        (graph.item(&uid), graph.dependents(&uid))
    };
    let Some(item) = item else { return Ok(Outcome::Done) };
    let results: Vec<Result<(), Error>> = futures::stream::iter(dependents)
        .map(|dep| remove_reference(shared, dep, uid.clone()))
        .buffer_unordered(ORPHAN_CONCURRENCY)
        .collect()
        .await;
    if let Some(e) = results.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let (identity, api) = locate(shared, &item.identity)?;
    if let Some(latest) = get_live(&api, &identity.name, &uid).await? {
        remove_finalizer(&api, &identity, latest, ORPHAN_FINALIZER).await?;
    }
    Ok(Outcome::Done)
}

async fn remove_reference(shared: &Shared, dependent: Identity, owner: Uid) -> Result<(), Error> {
    let (identity, api) = locate(shared, &dependent)?;
    for _ in 0..CONFLICT_RETRIES {
        let Some(obj) = get_live(&api, &identity.name, &identity.uid).await? else { return Ok(()) };
        let refs = obj.metadata.owner_references.clone().unwrap_or_default();
        let kept: Vec<OwnerReference> = refs.iter().filter(|r| *r.uid != *owner).cloned().collect();
        if kept.len() == refs.len() {
            return Ok(());
        }
        let rv = obj.metadata.resource_version.clone().unwrap_or_default();
        match patch_owner_references(&api, &identity.name, &rv, kept).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::Retry(format!("orphaning {} kept conflicting", identity.name)))
}
