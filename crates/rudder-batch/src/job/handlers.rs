//! Event handlers: they find which Job a change concerns, note observed creations,
//! deletions and finalizer removals, and enqueue keys (pod events in batches, as upstream's
//! syncJobBatchPeriod); pods whose tracking finalizer nobody else would remove go to the
//! orphan queue.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_of, selector_matches};
use rudder_client::{Change, Clock, Informer, ObjectKey, WorkQueue};
use rudder_workloads::expectations::Expectations;
use rudder_workloads::recent::RecentWrites;

use super::conditions::{active_deadline_left, is_finished};
use super::orphans::FinalizerExpectations;
use super::pods::has_tracking_finalizer;

/// The Job a controller reference points at, if it is still the same object.
pub fn resolve(jobs: &Informer<Job>, namespace: &str, r: &OwnerReference) -> Option<Arc<Job>> {
    if r.kind != "Job" {
        return None;
    }
    jobs.get(namespace, &r.name).filter(|j| j.metadata.uid.as_deref() == Some(r.uid.as_str()))
}

/// Whether the Job's selector matches `pod` (a Job without a selector matches nothing).
pub fn selects(job: &Job, pod: &Pod) -> bool {
    let Some(selector) = job.spec.as_ref().and_then(|s| s.selector.as_ref()) else { return false };
    if rudder_client::objects::selects_nothing(selector) {
        return false;
    }
    selector_matches(selector, pod.metadata.labels.as_ref().unwrap_or(&Default::default()))
}

#[derive(Clone)]
pub struct Handlers {
    pub jobs: Arc<Informer<Job>>,
    pub pods: Arc<Informer<Pod>>,
    pub queue: Arc<WorkQueue<ObjectKey>>,
    pub orphans: Arc<WorkQueue<ObjectKey>>,
    pub expectations: Arc<Expectations>,
    pub finalizers: Arc<FinalizerExpectations>,
    pub written: Arc<RecentWrites<Job>>,
    pub clock: Arc<dyn Clock>,
    pub batch_period: Duration,
}

impl Handlers {
    pub fn register(self) {
        let jobs = self.jobs.clone();
        let pods = self.pods.clone();
        let h = self.clone();
        jobs.add_handler(move |c: &Change<Job>| h.on_job(c));
        pods.add_handler(move |c: &Change<Pod>| self.on_pod(c));
    }

    fn batched(&self, key: ObjectKey) {
        self.queue.add_after(key, self.batch_period);
    }

    fn on_job(&self, change: &Change<Job>) {
        let job = change.object();
        let key = key_of(&**job);
        match change {
            Change::Added(_) => self.queue.add(key),
            Change::Updated { old, new } => {
                if old.metadata.generation == new.metadata.generation {
                    self.batched(key.clone());
                } else {
                    self.queue.add(key.clone());
                }
                if is_finished(new) {
                    self.cleanup_pod_finalizers(new);
                }
                let ads = |j: &Job| j.spec.as_ref().and_then(|s| s.active_deadline_seconds);
                if ads(new).is_some()
                    && ads(old) != ads(new)
                    && let Some(left) = active_deadline_left(new, self.clock.now())
                {
                    self.queue.add_after(key, left);
                }
            }
            Change::Deleted(_) => {
                self.expectations.forget(&key);
                self.finalizers.forget(&key);
                self.written.forget(&key);
                self.queue.add(key);
                self.cleanup_pod_finalizers(job);
            }
        }
    }

    /// Sends every pod of `job` that still has the finalizer to the orphan queue.
    fn cleanup_pod_finalizers(&self, job: &Job) {
        let namespace = job.metadata.namespace.as_deref().unwrap_or("");
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        for pod in self.pods.list_namespace(namespace) {
            if has_tracking_finalizer(&pod)
                && controller_of(&pod.metadata).is_some_and(|r| r.uid == uid)
            {
                self.orphans.add(key_of(&*pod));
            }
        }
    }

    fn on_pod(&self, change: &Change<Pod>) {
        match change {
            Change::Added(pod) => self.pod_added(pod),
            Change::Updated { old, new } => self.pod_updated(old, new),
            Change::Deleted(pod) => self.pod_deleted(pod, true),
        }
    }

    fn pod_added(&self, pod: &Pod) {
        if pod.metadata.deletion_timestamp.is_some() {
            return self.pod_deleted(pod, false);
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        if let Some(r) = controller_of(&pod.metadata) {
            match resolve(&self.jobs, namespace, r) {
                Some(job) => {
                    let key = key_of(&*job);
                    self.expectations.creation_observed(&key);
                    self.batched(key);
                }
                None if has_tracking_finalizer(pod) => self.orphans.add(key_of(pod)),
                None => {}
            }
            return;
        }
        if has_tracking_finalizer(pod) {
            self.orphans.add(key_of(pod));
        }
        for job in self.jobs.list_namespace(namespace) {
            if selects(&job, pod) {
                self.batched(key_of(&*job));
            }
        }
    }

    fn pod_updated(&self, old: &Pod, new: &Pod) {
        let namespace = new.metadata.namespace.as_deref().unwrap_or("");
        let label_changed = old.metadata.labels != new.metadata.labels;
        if new.metadata.deletion_timestamp.is_some() {
            self.pod_deleted(new, false);
            if label_changed {
                self.pod_deleted(old, false);
            }
            return;
        }
        let finalizer_removed = has_tracking_finalizer(old) && !has_tracking_finalizer(new);
        let (old_ref, new_ref) = (controller_of(&old.metadata), controller_of(&new.metadata));
        let ref_changed = old_ref != new_ref;
        if ref_changed
            && let Some(r) = old_ref
            && let Some(job) = resolve(&self.jobs, namespace, r)
        {
            let key = key_of(&*job);
            if finalizer_removed {
                self.finalizers.observed(&key, new.metadata.uid.as_deref().unwrap_or(""));
            }
            self.batched(key);
        }
        if let Some(r) = new_ref {
            match resolve(&self.jobs, namespace, r) {
                Some(job) => {
                    let key = key_of(&*job);
                    if finalizer_removed {
                        self.finalizers.observed(&key, new.metadata.uid.as_deref().unwrap_or(""));
                    }
                    self.batched(key);
                }
                None if has_tracking_finalizer(new) => self.orphans.add(key_of(new)),
                None => {}
            }
            return;
        }
        if has_tracking_finalizer(new) {
            self.orphans.add(key_of(new));
        }
        if label_changed || ref_changed {
            for job in self.jobs.list_namespace(namespace) {
                if selects(&job, new) {
                    self.batched(key_of(&*job));
                }
            }
        }
    }

    /// `last`: the pod is gone (not just marked for deletion).
    fn pod_deleted(&self, pod: &Pod, last: bool) {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
        let has_finalizer = has_tracking_finalizer(pod);
        let Some(r) = controller_of(&pod.metadata) else {
            if has_finalizer && !last {
                self.orphans.add(key_of(pod));
            }
            return;
        };
        let job = resolve(&self.jobs, namespace, r);
        let Some(job) = job.filter(|j| !is_finished(j)) else {
            if has_finalizer && !last {
                self.orphans.add(key_of(pod));
            }
            return;
        };
        let key = key_of(&*job);
        self.expectations.deletion_observed(&key, &key_of(pod));
        if last || !has_finalizer {
            self.finalizers.observed(&key, pod.metadata.uid.as_deref().unwrap_or(""));
        }
        self.batched(key);
    }
}
