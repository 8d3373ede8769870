//! The CronJob controller (upstream's `pkg/controller/cronjob`, ControllerV2): at each
//! scheduled time a Job named `<cronjob>-<minutes since epoch>` is created from the job
//! template (annotation `batch.kubernetes.io/cronjob-scheduled-timestamp`), honouring
//! `suspend`, `concurrencyPolicy` (Allow, Forbid: skip while one runs, Replace: delete the
//! running ones first), `startingDeadlineSeconds` (too late: event MissSchedule), missed runs
//! after downtime (only the most recent runs; over 100 missed: event TooManyMissedTimes),
//! `timeZone`, and the history limits for finished Jobs. Status: `active`,
//! `lastScheduleTime`, `lastSuccessfulTime`. The CronJob is looked at again right after its
//! next scheduled time (computed from the injected clock). Jobs made by hand from the
//! CronJob (`kubectl create job --from=cronjob/x`) are never put in `active`.

pub mod schedule;
mod sync;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_client::informer::key_of;
use rudder_client::objects::controller_of;
use rudder_client::{Change, Clock, Context, Informer, ObjectKey, WorkQueue, run_workers};
use rudder_workloads::recent::RecentWrites;
use tokio_util::sync::CancellationToken;

use self::schedule::{Times, next_schedule_delay};
use self::sync::{Controller, schedule_of};

/// Upstream's `--concurrent-cron-job-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;
/// The events' source.
pub const COMPONENT: &str = "cronjob-controller";

#[derive(Clone, Debug)]
pub struct CronJobConfig {
    /// CronJobs synced at the same time.
    pub workers: usize,
    /// Look at every CronJob at least this often (None: only at the next scheduled time, as
    /// upstream). Tests driving a manual clock set it short.
    pub max_requeue_delay: Option<Duration>,
}

impl Default for CronJobConfig {
    fn default() -> Self {
        CronJobConfig { workers: DEFAULT_WORKERS, max_requeue_delay: None }
    }
}

/// The CronJob a controller reference points at, if it is still the same object.
pub fn resolve(
    cronjobs: &Informer<CronJob>,
    namespace: &str,
    r: &OwnerReference,
) -> Option<Arc<CronJob>> {
    if r.kind != "CronJob" {
        return None;
    }
    cronjobs.get(namespace, &r.name).filter(|c| c.metadata.uid.as_deref() == Some(r.uid.as_str()))
}

/// Runs the CronJob controller until `cancel`.
pub async fn run(ctx: Context, config: CronJobConfig, cancel: CancellationToken) {
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let queue = WorkQueue::new();
    let written = Arc::new(RecentWrites::default());
    register(&cronjobs, &jobs, &queue, &written, ctx.clock.clone());
    tokio::select! {
        _ = async { cronjobs.wait_synced().await; jobs.wait_synced().await } => {}
        _ = cancel.cancelled() => return,
    }
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        clock: ctx.clock.clone(),
        recorder: ctx.recorder(COMPONENT),
        cronjobs,
        jobs,
        written,
        max_requeue_delay: config.max_requeue_delay,
    });
    run_workers("cronjob", queue, config.workers, cancel, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(key).await }
    })
    .await;
}

fn register(
    cronjobs: &Arc<Informer<CronJob>>,
    jobs: &Arc<Informer<Job>>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    written: &Arc<RecentWrites<CronJob>>,
    clock: Arc<dyn Clock>,
) {
    let q = queue.clone();
    let w = written.clone();
    cronjobs.add_handler(move |change: &Change<CronJob>| {
        let key = key_of(&**change.object());
        match change {
            Change::Updated { old, new } => {
                let spec = |c: &CronJob| {
                    c.spec.as_ref().map(|s| (s.schedule.clone(), s.time_zone.clone()))
                };
                if spec(old) != spec(new) {
                    // A new schedule: look when it next fires.
                    if let Ok(schedule) = schedule_of(new) {
                        let delay = next_schedule_delay(Times::of(new), clock.now(), &schedule);
                        q.add_after(key, delay.unwrap_or(Duration::ZERO));
                    }
                    return;
                }
                q.add(key);
            }
            Change::Added(_) => q.add(key),
            Change::Deleted(_) => {
                w.forget(&key);
                q.add(key);
            }
        }
    });
    let q = queue.clone();
    let owners = cronjobs.clone();
    jobs.add_handler(move |change: &Change<Job>| {
        let enqueue = |job: &Job| {
            let namespace = job.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_of(&job.metadata)
                && let Some(cj) = resolve(&owners, namespace, r)
            {
                q.add(key_of(&*cj));
            }
        };
        match change {
            Change::Added(j) | Change::Deleted(j) => enqueue(j),
            Change::Updated { old, new } => {
                if controller_of(&old.metadata) != controller_of(&new.metadata) {
                    enqueue(old);
                }
                enqueue(new);
            }
        }
    });
}
