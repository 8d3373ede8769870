//! The CronJob controller's time decisions (pure): the most recent scheduled time that has
//! not run yet (only the latest of several missed times is started; more than 100 missed
//! ones are reported), when to look again, and the Job made for a scheduled time.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use rudder_client::clock::elapsed;
use rudder_client::objects::controller_reference;

use crate::cron::{Schedule, rfc3339_in};

/// The annotation with the time a Job was scheduled for (RFC 3339 in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream's nextScheduleDelta: look again a little after the scheduled time.
pub const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed times than this are reported as TooManyMissedTimes.
pub const MANY_MISSED: i64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Missed {
    None,
    Few,
    Many,
}

/// What the CronJob's times are measured from.
#[derive(Clone, Copy, Debug)]
pub struct Times {
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
}

impl Times {
    pub fn of(cj: &CronJob) -> Times {
        Times {
            created: cj
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
            last_schedule: cj
                .status
                .as_ref()
                .and_then(|s| s.last_schedule_time.as_ref())
                .map(|t| t.0),
            starting_deadline_seconds: cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds),
        }
    }
}

fn add_secs(t: Timestamp, secs: i64) -> Option<Timestamp> {
    t.checked_add(SignedDuration::from_secs(secs)).ok()
}

/// (earliest time looked from, most recent unmet scheduled time, how many were missed)
/// (upstream's mostRecentScheduleTime).
pub fn most_recent_schedule_time(
    times: Times,
    now: Timestamp,
    schedule: &Schedule,
    include_starting_deadline: bool,
) -> Result<(Timestamp, Option<Timestamp>, Missed), String> {
    let mut earliest = times.last_schedule.unwrap_or(times.created);
    if include_starting_deadline
        && let Some(seconds) = times.starting_deadline_seconds
        && let Some(deadline) = add_secs(now, -seconds)
        && deadline > earliest
    {
        earliest = deadline;
    }
    let never = || "the schedule has no next activation".to_owned();
    let t1 = schedule.next(earliest).ok_or_else(never)?;
    if now < t1 {
        return Ok((earliest, None, Missed::None));
    }
    let t2 = schedule.next(t1).ok_or_else(never)?;
    if now < t2 {
        return Ok((earliest, Some(t1), Missed::None));
    }
    let between = (t2.duration_since(t1).as_millis() + 500) / 1000;
    if between < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let between = between as i64;
    let elapsed_secs = elapsed(t1, now).as_secs() as i64;
    let missed_count = elapsed_secs / between + 1;
    // Step back one interval from the estimate and let the schedule find the exact times
    // (schedules need not be evenly spaced).
    let potential = add_secs(t1, (missed_count - 2) * between).unwrap_or(t1);
    let mut most_recent = None;
    let mut t = schedule.next(potential);
    while let Some(x) = t.filter(|x| *x <= now) {
        most_recent = Some(x);
        t = schedule.next(x);
    }
    let missed = match missed_count {
        n if n > MANY_MISSED => Missed::Many,
        n if n > 1 => Missed::Few,
        _ => Missed::None,
    };
    Ok((earliest, most_recent, missed))
}

/// How long until the controller should look at the CronJob again (upstream's
/// nextScheduleTimeDuration); `None` if the schedule never fires again.
pub fn next_schedule_delay(times: Times, now: Timestamp, schedule: &Schedule) -> Option<Duration> {
    let from = match most_recent_schedule_time(times, now, schedule, false) {
        Err(_) => now,
        Ok((_, Some(t), _)) => t,
        Ok((earliest, None, Missed::None)) => earliest,
        Ok((_, None, _)) => now,
    };
    let next = schedule.next(from)?;
    Some(elapsed(now, next) + NEXT_SCHEDULE_DELTA)
}

