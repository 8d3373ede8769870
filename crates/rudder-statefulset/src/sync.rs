//! One reconcile of a StatefulSet (upstream's `sync` + `UpdateStatefulSet`): adopt orphan
//! revisions and pods (release pods no longer selected), find or make the update revision,
//! plan ([`crate::plan`]), run the plan's writes, write the status when it changed, and trim
//! the revision history.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::PostParams;
use rudder_client::objects::{controller_of, controller_reference};
use rudder_client::{Clock, Informer, ObjectKey, Outcome, Recorder};
use rudder_workloads::api::{api_for, call};
use rudder_workloads::claim::{Claim, adopt, claim, release};
use rudder_workloads::recent::RecentWrites;

use crate::Error;
use crate::control::{Flow, PodControl};
use crate::handlers::selects;
use crate::history::{
    UpdateRevision, apply_revision, create_revision, decide_update_revision, history_to_delete,
    new_revision, next_revision, renumber, sort_revisions,
};
use crate::plan::{Action, Input, complete_rolling_update, plan, status_changed};
use crate::pods::{is_member_of, pod_revision, set_name, set_namespace};

pub struct Controller {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub sets: Arc<Informer<StatefulSet>>,
    pub pods: Arc<Informer<Pod>>,
    pub claims: Arc<Informer<PersistentVolumeClaim>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub written: Arc<RecentWrites<StatefulSet>>,
    pub max_unavailable: bool,
}

fn invalid(set: &StatefulSet, message: impl Into<String>) -> Error {
    Error::Invalid {
        namespace: set_namespace(set).to_owned(),
        name: set_name(set).to_owned(),
        message: message.into(),
    }
}

/// Runs `f(i)` for `0..count` in batches of 1, 2, 4, ... (the calls of a batch
/// concurrently), stopping after the first batch with a failure; the errors of that batch.
async fn slow_start<F, Fut>(count: usize, f: F) -> Vec<Error>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let (mut done, mut batch) = (0, 1usize);
    while done < count {
        let size = batch.min(count - done);
        let results = futures::future::join_all((done..done + size).map(&f)).await;
        let errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            return errors;
        }
        done += size;
        batch *= 2;
    }
    Vec::new()
}

impl Controller {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.sets.get(&key.0, &key.1) else {
            self.written.forget(&key);
            return Ok(Outcome::Done);
        };
        let set = self.written.fresher(cached);
        if !selects_anything(&set) {
            // Validation rules this out; nothing sensible can be done (upstream gives up too).
            tracing::debug!(key = ?key, "StatefulSet without a usable selector; ignored");
            return Ok(Outcome::Done);
        }
        self.adopt_orphan_revisions(&set).await?;
        let pods = self.claim_pods(&set).await?;

        // Revisions, oldest first.
        let mut revisions: Vec<ControllerRevision> = self
            .revisions
            .list_namespace(&key.0)
            .into_iter()
            .filter(|r| owned_by(&set, &r.metadata))
            .map(|r| (*r).clone())
            .collect();
        sort_revisions(&mut revisions);
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let candidate = new_revision(&set, next_revision(&revisions), collision_count)
            .map_err(|m| invalid(&set, m))?;
        let update = match decide_update_revision(&revisions, candidate) {
            UpdateRevision::Existing(i) => revisions[i].clone(),
            UpdateRevision::Renumber(i, number) => {
                let r = renumber(&self.client, &revisions[i], number).await?;
                revisions[i] = r.clone();
                r
            }
            UpdateRevision::Create(c) => {
                let r = create_revision(&self.client, &set, &c, &mut collision_count).await?;
                if !revisions.iter().any(|o| o.metadata.name == r.metadata.name) {
                    revisions.push(r.clone());
                }
                r
            }
        };
        sort_revisions(&mut revisions);
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = revisions
            .iter()
            .find(|r| r.metadata.name.is_some() && r.metadata.name == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        let current_set = apply_revision(&set, &current).map_err(|m| invalid(&set, m))?;
        let update_set = apply_revision(&set, &update).map_err(|m| invalid(&set, m))?;
        let (current_name, update_name) = (
            current.metadata.name.clone().unwrap_or_default(),
            update.metadata.name.clone().unwrap_or_default(),
        );

        let claims = self.claims.clone();
        let namespace = key.0.clone();
        let lookup = move |name: &str| claims.get(&namespace, name);
        let input = Input {
            set: &set,
            current_set: &current_set,
            update_set: &update_set,
            current_revision: &current_name,
            update_revision: &update_name,
            collision_count,
            pods: &pods,
            claim: &lookup,
            now: self.clock.now(),
            max_unavailable: self.max_unavailable,
        };
        let plan = plan(&input).map_err(|m| invalid(&set, m))?;
        let (result, updates_done) = self.execute(&set, &plan).await;

        let mut status = plan.status.clone();
        if let Some(c) = status.current_replicas.as_mut() {
            *c -= updates_done;
        }
        complete_rolling_update(&set, &mut status);
        let mut errors = Vec::new();
        if status_changed(&set, &status) {
            let mut updated = (*set).clone();
            updated.status = Some(status);
            let (api, target) = api_for::<StatefulSet, _>(&self.client, "update status of", &*set);
            match call(target, api.replace_status(target.name, &PostParams::default(), &updated))
                .await
            {
                Ok(written) => {
                    self.written.record(written);
                }
                Err(e) => errors.push(Error::from(e)),
            }
        }
        // Trim the history (upstream does it after the update, errors or not).
        let mut live: HashSet<&str> = [current_name.as_str(), update_name.as_str()].into();
        live.extend(pods.iter().map(|p| pod_revision(p)));
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        for old in history_to_delete(&revisions, &live, limit) {
            if let Err(e) = crate::history::delete(&self.client, old).await {
                errors.push(e);
            }
        }
        if let Err(e) = result {
            errors.insert(0, e);
        }
        Error::aggregate(errors)?;
        Ok(match plan.requeue_after {
            Some(after) => Outcome::RequeueAfter(after),
            None => Outcome::Done,
        })
    }

