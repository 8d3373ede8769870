//! A DaemonSet's ControllerRevisions (upstream's constructHistory, snapshot,
//! dedupCurHistories, cleanupHistory): one revision per template the DaemonSet has had,
//! named `<ds>-<hash>`, labelled with the template's labels and `controller-revision-hash`,
//! annotated like the DaemonSet (so `kubectl rollout history` shows the change-cause), its
//! `data` the patch that restores the template. The current template's revision gets the
//! highest number, also when an old template comes back (rollback).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Patch, PatchParams, PostParams};
use rudder_client::objects::controller_reference;
use serde_json::json;

use super::sync::Controller;
use super::util::{
    CONTROLLER_REVISION_HASH_LABEL, collision_count, pod_label, revision_data, revision_matches,
    template, template_labels,
};
use crate::Error;
use crate::api::{Target, call};
use crate::deployment::util::compute_hash;
use crate::history::{
    claim_controller_revisions, controller_revision_name, delete_controller_revision, max_revision,
    revisions_to_truncate, update_controller_revision,
};

fn hash_label(r: &ControllerRevision) -> Option<&str> {
    r.metadata.labels.as_ref()?.get(CONTROLLER_REVISION_HASH_LABEL).map(String::as_str)
}

/// The revision a DaemonSet's current template is recorded in, before it is created.
pub fn new_revision(ds: &DaemonSet, revision: i64) -> ControllerRevision {
    let hash = compute_hash(&template(ds), collision_count(ds));
    let mut labels = template_labels(ds);
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.clone());
    let name = ds.metadata.name.as_deref().unwrap_or("");
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(controller_revision_name(name, &hash)),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone().filter(|a| !a.is_empty()),
            owner_references: Some(vec![controller_reference(ds)]),
            ..ObjectMeta::default()
        },
        data: Some(RawExtension(revision_data(ds))),
        revision,
    }
}

impl Controller {
    /// The current revision (created or renumbered as needed) and the old ones.
    pub(super) async fn construct_history(
        &self,
        ds: &DaemonSet,
        pods: &[Arc<Pod>],
    ) -> Result<(Arc<ControllerRevision>, Vec<Arc<ControllerRevision>>), Error> {
        let selector = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let claimed =
            claim_controller_revisions(&self.client, &self.revisions, ds, &selector).await?;
        let mut current = Vec::new();
        let mut old = Vec::new();
        for r in claimed {
            let mut r = self.written_revisions.fresher(r);
            if hash_label(&r).is_none() {
                // Older revisions without the label: their name stands for the hash.
                let mut labelled = (*r).clone();
                let name = labelled.metadata.name.clone().unwrap_or_default();
                labelled
                    .metadata
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(CONTROLLER_REVISION_HASH_LABEL.into(), name.clone());
                let api = self.revision_api(ds);
                let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
                let t =
                    Target { verb: "label", kind: "ControllerRevision", namespace, name: &name };
                let updated =
                    call(t, api.replace(&name, &PostParams::default(), &labelled)).await?;
                r = self.written_revisions.record(updated);
            }
            if revision_matches(ds, &r) { current.push(r) } else { old.push(r) }
        }
        let next = max_revision(&old) + 1;
        let cur = if current.is_empty() {
            self.snapshot(ds, next).await?
        } else {
            let keep = self.dedup(current, pods).await?;
            if keep.revision < next {
                let updated = update_controller_revision(&self.client, &keep, next).await?;
                self.written_revisions.record(updated)
            } else {
                keep
            }
        };
        Ok((cur, old))
    }

    fn revision_api(&self, ds: &DaemonSet) -> kube::Api<ControllerRevision> {
        kube::Api::namespaced(self.client.clone(), ds.metadata.namespace.as_deref().unwrap_or(""))
    }

