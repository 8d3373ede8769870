//! What the Job controller reads from and writes into pods: the tracking finalizer, failure
//! and finish times, and the pod made from a Job's template (finalizer, completion index).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::pod_condition;

use super::indexed::{COMPLETION_INDEX_ANNOTATION, COMPLETION_INDEX_ENV};

/// The finalizer that keeps a finished pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// Failed pods are only replaced once they are terminal (podReplacementPolicy `Failed`, which
/// a pod failure policy implies).
pub fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// Failed, or being deleted before it succeeded (unless only terminal pods count).
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == "Failed" {
        return true;
    }
    if only_replace_failed_pods(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != "Succeeded"
}

/// Being deleted and not terminal yet.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

/// When the pod finished: the last container exit, else when it became not ready, else its
/// deletion (less the grace period), else its creation (upstream's getFinishedTime).
pub fn finished_time(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    let mut latest: Option<Timestamp> = None;
    let mut all_done = !containers.is_empty();
    for c in containers {
        match c
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
        {
            Some(at) => latest = Some(latest.map_or(at.0, |l| l.max(at.0))),
            None => all_done = false,
        }
    }
    if all_done && let Some(t) = latest {
        return t;
    }
    if let Some(c) = pod_condition(pod, "Ready")
        && c.status == "False"
        && let Some(t) = &c.last_transition_time
    {
        return t.0;
    }
    if let Some(t) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return t.0.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace)).unwrap_or(t.0);
    }
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The template pods are made from: the tracking finalizer added and, for Indexed Jobs, the
/// `JOB_COMPLETION_INDEX` variable (from the index annotation) in every container.
pub fn pod_template(job: &Job, indexed: bool) -> PodTemplateSpec {
    let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_owned());
    }
    if indexed && let Some(spec) = template.spec.as_mut() {
        let containers =
            spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
                env.push(EnvVar {
                    name: COMPLETION_INDEX_ENV.to_owned(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!(
                                "metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
                            ),
                        }),
                        ..Default::default()
                    }),
                });
            }
        }
    }
    template
}

/// `template` for completion index `index` of `job_name`: the index annotation and label, and
/// the hostname `<job>-<index>`.
pub fn with_completion_index(
    template: &PodTemplateSpec,
    job_name: &str,
    index: i32,
) -> PodTemplateSpec {
    let mut t = template.clone();
    let meta = t.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPLETION_INDEX_ANNOTATION.to_owned(), index.to_string());
    if let Some(spec) = t.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn failed_and_terminating_pods() {
        let job = Job::default();
        let mut pod = Pod { status: Some(Default::default()), ..Default::default() };
        pod.status.as_mut().unwrap().phase = Some("Running".into());
        assert!(!is_pod_failed(&pod, &job));
        assert!(!is_terminating(&pod));
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(is_pod_failed(&pod, &job), "deleted before finishing counts as failed");
        assert!(is_terminating(&pod));
        let mut strict = Job { spec: Some(Default::default()), ..Default::default() };
        strict.spec.as_mut().unwrap().pod_replacement_policy = Some("Failed".into());
        assert!(!is_pod_failed(&pod, &strict), "only terminal pods count");
        pod.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(is_pod_failed(&pod, &strict));
        assert!(!is_terminating(&pod));
    }

    #[test]
    fn templates_get_the_finalizer_and_index() {
        let mut job = Job { spec: Some(Default::default()), ..Default::default() };
        job.spec.as_mut().unwrap().template.spec = Some(PodSpec {
            containers: vec![Container { name: "c".into(), ..Default::default() }],
            ..Default::default()
        });
        let t = pod_template(&job, true);
        assert_eq!(t.metadata.as_ref().unwrap().finalizers, Some(vec![TRACKING_FINALIZER.into()]));
        let env = t.spec.as_ref().unwrap().containers[0].env.clone().unwrap();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        assert_eq!(
            env[0].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        let t3 = with_completion_index(&t, "pi", 3);
        let meta = t3.metadata.unwrap();
        assert_eq!(meta.annotations.unwrap()[COMPLETION_INDEX_ANNOTATION], "3");
        assert_eq!(meta.labels.unwrap()[COMPLETION_INDEX_ANNOTATION], "3");
        assert_eq!(t3.spec.unwrap().hostname.as_deref(), Some("pi-3"));
        let plain = pod_template(&job, false);
        assert!(plain.spec.unwrap().containers[0].env.is_none());
    }
}
