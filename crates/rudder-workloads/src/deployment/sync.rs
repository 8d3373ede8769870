//! One reconcile of a Deployment (upstream's `syncDeployment` and `sync.go`): claim its
//! ReplicaSets, then, in upstream's order, status only (being deleted), pause bookkeeping,
//! scaling (paused or replicas changed), or a rollout step of its strategy; plus the writes
//! every path shares (ReplicaSet scaling with events, revision bookkeeping, status).

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use rudder_client::objects::{
    controller_of, controller_reference, selector_matches, selects_nothing,
};
use rudder_client::{Clock, EventType, Informer, ObjectKey, Outcome, Recorder};
use serde_json::json;

use super::progress::{
    calculate_status, normalized, paused_condition, progress_check_after, rollout_status,
    set_condition,
};
use super::util::{
    REVISION_ANNOTATION, by_revision, max_surge, paused, replicas,
    replicas_annotations_need_update, revision_history_limit, rs_replicas, rs_status_replicas,
    set_replicas_annotations, strategy_type,
};
use crate::Error;
use crate::api::{api_for, call};
use crate::claim::{Claim, adopt, claim, release};
use crate::recent::RecentWrites;

pub struct Controller {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub deployments: Arc<Informer<Deployment>>,
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    pub pods: Arc<Informer<Pod>>,
    pub written_deployments: Arc<RecentWrites<Deployment>>,
    pub written_replica_sets: Arc<RecentWrites<ReplicaSet>>,
}

/// What one reconcile works on: the Deployment as last read or written, and the
/// ReplicaSets it owns as last read or written.
pub struct SyncState {
    pub d: Deployment,
    pub rss: Vec<Arc<ReplicaSet>>,
}

impl SyncState {
    /// The latest copy of `rs` this reconcile has.
    pub fn current(&self, rs: &Arc<ReplicaSet>) -> Arc<ReplicaSet> {
        self.rss
            .iter()
            .find(|r| r.metadata.uid == rs.metadata.uid)
            .cloned()
            .unwrap_or_else(|| rs.clone())
    }

    pub(super) fn replace_rs(&mut self, rs: Arc<ReplicaSet>) {
        match self.rss.iter_mut().find(|r| r.metadata.uid == rs.metadata.uid) {
            Some(slot) => *slot = rs,
            None => self.rss.push(rs),
        }
    }

    pub(super) fn remove_rs(&mut self, rs: &ReplicaSet) {
        self.rss.retain(|r| r.metadata.uid != rs.metadata.uid);
    }
}

