//! The TTL-after-finished controller (upstream's `pkg/controller/ttlafterfinished`): a
//! finished Job (Complete or Failed) with `ttlSecondsAfterFinished` is deleted (foreground
//! propagation, so its pods go first) that long after it finished. The expiry is checked
//! against a fresh read of the Job before the delete, which carries the Job's
//! resourceVersion as a precondition (a Job whose TTL was changed meanwhile is not deleted).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use rudder_client::informer::key_of;
use rudder_client::{Change, Clock, Context, ObjectKey, Outcome, WorkQueue, run_workers};
use rudder_workloads::api::{Target, call};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::job::conditions::{COMPLETE, FAILED, find};

/// Upstream's `--concurrent-ttl-after-finished-syncs` default.
pub const DEFAULT_WORKERS: usize = 5;

#[derive(Clone, Debug)]
pub struct TtlAfterFinishedConfig {
    /// Jobs handled at the same time.
    pub workers: usize,
    /// Look at a Job waiting for its TTL at least this often (None: only when it expires).
    pub max_requeue_delay: Option<Duration>,
}

impl Default for TtlAfterFinishedConfig {
    fn default() -> Self {
        TtlAfterFinishedConfig { workers: DEFAULT_WORKERS, max_requeue_delay: None }
    }
}

/// When the Job finished: the transition time of its Complete or Failed condition.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_deref()?;
    [COMPLETE, FAILED].iter().find_map(|t| {
        find(conditions, t)
            .filter(|c| c.status == "True")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    })
}

/// Whether the Job is finished and has a TTL.
pub fn needs_cleanup(job: &Job) -> bool {
    job.metadata.deletion_timestamp.is_none()
        && job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished).is_some()
        && finish_time(job).is_some()
}

/// How long until the Job expires at `now` (zero: expired); None without TTL or not finished.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    if !needs_cleanup(job) {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let expires =
        rudder_client::clock::add(finish_time(job)?, Duration::from_secs(ttl.max(0) as u64));
    Some(rudder_client::clock::elapsed(now, expires))
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: TtlAfterFinishedConfig, cancel: CancellationToken) {
    let jobs = ctx.informers.get::<Job>();
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new();
    let q = queue.clone();
    jobs.add_handler(move |change: &Change<Job>| {
        if let Change::Added(j) | Change::Updated { new: j, .. } = change
            && needs_cleanup(j)
        {
            q.add(key_of(&**j));
        }
    });
    tokio::select! {
        _ = jobs.wait_synced() => {}
        _ = cancel.cancelled() => return,
    }
    let client = ctx.client.clone();
    let clock = ctx.clock.clone();
    run_workers("ttl-after-finished", queue, config.workers, cancel, move |key| {
        let (client, clock, jobs) = (client.clone(), clock.clone(), jobs.clone());
        let max = config.max_requeue_delay;
        async move {
            let Some(job) = jobs.get(&key.0, &key.1) else { return Ok(Outcome::Done) };
            process(&client, clock.as_ref(), &job, max).await
        }
    })
    .await;
}

async fn process(
    client: &kube::Client,
    clock: &dyn Clock,
    cached: &Job,
    max: Option<Duration>,
) -> Result<Outcome, Error> {
    let requeue = |left: Duration| {
        let d = left + Duration::from_millis(10);
        Ok(Outcome::RequeueAfter(max.map_or(d, |m| d.min(m))))
    };
    match time_left(cached, clock.now()) {
        None => return Ok(Outcome::Done),
        Some(left) if !left.is_zero() => return requeue(left),
        Some(_) => {}
    }
    let ns = cached.metadata.namespace.as_deref().unwrap_or("");
    let name = cached.metadata.name.as_deref().unwrap_or("");
    let api: kube::Api<Job> = kube::Api::namespaced(client.clone(), ns);
    let target = |verb| Target { verb, kind: "Job", namespace: ns, name };
    // The cache may be stale (the TTL changed): decide again from a fresh read.
    let fresh = match call(target("get"), api.get(name)).await {
        Ok(j) => j,
        Err(e) if e.is_not_found() => return Ok(Outcome::Done),
        Err(e) => return Err(e.into()),
    };
    match time_left(&fresh, clock.now()) {
        None => return Ok(Outcome::Done),
        Some(left) if !left.is_zero() => return requeue(left),
        Some(_) => {}
    }
    tracing::debug!(namespace = ns, name, "deleting expired Job");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: fresh.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match call(target("delete"), api.delete(name, &params)).await {
        Ok(_) => Ok(Outcome::Done),
        Err(e) if e.is_not_found() => Ok(Outcome::Done),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expiry() {
        let mut job: Job = serde_json::from_value(json!({
            "metadata": { "name": "j" },
            "spec": { "ttlSecondsAfterFinished": 100, "template": {} },
            "status": { "conditions": [
                { "type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z" },
                { "type": "Complete", "status": "True", "lastTransitionTime": "2024-01-01T00:00:10Z" }
            ]}
        }))
        .unwrap();
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(time_left(&job, at("2024-01-01T00:00:50Z")), Some(Duration::from_secs(60)));
        assert_eq!(time_left(&job, at("2024-01-01T00:02:00Z")), Some(Duration::ZERO));
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = None;
        assert_eq!(time_left(&job, at("2024-01-01T00:02:00Z")), None);
        job.spec.as_mut().unwrap().ttl_seconds_after_finished = Some(0);
        job.status.as_mut().unwrap().conditions.as_mut().unwrap().pop();
        assert_eq!(time_left(&job, at("2024-01-01T00:02:00Z")), None, "not finished");
    }
}
