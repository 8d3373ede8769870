//! One sync of a CronJob (upstream's `sync`, `cleanupFinishedJobs` and `syncCronJob`).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{DeleteParams, PostParams, PropagationPolicy};
use rudder_client::objects::controller_of;
use rudder_client::{Clock, EventType, Informer, ObjectKey, Outcome, Recorder};
use rudder_workloads::api::{Target, call};
use rudder_workloads::recent::RecentWrites;

use super::schedule::{
    Missed, Times, job_from_template, job_name, most_recent_schedule_time, next_schedule_delay,
};
use crate::Error;
use crate::cron::{Schedule, load_time_zone};
use crate::job::conditions::{COMPLETE, FAILED, finished_type};

pub struct Controller {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub cronjobs: Arc<Informer<CronJob>>,
    pub jobs: Arc<Informer<Job>>,
    pub written: Arc<RecentWrites<CronJob>>,
    pub max_requeue_delay: Option<Duration>,
}

/// The schedule with the CronJob's time zone (upstream's formatSchedule + ParseStandard).
pub fn schedule_of(cj: &CronJob) -> Result<Schedule, String> {
    let spec = cj.spec.as_ref().ok_or("no spec")?;
    if spec.schedule.contains("TZ") {
        return Schedule::parse(&spec.schedule);
    }
    match spec.time_zone.as_deref() {
        Some(tz) if load_time_zone(tz).is_ok() => {
            Schedule::parse(&format!("TZ={tz} {}", spec.schedule))
        }
        _ => Schedule::parse(&spec.schedule),
    }
}

fn job_reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn active(cj: &CronJob) -> &[ObjectReference] {
    cj.status.as_ref().and_then(|s| s.active.as_deref()).unwrap_or_default()
}

fn in_active_list(cj: &CronJob, uid: Option<&str>) -> bool {
    active(cj).iter().any(|r| r.uid.as_deref() == uid)
}

fn remove_from_active_list(cj: &mut CronJob, uid: Option<&str>) {
    if let Some(list) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        list.retain(|r| r.uid.as_deref() != uid);
    }
}

fn start_time(job: &Job) -> Option<Timestamp> {
    job.status.as_ref()?.start_time.as_ref().map(|t| t.0)
}

fn target<'a>(
    verb: &'static str,
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
) -> Target<'a> {
    Target { verb, kind, namespace, name }
}