    /// Runs the plan's writes; the outcome and how many rolling-update deletions were done.
    async fn execute(
        &self,
        set: &StatefulSet,
        plan: &crate::plan::Plan,
    ) -> (Result<(), Error>, i32) {
        let control = PodControl { client: &self.client, recorder: &self.recorder, set };
        let run_steps = |steps: &[Action]| {
            let control = &control;
            let steps = steps.to_vec();
            async move {
                for step in &steps {
                    if control.run(step).await? == Flow::Stop {
                        return Ok(Flow::Stop);
                    }
                }
                Ok::<_, Error>(Flow::Continue)
            }
        };
        // Each phase: in order when OrderedReady (a stop ends the sync), else in batches.
        let groups: [Vec<Vec<Action>>; 3] = [
            plan.replicas.clone(),
            plan.condemned_claims.iter().map(|a| vec![a.clone()]).collect(),
            plan.scale_down.iter().map(|a| vec![a.clone()]).collect(),
        ];
        for group in &groups {
            if plan.monotonic {
                for steps in group {
                    match run_steps(steps).await {
                        Ok(Flow::Continue) => {}
                        Ok(Flow::Stop) => return (Ok(()), 0),
                        Err(e) => return (Err(e), 0),
                    }
                }
            } else {
                let errors = slow_start(group.len(), |i| {
                    let fut = run_steps(&group[i]);
                    async move { fut.await.map(|_| ()) }
                })
                .await;
                if !errors.is_empty() {
                    return (Error::aggregate(errors), 0);
                }
            }
        }
        let mut done = 0;
        for step in &plan.update {
            match control.run(step).await {
                Ok(_) => done += 1,
                Err(e) => return (Err(e), done),
            }
        }
        (Ok(()), done)
    }

    /// The pods `set` owns after adopting orphans it selects (whose names make them its
    /// members) and releasing owned pods it no longer selects (upstream's ClaimPods).
    async fn claim_pods(&self, set: &Arc<StatefulSet>) -> Result<Vec<Arc<Pod>>, Error> {
        let meta = &set.metadata;
        let uid = meta.uid.clone().unwrap_or_default();
        let namespace = set_namespace(set).to_owned();
        let deleting = meta.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for pod in self.pods.list_namespace(&namespace) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let selected = selects(set, &labels) && is_member_of(set, &pod);
            match claim(&uid, &namespace, deleting, &pod.metadata, selected) {
                Claim::Owned => owned.push(pod),
                Claim::Ignore => {}
                Claim::Release => {
                    if let Err(e) = release(&self.client, &uid, &*pod).await {
                        errors.push(e.into());
                    }
                }
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck(set).await);
                    }
                    if let Some(Err(reason)) = &can_adopt {
                        errors.push(invalid(set, format!("cannot adopt: {reason}")));
                        continue;
                    }
                    match adopt(&self.client, &controller_reference(&**set), &*pod).await {
                        Ok(Some(adopted)) => owned.push(Arc::new(adopted)),
                        Ok(None) => {}
                        Err(e) => errors.push(e.into()),
                    }
                }
            }
        }
        Error::aggregate(errors)?;
        Ok(owned)
    }

    /// Adopts revisions the set selects that have no controller (upstream's
    /// adoptOrphanRevisions).
    async fn adopt_orphan_revisions(&self, set: &Arc<StatefulSet>) -> Result<(), Error> {
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let orphans: Vec<Arc<ControllerRevision>> = self
            .revisions
            .list_namespace(set_namespace(set))
            .into_iter()
            .filter(|r| controller_of(&r.metadata).is_none())
            .filter(|r| selects(set, &r.metadata.labels.clone().unwrap_or_default()))
            .collect();
        if orphans.is_empty() {
            return Ok(());
        }
        self.recheck(set)
            .await
            .map_err(|reason| invalid(set, format!("cannot adopt: {reason}")))?;
        let owner = controller_reference(&**set);
        let mut errors = Vec::new();
        for r in orphans {
            if let Err(e) = adopt(&self.client, &owner, &*r).await {
                errors.push(e.into());
            }
        }
        Error::aggregate(errors)
    }

    /// The set, read fresh, is still the same object and not being deleted.
    async fn recheck(&self, set: &StatefulSet) -> Result<(), String> {
        let (api, target) = api_for::<StatefulSet, _>(&self.client, "get", set);
        let fresh = call(target, api.get(target.name)).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != set.metadata.uid {
            return Err(format!(
                "the original StatefulSet {}/{} is gone: got uid {:?}, wanted {:?}",
                target.namespace, target.name, fresh.metadata.uid, set.metadata.uid
            ));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "StatefulSet {}/{} has just been deleted",
                target.namespace, target.name
            ));
        }
        Ok(())
    }
}

fn selects_anything(set: &StatefulSet) -> bool {
    set.spec.as_ref().is_some_and(|s| !rudder_client::objects::selects_nothing(&s.selector))
}

/// Revisions the set selects that it controls or nobody controls (upstream's
/// ListControllerRevisions).
fn owned_by(
    set: &StatefulSet,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    selects(set, meta.labels.as_ref().unwrap_or(&Default::default()))
        && controller_of(meta).is_none_or(|r| Some(&r.uid) == set.metadata.uid.as_ref())
}
