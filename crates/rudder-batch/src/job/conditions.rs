//! Job conditions and the decisions made from counts (pure): how many pods should run, when
//! the Job is complete, past its backoff limit or its active deadline, and how
//! `status.uncountedTerminatedPods` folds into the counters.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock::elapsed;

use super::pods::phase;

pub const COMPLETE: &str = "Complete";
pub const FAILED: &str = "Failed";
pub const SUSPENDED: &str = "Suspended";
pub const FAILURE_TARGET: &str = "FailureTarget";
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";

pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const REASON_POD_FAILURE_POLICY: &str = "PodFailurePolicy";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";

/// A timestamp as the API keeps it (whole seconds).
pub fn api_time(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: (!reason.is_empty()).then(|| reason.to_owned()),
        message: (!message.is_empty()).then(|| message.to_owned()),
        last_probe_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    }
}

pub fn find<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn conditions(job: &Job) -> &[JobCondition] {
    job.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default()
}

/// The condition of this type if it is True.
pub fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    find(conditions(job), type_).filter(|c| c.status == "True")
}

/// Complete or Failed.
pub fn is_finished(job: &Job) -> bool {
    finished_type(job).is_some()
}

/// `Complete` or `Failed` when the Job finished.
pub fn finished_type(job: &Job) -> Option<&'static str> {
    conditions(job).iter().find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
        (COMPLETE, "True") => Some(COMPLETE),
        (FAILED, "True") => Some(FAILED),
        _ => None,
    })
}

/// Sets a condition's status (adding it unless it would be added as False); whether the
/// list changed.
pub fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        let same = c.status == status
            && c.reason.as_deref().unwrap_or("") == reason
            && c.message.as_deref().unwrap_or("") == message;
        if !same {
            *c = new_condition(type_, status, reason, message, now);
        }
        return !same;
    }
    if status != "False" {
        list.push(new_condition(type_, status, reason, message, now));
        return true;
    }
    false
}

pub fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// How many pods should be active (upstream's manageJob): with completions, never more than
/// the completions left; without (work queue), parallelism until one pod succeeded, then
/// whatever still runs.
pub fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

/// Complete: the completions reached (or, for work queues, one success) and nothing runs.
pub fn is_complete(completions: Option<i32>, succeeded: i32, active: i32) -> bool {
    match completions {
        None => succeeded > 0 && active == 0,
        Some(c) => succeeded >= c && active == 0,
    }
}

/// With restartPolicy OnFailure: the container restarts of running pods reached the limit.
pub fn past_backoff_limit_on_failure(job: &Job, pods: &[std::sync::Arc<Pod>]) -> bool {
    let spec = job.spec.as_ref();
    let policy =
        spec.and_then(|s| s.template.spec.as_ref()).and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .flat_map(|p| {
            let s = p.status.as_ref();
            let init = s.and_then(|s| s.init_container_statuses.as_deref()).unwrap_or_default();
            let main = s.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
            init.iter().chain(main).map(|c| c.restart_count)
        })
        .sum();
    if limit == 0 { restarts > 0 } else { restarts >= limit }
}

/// How long the Job may still be active (None: no deadline, suspended or not started).
pub fn active_deadline_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let seconds = job.spec.as_ref()?.active_deadline_seconds?;
    if suspended(job) {
        return None;
    }
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    let allowed = Duration::from_secs(seconds.max(0) as u64);
    Some(allowed.saturating_sub(elapsed(start, now)))
}

/// Moves pods whose finalizer is gone from the uncounted lists into the counters; whether
/// anything changed.
pub fn clean_uncounted(status: &mut JobStatus, uids_with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    let mut changed = false;
    for (list, counter) in [
        (&mut uncounted.succeeded, &mut status.succeeded),
        (&mut uncounted.failed, &mut status.failed),
    ] {
        let before = list.as_ref().map_or(0, Vec::len);
        let kept: Vec<String> =
            list.iter().flatten().filter(|u| uids_with_finalizer.contains(*u)).cloned().collect();
        if kept.len() != before {
            changed = true;
            *counter = Some(counter.unwrap_or(0) + (before - kept.len()) as i32);
            *list = (!kept.is_empty()).then_some(kept);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::UncountedTerminatedPods;

    #[test]
    fn active_targets_and_completion() {
        // One shot.
        assert_eq!(want_active(Some(1), 1, 0, 0), 1);
        assert!(is_complete(Some(1), 1, 0));
        // Fixed completions with parallelism.
        assert_eq!(want_active(Some(4), 2, 0, 0), 2);
        assert_eq!(want_active(Some(4), 2, 3, 1), 1);
        assert_eq!(want_active(Some(4), 2, 5, 0), 0);
        assert!(!is_complete(Some(4), 3, 0));
        assert!(!is_complete(Some(4), 4, 1));
        assert!(is_complete(Some(4), 4, 0));
        // Work queue: parallelism until a success, then no new pods.
        assert_eq!(want_active(None, 3, 0, 1), 3);
        assert_eq!(want_active(None, 3, 1, 2), 2);
        assert!(!is_complete(None, 1, 2));
        assert!(is_complete(None, 1, 0));
        assert!(!is_complete(None, 0, 0));
    }

    #[test]
    fn conditions_are_set_once() {
        let now = Timestamp::from_second(1000).unwrap();
        let mut list = Vec::new();
        assert!(!ensure_condition(&mut list, SUSPENDED, "False", "JobResumed", "Job resumed", now));
        assert!(list.is_empty(), "False is not added");
        assert!(ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(!ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            now
        ));
        assert!(ensure_condition(&mut list, SUSPENDED, "False", "JobResumed", "Job resumed", now));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
    }

    #[test]
    fn uncounted_pods_fold_into_counters() {
        let mut status = JobStatus {
            succeeded: Some(1),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        let with = HashSet::from(["b".to_owned()]);
        assert!(clean_uncounted(&mut status, &with));
        assert_eq!((status.succeeded, status.failed), (Some(2), Some(1)));
        let u = status.uncounted_terminated_pods.as_ref().unwrap();
        assert_eq!((u.succeeded.clone(), u.failed.clone()), (Some(vec!["b".into()]), None));
        assert!(!clean_uncounted(&mut status, &with));
    }

    #[test]
    fn active_deadline() {
        let mut job = Job { spec: Some(Default::default()), ..Default::default() };
        let start = Timestamp::from_second(1000).unwrap();
        job.status = Some(JobStatus { start_time: Some(Time(start)), ..Default::default() });
        assert_eq!(active_deadline_left(&job, start), None);
        job.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
        let later = Timestamp::from_second(1004).unwrap();
        assert_eq!(active_deadline_left(&job, later), Some(Duration::from_secs(6)));
        let past = Timestamp::from_second(1011).unwrap();
        assert_eq!(active_deadline_left(&job, past), Some(Duration::ZERO));
        job.spec.as_mut().unwrap().suspend = Some(true);
        assert_eq!(active_deadline_left(&job, past), None);
    }
}
