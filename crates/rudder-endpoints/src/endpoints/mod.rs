//! The Endpoints controller (upstream's `pkg/controller/endpoint`): for every Service with a
//! selector, one core/v1 Endpoints object of the same name listing the selected pods'
//! addresses per port. Handlers only enqueue Service keys; a reconcile reads the informer
//! caches, computes the Endpoints ([`compute`]) and writes only when they differ, with the
//! stored resourceVersion as precondition.
//!
//! Endpoints this controller wrote carry `endpoints.kubernetes.io/managed-by:
//! endpoint-controller`; only those are deleted when their Service goes away, loses its
//! selector or becomes ExternalName. Endpoints of Services without a selector are the
//! user's and are never touched.

pub mod compute;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
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

pub use compute::{
    ANNOTATION_OVER_CAPACITY, CONTROLLER_NAME, LABEL_MANAGED_BY, MAX_CAPACITY, managed_by_us,
};

/// How the Endpoints controller runs.
#[derive(Clone, Debug)]
pub struct EndpointsConfig {
    /// Services reconciled in parallel (upstream `--concurrent-endpoint-syncs`, 5).
    pub workers: usize,
    /// How long a pod change waits before its Services are reconciled, so that several
    /// changes make one write (upstream `--endpoint-updates-batch-period`, 0).
    pub batch_period: Duration,
}

impl Default for EndpointsConfig {
    fn default() -> Self {
        EndpointsConfig { workers: 5, batch_period: Duration::ZERO }
    }
}

/// Runs the Endpoints controller until `cancel`.
pub async fn run(ctx: Context, config: EndpointsConfig, cancel: CancellationToken) {
    let controller = Arc::new(Controller {
        client: ctx.client.clone(),
        services: ctx.informers.get::<Service>(),
        pods: ctx.informers.get::<Pod>(),
        endpoints: ctx.informers.get::<Endpoints>(),
        recorder: ctx.recorder(CONTROLLER_NAME),
        trigger_times: TriggerTimeTracker::default(),
        stale: Mutex::new(HashMap::new()),
    });
    let queue: Arc<WorkQueue<ObjectKey>> = WorkQueue::new();
    register_handlers(&controller, &queue, config.batch_period);
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async {
            controller.services.wait_synced().await;
            controller.pods.wait_synced().await;
            controller.endpoints.wait_synced().await;
        } => {}
    }
    tracing::info!(controller = CONTROLLER_NAME, "caches synced; starting workers");
    run_workers("endpoint", queue, config.workers, cancel, move |key: ObjectKey| {
        let controller = controller.clone();
        async move { controller.sync(&key).await }
    })
    .await;
}

fn register_handlers(
    controller: &Arc<Controller>,
    queue: &Arc<WorkQueue<ObjectKey>>,
    batch_period: Duration,
) {
    let q = queue.clone();
    controller.services.add_handler(move |change: &Change<Service>| {
        q.add(rudder_client::informer::key_of(&**change.object()));
    });

    let (q, services) = (queue.clone(), controller.services.clone());
    controller.pods.add_handler(move |change: &Change<Pod>| {
        let namespace = change.object().metadata.namespace.clone().unwrap_or_default();
        let in_namespace = services.list_namespace(&namespace);
        let keys = match change {
            Change::Added(pod) | Change::Deleted(pod) => services_for_pod(&in_namespace, pod),
            Change::Updated { old, new } => services_for_pod_update(&in_namespace, old, new),
        };
        for key in keys {
            q.add_after(key, batch_period);
        }
    });

    // A deleted Endpoints is recreated if its Service still wants it; one of ours whose
    // Service is gone (e.g. deleted while this controller was down) is cleaned up.
    let (q, services) = (queue.clone(), controller.services.clone());
    controller.endpoints.add_handler(move |change: &Change<Endpoints>| {
        let endpoints = change.object();
        let key = rudder_client::informer::key_of(&**endpoints);
        let orphaned = || {
            managed_by_us(endpoints)
                && services.get(&key.0, &key.1).is_none_or(|s| service_selector(&s).is_none())
        };
        if matches!(change, Change::Deleted(_)) || orphaned() {
            q.add(key);
        }
    });
}

