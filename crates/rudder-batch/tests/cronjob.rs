//! The CronJob controller driven by a manual clock (minutes pass at once), with the Job
//! controller running the Jobs on a simulated node.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use rudder_client::ManualClock;
use serde_json::{Value, json};

async fn start_with_clock() -> (Harness, Arc<ManualClock>) {
    // The API server stamps creationTimestamp with the real time: start the clock there.
    let clock = Arc::new(ManualClock::new(Timestamp::now()));
    let h = start(Controllers { cronjob: true, ..Default::default() }, Some(clock.clone())).await;
    (h, clock)
}

/// Moves the clock to the CronJob's creation (the API server stamps it with the real
/// time), so the first scheduled time is at most a minute ahead.
fn sync_clock(clock: &ManualClock, cj: &CronJob) {
    clock.set(cj.metadata.creation_timestamp.as_ref().expect("creationTimestamp").0);
}

fn minute_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(60)
}

async fn cronjob(h: &Harness, ns: &str, name: &str) -> CronJob {
    let api: Api<CronJob> = Api::namespaced(h.client.clone(), ns);
    api.get(name).await.expect("get cronjob")
}

fn names(jobs: &[Job]) -> BTreeSet<String> {
    jobs.iter().map(|j| j.metadata.name.clone().unwrap()).collect()
}

/// The seed CronJob (023, as batch/v1): every minute one Job named after the minute, run
/// to 4 completions; only the 3 newest succeeded Jobs are kept; after a downtime of several
/// minutes only the latest missed time runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_minute_one_job_and_history_limits() {
    let (h, clock) = start_with_clock().await;
    namespace(&h.client, "cron").await;
    let cj = create_cronjob(
        &h.client,
        "cron",
        json!({
            "metadata": { "name": "cronjob-example" },
            "spec": {
                "schedule": "*/1 * * * *",
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 1,
                "jobTemplate": { "spec": {
                    "completions": 4,
                    "parallelism": 2,
                    "template": { "spec": {
                        "containers": [{ "name": "hello", "image": "alpine:latest",
                            "command": ["/bin/sh", "-c"], "args": ["echo hello from $HOSTNAME!"] }],
                        "restartPolicy": "Never"
                    } }
                } }
            }
        }),
    )
    .await;
    sync_clock(&clock, &cj);
    // Nothing before the first minute boundary.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(jobs(&h.client, "cron").await.is_empty());
    let mut expected = Vec::new();
    for _ in 0..5 {
        clock.advance(Duration::from_secs(60));
        let minute = minute_of(clock.now_timestamp());
        let name = format!("cronjob-example-{minute}");
        expected.push(name.clone());
        let job = wait_condition(&h.client, "cron", &name, "Complete").await;
        assert_eq!(status_of(&job).succeeded, Some(4));
        let scheduled = job.metadata.annotations.as_ref().unwrap()
            ["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .clone();
        assert_eq!(scheduled.parse::<Timestamp>().unwrap().as_second(), minute * 60);
        assert!(scheduled.ends_with('Z'));
        // The CronJob saw it finish before the next minute.
        wait_for("active emptied", || async {
            let cj = cronjob(&h, "cron", "cronjob-example").await;
            let st = cj.status.unwrap_or_default();
            (st.active.unwrap_or_default().is_empty() && st.last_successful_time.is_some())
                .then_some(())
        })
        .await;
    }
    let kept: BTreeSet<String> = expected[2..].iter().cloned().collect();
    wait_for("history limited to 3", || async {
        let jobs = jobs(&h.client, "cron").await;
        (names(&jobs) == kept).then_some(())
    })
    .await;
    let cj = cronjob(&h, "cron", "cronjob-example").await;
    let status = cj.status.unwrap();
    let last = status.last_schedule_time.unwrap().0;
    assert_eq!(minute_of(last), minute_of(clock.now_timestamp()));
    assert_eq!(last.as_second() % 60, 0);

    // Down for five minutes: only the latest missed time runs.
    clock.advance(Duration::from_secs(5 * 60));
    let latest = format!("cronjob-example-{}", minute_of(clock.now_timestamp()));
    wait_condition(&h.client, "cron", &latest, "Complete").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = names(&jobs(&h.client, "cron").await);
    let missed: Vec<&String> = all.iter().filter(|n| !kept.contains(*n) && **n != latest).collect();
    assert!(missed.is_empty(), "only the latest missed time ran: {all:?}");
    // (No checks of this CronJob's events: under a manual clock that does not move between
    // two events, rudder-client's Recorder gives them the same name and drops the second.)
}

