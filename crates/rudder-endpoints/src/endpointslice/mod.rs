//! The EndpointSlice controller (upstream's `pkg/controller/endpointslice` with the
//! `k8s.io/endpointslice` reconciler): for every Service with a selector, the
//! discovery.k8s.io/v1 EndpointSlices listing its pods, labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io` and owned by the Service. Handlers only enqueue Service
//! keys; a reconcile reads the caches, plans with [`reconcile::reconcile`] and writes the
//! plan with resourceVersion preconditions.
//!
//! Slices not managed by this controller are never touched. Our slices are deleted when
//! their Service goes, loses its selector or becomes ExternalName (upstream leaves the
//! first to the garbage collector, which rudder does not have yet). Selector-less Services'
//! Endpoints are not mirrored into slices (upstream's EndpointSliceMirroring controller is
//! a separate controller, not implemented here).

pub mod compute;
pub mod reconcile;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use rudder_client::{
    Change, Context, EventType, Informer, ObjectKey, Outcome, Recorder, WorkQueue, run_workers,
};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::api::{Target, call, delete_exactly};
use crate::selection::{
    selected_pods, service_selector, services_for_pod, services_for_pod_update,
};
use crate::trigger_time::TriggerTimeTracker;
use compute::{EVENT_SOURCE, LABEL_TOPOLOGY_ZONE, managed_by_us, service_name_of};
use reconcile::{Input, Plan};
use tracker::{SliceTracker, service_key_of};

pub use compute::{CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};

/// The API's limit on endpoints in one EndpointSlice.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;

/// How the EndpointSlice controller runs.
#[derive(Clone, Debug)]
pub struct EndpointSliceConfig {
    /// Services reconciled in parallel (upstream `--concurrent-service-endpoint-syncs`, 5).
    pub workers: usize,
    /// Most endpoints in one slice (upstream `--max-endpoints-per-slice`, 100; at most
    /// [`MAX_ENDPOINTS_PER_SLICE`], what the API accepts).
    pub max_endpoints_per_slice: usize,
    /// How long a pod change waits before its Services are reconciled (upstream
    /// `--endpointslice-updates-batch-period`, 0).
    pub batch_period: Duration,
    /// How long a change to one of our slices by somebody else waits before the Service is
    /// reconciled, so that changes to several slices make one reconcile (upstream: 1 s, or
    /// the batch period if longer).
    pub slice_change_delay: Duration,
    /// Retry back-off of a failed reconcile: first delay and cap (upstream 1 s and 1000 s,
    /// higher than other controllers' to spare the API server).
    pub retry_base_delay: Duration,
    pub retry_max_delay: Duration,
}

impl Default for EndpointSliceConfig {
    fn default() -> Self {
        EndpointSliceConfig {
            workers: 5,
            max_endpoints_per_slice: 100,
            batch_period: Duration::ZERO,
            slice_change_delay: Duration::from_secs(1),
            retry_base_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(1000),
        }
    }
}

/// Runs the EndpointSlice controller until `cancel`.
pub async fn run(ctx: Context, config: EndpointSliceConfig, cancel: CancellationToken) {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        slices: ctx.informers.get::<EndpointSlice>(),
        nodes: ctx.informers.get::<Node>(),
        recorder: ctx.recorder(EVENT_SOURCE),
        trigger_times: TriggerTimeTracker::default(),
        tracker: Arc::new(SliceTracker::default()),
        max_endpoints_per_slice: config.max_endpoints_per_slice.clamp(1, MAX_ENDPOINTS_PER_SLICE),
    });
    let queue: Arc<WorkQueue<ObjectKey>> =
        WorkQueue::with_backoff(config.retry_base_delay, config.retry_max_delay);
    register_handlers(&controller, &queue, &config);
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            controller.services.wait_synced().await;
            controller.pods.wait_synced().await;
            controller.slices.wait_synced().await;
            controller.nodes.wait_synced().await;
        } => {}
    }
    tracing::info!(controller = CONTROLLER_NAME, "caches synced; starting workers");
    run_workers("endpointslice", queue, config.workers, cancel, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
}

fn register_handlers(
    controller: &Arc<Controller>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    config: &EndpointSliceConfig,
) {
    let q = queue.clone();
    controller.services.add_handler(move |change: &Change<Service>| {
        q.add(rudder_client::informer::key_of(&**change.object()));
    });

    let (q, services, batch) = (queue.clone(), controller.services.clone(), config.batch_period);
    controller.pods.add_handler(move |change: &Change<Pod>| {
        let namespace = change.object().metadata.namespace.clone().unwrap_or_default();
        let in_namespace = services.list_namespace(&namespace);
        let keys = match change {
            Change::Added(pod) | Change::Deleted(pod) => services_for_pod(&in_namespace, pod),
            Change::Updated { old, new } => services_for_pod_update(&in_namespace, old, new),
        };
        for key in keys {
            q.add_after(key, batch);
        }
    });

    // Our own writes coming back are ignored; anybody else's change to one of our slices
    // (or a slice changing hands) gets the Service reconciled.
    let (q, tracker) = (queue.clone(), controller.tracker.clone());
    let delay = config.slice_change_delay.max(config.batch_period);
    controller.slices.add_handler(move |change: &Change<EndpointSlice>| {
        let enqueue = |slice: &EndpointSlice| {
            if let Some(key) = service_key_of(slice) {
                q.add_after(key, delay);
            }
        };
        match change {
            Change::Added(slice) => {
                if managed_by_us(slice) && tracker.should_sync(slice) {
                    enqueue(slice);
                }
            }
            Change::Updated { old, new } => {
                if service_name_of(old) != service_name_of(new) {
                    enqueue(old);
                    enqueue(new);
                } else if managed_by_us(old) != managed_by_us(new)
                    || (managed_by_us(new) && tracker.should_sync(new))
                {
                    enqueue(new);
                }
            }
            Change::Deleted(slice) => {
                if managed_by_us(slice) && !tracker.handle_deletion(slice) {
                    enqueue(slice);
                }
            }
        }
    });
}

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    slices: Arc<Informer<EndpointSlice>>,
    nodes: Arc<Informer<Node>>,
    recorder: Recorder,
    trigger_times: TriggerTimeTracker,
    tracker: Arc<SliceTracker>,
    max_endpoints_per_slice: usize,
}