    /// Creates the current template's revision. A name taken by a revision of another
    /// template raises status.collisionCount (the next sync uses the new name).
    async fn snapshot(
        &self,
        ds: &DaemonSet,
        revision: i64,
    ) -> Result<Arc<ControllerRevision>, Error> {
        let cr = new_revision(ds, revision);
        let name = cr.metadata.name.clone().unwrap_or_default();
        let namespace = ds.metadata.namespace.clone().unwrap_or_default();
        let api = self.revision_api(ds);
        let t =
            |verb| Target { verb, kind: "ControllerRevision", namespace: &namespace, name: &name };
        let err = match call(t("create"), api.create(&PostParams::default(), &cr)).await {
            Ok(created) => return Ok(self.written_revisions.record(created)),
            Err(e) if e.is_already_exists() => e,
            Err(e) => return Err(e),
        };
        let existing = call(t("get"), api.get(&name)).await?;
        if revision_matches(ds, &existing) {
            return Ok(self.written_revisions.record(existing));
        }
        // A different template under this name: a hash collision.
        let ds_name = ds.metadata.name.clone().unwrap_or_default();
        let ds_api: kube::Api<DaemonSet> = kube::Api::namespaced(self.client.clone(), &namespace);
        let dt = |verb| Target { verb, kind: "DaemonSet", namespace: &namespace, name: &ds_name };
        let mut fresh = call(dt("get"), ds_api.get(&ds_name)).await?;
        if collision_count(&fresh) != collision_count(ds) {
            return Err(Error::Invalid {
                kind: "DaemonSet",
                namespace: namespace.clone(),
                name: ds_name.clone(),
                message: "stale collisionCount; retrying once the cache has the new one".into(),
            });
        }
        let status = fresh.status.get_or_insert_with(Default::default);
        status.collision_count = Some(status.collision_count.unwrap_or(0).saturating_add(1));
        tracing::info!(daemonset = %ds_name, count = ?status.collision_count, "hash collision; bumping collisionCount");
        let written = call(
            dt("update status of"),
            ds_api.replace_status(&ds_name, &PostParams::default(), &fresh),
        )
        .await?;
        self.written.record(written);
        Err(err)
    }

    /// Several revisions record the current template: the newest stays, pods labelled with
    /// the others are relabelled to it, the others are deleted.
    async fn dedup(
        &self,
        current: Vec<Arc<ControllerRevision>>,
        pods: &[Arc<Pod>],
    ) -> Result<Arc<ControllerRevision>, Error> {
        let keep = current
            .iter()
            .max_by(|a, b| a.revision.cmp(&b.revision))
            .cloned()
            .expect("at least one current revision");
        if current.len() == 1 {
            return Ok(keep);
        }
        let keep_hash = hash_label(&keep).unwrap_or("").to_owned();
        for pod in pods {
            if pod_label(pod, CONTROLLER_REVISION_HASH_LABEL) == Some(keep_hash.as_str()) {
                continue;
            }
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), namespace);
            let patch =
                json!({ "metadata": { "labels": { CONTROLLER_REVISION_HASH_LABEL: keep_hash } } });
            let t = Target { verb: "relabel", kind: "Pod", namespace, name };
            match call(t, api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        for r in current.iter().filter(|r| r.metadata.name != keep.metadata.name) {
            delete_controller_revision(&self.client, r).await?;
        }
        Ok(keep)
    }

    /// Deletes the oldest old revisions beyond revisionHistoryLimit, except those live pods
    /// still carry the hash of.
    pub(super) async fn cleanup_history(
        &self,
        ds: &DaemonSet,
        old: &[Arc<ControllerRevision>],
        pods: &[Arc<Pod>],
    ) -> Result<(), Error> {
        let live: HashSet<&str> =
            pods.iter().filter_map(|p| pod_label(p, CONTROLLER_REVISION_HASH_LABEL)).collect();
        let limit = super::util::revision_history_limit(ds);
        let doomed =
            revisions_to_truncate(old, limit, |r| hash_label(r).is_some_and(|h| live.contains(h)));
        for r in doomed {
            delete_controller_revision(&self.client, &r).await?;
        }
        Ok(())
    }
}
