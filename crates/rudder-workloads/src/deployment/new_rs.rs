//! Finding or creating the new ReplicaSet, and revision bookkeeping (upstream's
//! `getAllReplicaSetsAndSyncRevision` / `getNewReplicaSet`).
//!
//! The new ReplicaSet is the one whose template equals the Deployment's (ignoring the
//! pod-template-hash label). It gets revision max(old revisions) + 1 when its own is lower,
//! which is also what a rollback does: `kubectl rollout undo` copies an old ReplicaSet's
//! template into the Deployment, that ReplicaSet becomes the new one again, and its earlier
//! revision moves to the revision-history annotation. A missing new ReplicaSet is created as
//! `<deployment>-<hash>` (hash of the template and status.collisionCount; a name taken by a
//! different template bumps collisionCount).

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;
use rudder_client::EventType;
use rudder_client::objects::{controller_of, controller_reference};

use super::progress::{
    FAILED_RS_CREATE, FOUND_NEW_RS, NEW_REPLICA_SET, PROGRESSING, condition, get_condition,
    normalized, set_condition,
};
use super::rolling::{RsCounts, new_rs_new_replicas};
use super::sync::{Controller, SyncState};
use super::util::{
    MAX_REVISION_HISTORY_CHARS, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION, compute_hash,
    equal_ignore_hash, find_new_replica_set, is_rolling_update, max_revision, max_surge,
    min_ready_seconds, progress_deadline_seconds, replicas, rs_template,
    set_new_replica_set_annotations, template,
};
use crate::Error;
use crate::api::{Target, call};

impl Controller {
    /// The new ReplicaSet (created when `create` and missing) and the old ones, with the new
    /// one's annotations and revision, and the Deployment's revision, brought up to date.
    pub(super) async fn get_all_replica_sets_and_sync_revision(
        &self,
        s: &mut SyncState,
        create: bool,
    ) -> Result<(Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>), Error> {
        let existing = find_new_replica_set(&s.d, &s.rss);
        let old: Vec<Arc<ReplicaSet>> = s
            .rss
            .iter()
            .filter(|rs| existing.as_ref().is_none_or(|n| n.metadata.uid != rs.metadata.uid))
            .cloned()
            .collect();
        let new_revision = max_revision(&old) + 1;
        let new_rs = match existing {
            Some(rs) => Some(self.sync_existing_new_rs(s, &rs, new_revision).await?),
            None if create => Some(self.create_new_rs(s, &old, new_revision).await?),
            None => None,
        };
        Ok((new_rs, old))
    }