struct Controller {
    client: kube::Client,
    services: Arc<Informer<Service>>,
    pods: Arc<Informer<Pod>>,
    endpoints: Arc<Informer<Endpoints>>,
    recorder: Recorder,
    trigger_times: TriggerTimeTracker,
    /// Per Service, the resourceVersion our last update replaced: while the cache still
    /// shows it, the cache is behind our own write.
    stale: Mutex<HashMap<ObjectKey, String>>,
}

impl Controller {
    async fn sync(&self, key: &ObjectKey) -> Result<Outcome, Error> {
        let (namespace, name) = (key.0.as_str(), key.1.as_str());
        let service = self.services.get(namespace, name);
        let Some(service) = service.filter(|s| service_selector(s).is_some()) else {
            self.trigger_times.delete_service(key);
            self.stale.lock().expect("stale lock").remove(key);
            self.delete_ours(namespace, name).await?;
            return Ok(Outcome::Done);
        };
        let current = self.endpoints.get(namespace, name);
        if let Some(current) = &current
            && self.stale.lock().expect("stale lock").get(key)
                == current.metadata.resource_version.as_ref()
        {
            return Err(Error::StaleCache {
                kind: "Endpoints",
                namespace: key.0.clone(),
                name: key.1.clone(),
            });
        }
        let pods = selected_pods(&service, &self.pods.list_namespace(namespace));
        let trigger_time = self.trigger_times.compute(key, &service, &pods);
        let Some(desired) = compute::plan(&service, &pods, current.as_deref(), trigger_time) else {
            return Ok(Outcome::Done);
        };
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let params = PostParams::default();
        let result = match &current {
            None => {
                let target = Target { verb: "create", kind: "Endpoints", namespace, name };
                call(target, api.create(&params, &desired)).await
            }
            Some(_) => {
                let target = Target { verb: "update", kind: "Endpoints", namespace, name };
                call(target, api.replace(name, &params, &desired)).await
            }
        };
        match result {
            Ok(written) => {
                tracing::debug!(namespace, name, created = current.is_none(), "Endpoints written");
                if let Some(current) = current
                    && written.metadata.resource_version != current.metadata.resource_version
                    && let Some(rv) = current.metadata.resource_version.clone()
                {
                    self.stale.lock().expect("stale lock").insert(key.clone(), rv);
                }
                Ok(Outcome::Done)
            }
            Err(e) if current.is_none() && e.is_namespace_terminating() => Ok(Outcome::Done),
            // Our cache has not seen an Endpoints that exists (typically the one an earlier
            // reconcile created): not worth a warning, just retry once the watch caught up.
            Err(e) if current.is_none() && e.is_already_exists() => Err(Error::StaleCache {
                kind: "Endpoints",
                namespace: key.0.clone(),
                name: key.1.clone(),
            }),
            Err(e) => {
                let (reason, message) = match current {
                    None => (
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {namespace}/{name}: {e}"),
                    ),
                    Some(_) => (
                        "FailedToUpdateEndpoint",
                        format!("Failed to update endpoint {namespace}/{name}: {e}"),
                    ),
                };
                self.recorder.event(&desired, EventType::Warning, reason, message);
                Err(e)
            }
        }
    }

    /// Deletes the Service's Endpoints if this controller wrote them (only the version
    /// seen in the cache: a concurrent change makes the delete fail and retry).
    async fn delete_ours(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let Some(current) = self.endpoints.get(namespace, name) else { return Ok(()) };
        if !managed_by_us(&current) {
            return Ok(());
        }
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), namespace);
        let params = delete_exactly(
            current.metadata.uid.as_deref(),
            current.metadata.resource_version.as_deref(),
        );
        let target = Target { verb: "delete", kind: "Endpoints", namespace, name };
        match call(target, api.delete(name, &params)).await {
            Ok(_) => {
                tracing::debug!(namespace, name, "Endpoints deleted");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
