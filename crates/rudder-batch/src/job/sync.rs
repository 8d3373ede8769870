//! One sync of a Job (upstream's `syncJob` and `manageJob`): claim the pods, count what
//! finished since the last sync, decide whether the Job failed or completed, create or delete
//! pods, then hand the status to [`super::tracking`].

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Patch, PatchParams};
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_reference, pod_is_active, pod_is_ready};
use rudder_client::{Clock, EventType, Informer, ObjectKey, Outcome, Recorder};
use rudder_workloads::api::{api_for, call};
use rudder_workloads::claim::{Claim, claim, release};
use rudder_workloads::expectations::Expectations;
use rudder_workloads::pod_control::{
    SLOW_START_INITIAL_BATCH, create_pod, delete_pod, pod_from_template, slow_start_batch,
};
use rudder_workloads::pod_ranking::pods_to_delete;
use rudder_workloads::recent::RecentWrites;
use serde_json::json;

use super::backoff::{BackoffRecord, BackoffStore};
use super::conditions::*;
use super::handlers::selects;
use super::indexed::{first_pending_indexes, pods_with_bad_or_duplicate_index, succeeded_indexes};
use super::orphans::{FinalizerExpectations, remove_tracking_finalizer};
use super::pods::*;
use super::policy::match_pod_failure_policy;
use super::{JobConfig, MAX_POD_CREATE_DELETE_PER_SYNC};
use crate::Error;

pub struct Controller {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub jobs: Arc<Informer<Job>>,
    pub pods: Arc<Informer<Pod>>,
    pub expectations: Arc<Expectations>,
    pub finalizers: Arc<FinalizerExpectations>,
    pub backoff: Arc<BackoffStore>,
    pub written: Arc<RecentWrites<Job>>,
    pub config: JobConfig,
}

/// What one sync works on (upstream's syncJobCtx).
pub struct SyncState {
    pub key: ObjectKey,
    pub job: Job,
    pub indexed: bool,
    pub completions: Option<i32>,
    pub pods: Vec<Arc<Pod>>,
    pub active_pods: Vec<Arc<Pod>>,
    pub ready: i32,
    pub terminating: i32,
    pub succeeded: i32,
    pub uncounted_succeeded: HashSet<String>,
    pub uncounted_failed: HashSet<String>,
    pub expected_rm: HashSet<String>,
    pub new_backoff: BackoffRecord,
    pub finished: Option<JobCondition>,
    pub prev_succeeded_indexes: BTreeSet<i32>,
    pub succeeded_indexes: BTreeSet<i32>,
    pub requeue: Option<Duration>,
}

impl SyncState {
    fn requeue_after(&mut self, d: Duration) {
        self.requeue = Some(self.requeue.map_or(d, |r| r.min(d)));
    }
}

fn count(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Pods with the finalizer that finished since they were last counted: (succeeded, failed).
pub fn new_finished_pods(s: &SyncState) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for p in &s.pods {
        let uid = uid(p);
        if !has_tracking_finalizer(p) || s.expected_rm.contains(uid) {
            continue;
        }
        if s.indexed && super::indexed::valid_index(p, s.completions.unwrap_or(0)).is_none() {
            continue;
        }
        if phase(p) == "Succeeded" && !s.uncounted_succeeded.contains(uid) {
            succeeded.push(p.clone());
        } else if is_pod_failed(p, &s.job) && !s.uncounted_failed.contains(uid) {
            failed.push(p.clone());
        }
    }
    (succeeded, failed)
}

impl Controller {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.jobs.get(&key.0, &key.1) else {
            self.expectations.forget(&key);
            self.finalizers.forget(&key);
            self.backoff.remove(&key);
            self.written.forget(&key);
            return Ok(Outcome::Done);
        };
        let shared = self.written.fresher(cached);
        if is_finished(&shared) {
            self.backoff.remove(&key);
            return Ok(Outcome::Done);
        }
        let Some(spec) = shared.spec.clone() else { return Ok(Outcome::Done) };
        if spec.managed_by.as_deref().is_some_and(|m| m != "kubernetes.io/job-controller") {
            return Ok(Outcome::Done);
        }
        let indexed = match spec.completion_mode.as_deref() {
            None | Some("NonIndexed") => false,
            Some("Indexed") => true,
            Some(_) => {
                self.recorder.event(
                    &*shared,
                    EventType::Warning,
                    "UnknownCompletionMode",
                    "Skipped Job sync because completion mode is unknown",
                );
                return Ok(Outcome::Done);
            }
        };
        if indexed && spec.completions.is_none() {
            return Err(invalid(&shared, "Indexed completion mode needs spec.completions"));
        }
        let now = self.clock.now();
        let mut job = (*shared).clone();
        let status = job.status.get_or_insert_with(Default::default);
        let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
        let uncounted_succeeded: HashSet<String> =
            uncounted.succeeded.iter().flatten().cloned().collect();
        let uncounted_failed: HashSet<String> =
            uncounted.failed.iter().flatten().cloned().collect();