impl Controller {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.deployments.get(&key.0, &key.1) else {
            self.written_deployments.forget(&key);
            return Ok(Outcome::Done);
        };
        let d = (*self.written_deployments.fresher(cached)).clone();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selects_nothing(&selector) {
            self.recorder.event(
                &d,
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            );
            let mut d = d;
            let status = normalized(d.status.as_ref());
            if status.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
                let mut status = status;
                status.observed_generation = d.metadata.generation;
                d.status = Some(status);
                self.write_status(&mut d).await?;
            }
            return Ok(Outcome::Done);
        }
        let rss = self.claim_replica_sets(&d).await?;
        let mut s = SyncState { d, rss };
        if s.d.metadata.deletion_timestamp.is_some() {
            let (new_rs, _) = self.get_all_replica_sets_and_sync_revision(&mut s, false).await?;
            return self.sync_deployment_status(&mut s, new_rs).await;
        }
        if let Some(c) = paused_condition(&s.d, self.clock.now()) {
            let mut status = normalized(s.d.status.as_ref());
            set_condition(&mut status, c);
            s.d.status = Some(status);
            self.write_status(&mut s.d).await?;
        }
        if paused(&s.d) || self.is_scaling_event(&mut s).await? {
            return self.sync(&mut s).await;
        }
        match strategy_type(&s.d) {
            super::util::RECREATE => {
                let pods = self.pods_by_replica_set(&s);
                self.rollout_recreate(&mut s, &pods).await
            }
            _ => self.rollout_rolling(&mut s).await,
        }
    }

    /// The ReplicaSets the Deployment owns after adopting orphans its selector matches and
    /// releasing those it no longer matches (upstream's getReplicaSetsForDeployment).
    async fn claim_replica_sets(&self, d: &Deployment) -> Result<Vec<Arc<ReplicaSet>>, Error> {
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let mut owned = Vec::new();
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for cached in self.replica_sets.list_namespace(&namespace) {
            let rs = self.written_replica_sets.fresher(cached);
            let labels = rs.metadata.labels.clone().unwrap_or_default();
            let selected = selector_matches(&selector, &labels);
            match claim(&uid, &namespace, deleting, &rs.metadata, selected) {
                Claim::Owned => owned.push(rs),
                Claim::Ignore => {}
                Claim::Release => match release(&self.client, &uid, &*rs).await {
                    Ok(Some(released)) => {
                        self.written_replica_sets.record(released);
                    }
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                },
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_deployment(d).await);
                    }
                    if let Some(Err(reason)) = &can_adopt {
                        errors.push(Error::CannotAdopt {
                            kind: "Deployment",
                            namespace: namespace.clone(),
                            name: d.metadata.name.clone().unwrap_or_default(),
                            reason: reason.clone(),
                        });
                        continue;
                    }
                    match adopt(&self.client, &controller_reference(d), &*rs).await {
                        Ok(Some(adopted)) => owned.push(self.written_replica_sets.record(adopted)),
                        Ok(None) => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        Error::aggregate(errors)?;
        Ok(owned)
    }

    async fn recheck_deployment(&self, d: &Deployment) -> Result<(), String> {
        let (api, target) = api_for::<Deployment, _>(&self.client, "get", d);
        let fresh = call(target, api.get(target.name)).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != d.metadata.uid {
            return Err(format!(
                "the original Deployment {}/{} is gone: got uid {:?}, wanted {:?}",
                target.namespace, target.name, fresh.metadata.uid, d.metadata.uid
            ));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "Deployment {}/{} has just been deleted",
                target.namespace, target.name
            ));
        }
        Ok(())
    }

    /// The Deployment's pods (selected, controlled by one of its ReplicaSets), by
    /// ReplicaSet UID.
    pub(super) fn pods_by_replica_set(&self, s: &SyncState) -> HashMap<String, Vec<Arc<Pod>>> {
        let namespace = s.d.metadata.namespace.as_deref().unwrap_or("");
        let selector = s.d.spec.as_ref().map(|x| x.selector.clone()).unwrap_or_default();
        let mut map: HashMap<String, Vec<Arc<Pod>>> = s
            .rss
            .iter()
            .filter_map(|rs| rs.metadata.uid.clone())
            .map(|uid| (uid, Vec::new()))
            .collect();
        for pod in self.pods.list_namespace(namespace) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if !selector_matches(&selector, &labels) {
                continue;
            }
            if let Some(r) = controller_of(&pod.metadata)
                && let Some(list) = map.get_mut(&r.uid)
            {
                list.push(pod);
            }
        }
        map
    }

    /// Whether spec.replicas changed since the active ReplicaSets were last scaled.
    async fn is_scaling_event(&self, s: &mut SyncState) -> Result<bool, Error> {
        self.get_all_replica_sets_and_sync_revision(s, false).await?;
        let desired = replicas(&s.d);
        Ok(s.rss.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            super::util::desired_replicas_annotation(rs).is_some_and(|want| want != desired)
        }))
    }

    /// Scaling and pause (upstream's `sync`): proportional scaling, history cleanup while
    /// paused, status.
    async fn sync(&self, s: &mut SyncState) -> Result<Outcome, Error> {
        let (new_rs, old_rss) = self.get_all_replica_sets_and_sync_revision(s, false).await?;
        for (rs, size) in super::scale::plan_scale(&s.d, new_rs.as_ref(), &old_rss) {
            self.scale_replica_set(s, &rs, size).await?;
        }
        let new_rs = new_rs.map(|rs| s.current(&rs));
        if paused(&s.d) {
            let keep = new_rs.clone();
            self.cleanup_old(s, keep.as_ref()).await?;
        }
        self.sync_deployment_status(s, new_rs).await
    }

    /// Sets `rs` to `size` replicas (and the replicas annotations); records a
    /// ScalingReplicaSet event when the size changed. Returns whether it did, and the
    /// ReplicaSet as written.
    pub(super) async fn scale_replica_set(
        &self,
        s: &mut SyncState,
        rs: &Arc<ReplicaSet>,
        size: i32,
    ) -> Result<(bool, Arc<ReplicaSet>), Error> {
        let rs = s.current(rs);
        let old_size = rs_replicas(&rs);
        let desired = replicas(&s.d);
        let max = desired + max_surge(&s.d);
        let resize = old_size != size;
        if !resize && !replicas_annotations_need_update(&rs, desired, max) {
            return Ok((false, rs));
        }
        let mut updated = (*rs).clone();
        updated.spec.get_or_insert_with(Default::default).replicas = Some(size);
        set_replicas_annotations(&mut updated, desired, max);
        let written = self.update_replica_set(updated).await?;
        s.replace_rs(written.clone());
        if resize {
            let direction = if old_size < size { "up" } else { "down" };
            let name = written.metadata.name.as_deref().unwrap_or("");
            self.recorder.event(
                &s.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled {direction} replica set {name} from {old_size} to {size}"),
            );
        }
        Ok((resize, written))
    }

    /// Writes a ReplicaSet (with its resourceVersion as the precondition).
    pub(super) async fn update_replica_set(
        &self,
        rs: ReplicaSet,
    ) -> Result<Arc<ReplicaSet>, Error> {
        let (api, target) = api_for::<ReplicaSet, _>(&self.client, "update", &rs);
        let written = call(target, api.replace(target.name, &PostParams::default(), &rs)).await?;
        Ok(self.written_replica_sets.record(written))
    }

    /// Writes the Deployment's status (with its resourceVersion as the precondition) and
    /// takes the answer as the Deployment from now on.
    pub(super) async fn write_status(&self, d: &mut Deployment) -> Result<(), Error> {
        let (api, target) = api_for::<Deployment, _>(&self.client, "update status of", &*d);
        let written =
            call(target, api.replace_status(target.name, &PostParams::default(), d)).await?;
        *d = (*self.written_deployments.record(written)).clone();
        Ok(())
    }

    /// Sets the Deployment's revision annotation (a metadata patch: `/status` writes keep
    /// metadata), keeping the status this reconcile computed so far.
    pub(super) async fn write_revision(
        &self,
        d: &mut Deployment,
        revision: &str,
    ) -> Result<(), Error> {
        let patch = json!({
            "metadata": {
                "resourceVersion": d.metadata.resource_version,
                "annotations": { REVISION_ANNOTATION: revision },
            }
        });
        let (api, target) = api_for::<Deployment, _>(&self.client, "annotate", &*d);
        let written =
            call(target, api.patch(target.name, &PatchParams::default(), &Patch::Merge(&patch)))
                .await?;
        let status = d.status.take();
        *d = (*self.written_deployments.record(written)).clone();
        d.status = status;
        Ok(())
    }

    /// Status for the scaling and deletion paths (no progress estimate).
    async fn sync_deployment_status(
        &self,
        s: &mut SyncState,
        new_rs: Option<Arc<ReplicaSet>>,
    ) -> Result<Outcome, Error> {
        let status = calculate_status(&s.rss, new_rs.as_ref(), &s.d, self.clock.now());
        if normalized(Some(&status)) != normalized(s.d.status.as_ref()) {
            s.d.status = Some(status);
            self.write_status(&mut s.d).await?;
        }
        Ok(Outcome::Done)
    }

    /// Status after a rollout step, and when to check the progress deadline.
    pub(super) async fn sync_rollout_status(
        &self,
        s: &mut SyncState,
        new_rs: Option<Arc<ReplicaSet>>,
    ) -> Result<Outcome, Error> {
        let now = self.clock.now();
        let new_rs = new_rs.map(|rs| s.current(&rs));
        let status = rollout_status(&s.rss, new_rs.as_ref(), &s.d, now);
        if normalized(Some(&status)) == normalized(s.d.status.as_ref()) {
            return Ok(match progress_check_after(&s.d, &status, now) {
                Some(after) => Outcome::RequeueAfter(after),
                None => Outcome::Done,
            });
        }
        s.d.status = Some(status);
        self.write_status(&mut s.d).await?;
        Ok(Outcome::Done)
    }

    /// Deletes the oldest old ReplicaSets beyond revisionHistoryLimit that have no replicas
    /// and whose controller observed that (upstream's cleanupDeployment).
    pub(super) async fn cleanup_old(
        &self,
        s: &mut SyncState,
        new_rs: Option<&Arc<ReplicaSet>>,
    ) -> Result<(), Error> {
        let Some(limit) = revision_history_limit(&s.d) else { return Ok(()) };
        let new_uid = new_rs.and_then(|rs| rs.metadata.uid.clone());
        let mut cleanable: Vec<Arc<ReplicaSet>> = s
            .rss
            .iter()
            .filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid)
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .cloned()
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(a, b));
        for rs in cleanable.into_iter().take(excess as usize) {
            let observed = rs.status.as_ref().and_then(|st| st.observed_generation).unwrap_or(0);
            if rs_status_replicas(&rs) != 0
                || rs_replicas(&rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let (api, target) = api_for::<ReplicaSet, _>(&self.client, "delete", &*rs);
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match call(target, api.delete(target.name, &params)).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            s.remove_rs(&rs);
        }
        Ok(())
    }
}
