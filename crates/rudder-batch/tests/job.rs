//! The Job controller against a real API server, with pods run by a simulated node.

mod common;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn selector(job: &str) -> String {
    format!("batch.kubernetes.io/job-name={job}")
}

fn has_tracking_finalizer(p: &Pod) -> bool {
    p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING)
}

/// The seed Jobs (005 and 014 with the mistakes upstream rejects corrected: restartPolicy
/// in the pod spec, backoffLimit in the Job spec; 023's job template as a Job) complete with
/// the right counts; their pods carry the Job's labels and lose the tracking finalizer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_jobs_complete_with_the_right_counts() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "seeds").await;
    let container = |name: &str, image: &str| json!({ "name": name, "image": image });
    create_job(
        &h.client,
        "seeds",
        json!({
            "metadata": { "name": "model-train-job" },
            "spec": {
                "backoffLimit": 5,
                "template": { "spec": { "restartPolicy": "Never",
                    "containers": [container("ml-model-train", "ml-development:1.2.1")] } }
            }
        }),
    )
    .await;
    create_job(&h.client, "seeds", json!({
        "metadata": { "name": "pi" },
        "spec": {
            "backoffLimit": 4,
            "template": { "spec": { "restartPolicy": "Never", "containers": [container("pi", "perl")] } }
        }
    }))
    .await;
    create_job(&h.client, "seeds", json!({
        "metadata": { "name": "cronjob-example-manual" },
        "spec": {
            "completions": 4,
            "parallelism": 2,
            "template": { "spec": { "restartPolicy": "Never", "containers": [container("hello", "alpine:latest")] } }
        }
    }))
    .await;
    for (name, completions) in [("model-train-job", 1), ("pi", 1), ("cronjob-example-manual", 4)] {
        let job = wait_condition(&h.client, "seeds", name, "Complete").await;
        let status = status_of(&job);
        assert_eq!(status.succeeded, Some(completions), "{name}");
        assert_eq!(status.failed, None, "{name}");
        assert_eq!((status.active, status.ready, status.terminating), (Some(0), Some(0), Some(0)));
        assert!(status.start_time.is_some() && status.completion_time.is_some());
        let criteria = condition(&job, "SuccessCriteriaMet").expect("interim condition");
        assert_eq!(criteria.reason.as_deref(), Some("CompletionsReached"));
        let u = status.uncounted_terminated_pods.unwrap_or_default();
        assert!(u.succeeded.is_none() && u.failed.is_none());
        let pods = wait_for("finalizers removed", || async {
            let pods = pods(&h.client, "seeds", &selector(name)).await;
            pods.iter().all(|p| !has_tracking_finalizer(p)).then_some(pods)
        })
        .await;
        assert_eq!(pods.len(), completions as usize, "{name}: one pod per completion");
        let uid = job.metadata.uid.clone().unwrap();
        for p in &pods {
            let labels = p.metadata.labels.clone().unwrap();
            assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
            assert_eq!(labels["controller-uid"], uid);
            assert_eq!(labels["job-name"], name);
            let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                ("Job", uid.as_str(), Some(true))
            );
            assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Succeeded"));
        }
        assert_eq!(wait_event(&h.client, "seeds", name, "Completed").await, "Job completed");
    }
    let created = events(&h.client, "seeds", "cronjob-example-manual").await;
    let creates =
        created.iter().filter(|e| e.reason.as_deref() == Some("SuccessfulCreate")).count();
    assert_eq!(creates, 4);
}

/// Pods that keep failing are replaced (with back-off) until failed > backoffLimit; then the
/// Job fails with BackoffLimitExceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_job_stops_at_the_backoff_limit() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "fail").await;
    create_job(&h.client, "fail", json!({
        "metadata": { "name": "crash" },
        "spec": { "backoffLimit": 2, "template": pod_template(json!({ "sim.rudder.dev/exit-code": "1" })) }
    }))
    .await;
    let job = wait_condition(&h.client, "fail", "crash", "Failed").await;
    let status = status_of(&job);
    assert_eq!((status.failed, status.succeeded, status.active), (Some(3), None, Some(0)));
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(failed.message.as_deref(), Some("Job has reached the specified backoff limit"));
    assert!(condition(&job, "FailureTarget").is_some());
    assert!(status.completion_time.is_none());
    let message = wait_event(&h.client, "fail", "crash", "BackoffLimitExceeded").await;
    assert_eq!(message, "Job has reached the specified backoff limit");
    let pods = pods(&h.client, "fail", &selector("crash")).await;
    assert_eq!(pods.len(), 3, "no pod after the limit");
    assert!(pods.iter().all(|p| p.status.as_ref().unwrap().phase.as_deref() == Some("Failed")));
}

