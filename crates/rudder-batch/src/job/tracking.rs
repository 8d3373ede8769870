//! Counting finished pods through the tracking finalizer (upstream's
//! `trackJobStatusAndRemoveFinalizers`): (1) finished pods still carrying the finalizer are
//! added to `status.uncountedTerminatedPods` (or, Indexed, to the succeeded indexes) and the
//! status is written; (2) their finalizers are removed; (3) the pods whose finalizer is gone
//! move from the uncounted lists into `succeeded`/`failed`; (4) the Job is marked finished
//! once nothing is uncounted and nothing is terminating. A crash between any two steps
//! neither loses nor doubles a count.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use rudder_client::EventType;
use rudder_workloads::api::{api_for, call};

use super::MAX_UNCOUNTED_PODS;
use super::conditions::*;
use super::indexed::{completion_index, format_indexes, valid_index};
use super::orphans::remove_tracking_finalizer;
use super::pods::{has_tracking_finalizer, is_pod_failed, phase, uid};
use super::policy::match_pod_failure_policy;
use super::sync::{Controller, SyncState};
use crate::Error;

fn non_empty(v: Vec<String>) -> Option<Vec<String>> {
    (!v.is_empty()).then_some(v)
}

impl Controller {
    pub(super) async fn write_status(&self, job: &mut Job) -> Result<(), Error> {
        let (api, target) = api_for::<Job, Job>(&self.client, "update status of", &*job);
        let written =
            call(target, api.replace_status(target.name, &PostParams::default(), &*job)).await?;
        *job = (*self.written.record(written)).clone();
        Ok(())
    }