        // Expectations first: a pod created after this check waits for the next sync.
        let satisfied = self.expectations.satisfied(&key);
        let pods = self.claim_pods(&shared).await?;
        let active_pods: Vec<Arc<Pod>> =
            pods.iter().filter(|p| pod_is_active(p)).cloned().collect();
        let mut s = SyncState {
            key: key.clone(),
            indexed,
            completions: spec.completions,
            ready: count(active_pods.iter().filter(|p| pod_is_ready(p)).count()),
            terminating: count(pods.iter().filter(|p| is_terminating(p)).count()),
            active_pods,
            pods,
            succeeded: 0,
            uncounted_succeeded,
            uncounted_failed,
            expected_rm: self.finalizers.get(&key),
            new_backoff: BackoffRecord::default(),
            finished: None,
            prev_succeeded_indexes: BTreeSet::new(),
            succeeded_indexes: BTreeSet::new(),
            requeue: None,
            job,
        };
        let (new_succeeded, new_failed) = new_finished_pods(&s);
        let policy = spec.pod_failure_policy.as_ref();
        let counted_failed =
            new_failed.iter().filter(|p| match_pod_failure_policy(policy, p).count).count();
        let status = s.job.status.clone().unwrap_or_default();
        s.succeeded = status.succeeded.unwrap_or(0)
            + count(new_succeeded.len() + s.uncounted_succeeded.len());
        let failed = status.failed.unwrap_or(0) + count(counted_failed + s.uncounted_failed.len());

        if status.start_time.is_none() && !suspended(&s.job) {
            s.job.status.get_or_insert_with(Default::default).start_time = Some(api_time(now));
        }
        s.new_backoff = self.backoff.get(&key).after(&new_succeeded, &new_failed);

        s.finished = true_condition(&s.job, SUCCESS_CRITERIA_MET).cloned();
        if s.finished.is_none() {
            if let Some(target) = true_condition(&s.job, FAILURE_TARGET) {
                let reason = target.reason.clone().unwrap_or_default();
                let message = target.message.clone().unwrap_or_default();
                s.finished = Some(new_condition(FAILED, "True", &reason, &message, now));
            } else if let Some(message) = s
                .pods
                .iter()
                .filter(|p| is_pod_failed(p, &s.job))
                .find_map(|p| match_pod_failure_policy(policy, p).fail_job)
            {
                s.finished = Some(new_condition(
                    FAILURE_TARGET,
                    "True",
                    REASON_POD_FAILURE_POLICY,
                    &message,
                    now,
                ));
            }
        }
        if s.finished.is_none() {
            let backoff_limit = spec.backoff_limit.unwrap_or(6);
            if failed > backoff_limit || past_backoff_limit_on_failure(&s.job, &s.pods) {
                s.finished = Some(new_condition(
                    FAILURE_TARGET,
                    "True",
                    REASON_BACKOFF_LIMIT_EXCEEDED,
                    "Job has reached the specified backoff limit",
                    now,
                ));
            } else {
                match active_deadline_left(&s.job, now) {
                    Some(Duration::ZERO) => {
                        s.finished = Some(new_condition(
                            FAILURE_TARGET,
                            "True",
                            REASON_DEADLINE_EXCEEDED,
                            "Job was active longer than specified deadline",
                            now,
                        ))
                    }
                    Some(left) => s.requeue_after(left),
                    None => {}
                }
            }
        }
        if indexed {
            let completed = status.completed_indexes.clone().unwrap_or_default();
            let completions = spec.completions.unwrap_or(0);
            let (prev, all) = succeeded_indexes(&completed, completions, &s.pods);
            s.succeeded = count(all.len());
            s.prev_succeeded_indexes = prev;
            s.succeeded_indexes = all;
        }

