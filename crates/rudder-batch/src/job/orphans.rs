//! The tracking finalizer's other half: pods whose Job is gone (or finished, or that were
//! released) still carry `batch.kubernetes.io/job-tracking`, and nothing else would remove
//! it, so the pod could never be deleted. The controller keeps a second queue of such pods
//! and removes the finalizer (upstream's orphan pod worker). Also: which finalizer removals
//! a Job still expects to see (upstream's finalizerExpectations).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Patch, PatchParams};
use rudder_client::objects::controller_of;
use rudder_client::{Informer, ObjectKey, Outcome};
use rudder_workloads::api::{api_for, call};
use serde_json::json;

use super::conditions::is_finished;
use super::handlers::resolve;
use super::pods::{TRACKING_FINALIZER, has_tracking_finalizer};
use crate::Error;

/// Pods (by UID) whose finalizer removal a Job sent but its cache has not shown yet.
#[derive(Debug, Default)]
pub struct FinalizerExpectations {
    expected: Mutex<HashMap<ObjectKey, HashSet<String>>>,
}

impl FinalizerExpectations {
    pub fn expect_removed(&self, job: &ObjectKey, uids: impl IntoIterator<Item = String>) {
        let mut map = self.expected.lock().expect("finalizer expectations lock");
        map.entry(job.clone()).or_default().extend(uids);
    }

    pub fn observed(&self, job: &ObjectKey, uid: &str) {
        let mut map = self.expected.lock().expect("finalizer expectations lock");
        if let Some(set) = map.get_mut(job) {
            set.remove(uid);
            if set.is_empty() {
                map.remove(job);
            }
        }
    }

    pub fn get(&self, job: &ObjectKey) -> HashSet<String> {
        let map = self.expected.lock().expect("finalizer expectations lock");
        map.get(job).cloned().unwrap_or_default()
    }

    pub fn forget(&self, job: &ObjectKey) {
        self.expected.lock().expect("finalizer expectations lock").remove(job);
    }
}

/// Removes the tracking finalizer from `pod` (a strategic merge patch deleting it from the
/// list, as upstream sends). `Ok(false)`: the pod is gone.
pub async fn remove_tracking_finalizer(client: &Client, pod: &Pod) -> Result<bool, Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(true);
    }
    let patch =
        json!({ "metadata": { "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER] } });
    let (api, target) = api_for::<Pod, Pod>(client, "remove the tracking finalizer of", pod);
    match call(target, api.patch(target.name, &PatchParams::default(), &Patch::Strategic(&patch)))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// One orphan pod: remove its finalizer unless a live, unfinished Job controls it.
pub async fn sync_orphan_pod(
    client: &Client,
    jobs: &Informer<Job>,
    pods: &Informer<Pod>,
    key: ObjectKey,
) -> Result<Outcome, Error> {
    let Some(pod) = pods.get(&key.0, &key.1) else { return Ok(Outcome::Done) };
    if let Some(r) = controller_of(&pod.metadata) {
        if r.kind != "Job" || r.api_version != "batch/v1" {
            return Ok(Outcome::Done);
        }
        if let Some(job) = resolve(jobs, &key.0, r)
            && !is_finished(&job)
        {
            return Ok(Outcome::Done);
        }
    }
    remove_tracking_finalizer(client, &pod).await?;
    Ok(Outcome::Done)
}