    pub(super) async fn track_status_and_remove_finalizers(
        &self,
        s: &mut SyncState,
        mut needs_flush: bool,
        _failed: i32,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let completions = s.completions.unwrap_or(0);
        let policy = s.job.spec.as_ref().and_then(|sp| sp.pod_failure_policy.clone());
        let mut pods: Vec<Arc<Pod>> = s.pods.clone();
        if s.indexed {
            pods.sort_by_key(|p| completion_index(p).unwrap_or(i32::MAX));
        }
        let mut with_finalizer: HashSet<String> = pods
            .iter()
            .filter(|p| has_tracking_finalizer(p) && !s.expected_rm.contains(uid(p)))
            .map(|p| uid(p).to_owned())
            .collect();
        let deleting = s.job.metadata.deletion_timestamp.is_some();
        let mut status = s.job.status.take().unwrap_or_default();
        if clean_uncounted(&mut status, &with_finalizer) {
            needs_flush = true;
        }
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let mut uncounted_succeeded = uncounted.succeeded.unwrap_or_default();
        let mut uncounted_failed = uncounted.failed.unwrap_or_default();
        let mut to_remove = Vec::new();
        let mut new_indexes = Vec::new();
        let mut reached_max = false;
        let job_failing = s.finished.as_ref().is_some_and(|f| f.type_ != SUCCESS_CRITERIA_MET);
        for pod in &pods {
            let pod_uid = uid(pod);
            if !has_tracking_finalizer(pod) || s.expected_rm.contains(pod_uid) {
                continue;
            }
            let failed = is_pod_failed(pod, &s.job);
            let succeeded = phase(pod) == "Succeeded";
            if !(deleting || s.finished.is_some() || succeeded || failed) {
                continue;
            }
            to_remove.push(pod.clone());
            if succeeded && !s.uncounted_failed.contains(pod_uid) {
                if s.indexed {
                    if let Some(ix) = valid_index(pod, completions)
                        && !s.prev_succeeded_indexes.contains(&ix)
                    {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                } else if !s.uncounted_succeeded.contains(pod_uid) {
                    uncounted_succeeded.push(pod_uid.to_owned());
                    needs_flush = true;
                }
            } else if (failed || job_failing)
                && !s.uncounted_failed.contains(pod_uid)
                && (!s.indexed || valid_index(pod, completions).is_some())
                && match_pod_failure_policy(policy.as_ref(), pod).count
            {
                uncounted_failed.push(pod_uid.to_owned());
                needs_flush = true;
            }
            if new_indexes.len() + uncounted_succeeded.len() + uncounted_failed.len()
                >= MAX_UNCOUNTED_PODS
            {
                // The rest waits for the next sync (the status stays small).
                reached_max = true;
                break;
            }
        }
        let u = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
        u.succeeded = non_empty(uncounted_succeeded);
        u.failed = non_empty(uncounted_failed);
        if s.indexed {
            s.succeeded_indexes.extend(new_indexes);
            let text = format_indexes(&s.succeeded_indexes);
            if status.completed_indexes.as_deref().unwrap_or("") != text {
                needs_flush = true;
            }
            status.succeeded = Some(s.succeeded_indexes.len() as i32);
            status.completed_indexes = (!text.is_empty()).then_some(text);
        }
        if let Some(f) = s.finished.clone() {
            let reason = f.reason.clone().unwrap_or_default();
            let message = f.message.clone().unwrap_or_default();
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            if f.type_ == FAILURE_TARGET {
                // Recorded before the finalizers go, so the reason survives a restart.
                conditions.push(f);
                needs_flush = true;
                s.finished = Some(new_condition(FAILED, "True", &reason, &message, now));
            } else if f.type_ == SUCCESS_CRITERIA_MET {
                if find(conditions, SUCCESS_CRITERIA_MET).is_none() {
                    conditions.push(f);
                    needs_flush = true;
                }
                s.finished = Some(new_condition(COMPLETE, "True", &reason, &message, now));
            }
        }
        s.job.status = Some(status);

        if needs_flush {
            self.write_status(&mut s.job).await?;
            self.backoff.set(&s.key, s.new_backoff);
            needs_flush = false;
        }
        let mut removal_errors = Vec::new();
        if !to_remove.is_empty() {
            self.finalizers.expect_removed(&s.key, to_remove.iter().map(|p| uid(p).to_owned()));
            let results = futures::future::join_all(
                to_remove.iter().map(|p| remove_tracking_finalizer(&self.client, p)),
            )
            .await;
            for (pod, result) in to_remove.iter().zip(results) {
                match result {
                    Ok(_) => {
                        with_finalizer.remove(uid(pod));
                    }
                    Err(e) => {
                        self.finalizers.observed(&s.key, uid(pod));
                        removal_errors.push(e);
                    }
                }
            }
        }
        let status = s.job.status.get_or_insert_with(Default::default);
        if clean_uncounted(status, &with_finalizer) {
            needs_flush = true;
        }
        if let Some(e) = Error::first_of(removal_errors) {
            if needs_flush {
                self.write_status(&mut s.job).await?;
            }
            return Err(e);
        }
        let finished = !reached_max && self.enact_finished(s);
        if finished || needs_flush {
            self.write_status(&mut s.job).await?;
        }
        if finished {
            self.record_finished(s);
        }
        Ok(())
    }

    /// Adds the terminal condition once nothing is uncounted and nothing terminating.
    fn enact_finished(&self, s: &mut SyncState) -> bool {
        let Some(f) = s.finished.clone() else { return false };
        let status = s.job.status.get_or_insert_with(Default::default);
        if let Some(u) = &status.uncounted_terminated_pods
            && (u.succeeded.as_ref().is_some_and(|v| !v.is_empty())
                || u.failed.as_ref().is_some_and(|v| !v.is_empty()))
        {
            return false;
        }
        if s.terminating > 0 {
            return false;
        }
        let reason = f.reason.clone().unwrap_or_default();
        let message = f.message.clone().unwrap_or_default();
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        ensure_condition(conditions, &f.type_, &f.status, &reason, &message, self.clock.now());
        if f.type_ == COMPLETE {
            status.completion_time = f.last_transition_time.clone();
        }
        true
    }

    fn record_finished(&self, s: &SyncState) {
        let Some(f) = &s.finished else { return };
        if f.type_ == COMPLETE {
            let succeeded = s.job.status.as_ref().and_then(|st| st.succeeded).unwrap_or(0);
            if s.completions.is_some_and(|c| succeeded > c) {
                self.recorder.event(
                    &s.job,
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached",
                );
            }
            self.recorder.event(&s.job, EventType::Normal, "Completed", "Job completed");
        } else {
            let reason = f.reason.as_deref().unwrap_or(FAILED);
            let message = f.message.clone().unwrap_or_default();
            self.recorder.event(&s.job, EventType::Warning, reason, message);
        }
    }
}