    async fn sync_existing_new_rs(
        &self,
        s: &mut SyncState,
        rs: &Arc<ReplicaSet>,
        new_revision: i64,
    ) -> Result<Arc<ReplicaSet>, Error> {
        let mut copy = (**rs).clone();
        let annotations_changed = set_new_replica_set_annotations(
            &s.d,
            &mut copy,
            new_revision,
            true,
            MAX_REVISION_HISTORY_CHARS,
        );
        let spec = copy.spec.get_or_insert_with(Default::default);
        let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready_seconds(&s.d);
        if annotations_changed || min_ready_changed {
            spec.min_ready_seconds = Some(min_ready_seconds(&s.d));
            // As upstream: the Deployment's revision follows in the next sync.
            let written = self.update_replica_set(copy).await?;
            s.replace_rs(written.clone());
            return Ok(written);
        }
        let revision =
            copy.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION)).cloned();
        let mut status_changed = false;
        if progress_deadline_seconds(&s.d).is_some()
            && get_condition(s.d.status.as_ref(), PROGRESSING).is_none()
        {
            let name = rs.metadata.name.as_deref().unwrap_or("");
            let mut status = normalized(s.d.status.as_ref());
            let msg = format!("Found new replica set {name:?}");
            set_condition(
                &mut status,
                condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.clock.now()),
            );
            s.d.status = Some(status);
            status_changed = true;
        }
        self.persist(s, revision, status_changed).await?;
        Ok(rs.clone())
    }

    async fn create_new_rs(
        &self,
        s: &mut SyncState,
        old: &[Arc<ReplicaSet>],
        new_revision: i64,
    ) -> Result<Arc<ReplicaSet>, Error> {
        let d = &s.d;
        let namespace = d.metadata.namespace.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|st| st.collision_count);
        let mut new_template = template(d);
        let hash = compute_hash(&new_template, collision_count);
        let meta = new_template.metadata.get_or_insert_with(Default::default);
        meta.labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let labels = meta.labels.clone();
        let mut selector = d.spec.as_ref().map(|sp| sp.selector.clone()).unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_with(Default::default)
            .insert(POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                owner_references: Some(vec![controller_reference(d)]),
                labels,
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: Some(min_ready_seconds(d)),
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        let new_replicas = if is_rolling_update(d) {
            let mut all: Vec<RsCounts> = old.iter().map(|r| RsCounts::of(r)).collect();
            all.push(RsCounts::default());
            new_rs_new_replicas(replicas(d), max_surge(d), &all, &RsCounts::default())
        } else {
            replicas(d)
        };
        rs.spec.as_mut().expect("spec set above").replicas = Some(new_replicas);
        set_new_replica_set_annotations(
            d,
            &mut rs,
            new_revision,
            false,
            MAX_REVISION_HISTORY_CHARS,
        );

        let api: kube::Api<ReplicaSet> = kube::Api::namespaced(self.client.clone(), &namespace);
        let target =
            Target { verb: "create", kind: "ReplicaSet", namespace: &namespace, name: &name };
        let (created, already_existed) = match call(target, api.create(&PostParams::default(), &rs))
            .await
        {
            Ok(created) => (self.written_replica_sets.record(created), false),
            Err(e) if e.is_already_exists() => {
                // Ours (created by an earlier sync the cache has not caught up with) or a
                // hash collision. Not in the cache yet: read it.
                let existing = match self.replica_sets.get(&namespace, &name) {
                    Some(cached) => self.written_replica_sets.fresher(cached),
                    None => {
                        let target = Target { verb: "get", ..target };
                        Arc::new(call(target, api.get(&name)).await?)
                    }
                };
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(&r.uid) == s.d.metadata.uid.as_ref())
                    && equal_ignore_hash(&template(&s.d), &rs_template(&existing));
                if !ours {
                    let mut status = normalized(s.d.status.as_ref());
                    status.collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
                    s.d.status = Some(status);
                    if self.write_status(&mut s.d).await.is_ok() {
                        tracing::debug!(rs = %name, "hash collision; bumped collisionCount");
                    }
                    return Err(e);
                }
                (existing, true)
            }
            Err(e) if e.is_namespace_terminating() => return Err(e),
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {}", e.message());
                if progress_deadline_seconds(&s.d).is_some() {
                    let mut status = normalized(s.d.status.as_ref());
                    set_condition(
                        &mut status,
                        condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE,
                            msg.clone(),
                            self.clock.now(),
                        ),
                    );
                    s.d.status = Some(status);
                    // The create error is the one to report.
                    let _ = self.write_status(&mut s.d).await;
                }
                self.recorder.event(&s.d, EventType::Warning, FAILED_RS_CREATE, msg);
                return Err(e);
            }
        };
        s.replace_rs(created.clone());
        if !already_existed && new_replicas > 0 {
            self.recorder.event(
                &s.d,
                EventType::Normal,
                "ScalingReplicaSet",
                format!("Scaled up replica set {name} from 0 to {new_replicas}"),
            );
        }
        let mut status_changed = false;
        if !already_existed && progress_deadline_seconds(&s.d).is_some() {
            let mut status = normalized(s.d.status.as_ref());
            let msg = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                condition(PROGRESSING, "True", NEW_REPLICA_SET, msg, self.clock.now()),
            );
            s.d.status = Some(status);
            status_changed = true;
        }
        self.persist(s, Some(new_revision.to_string()), status_changed).await?;
        Ok(created)
    }

    /// Writes the Deployment's revision annotation if it differs from `revision`, then its
    /// status if `status_changed`.
    async fn persist(
        &self,
        s: &mut SyncState,
        revision: Option<String>,
        status_changed: bool,
    ) -> Result<(), Error> {
        let current = s.d.metadata.annotations.as_ref().and_then(|a| a.get(REVISION_ANNOTATION));
        if let Some(revision) = revision.filter(|r| current != Some(r)) {
            self.write_revision(&mut s.d, &revision).await?;
        }
        if status_changed {
            self.write_status(&mut s.d).await?;
        }
        Ok(())
    }
}