/// `<cronjob>-<scheduled time in minutes since the epoch>`: one name per scheduled time, so a
/// time is never run twice.
pub fn job_name(cronjob_name: &str, scheduled: Timestamp) -> String {
    format!("{cronjob_name}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job for `scheduled`: the template's labels, annotations (plus the scheduled
/// timestamp) and spec, a controller reference to the CronJob.
pub fn job_from_template(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP_ANNOTATION.to_owned(), rfc3339_in(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels.filter(|l: &BTreeMap<String, String>| !l.is_empty()),
            annotations: Some(annotations),
            owner_references: Some(vec![controller_reference(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn times(created: &str, last: Option<&str>, deadline: Option<i64>) -> Times {
        Times {
            created: ts(created),
            last_schedule: last.map(ts),
            starting_deadline_seconds: deadline,
        }
    }

    #[test]
    fn unmet_times() {
        let every_minute = Schedule::parse("*/1 * * * *").unwrap();
        let t = times("2024-01-01T10:00:30Z", None, None);
        // Nothing due yet.
        let (_, recent, missed) =
            most_recent_schedule_time(t, ts("2024-01-01T10:00:59Z"), &every_minute, true).unwrap();
        assert_eq!((recent, missed), (None, Missed::None));
        // Exactly one due.
        let (_, recent, missed) =
            most_recent_schedule_time(t, ts("2024-01-01T10:01:10Z"), &every_minute, true).unwrap();
        assert_eq!((recent, missed), (Some(ts("2024-01-01T10:01:00Z")), Missed::None));
        // Down for a while: only the latest is started.
        let t = times("2024-01-01T00:00:00Z", Some("2024-01-01T10:01:00Z"), None);
        let (_, recent, missed) =
            most_recent_schedule_time(t, ts("2024-01-01T10:07:30Z"), &every_minute, true).unwrap();
        assert_eq!((recent, missed), (Some(ts("2024-01-01T10:07:00Z")), Missed::Few));
        // Over 100 missed.
        let (_, recent, missed) =
            most_recent_schedule_time(t, ts("2024-01-01T13:00:30Z"), &every_minute, true).unwrap();
        assert_eq!((recent, missed), (Some(ts("2024-01-01T13:00:00Z")), Missed::Many));
        // A starting deadline moves the earliest time up: fewer missed.
        let t = times("2024-01-01T00:00:00Z", Some("2024-01-01T10:01:00Z"), Some(200));
        let (_, recent, missed) =
            most_recent_schedule_time(t, ts("2024-01-01T13:00:30Z"), &every_minute, true).unwrap();
        assert_eq!((recent, missed), (Some(ts("2024-01-01T13:00:00Z")), Missed::Few));
        // Uneven schedules find the exact time.
        let weekdays = Schedule::parse("30 6-16/4 * * 1-5").unwrap();
        let t = times("2024-01-05T00:00:00Z", None, None); // a Friday
        let (_, recent, _) =
            most_recent_schedule_time(t, ts("2024-01-08T07:00:00Z"), &weekdays, true).unwrap();
        assert_eq!(recent, Some(ts("2024-01-08T06:30:00Z")));
    }

    #[test]
    fn next_look() {
        let every_minute = Schedule::parse("*/1 * * * *").unwrap();
        let t = times("2024-01-01T10:00:30Z", Some("2024-01-01T10:01:00Z"), None);
        assert_eq!(
            next_schedule_delay(t, ts("2024-01-01T10:01:20Z"), &every_minute),
            Some(Duration::from_millis(40_100))
        );
        let hourly = Schedule::parse("@hourly").unwrap();
        let t = times("2024-01-01T10:00:30Z", None, None);
        assert_eq!(
            next_schedule_delay(t, ts("2024-01-01T10:30:00Z"), &hourly),
            Some(Duration::from_millis(1_800_100))
        );
    }

    #[test]
    fn jobs_from_templates() {
        let cj: CronJob = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "hello", "namespace": "ns", "uid": "u1" },
            "spec": {
                "schedule": "* * * * *",
                "jobTemplate": {
                    "metadata": { "labels": { "app": "x" }, "annotations": { "a": "b" } },
                    "spec": { "template": { "spec": { "containers": [] } } }
                }
            }
        }))
        .unwrap();
        let scheduled = ts("2024-01-01T10:01:00Z");
        let job = job_from_template(&cj, scheduled, &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("hello-28401721"));
        let annotations = job.metadata.annotations.unwrap();
        assert_eq!(annotations[SCHEDULED_TIMESTAMP_ANNOTATION], "2024-01-01T10:01:00Z");
        assert_eq!(annotations["a"], "b");
        assert_eq!(job.metadata.labels.unwrap()["app"], "x");
        let owner = &job.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("CronJob", "u1", Some(true))
        );
    }
}