/// The Jobs to delete so that at most `limit` of `jobs` remain: the oldest by start time,
/// unstarted ones last, names breaking ties.
pub fn oldest_beyond_limit(mut jobs: Vec<Arc<Job>>, limit: i32) -> Vec<Arc<Job>> {
    let excess = jobs.len() as i64 - i64::from(limit.max(0));
    if excess <= 0 {
        return Vec::new();
    }
    jobs.sort_by(|a, b| match (start_time(a), start_time(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.metadata.name.cmp(&b.metadata.name),
    });
    jobs.truncate(excess as usize);
    jobs
}

impl Controller {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.cronjobs.get(&key.0, &key.1) else {
            self.written.forget(&key);
            return Ok(Outcome::Done);
        };
        let cj = self.written.fresher(cached);
        let name = cj.metadata.name.as_deref().unwrap_or("");
        let jobs: Vec<Arc<Job>> = self
            .jobs
            .list_namespace(&key.0)
            .into_iter()
            .filter(|j| {
                controller_of(&j.metadata).is_some_and(|r| r.kind == "CronJob" && r.name == name)
            })
            .collect();
        let mut copy = (*cj).clone();
        let cleaned = self.cleanup_finished_jobs(&mut copy, &jobs).await;
        let (requeue, updated, result) = self.sync_cronjob(&mut copy, &jobs).await;
        if cleaned || updated {
            let ns = key.0.as_str();
            let api: kube::Api<CronJob> = kube::Api::namespaced(self.client.clone(), ns);
            let t = target("update status of", "CronJob", ns, &key.1);
            let written =
                call(t, api.replace_status(&key.1, &PostParams::default(), &copy)).await?;
            self.written.record(written);
        }
        let requeue = match (requeue, self.max_requeue_delay) {
            (Some(d), Some(max)) => Some(d.min(max)),
            (None, Some(max)) if result.is_ok() => Some(max),
            (d, _) => d,
        };
        match requeue {
            Some(d) => Ok(Outcome::RequeueAfter(d)),
            None => result.map(|_| Outcome::Done),
        }
    }

    /// Deletes the oldest finished Jobs beyond the history limits; whether the status changed.
    async fn cleanup_finished_jobs(&self, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
        let spec = cj.spec.clone().unwrap_or_default();
        if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none()
        {
            return false;
        }
        let of = |t: &str| -> Vec<Arc<Job>> {
            jobs.iter().filter(|j| finished_type(j) == Some(t)).cloned().collect()
        };
        let mut victims = Vec::new();
        if let Some(limit) = spec.successful_jobs_history_limit {
            victims.extend(oldest_beyond_limit(of(COMPLETE), limit));
        }
        if let Some(limit) = spec.failed_jobs_history_limit {
            victims.extend(oldest_beyond_limit(of(FAILED), limit));
        }
        let mut updated = false;
        for job in victims {
            updated |= self.delete_job(cj, &job).await;
        }
        updated
    }

    /// Deletes a Job (its pods go with it) and its entry in `active`; whether it was deleted.
    async fn delete_job(&self, cj: &mut CronJob, job: &Job) -> bool {
        let ns = job.metadata.namespace.as_deref().unwrap_or("");
        let name = job.metadata.name.as_deref().unwrap_or("");
        let api: kube::Api<Job> = kube::Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match call(target("delete", "Job", ns, name), api.delete(name, &params)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    EventType::Warning,
                    "FailedDelete",
                    format!("Deleted job: {}", e.message()),
                );
                return false;
            }
        }
        remove_from_active_list(cj, job.metadata.uid.as_deref());
        self.recorder.event(
            &*cj,
            EventType::Normal,
            "SuccessfulDelete",
            format!("Deleted job {name}"),
        );
        true
    }

    async fn get_job(&self, namespace: &str, name: &str) -> Result<Option<Job>, Error> {
        let api: kube::Api<Job> = kube::Api::namespaced(self.client.clone(), namespace);
        match call(target("get", "Job", namespace, name), api.get(name)).await {
            Ok(j) => Ok(Some(j)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Returns (when to look again, whether the status changed, the outcome).
    async fn sync_cronjob(
        &self,
        cj: &mut CronJob,
        jobs: &[Arc<Job>],
    ) -> (Option<Duration>, bool, Result<(), Error>) {
        let now = self.clock.now();
        let mut updated = false;
        for j in jobs {
            let found = in_active_list(cj, j.metadata.uid.as_deref());
            let finished = finished_type(j);
            let job_name = j.metadata.name.clone().unwrap_or_default();
            if !found && finished.is_none() {
                let manual = j
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("cronjob.kubernetes.io/instantiate"))
                    .is_some_and(|v| v == "manual");
                if !manual {
                    self.recorder.event(
                        &*cj,
                        EventType::Warning,
                        "UnexpectedJob",
                        format!(
                            "Saw a job that the controller did not create or forgot: {job_name}"
                        ),
                    );
                }
            } else if found && let Some(condition) = finished {
                remove_from_active_list(cj, j.metadata.uid.as_deref());
                self.recorder.event(
                    &*cj,
                    EventType::Normal,
                    "SawCompletedJob",
                    format!("Saw completed job: {job_name}, condition: {condition}"),
                );
                updated = true;
            }
            if finished == Some(COMPLETE)
                && let Some(done) = j.status.as_ref().and_then(|s| s.completion_time.clone())
            {
                let status = cj.status.get_or_insert_with(Default::default);
                if status.last_successful_time.as_ref().is_none_or(|t| t.0 < done.0) {
                    status.last_successful_time = Some(done);
                    updated = true;
                }
            }
        }
        // Active entries whose Job is gone (asked of the API: the cache may lag).
        for r in active(cj).to_vec() {
            if jobs.iter().any(|j| j.metadata.uid == r.uid) {
                continue;
            }
            let ns = r.namespace.clone().unwrap_or_default();
            let name = r.name.clone().unwrap_or_default();
            match self.get_job(&ns, &name).await {
                Ok(None) => {
                    self.recorder.event(
                        &*cj,
                        EventType::Normal,
                        "MissingJob",
                        format!("Active job went missing: {name}"),
                    );
                    remove_from_active_list(cj, r.uid.as_deref());
                    updated = true;
                }
                Ok(Some(_)) => {}
                Err(e) => return (None, updated, Err(e)),
            }
        }
        if cj.metadata.deletion_timestamp.is_some() {
            return (None, updated, Ok(()));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        if let Some(tz) = spec.time_zone.as_deref()
            && let Err(e) = load_time_zone(tz)
        {
            self.recorder.event(
                &*cj,
                EventType::Warning,
                "UnknownTimeZone",
                format!("invalid timeZone: {tz:?}: {e}"),
            );
            return (None, updated, Ok(()));
        }
        if spec.suspend == Some(true) {
            return (None, updated, Ok(()));
        }
        if spec.schedule.contains("TZ") {
            self.recorder.event(
                &*cj,
                EventType::Warning,
                "UnsupportedSchedule",
                format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                ),
            );
        }
        let schedule = match schedule_of(cj) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    EventType::Warning,
                    "UnparseableSchedule",
                    format!("unparseable schedule: {:?} : {e}", spec.schedule),
                );
                return (None, updated, Ok(()));
            }
        };
        let times = Times::of(cj);
        let next = |cj: &CronJob| next_schedule_delay(Times::of(cj), now, &schedule);
        let scheduled = match most_recent_schedule_time(times, now, &schedule, true) {
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    EventType::Warning,
                    "InvalidSchedule",
                    format!("invalid schedule: {} : {e}", spec.schedule),
                );
                return (None, updated, Ok(()));
            }
            Ok((_, None, _)) => return (next(cj), updated, Ok(())),
            Ok((_, Some(t), missed)) if t > now => {
                let _ = missed;
                return (next(cj), updated, Ok(()));
            }
            Ok((_, Some(t), missed)) => {
                if missed == Missed::Many {
                    self.recorder.event(
                        &*cj,
                        EventType::Warning,
                        "TooManyMissedTimes",
                        "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
                    );
                }
                t
            }
        };
        if let Some(deadline) = spec.starting_deadline_seconds
            && scheduled
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(deadline))
                .is_ok_and(|t| t < now)
        {
            let at = scheduled.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC);
            self.recorder.event(
                &*cj,
                EventType::Warning,
                "MissSchedule",
                format!(
                    "Missed scheduled time to start a job: {}",
                    at.strftime("%a, %d %b %Y %H:%M:%S %z")
                ),
            );
            return (next(cj), updated, Ok(()));
        }
        let cj_name = cj.metadata.name.clone().unwrap_or_default();
        let name = job_name(&cj_name, scheduled);
        let already = active(cj).iter().any(|r| r.name.as_deref() == Some(name.as_str()))
            || times.last_schedule.is_some_and(|t| t.as_second() == scheduled.as_second());
        if already {
            return (next(cj), updated, Ok(()));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && !active(cj).is_empty() {
            self.recorder.event(
                &*cj,
                EventType::Normal,
                "JobAlreadyActive",
                "Not starting job because prior execution is running and concurrency policy is Forbid",
            );
            return (next(cj), updated, Ok(()));
        }
        if policy == "Replace" {
            for r in active(cj).to_vec() {
                let ns = r.namespace.clone().unwrap_or_default();
                let name = r.name.clone().unwrap_or_default();
                let job = match self.get_job(&ns, &name).await {
                    Ok(Some(j)) => j,
                    Ok(None) => {
                        remove_from_active_list(cj, r.uid.as_deref());
                        updated = true;
                        continue;
                    }
                    Err(e) => {
                        self.recorder.event(
                            &*cj,
                            EventType::Warning,
                            "FailedGet",
                            format!("Get job: {e}"),
                        );
                        return (None, updated, Err(e));
                    }
                };
                if !self.delete_job(cj, &job).await {
                    let e = Error::Invalid {
                        kind: "CronJob",
                        namespace: ns,
                        name: cj_name.clone(),
                        message: format!("could not replace job {name}"),
                    };
                    return (None, updated, Err(e));
                }
                updated = true;
            }
        }
        let tz = schedule.time_zone().clone();
        let request = job_from_template(cj, scheduled, &tz);
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let api: kube::Api<Job> = kube::Api::namespaced(self.client.clone(), &ns);
        let created = match call(
            target("create", "Job", &ns, &name),
            api.create(&PostParams::default(), &request),
        )
        .await
        {
            Ok(job) => {
                self.recorder.event(
                    &*cj,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!("Created job {name}"),
                );
                job
            }
            Err(e) if e.is_already_exists() => {
                // Created earlier, but the status update was lost: add it unless someone else
                // made it.
                let job = match self.get_job(&ns, &name).await {
                    Ok(Some(j)) => j,
                    Ok(None) => return (None, updated, Err(e.into())),
                    Err(e) => return (None, updated, Err(e)),
                };
                let mine = controller_of(&job.metadata)
                    .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
                if !mine || in_active_list(cj, job.metadata.uid.as_deref()) {
                    return (None, updated, Ok(()));
                }
                job
            }
            Err(e) if e.is_namespace_terminating() => return (None, updated, Err(e.into())),
            Err(e) => {
                self.recorder.event(
                    &*cj,
                    EventType::Warning,
                    "FailedCreate",
                    format!("Error creating job: {}", e.message()),
                );
                return (None, updated, Err(e.into()));
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(job_reference(&created));
        status.last_schedule_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(scheduled));
        (next(cj), true, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(name: &str, started: Option<i64>) -> Arc<Job> {
        let mut j = Job::default();
        j.metadata.name = Some(name.into());
        j.status = Some(JobStatus {
            start_time: started.map(|s| Time(Timestamp::from_second(s).unwrap())),
            ..Default::default()
        });
        Arc::new(j)
    }

    #[test]
    fn history_keeps_the_newest() {
        let jobs = vec![job("c", Some(30)), job("a", Some(10)), job("n", None), job("b", Some(10))];
        let names = |v: Vec<Arc<Job>>| {
            v.iter().map(|j| j.metadata.name.clone().unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(names(oldest_beyond_limit(jobs.clone(), 2)), ["a", "b"]);
        assert_eq!(names(oldest_beyond_limit(jobs.clone(), 0)), ["a", "b", "c", "n"]);
        assert!(oldest_beyond_limit(jobs, 4).is_empty());
    }

    #[test]
    fn schedules_with_time_zones() {
        let cj: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "x" },
            "spec": { "schedule": "0 9 * * *", "timeZone": "Europe/Berlin", "jobTemplate": {} }
        }))
        .unwrap();
        let s = schedule_of(&cj).unwrap();
        let t: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(s.next(t).unwrap().to_string(), "2024-01-01T08:00:00Z");
    }
}
