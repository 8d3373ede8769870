//! One reconcile of a DaemonSet (upstream's syncDaemonSet): claim its pods, find or make the
//! current revision, then — once the last round's creates and deletes are observed — create
//! and delete pods node by node, take one rolling-update step, drop old revisions, and write
//! the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{DeleteParams, PostParams, Preconditions};
use rudder_client::informer::key_of;
use rudder_client::objects::{controller_reference, selector_matches, selects_nothing};
use rudder_client::{Clock, EventType, Informer, ObjectKey, Outcome, Recorder};

use super::backoff::Backoff;
use super::manage::{Current, StatusCounts, manage_plan, node_pods, status_counts};
use super::rolling::rolling_plan;
use super::util::{
    CONTROLLER_REVISION_HASH_LABEL, ROLLING_UPDATE, create_pod_template, min_ready_seconds,
    replace_node_name_affinity, strategy_type, template,
};
use crate::Error;
use crate::api::{Target, call};
use crate::claim::claim_objects;
use crate::expectations::Expectations;
use crate::pod_control::{
    SLOW_START_INITIAL_BATCH, SUCCESSFUL_DELETE, create_pod, delete_pod, pod_from_template,
    slow_start_batch,
};
use crate::recent::RecentWrites;
use crate::replicaset::status::next_available_after;

pub const SELECTING_ALL: &str = "SelectingAll";
pub const FAILED_DAEMON_POD: &str = "FailedDaemonPod";
pub const SUCCEEDED_DAEMON_POD: &str = "SucceededDaemonPod";

pub struct Controller {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub recorder: Recorder,
    pub daemon_sets: Arc<Informer<DaemonSet>>,
    pub revisions: Arc<Informer<ControllerRevision>>,
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub expectations: Arc<Expectations>,
    pub written: Arc<RecentWrites<DaemonSet>>,
    pub written_revisions: Arc<RecentWrites<ControllerRevision>>,
    pub backoff: Arc<Backoff>,
    pub burst_replicas: usize,
}

fn invalid(ds: &DaemonSet, message: String) -> Error {
    Error::Invalid {
        kind: "DaemonSet",
        namespace: ds.metadata.namespace.clone().unwrap_or_default(),
        name: ds.metadata.name.clone().unwrap_or_default(),
        message,
    }
}