        let mut active = count(s.active_pods.len());
        let mut manage_error = None;
        let mut suspend_changed = false;
        if s.finished.is_some() {
            let victims = s.active_pods.clone();
            let (deleted_ready, deleted, error) = self.delete_active_pods(&s.job, &victims).await;
            if deleted != active || !satisfied {
                // Not finished until every pod is gone and the cache caught up.
                s.finished = None;
            }
            active -= deleted;
            s.terminating += deleted;
            s.ready -= deleted_ready;
            manage_error = error;
        } else {
            let mut managed = false;
            if satisfied && s.job.metadata.deletion_timestamp.is_none() {
                let (now_active, error) = self.manage_job(&mut s, &spec, failed).await;
                active = now_active;
                manage_error = error;
                managed = true;
            }
            if is_complete(spec.completions, s.succeeded, active) {
                s.finished = Some(new_condition(
                    SUCCESS_CRITERIA_MET,
                    "True",
                    REASON_COMPLETIONS_REACHED,
                    "Reached expected number of succeeded pods",
                    now,
                ));
            } else if managed {
                suspend_changed = self.suspend_condition(&mut s, now);
            }
        }

        let status = s.job.status.get_or_insert_with(Default::default);
        let needs_update = suspend_changed
            || status.active.unwrap_or(0) != active
            || status.ready != Some(s.ready)
            || status.terminating != Some(s.terminating);
        status.active = Some(active);
        status.ready = Some(s.ready);
        status.terminating = Some(s.terminating);
        self.track_status_and_remove_finalizers(&mut s, needs_update, failed).await?;
        if let Some(e) = manage_error {
            return Err(e);
        }
        Ok(match s.requeue {
            Some(d) => Outcome::RequeueAfter(d + Duration::from_millis(10)),
            None => Outcome::Done,
        })
    }

    /// Suspended: condition True (event Suspended); resumed: False (event Resumed) and a new
    /// startTime, so activeDeadlineSeconds counts active time only.
    fn suspend_condition(&self, s: &mut SyncState, now: k8s_openapi::jiff::Timestamp) -> bool {
        let is_suspended = suspended(&s.job);
        let status = s.job.status.get_or_insert_with(Default::default);
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let changed = if is_suspended {
            ensure_condition(conditions, SUSPENDED, "True", "JobSuspended", "Job suspended", now)
        } else {
            ensure_condition(conditions, SUSPENDED, "False", "JobResumed", "Job resumed", now)
        };
        if conditions.is_empty() {
            status.conditions = None;
        }
        if changed && !is_suspended {
            status.start_time = Some(api_time(now));
        }
        if changed {
            let (reason, message) = if is_suspended {
                ("Suspended", "Job suspended")
            } else {
                ("Resumed", "Job resumed")
            };
            self.recorder.event(&s.job, EventType::Normal, reason, message);
        }
        changed
    }

    /// The pods the Job owns, after adopting matching orphans (which also get the tracking
    /// finalizer) and releasing owned pods that no longer match.
    async fn claim_pods(&self, job: &Arc<Job>) -> Result<Vec<Arc<Pod>>, Error> {
        let meta = &job.metadata;
        let job_uid = meta.uid.clone().unwrap_or_default();
        let namespace = meta.namespace.clone().unwrap_or_default();
        let deleting = meta.deletion_timestamp.is_some();
        let mut owned = Vec::new();
        let mut errors = Vec::new();
        let mut can_adopt: Option<Result<(), String>> = None;
        for pod in self.pods.list_namespace(&namespace) {
            match claim(&job_uid, &namespace, deleting, &pod.metadata, selects(job, &pod)) {
                Claim::Owned => owned.push(pod),
                Claim::Ignore => {}
                Claim::Release => {
                    if let Err(e) = release(&self.client, &job_uid, &*pod).await {
                        errors.push(e.into());
                    }
                }
                Claim::Adopt => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.recheck_job(job).await);
                    }
                    if let Some(Err(message)) = &can_adopt {
                        errors.push(invalid(job, &format!("cannot adopt pods: {message}")));
                        continue;
                    }
                    match self.adopt(job, &pod).await {
                        Ok(Some(adopted)) => owned.push(Arc::new(adopted)),
                        Ok(None) => {}
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        match Error::first_of(errors) {
            Some(e) => Err(e),
            None => Ok(owned),
        }
    }

    async fn recheck_job(&self, job: &Job) -> Result<(), String> {
        let (api, target) = api_for::<Job, Job>(&self.client, "get", job);
        let fresh = call(target, api.get(target.name)).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != job.metadata.uid {
            return Err(format!(
                "original Job {}/{} is gone: got uid {:?}, wanted {:?}",
                target.namespace, target.name, fresh.metadata.uid, job.metadata.uid
            ));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("Job {}/{} has just been deleted", target.namespace, target.name));
        }
        Ok(())
    }

    /// Adds the controller reference and the tracking finalizer (uid and resourceVersion
    /// preconditions). `Ok(None)`: the pod is gone.
    async fn adopt(&self, job: &Job, pod: &Pod) -> Result<Option<Pod>, Error> {
        let patch = json!({
            "metadata": {
                "ownerReferences": [controller_reference(job)],
                "finalizers": [TRACKING_FINALIZER],
                "uid": pod.metadata.uid,
                "resourceVersion": pod.metadata.resource_version,
            }
        });
        let (api, target) = api_for::<Pod, Pod>(&self.client, "adopt", pod);
        match call(
            target,
            api.patch(target.name, &PatchParams::default(), &Patch::Strategic(&patch)),
        )
        .await
        {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes pods of a finished Job, keeping their finalizers (tracking removes them once
    /// counted). Returns (ready deleted, deleted, first error).
    async fn delete_active_pods(&self, job: &Job, pods: &[Arc<Pod>]) -> (i32, i32, Option<Error>) {
        let results = futures::future::join_all(
            pods.iter().map(|p| delete_pod(&self.client, &self.recorder, job, p)),
        )
        .await;
        let mut ready = 0;
        let mut deleted = 0;
        let mut errors = Vec::new();
        for (pod, result) in pods.iter().zip(results) {
            match result {
                Ok(_) => {
                    deleted += 1;
                    if pod_is_ready(pod) {
                        ready += 1;
                    }
                }
                Err(e) => errors.push(Error::from(e)),
            }
        }
        (ready, deleted, Error::first_of(errors))
    }

    /// Deletes pods the Job no longer wants, removing the finalizer first (they are not
    /// counted as failed). Returns (ready deleted, deleted, first error).
    async fn delete_job_pods(&self, s: &SyncState, pods: &[Arc<Pod>]) -> (i32, i32, Option<Error>) {
        self.expectations.expect_deletions(&s.key, pods.iter().map(|p| key_of(&**p)));
        let results = futures::future::join_all(pods.iter().map(|p| async move {
            remove_tracking_finalizer(&self.client, p).await?;
            Ok::<_, Error>(delete_pod(&self.client, &self.recorder, &s.job, p).await?)
        }))
        .await;
        let mut ready = 0;
        let mut deleted = 0;
        let mut errors = Vec::new();
        for (pod, result) in pods.iter().zip(results) {
            match result {
                Ok(true) => {
                    deleted += 1;
                    if pod_is_ready(pod) {
                        ready += 1;
                    }
                }
                Ok(false) => {
                    // Gone already: the deletion will not be observed, but it is not active.
                    self.expectations.deletion_observed(&s.key, &key_of(&**pod));
                    deleted += 1;
                }
                Err(e) => {
                    self.expectations.deletion_observed(&s.key, &key_of(&**pod));
                    errors.push(e);
                }
            }
        }
        (ready, deleted, Error::first_of(errors))
    }

    /// Which active pods to delete: for Indexed Jobs those with bad or repeated indexes
    /// first, then in upstream's ActivePods order.
    fn active_pods_for_removal(&self, s: &SyncState, at_least: usize) -> Vec<Arc<Pod>> {
        let now = self.clock.now();
        let order = |pods: &[Arc<Pod>]| {
            // The pod deleted last is the one kept.
            let mut ranked = pods_to_delete(pods, pods, pods.len(), now);
            ranked.reverse();
            ranked
        };
        let (mut remove, left) = if s.indexed {
            pods_with_bad_or_duplicate_index(&s.active_pods, s.completions.unwrap_or(0), order)
        } else {
            (Vec::new(), s.active_pods.clone())
        };
        if remove.len() < at_least {
            let more = pods_to_delete(&left, &left, at_least - remove.len(), now);
            remove.extend(more);
        }
        remove
    }

    /// Creates or deletes pods to reach the wanted number of active pods (upstream's
    /// manageJob). Returns the active count and the first error.
    async fn manage_job(
        &self,
        s: &mut SyncState,
        spec: &k8s_openapi::api::batch::v1::JobSpec,
        _failed: i32,
    ) -> (i32, Option<Error>) {
        let mut active = count(s.active_pods.len());
        if suspended(&s.job) {
            let victims = self.active_pods_for_removal(s, s.active_pods.len());
            let (ready, deleted, error) = self.delete_job_pods(s, &victims).await;
            s.ready -= ready;
            s.terminating += deleted;
            return (active - deleted, error);
        }
        let parallelism = spec.parallelism.unwrap_or(1);
        let want = want_active(spec.completions, parallelism, s.succeeded, active);
        let at_least = (active - want).max(0) as usize;
        let mut victims = self.active_pods_for_removal(s, at_least);
        victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
        if !victims.is_empty() {
            tracing::debug!(key = ?s.key, count = victims.len(), want, "too many pods; deleting");
            let (ready, deleted, error) = self.delete_job_pods(s, &victims).await;
            s.ready -= ready;
            s.terminating += deleted;
            return (active - deleted, error);
        }
        let terminating = if only_replace_failed_pods(&s.job) { s.terminating } else { 0 };
        let diff = want - terminating - active;
        if diff <= 0 {
            return (active, None);
        }
        let remaining = s.new_backoff.remaining(
            self.clock.now(),
            self.config.pod_failure_backoff,
            self.config.max_pod_failure_backoff,
        );
        if !remaining.is_zero() {
            s.requeue_after(remaining.max(self.config.sync_batch_period));
            return (active, None);
        }
        let mut diff = (diff as usize).min(MAX_POD_CREATE_DELETE_PER_SYNC);
        let mut indexes: VecDeque<i32> = VecDeque::new();
        if s.indexed {
            let completions = s.completions.unwrap_or(0);
            indexes =
                first_pending_indexes(&s.succeeded_indexes, &s.active_pods, diff, completions)
                    .into();
            diff = indexes.len();
            if diff == 0 {
                return (active, None);
            }
        }
        let job_name = s.job.metadata.name.clone().unwrap_or_default();
        let template = pod_template(&s.job, s.indexed);
        let owner = controller_reference(&s.job);
        tracing::debug!(key = ?s.key, count = diff, want, "too few pods; creating");
        self.expectations.expect_creations(&s.key, diff);
        let indexes = Mutex::new(indexes);
        let job = &s.job;
        let namespace = s.key.0.clone();
        let (created, error) = slow_start_batch(diff, SLOW_START_INITIAL_BATCH, || {
            let index = indexes.lock().expect("indexes lock").pop_front();
            let template = match index {
                Some(i) => with_completion_index(&template, &job_name, i),
                None => template.clone(),
            };
            let pod = pod_from_template(&template, &namespace, &job_name, owner.clone());
            let (ns, name) = (namespace.clone(), job_name.clone());
            async move {
                let mut pod = pod.map_err(|message| rudder_workloads::Error::Invalid {
                    kind: "Job",
                    namespace: ns,
                    name: name.clone(),
                    message,
                })?;
                if let Some(i) = index {
                    pod.metadata.generate_name = Some(format!("{name}-{i}-"));
                }
                match create_pod(&self.client, &self.recorder, job, &pod).await {
                    Err(e) if e.is_namespace_terminating() => Ok(()),
                    other => other.map(|_| ()),
                }
            }
        })
        .await;
        for _ in created..diff {
            self.expectations.creation_observed(&s.key);
        }
        active += count(created);
        (active, error.map(Error::from))
    }
}

fn invalid(job: &Job, message: &str) -> Error {
    Error::Invalid {
        kind: "Job",
        namespace: job.metadata.namespace.clone().unwrap_or_default(),
        name: job.metadata.name.clone().unwrap_or_default(),
        message: message.to_owned(),
    }
}
