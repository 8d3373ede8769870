//! One reconcile of a ReplicaSet or ReplicationController (upstream's `syncReplicaSet`):
//! claim the pods (adopt and release), create or delete pods to match spec.replicas when
//! the expectations of the last round are met, then write the status if it changed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::PostParams;
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_of, controller_reference, pod_is_active};
use rudder_client::{Clock, Informer, ObjectKey, Outcome, Recorder};

use super::kinds::Replicated;
use super::status::{ManageFailure, calculate_status, next_available_after};
use crate::api::{api_for, call};
use crate::claim::{Claim, adopt, claim, release};
use crate::expectations::Expectations;
use crate::pod_control::{
    SLOW_START_INITIAL_BATCH, create_pod, delete_pod, pod_from_template, slow_start_batch,
};
use crate::pod_ranking::pods_to_delete;
use crate::recent::RecentWrites;
use crate::{Error, pod_control};

pub struct Controller<K: Replicated> {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub owners: Arc<Informer<K>>,
    pub pods: Arc<Informer<Pod>>,
    pub expectations: Arc<Expectations>,
    pub written: Arc<RecentWrites<K>>,
    pub burst_replicas: usize,
}

/// How many pods to create (negative: delete) to go from `current` to `desired`, at most
/// `burst` either way in one round.
pub fn replica_diff(current: usize, desired: i32, burst: usize) -> i64 {
    let diff = current as i64 - i64::from(desired.max(0));
    diff.clamp(-(burst as i64), burst as i64)
}

impl<K: Replicated> Controller<K> {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.owners.get(&key.0, &key.1) else {
            self.expectations.forget(&key);
            self.written.forget(&key);
            return Ok(Outcome::Done);
        };
        let owner = self.written.fresher(cached);
        let needs_sync = self.expectations.satisfied(&key);
        let active: Vec<Arc<Pod>> =
            self.pods.list_namespace(&key.0).into_iter().filter(|p| pod_is_active(p)).collect();
        let pods = self.claim_pods(&owner, active).await?;

        let mut failure = None;
        let mut manage_error = None;
        if needs_sync
            && owner.meta().deletion_timestamp.is_none()
            && let Err(e) = self.manage_replicas(&key, &owner, &pods).await
        {
            let reason = if (pods.len() as i64) < i64::from(owner.spec_replicas()) {
                pod_control::FAILED_CREATE
            } else {
                pod_control::FAILED_DELETE
            };
            failure = Some(ManageFailure { reason, message: e.message() });
            manage_error = Some(e);
        }