/// Indexed: one pod per index with the index annotation, label, hostname and the
/// JOB_COMPLETION_INDEX variable; completedIndexes lists them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_job_completes_every_index() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "idx").await;
    create_job(&h.client, "idx", json!({
        "metadata": { "name": "shards" },
        "spec": { "completions": 3, "parallelism": 2, "completionMode": "Indexed", "template": pod_template(json!({})) }
    }))
    .await;
    let job = wait_condition(&h.client, "idx", "shards", "Complete").await;
    let status = status_of(&job);
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.succeeded, Some(3));
    let mut pods = pods(&h.client, "idx", &selector("shards")).await;
    pods.sort_by_key(|p| {
        p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone()
    });
    assert_eq!(pods.len(), 3);
    for (i, p) in pods.iter().enumerate() {
        let key = "batch.kubernetes.io/job-completion-index";
        assert_eq!(p.metadata.annotations.as_ref().unwrap()[key], i.to_string());
        assert_eq!(p.metadata.labels.as_ref().unwrap()[key], i.to_string());
        assert!(p.metadata.name.as_ref().unwrap().starts_with(&format!("shards-{i}-")));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("shards-{i}").as_str()));
        let env = spec.containers[0].env.as_ref().unwrap();
        let var = env.iter().find(|e| e.name == "JOB_COMPLETION_INDEX").unwrap();
        let field = &var.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path;
        assert_eq!(field, "metadata.annotations['batch.kubernetes.io/job-completion-index']");
    }
}

/// activeDeadlineSeconds: running pods are deleted and the Job fails with DeadlineExceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_deadline_fails_the_job() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "ads").await;
    create_job(
        &h.client,
        "ads",
        json!({
            "metadata": { "name": "slow" },
            "spec": {
                "activeDeadlineSeconds": 2,
                "parallelism": 2,
                "completions": 2,
                "template": pod_template(json!({ "sim.rudder.dev/run-forever": "true" }))
            }
        }),
    )
    .await;
    let job = wait_condition(&h.client, "ads", "slow", "Failed").await;
    let status = status_of(&job);
    assert_eq!(condition(&job, "Failed").unwrap().reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!((status.active, status.terminating, status.failed), (Some(0), Some(0), Some(2)));
    assert_eq!(
        wait_event(&h.client, "ads", "slow", "DeadlineExceeded").await,
        "Job was active longer than specified deadline"
    );
    wait_for("the deleted pods gone", || async {
        pods(&h.client, "ads", &selector("slow")).await.is_empty().then_some(())
    })
    .await;
}

/// suspend: no pods while suspended (condition Suspended, no startTime); resuming starts
/// them; suspending again deletes the active pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_and_resume() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "sus").await;
    create_job(
        &h.client,
        "sus",
        json!({
            "metadata": { "name": "later" },
            "spec": {
                "suspend": true,
                "parallelism": 2,
                "completions": 4,
                "template": pod_template(json!({ "sim.rudder.dev/run-forever": "true" }))
            }
        }),
    )
    .await;
    let job = wait_condition(&h.client, "sus", "later", "Suspended").await;
    assert!(status_of(&job).start_time.is_none());
    assert!(pods(&h.client, "sus", &selector("later")).await.is_empty());
    let api: Api<Job> = Api::namespaced(h.client.clone(), "sus");
    let patch = |suspend: bool| json!({ "spec": { "suspend": suspend } });
    api.patch("later", &PatchParams::default(), &Patch::Merge(&patch(false))).await.unwrap();
    let job = wait_for("resumed with 2 ready pods", || async {
        let job = get_job(&h.client, "sus", "later").await?;
        (status_of(&job).ready == Some(2)).then_some(job)
    })
    .await;
    let suspended = job.status.as_ref().unwrap().conditions.as_ref().unwrap();
    let c = suspended.iter().find(|c| c.type_ == "Suspended").unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("JobResumed")));
    assert!(status_of(&job).start_time.is_some());
    api.patch("later", &PatchParams::default(), &Patch::Merge(&patch(true))).await.unwrap();
    wait_for("pods deleted on suspend", || async {
        let job = get_job(&h.client, "sus", "later").await?;
        let gone = pods(&h.client, "sus", &selector("later")).await.is_empty();
        (gone && status_of(&job).active == Some(0) && condition(&job, "Suspended").is_some())
            .then_some(())
    })
    .await;
    let job = get_job(&h.client, "sus", "later").await.unwrap();
    assert_eq!(status_of(&job).failed, None, "pods deleted for suspension are not failures");
    wait_event(&h.client, "sus", "later", "Resumed").await;
}