fn forever_cronjob(name: &str, policy: &str) -> Value {
    json!({
        "metadata": { "name": name },
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": policy,
            "jobTemplate": { "spec": { "template": pod_template(json!({ "sim.rudder.dev/run-forever": "true" })) } }
        }
    })
}

/// Forbid: no new Job while one runs; a Job made by hand from the CronJob (`kubectl create
/// job --from=cronjob/...`) is not counted as active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_skips_while_a_job_runs_and_ignores_manual_jobs() {
    let (h, clock) = start_with_clock().await;
    namespace(&h.client, "forbid").await;
    let cj = create_cronjob(&h.client, "forbid", forever_cronjob("lock", "Forbid")).await;
    sync_clock(&clock, &cj);
    // What kubectl create job --from=cronjob/lock sends.
    let template = cj.spec.as_ref().unwrap().job_template.spec.clone().unwrap();
    create_job(
        &h.client,
        "forbid",
        json!({
            "metadata": {
                "name": "lock-manual",
                "annotations": { "cronjob.kubernetes.io/instantiate": "manual" },
                "ownerReferences": [{ "apiVersion": "batch/v1", "kind": "CronJob", "name": "lock",
                    "uid": cj.metadata.uid, "controller": true }]
            },
            "spec": serde_json::to_value(&template).unwrap()
        }),
    )
    .await;
    clock.advance(Duration::from_secs(60));
    let first = format!("lock-{}", minute_of(clock.now_timestamp()));
    let cj = wait_for("first scheduled job active", || async {
        let cj = cronjob(&h, "forbid", "lock").await;
        let active = cj.status.as_ref()?.active.clone()?;
        (active.len() == 1 && active[0].name.as_deref() == Some(first.as_str())).then_some(cj)
    })
    .await;
    assert_eq!(cj.status.unwrap().active.unwrap()[0].kind.as_deref(), Some("Job"));
    clock.advance(Duration::from_secs(60));
    let message = wait_event(&h.client, "forbid", "lock", "JobAlreadyActive").await;
    assert_eq!(
        message,
        "Not starting job because prior execution is running and concurrency policy is Forbid"
    );
    let all = names(&jobs(&h.client, "forbid").await);
    assert_eq!(all, BTreeSet::from([first.clone(), "lock-manual".to_owned()]));
    let events = events(&h.client, "forbid", "lock").await;
    assert!(!events.iter().any(|e| e.reason.as_deref() == Some("UnexpectedJob")));
}

/// Replace: the running Job is deleted and the new one takes its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_deletes_the_running_job() {
    let (h, clock) = start_with_clock().await;
    namespace(&h.client, "replace").await;
    let cj = create_cronjob(&h.client, "replace", forever_cronjob("swap", "Replace")).await;
    sync_clock(&clock, &cj);
    let mut previous = None;
    for _ in 0..2 {
        clock.advance(Duration::from_secs(60));
        let name = format!("swap-{}", minute_of(clock.now_timestamp()));
        wait_for("the new job is the only active one", || async {
            let cj = cronjob(&h, "replace", "swap").await;
            let active = cj.status.as_ref()?.active.clone()?;
            (active.len() == 1 && active[0].name.as_deref() == Some(name.as_str())).then_some(())
        })
        .await;
        if let Some(old) = previous.replace(name.clone()) {
            wait_for("the old job deleted", || async {
                get_job(&h.client, "replace", &old).await.is_none().then_some(())
            })
            .await;
        }
    }
    assert_eq!(jobs(&h.client, "replace").await.len(), 1);
}

/// Suspended CronJobs start nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_cronjob_starts_nothing() {
    let (h, clock) = start_with_clock().await;
    namespace(&h.client, "sus").await;
    let mut manifest = forever_cronjob("idle", "Allow");
    manifest["spec"]["suspend"] = json!(true);
    let cj = create_cronjob(&h.client, "sus", manifest).await;
    sync_clock(&clock, &cj);
    clock.advance(Duration::from_secs(120));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(jobs(&h.client, "sus").await.is_empty());
}

trait Now {
    fn now_timestamp(&self) -> Timestamp;
}

impl Now for ManualClock {
    fn now_timestamp(&self) -> Timestamp {
        rudder_client::Clock::now(self)
    }
}