impl Controller {
    /// Our slices of the Service in the cache, those being deleted aside.
    fn our_slices(&self, namespace: &str, service: &str) -> Vec<Arc<EndpointSlice>> {
        self.slices
            .list_namespace(namespace)
            .into_iter()
            .filter(|s| {
                managed_by_us(s)
                    && service_name_of(s) == Some(service)
                    && s.metadata.deletion_timestamp.is_none()
            })
            .collect()
    }

    fn node_zone(&self, node: &str) -> Option<Option<String>> {
        let node = self.nodes.get("", node)?;
        Some(node.metadata.labels.as_ref().and_then(|l| l.get(LABEL_TOPOLOGY_ZONE)).cloned())
    }

    async fn sync(&self, key: &ObjectKey) -> Result<Outcome, Error> {
        let (namespace, name) = (key.0.as_str(), key.1.as_str());
        let service = self.services.get(namespace, name);
        let Some(service) = service.filter(|s| service_selector(s).is_some()) else {
            self.trigger_times.delete_service(key);
            self.tracker.delete_service(key);
            self.delete_all(namespace, name).await?;
            return Ok(Outcome::Done);
        };
        let pods = selected_pods(&service, &self.pods.list_namespace(namespace));
        let existing = self.our_slices(namespace, name);
        if self.tracker.stale(key, &existing) {
            return Err(Error::StaleCache {
                kind: "EndpointSlice",
                namespace: key.0.clone(),
                name: key.1.clone(),
            });
        }
        let trigger_time = self.trigger_times.compute(key, &service, &pods);
        let (plan, skipped) = {
            let node_zone = |node: &str| self.node_zone(node);
            reconcile::reconcile(&Input {
                service: &service,
                pods: &pods,
                existing: &existing,
                max_endpoints_per_slice: self.max_endpoints_per_slice,
                trigger_time,
                node_zone: &node_zone,
            })
        };
        let mut errors = Vec::new();
        if let Err(e) = self.apply(&service, plan).await {
            let message =
                format!("Error updating Endpoint Slices for Service {namespace}/{name}: {e}");
            self.recorder.event(
                &*service,
                EventType::Warning,
                "FailedToUpdateEndpointSlices",
                message,
            );
            errors.push(e);
        }
        errors.extend(skipped.into_iter().map(|(pod, node)| Error::NodeNotFound {
            namespace: namespace.to_owned(),
            pod,
            service: name.to_owned(),
            node,
        }));
        Error::aggregate(errors).map(|()| Outcome::Done)
    }

    /// Writes the plan: creates (none for a Service being deleted), updates, deletes; stops
    /// at the first failure (the retry plans again from the cache).
    async fn apply(&self, service: &Service, plan: Plan) -> Result<(), Error> {
        if plan.is_empty() {
            return Ok(());
        }
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let service_name = service.metadata.name.as_deref().unwrap_or_default();
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams::default();
        tracing::debug!(
            namespace,
            service = service_name,
            create = plan.create.len(),
            update = plan.update.len(),
            delete = plan.delete.len(),
            "writing EndpointSlices"
        );
        if service.metadata.deletion_timestamp.is_none() {
            for slice in &plan.create {
                let target =
                    Target { verb: "create", kind: "EndpointSlice", namespace, name: service_name };
                match call(target, api.create(&params, slice)).await {
                    Ok(created) => self.tracker.update(&created),
                    Err(e) if e.is_namespace_terminating() => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        for slice in &plan.update {
            let name = slice.metadata.name.as_deref().unwrap_or_default();
            let target = Target { verb: "update", kind: "EndpointSlice", namespace, name };
            let updated = call(target, api.replace(name, &params, slice)).await?;
            self.tracker.update(&updated);
        }
        for slice in &plan.delete {
            self.delete(&api, slice).await?;
        }
        Ok(())
    }

    async fn delete(&self, api: &Api<EndpointSlice>, slice: &EndpointSlice) -> Result<(), Error> {
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let params = delete_exactly(
            slice.metadata.uid.as_deref(),
            slice.metadata.resource_version.as_deref(),
        );
        let target = Target { verb: "delete", kind: "EndpointSlice", namespace, name };
        match call(target, api.delete(name, &params)).await {
            Ok(_) => {
                self.tracker.expect_deletion(slice);
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes every slice of ours for a Service that is gone or no longer has a selector.
    async fn delete_all(&self, namespace: &str, service: &str) -> Result<(), Error> {
        let slices = self.our_slices(namespace, service);
        if slices.is_empty() {
            return Ok(());
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), namespace);
        let mut errors = Vec::new();
        for slice in slices {
            if let Err(e) = self.delete(&api, &slice).await {
                errors.push(e);
            }
        }
        tracing::debug!(
            namespace,
            service,
            "EndpointSlices of a Service without endpoints deleted"
        );
        Error::aggregate(errors)
    }
}