/// Work queue (completions unset): parallelism pods run; the Job completes once one pod
/// succeeded and none is active.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_queue_job_completes_when_workers_finish() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "wq").await;
    create_job(
        &h.client,
        "wq",
        json!({
            "metadata": { "name": "queue" },
            "spec": { "parallelism": 3, "template": pod_template(json!({})) }
        }),
    )
    .await;
    let job = wait_condition(&h.client, "wq", "queue", "Complete").await;
    assert_eq!(job.spec.as_ref().unwrap().completions, None);
    assert_eq!(status_of(&job).succeeded, Some(3));
    assert_eq!(pods(&h.client, "wq", &selector("queue")).await.len(), 3, "no pod after a success");
}

/// podFailurePolicy: a FailJob rule on an exit code fails the Job at the first such pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failure_policy_fails_the_job() {
    let h = start(Controllers::default(), None).await;
    namespace(&h.client, "pfp").await;
    create_job(&h.client, "pfp", json!({
        "metadata": { "name": "policy" },
        "spec": {
            "backoffLimit": 6,
            "podFailurePolicy": { "rules": [
                { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
                { "action": "FailJob", "onExitCodes": { "operator": "In", "values": [42] } }
            ]},
            "template": pod_template(json!({ "sim.rudder.dev/exit-code": "42" }))
        }
    }))
    .await;
    let job = wait_condition(&h.client, "pfp", "policy", "Failed").await;
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    let message = failed.message.clone().unwrap();
    assert!(message.starts_with("Container main for pod pfp/policy-"), "{message}");
    assert!(
        message.ends_with("failed with exit code 42 matching FailJob rule at index 1"),
        "{message}"
    );
    assert_eq!(status_of(&job).failed, Some(1));
    assert_eq!(pods(&h.client, "pfp", &selector("policy")).await.len(), 1);
}

/// Deleting a Job: the garbage collector deletes its pods and the controller removes the
/// tracking finalizer, so they go away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_job_pods_lose_the_finalizer() {
    let h = start(Controllers { gc: true, ..Default::default() }, None).await;
    namespace(&h.client, "del").await;
    create_job(
        &h.client,
        "del",
        json!({
            "metadata": { "name": "doomed" },
            "spec": { "parallelism": 2, "completions": 2,
                "template": pod_template(json!({ "sim.rudder.dev/run-forever": "true" })) }
        }),
    )
    .await;
    wait_for("2 pods with the finalizer", || async {
        let pods = pods(&h.client, "del", &selector("doomed")).await;
        (pods.len() == 2 && pods.iter().all(has_tracking_finalizer)).then_some(())
    })
    .await;
    let api: Api<Job> = Api::namespaced(h.client.clone(), "del");
    api.delete("doomed", &DeleteParams::background()).await.unwrap();
    wait_for("pods gone", || async {
        pods(&h.client, "del", &selector("doomed")).await.is_empty().then_some(())
    })
    .await;
}

/// ttlSecondsAfterFinished: the finished Job is deleted (with its pods).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_job_is_deleted_after_its_ttl() {
    let h = start(Controllers { ttl: true, gc: true, ..Default::default() }, None).await;
    namespace(&h.client, "ttl").await;
    create_job(
        &h.client,
        "ttl",
        json!({
            "metadata": { "name": "brief" },
            "spec": { "ttlSecondsAfterFinished": 1, "template": pod_template(json!({})) }
        }),
    )
    .await;
    wait_condition(&h.client, "ttl", "brief", "Complete").await;
    wait_for("job deleted", || async {
        get_job(&h.client, "ttl", "brief").await.is_none().then_some(())
    })
    .await;
    wait_for("pods deleted", || async {
        pods(&h.client, "ttl", &selector("brief")).await.is_empty().then_some(())
    })
    .await;
}