        let now = self.clock.now();
        let generation = owner.meta().generation.unwrap_or(0);
        let status = calculate_status(
            &owner.replica_status(),
            generation,
            &owner.template_labels(),
            owner.min_ready_seconds(),
            &pods,
            failure.as_ref(),
            now,
        );
        if status != owner.replica_status() {
            let mut updated = (*owner).clone();
            updated.set_replica_status(&status);
            let (api, target) = api_for::<K, K>(&self.client, "update status of", &*owner);
            let written =
                call(target, api.replace_status(target.name, &PostParams::default(), &updated))
                    .await?;
            self.written.record(written);
        }
        if let Some(e) = manage_error {
            return Err(e);
        }
        // Pods ready but not yet for minReadySeconds become available later: look again then.
        Ok(match next_available_after(&pods, owner.min_ready_seconds(), now) {
            Some(after) => Outcome::RequeueAfter(after + Duration::from_millis(100)),
            None => Outcome::Done,
        })
    }

    /// The active pods `owner` owns after adopting matching orphans and releasing pods it
    /// owns that no longer match (upstream's ClaimPods).
    async fn claim_pods(
        &self,
        owner: &Arc<K>,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>, Error> {
        let meta = owner.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let mut owned = Vec::with_capacity(pods.len());
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for pod in pods {
            let selected =
                owner.selects(pod.metadata.labels.as_ref().unwrap_or(&Default::default()));
            match claim(&uid, &namespace, deleting, &pod.metadata, selected) {
                Claim::Owned => owned.push(pod),
                Claim::Ignore => {}
                Claim::Release => {
                    if let Err(e) = release(&self.client, &uid, &*pod).await {
                        errors.push(e);
                    }
                }
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_owner(owner).await);
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
                    match adopt(&self.client, &controller_reference(&**owner), &*pod).await {
                        Ok(Some(adopted)) => owned.push(Arc::new(adopted)),
                        Ok(None) => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        Error::aggregate(errors)?;
        Ok(owned)
    }

    /// Before the first adoption: the owner, read fresh, is still the same object and not
    /// being deleted.
    async fn recheck_owner(&self, owner: &K) -> Result<(), String> {
        let (api, target) = api_for::<K, K>(&self.client, "get", owner);
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

    /// Creates or deletes pods so that `pods` (the owned active ones) match spec.replicas
    /// (upstream's manageReplicas).
    async fn manage_replicas(
        &self,
        key: &ObjectKey,
        owner: &Arc<K>,
        pods: &[Arc<Pod>],
    ) -> Result<(), Error> {
        let diff = replica_diff(pods.len(), owner.spec_replicas(), self.burst_replicas);
        if diff < 0 {
            let count = (-diff) as usize;
            let template = owner.template().cloned().unwrap_or_default();
            let owner_ref = controller_reference(&**owner);
            let name = owner.meta().name.clone().unwrap_or_default();
            // Pods the selector does not count would be created over and over (validation
            // rules this out; an object from before it must not make pods forever).
            if !owner.selects(&owner.template_labels()) {
                return Err(Error::Invalid {
                    kind: K::KIND,
                    namespace: key.0.clone(),
                    name,
                    message: "the selector does not match the template's labels".into(),
                });
            }
            let pod =
                pod_from_template(&template, &key.0, &name, owner_ref).map_err(|message| {
                    Error::Invalid {
                        kind: K::KIND,
                        namespace: key.0.clone(),
                        name: name.clone(),
                        message,
                    }
                })?;
            self.expectations.expect_creations(key, count);
            tracing::debug!(kind = K::KIND, key = ?key, count, "too few replicas; creating");
            let (created, error) = slow_start_batch(count, SLOW_START_INITIAL_BATCH, || async {
                match create_pod(&self.client, &self.recorder, &**owner, &pod).await {
                    // Nothing to do in a namespace that is going away.
                    Err(e) if e.is_namespace_terminating() => Ok(()),
                    other => other.map(|_| ()),
                }
            })
            .await;
            // Creates that were never attempted or failed will never be observed.
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            return error.map_or(Ok(()), Err);
        }
        if diff > 0 {
            let count = diff as usize;
            let related = self.related_pods(owner, pods);
            let victims = pods_to_delete(pods, &related, count, self.clock.now());
            self.expectations.expect_deletions(key, victims.iter().map(|p| key_of(&**p)));
            tracing::debug!(kind = K::KIND, key = ?key, count, "too many replicas; deleting");
            let results = futures::future::join_all(
                victims.iter().map(|p| delete_pod(&self.client, &self.recorder, &**owner, p)),
            )
            .await;
            let mut errors = Vec::new();
            for (pod, result) in victims.iter().zip(results) {
                match result {
                    Ok(true) => {}
                    // Gone already, or not deleted: the deletion will not be observed.
                    Ok(false) => self.expectations.deletion_observed(key, &key_of(&**pod)),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &key_of(&**pod));
                        errors.push(e);
                    }
                }
            }
            // All errors are alike; the first one is enough.
            if let Some(e) = errors.into_iter().next() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The pods the spreading rank counts: those of every owner that shares this owner's
    /// controller (the ReplicaSets of one Deployment), else this owner's own.
    fn related_pods(&self, owner: &Arc<K>, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let Some(parent) = controller_of(owner.meta()) else { return pods.to_vec() };
        let namespace = owner.meta().namespace.as_deref().unwrap_or("");
        let siblings: HashSet<String> = self
            .owners
            .list_namespace(namespace)
            .into_iter()
            .filter(|o| controller_of(o.meta()).is_some_and(|r| r.uid == parent.uid))
            .filter_map(|o| o.meta().uid.clone())
            .collect();
        self.pods
            .list_namespace(namespace)
            .into_iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|r| siblings.contains(&r.uid)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_bounded_by_the_burst() {
        assert_eq!(replica_diff(0, 3, 500), -3);
        assert_eq!(replica_diff(5, 3, 500), 2);
        assert_eq!(replica_diff(3, 3, 500), 0);
        assert_eq!(replica_diff(0, 1000, 500), -500);
        assert_eq!(replica_diff(900, 0, 500), 500);
        assert_eq!(replica_diff(2, -1, 500), 2, "negative replicas count as zero");
    }
}