fn sooner(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Controller {
    pub async fn reconcile(&self, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(cached) = self.daemon_sets.get(&key.0, &key.1) else {
            self.expectations.forget(&key);
            self.written.forget(&key);
            return Ok(Outcome::Done);
        };
        let ds = self.written.fresher(cached);
        let selector = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        if selects_nothing(&selector) {
            self.recorder.event(
                &*ds,
                EventType::Warning,
                SELECTING_ALL,
                "This daemon set is selecting all pods. A non-empty selector is required.",
            );
            return Ok(Outcome::Done);
        }
        // Its revisions may be going away with it: nothing reliable to report.
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::Done);
        }
        let nodes = self.nodes.list();
        // The pods are read after the expectations check (upstream's manage reads them after
        // it too): read before, a pod created last round and observed in between would be
        // missing, and its node would get another one.
        let (settled, pods) = self.expectations.satisfied_then(&key, self.daemon_pods(&ds)).await;
        let pods = pods?;
        let (cur, old) = self.construct_history(&ds, &pods).await?;
        let hash = cur
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        let current = Current::of(&ds, &hash);

        if !settled {
            // Only the counts; observedGeneration waits until this generation is acted on.
            return self.update_status(&ds, &nodes, &pods, &current, false).await;
        }
        let result = self.update_daemon_set(&key, &ds, &nodes, &pods, &current, &old).await;
        let status = self.update_status(&ds, &nodes, &pods, &current, true).await;
        match (result, status) {
            (Err(e), status) => {
                if let Err(s) = status {
                    tracing::debug!(error = %s, "DaemonSet status not written");
                }
                Err(e)
            }
            (Ok(_), Err(e)) => Err(e),
            (Ok(retry), Ok(Outcome::RequeueAfter(d))) => {
                Ok(Outcome::RequeueAfter(sooner(retry, Some(d)).unwrap_or(d)))
            }
            (Ok(retry), Ok(Outcome::Done)) => {
                Ok(retry.map_or(Outcome::Done, Outcome::RequeueAfter))
            }
        }
    }

    async fn update_daemon_set(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        current: &Current,
        old: &[Arc<ControllerRevision>],
    ) -> Result<Option<Duration>, Error> {
        let (retry, wrote) = self.manage(key, ds, nodes, pods, current).await?;
        let mut fresh = None;
        if strategy_type(ds) == ROLLING_UPDATE && self.expectations.satisfied(key) {
            // What manage created and deleted is not in `pods`; it has all been observed
            // now, so a new read has it (upstream's rollingUpdate reads the pods again too).
            if wrote {
                fresh = Some(self.daemon_pods(ds).await?);
            }
            let by_node = node_pods(fresh.as_deref().unwrap_or(pods), false);
            let plan = rolling_plan(nodes, ds, &by_node, current, self.clock.now())
                .map_err(|m| invalid(ds, m))?;
            self.sync_nodes(key, ds, plan.delete, plan.create_on, current).await?;
        }
        self.cleanup_history(ds, old, fresh.as_deref().unwrap_or(pods)).await?;
        Ok(retry)
    }

    /// The DaemonSet's pods from the cache, orphans its selector matches adopted and pods it
    /// no longer matches released (upstream's getDaemonPods).
    async fn daemon_pods(&self, ds: &DaemonSet) -> Result<Vec<Arc<Pod>>, Error> {
        let selector = ds.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        let empty = BTreeMap::new();
        let candidates = self.pods.list_namespace(namespace);
        claim_objects(&self.client, ds, candidates, |p: &Pod| {
            selector_matches(&selector, p.metadata.labels.as_ref().unwrap_or(&empty))
        })
        .await
    }

    /// Creates the missing daemon pods and deletes the ones that should go; says when to look
    /// again and whether it created or deleted any.
    async fn manage(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        current: &Current,
    ) -> Result<(Option<Duration>, bool), Error> {
        let by_node = node_pods(pods, false);
        let now = self.clock.now();
        let plan = manage_plan(nodes, ds, &by_node, current, &self.backoff, now);
        for (pod, node) in &plan.failed {
            let message = format!(
                "Found failed daemon pod {}/{} on node {node}, will try to kill it",
                key.0,
                pod.metadata.name.as_deref().unwrap_or("")
            );
            self.recorder.event(ds, EventType::Warning, FAILED_DAEMON_POD, message);
        }
        for (pod, node) in &plan.succeeded {
            let message = format!(
                "Found succeeded daemon pod {}/{} on node {node}, will try to delete it",
                key.0,
                pod.metadata.name.as_deref().unwrap_or("")
            );
            self.recorder.event(ds, EventType::Normal, SUCCEEDED_DAEMON_POD, message);
        }
        let gone = self.pods_on_deleted_nodes(&plan.on_missing_nodes).await?;
        let wrote = !(gone.is_empty() && plan.delete.is_empty() && plan.create_on.is_empty());
        let forced = self.force_delete(ds, &gone).await;
        let synced = self.sync_nodes(key, ds, plan.delete, plan.create_on, current).await;
        Error::aggregate(forced.into_iter().chain(synced.err()).collect())?;
        Ok((plan.retry_after, wrote))
    }

    /// The pods bound to nodes the API no longer has (checked with a read, so a node the
    /// cache has not seen yet is not mistaken for a deleted one).
    async fn pods_on_deleted_nodes(&self, pods: &[Arc<Pod>]) -> Result<Vec<Arc<Pod>>, Error> {
        let mut node_gone: BTreeMap<String, bool> = BTreeMap::new();
        let api: kube::Api<Node> = kube::Api::all(self.client.clone());
        let mut result = Vec::new();
        for pod in pods {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let gone = match node_gone.get(&node) {
                Some(g) => *g,
                None => {
                    let t = Target { verb: "get", kind: "Node", namespace: "", name: &node };
                    let g = match call(t, api.get(&node)).await {
                        Ok(_) => false,
                        Err(e) if e.is_not_found() => true,
                        Err(e) => return Err(e),
                    };
                    node_gone.insert(node.clone(), g);
                    g
                }
            };
            if gone {
                result.push(pod.clone());
            }
        }
        Ok(result)
    }

    /// Deletes pods of nodes that are gone with grace period 0 (no kubelet will ever finish
    /// a graceful deletion there; what upstream's pod garbage collector does). Their
    /// deletions are not expected: nothing waits for them.
    async fn force_delete(&self, ds: &DaemonSet, pods: &[Arc<Pod>]) -> Vec<Error> {
        let mut errors = Vec::new();
        for pod in pods {
            let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
            let name = pod.metadata.name.as_deref().unwrap_or("");
            let api: kube::Api<Pod> = kube::Api::namespaced(self.client.clone(), namespace);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            let t = Target { verb: "delete", kind: "Pod", namespace, name };
            match call(t, api.delete(name, &params)).await {
                Ok(_) => self.recorder.event(
                    ds,
                    EventType::Normal,
                    SUCCESSFUL_DELETE,
                    format!("Deleted pod: {name}"),
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Deletes `delete` and creates a pod on each of `create_on`, at most `burst_replicas` of
    /// each, with expectations set first (upstream's syncNodes).
    async fn sync_nodes(
        &self,
        key: &ObjectKey,
        ds: &DaemonSet,
        mut delete: Vec<Arc<Pod>>,
        mut create_on: Vec<String>,
        current: &Current,
    ) -> Result<(), Error> {
        create_on.truncate(self.burst_replicas);
        delete.truncate(self.burst_replicas);
        let creates = create_on.len();
        self.expectations.expect(key, creates, delete.iter().map(|p| key_of(&**p)));
        let mut errors = Vec::new();

        if creates > 0 {
            tracing::debug!(key = ?key, nodes = ?create_on, "creating daemon pods");
            let template = create_pod_template(&template(ds), current.generation, &current.hash);
            let name = ds.metadata.name.clone().unwrap_or_default();
            let base = pod_from_template(&template, &key.0, &name, controller_reference(ds))
                .map_err(|m| invalid(ds, m))?;
            let next = AtomicUsize::new(0);
            let (created, error) = slow_start_batch(creates, SLOW_START_INITIAL_BATCH, || {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let mut pod = base.clone();
                if let Some(spec) = pod.spec.as_mut() {
                    let node = create_on.get(i).map(String::as_str).unwrap_or("");
                    spec.affinity = Some(replace_node_name_affinity(spec.affinity.take(), node));
                }
                async move {
                    match create_pod(&self.client, &self.recorder, ds, &pod).await {
                        Err(e) if e.is_namespace_terminating() => Ok(()),
                        other => other.map(|_| ()),
                    }
                }
            })
            .await;
            for _ in created..creates {
                self.expectations.creation_observed(key);
            }
            errors.extend(error);
        }

        if !delete.is_empty() {
            tracing::debug!(key = ?key, count = delete.len(), "deleting daemon pods");
            let results = futures::future::join_all(
                delete.iter().map(|p| delete_pod(&self.client, &self.recorder, ds, p)),
            )
            .await;
            for (pod, result) in delete.iter().zip(results) {
                match result {
                    Ok(true) => {}
                    Ok(false) => self.expectations.deletion_observed(key, &key_of(&**pod)),
                    Err(e) => {
                        self.expectations.deletion_observed(key, &key_of(&**pod));
                        errors.push(e);
                    }
                }
            }
        }
        Error::aggregate(errors)
    }

    /// Writes the status when a count changed (or observedGeneration is behind and
    /// `observe` is set); asks to look again when a ready pod becomes available.
    async fn update_status(
        &self,
        ds: &Arc<DaemonSet>,
        nodes: &[Arc<Node>],
        pods: &[Arc<Pod>],
        current: &Current,
        observe: bool,
    ) -> Result<Outcome, Error> {
        let now = self.clock.now();
        let counts = status_counts(nodes, ds, &node_pods(pods, true), current, now);
        let generation = ds.metadata.generation.unwrap_or(0);
        let status = ds.status.clone().unwrap_or_default();
        let up_to_date =
            counts == counts_of(&status) && status.observed_generation.unwrap_or(0) >= generation;
        if !up_to_date {
            let mut updated = (**ds).clone();
            let (api, name) = self.ds_api(ds);
            let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
            let t = |verb| Target { verb, kind: "DaemonSet", namespace, name: &name };
            let mut attempt = 0;
            loop {
                let s = updated.status.get_or_insert_with(Default::default);
                set_counts(s, &counts);
                if observe {
                    s.observed_generation = Some(generation);
                }
                match call(
                    t("update status of"),
                    api.replace_status(&name, &PostParams::default(), &updated),
                )
                .await
                {
                    Ok(written) => {
                        self.written.record(written);
                        break;
                    }
                    Err(e) if e.is_conflict() && attempt == 0 => {
                        attempt += 1;
                        updated = call(t("get"), api.get(&name)).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let min_ready = min_ready_seconds(ds);
        if min_ready > 0 && counts.number_ready != counts.number_available {
            let after = next_available_after(pods, min_ready, now)
                .unwrap_or(Duration::from_secs(min_ready as u64));
            return Ok(Outcome::RequeueAfter(after + Duration::from_millis(100)));
        }
        Ok(Outcome::Done)
    }

    fn ds_api(&self, ds: &DaemonSet) -> (kube::Api<DaemonSet>, String) {
        let namespace = ds.metadata.namespace.as_deref().unwrap_or("");
        (
            kube::Api::namespaced(self.client.clone(), namespace),
            ds.metadata.name.clone().unwrap_or_default(),
        )
    }
}

fn counts_of(s: &DaemonSetStatus) -> StatusCounts {
    StatusCounts {
        desired_number_scheduled: s.desired_number_scheduled,
        current_number_scheduled: s.current_number_scheduled,
        number_misscheduled: s.number_misscheduled,
        number_ready: s.number_ready,
        updated_number_scheduled: s.updated_number_scheduled.unwrap_or(0),
        number_available: s.number_available.unwrap_or(0),
        number_unavailable: s.number_unavailable.unwrap_or(0),
    }
}

/// Sets the counts; the optional ones are left out when zero (upstream's omitempty).
fn set_counts(s: &mut DaemonSetStatus, c: &StatusCounts) {
    let opt = |v: i32| (v != 0).then_some(v);
    s.desired_number_scheduled = c.desired_number_scheduled;
    s.current_number_scheduled = c.current_number_scheduled;
    s.number_misscheduled = c.number_misscheduled;
    s.number_ready = c.number_ready;
    s.updated_number_scheduled = opt(c.updated_number_scheduled);
    s.number_available = opt(c.number_available);
    s.number_unavailable = opt(c.number_unavailable);
}
