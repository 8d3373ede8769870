//! Pods from templates (upstream's `RealPodControl`): a pod gets the template's labels,
//! annotations, finalizers and spec, a controller reference to its owner (blockOwnerDeletion
//! set) and `generateName: <owner>-` so the API server appends five random characters.
//! Creates and deletes are reported as events on the owner (`SuccessfulCreate` "Created pod:
//! x", `FailedCreate` "Error creating: ...", `SuccessfulDelete` "Deleted pod: x",
//! `FailedDelete` "Error deleting: ..."). Creates go in slow-start batches.

use std::future::Future;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{DeleteParams, PostParams, Preconditions};
use rudder_client::{EventType, Recorder};

use crate::Error;
use crate::api::{NamespacedObject, Target, call};

pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
pub const FAILED_CREATE: &str = "FailedCreate";
pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
pub const FAILED_DELETE: &str = "FailedDelete";

/// The first batch of a slow start (upstream's SlowStartInitialBatchSize).
pub const SLOW_START_INITIAL_BATCH: usize = 1;

/// The generateName prefix of an owner's pods.
pub fn pod_name_prefix(owner_name: &str) -> String {
    format!("{owner_name}-")
}

/// The pod `template` describes, owned by `owner`, in `namespace`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner_name: &str,
    owner: OwnerReference,
) -> Result<Pod, String> {
    let meta = template.metadata.clone().unwrap_or_default();
    if meta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err("unable to create pods, no labels".into());
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(pod_name_prefix(owner_name)),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            finalizers: meta.finalizers.filter(|f| !f.is_empty()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// Creates `pod` for `owner` and records the event.
pub async fn create_pod<K: NamespacedObject>(
    client: &Client,
    recorder: &Recorder,
    owner: &K,
    pod: &Pod,
) -> Result<Pod, Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let name = pod.metadata.generate_name.as_deref().unwrap_or("");
    let target = Target { verb: "create", kind: "Pod", namespace, name };
    match call(target, api.create(&PostParams::default(), pod)).await {
        Ok(created) => {
            let name = created.metadata.name.as_deref().unwrap_or("");
            recorder.event(
                owner,
                EventType::Normal,
                SUCCESSFUL_CREATE,
                format!("Created pod: {name}"),
            );
            Ok(created)
        }
        Err(e) => {
            // Nothing to report when the namespace is going away: every create would fail.
            if !e.is_namespace_terminating() {
                recorder.event(
                    owner,
                    EventType::Warning,
                    FAILED_CREATE,
                    format!("Error creating: {}", e.message()),
                );
            }
            Err(e)
        }
    }
}

/// Deletes `pod` (only that incarnation: a UID precondition) and records the event.
/// `Ok(false)`: it was gone already.
pub async fn delete_pod<K: NamespacedObject>(
    client: &Client,
    recorder: &Recorder,
    owner: &K,
    pod: &Pod,
) -> Result<bool, Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let api: kube::Api<Pod> = kube::Api::namespaced(client.clone(), namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let target = Target { verb: "delete", kind: "Pod", namespace, name };
    match call(target, api.delete(name, &params)).await {
        Ok(_) => {
            recorder.event(
                owner,
                EventType::Normal,
                SUCCESSFUL_DELETE,
                format!("Deleted pod: {name}"),
            );
            Ok(true)
        }
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => {
            recorder.event(
                owner,
                EventType::Warning,
                FAILED_DELETE,
                format!("Error deleting: {}", e.message()),
            );
            Err(e)
        }
    }
}

/// Calls `f` `count` times in batches of 1, 2, 4, ... (starting at `initial_batch`), the calls
/// of one batch concurrently; stops after the first batch with a failure. Returns how many
/// calls succeeded and the first error. This keeps a controller whose creates all fail (quota,
/// admission) from sending hundreds of doomed requests and events.
pub async fn slow_start_batch<F, Fut, T>(
    count: usize,
    initial_batch: usize,
    f: F,
) -> (usize, Option<Error>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = initial_batch.max(1).min(remaining);
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| f())).await;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(_) => successes += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            return (successes, first_error);
        }
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    (successes, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn pods_from_templates() {
        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                annotations: Some(BTreeMap::from([("a".into(), "b".into())])),
                name: Some("ignored".into()),
                ..Default::default()
            }),
            spec: Some(Default::default()),
        };
        let owner = OwnerReference {
            name: "web".into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        };
        let pod = pod_from_template(&template, "ns", "web", owner.clone()).unwrap();
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(pod.metadata.labels, template.metadata.as_ref().unwrap().labels);
        assert_eq!(pod.metadata.annotations, template.metadata.as_ref().unwrap().annotations);
        assert_eq!(pod.metadata.owner_references, Some(vec![owner.clone()]));
        let unlabeled = PodTemplateSpec::default();
        assert!(pod_from_template(&unlabeled, "ns", "web", owner).is_err());
    }

    fn failure() -> Error {
        Error::Invalid {
            kind: "Pod",
            namespace: "ns".into(),
            name: "x".into(),
            message: "no".into(),
        }
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_at_the_first_failing_batch() {
        // All succeed: 1 + 2 + 4 + 3.
        let calls = AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(())
        })
        .await;
        assert_eq!((ok, err.is_none(), calls.load(Ordering::SeqCst)), (10, true, 10));

        // The 4th call fails: it is in the third batch (calls 4..=7), which runs whole, and
        // nothing after it runs.
        let calls = Mutex::new(0);
        let (ok, err) = slow_start_batch(20, 1, || {
            let n = {
                let mut c = calls.lock().unwrap();
                *c += 1;
                *c
            };
            async move { if n == 4 { Err(failure()) } else { Ok(()) } }
        })
        .await;
        assert_eq!(*calls.lock().unwrap(), 7);
        assert_eq!(ok, 6);
        assert!(err.is_some());

        let (ok, err) = slow_start_batch(0, 1, || async { Ok::<_, Error>(()) }).await;
        assert_eq!((ok, err.is_none()), (0, true));
    }
}
