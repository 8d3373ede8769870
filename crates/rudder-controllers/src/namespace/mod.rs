//! The namespace controller (upstream's `namespace` NamespaceController and its
//! NamespacedResourcesDeleter): a namespace being deleted (deletionTimestamp set, phase
//! Terminating) is emptied: every namespaced resource discovery lists with the `delete` verb
//! is deleted (deletecollection where served, else one by one), the controller waits until
//! nothing is left (requeueing), keeps the namespace's deletion conditions up to date, and
//! finally removes `kubernetes` from `spec.finalizers` through `/finalize` so the API server
//! removes the namespace.

pub mod conditions;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use rudder_client::{Change, Context, Outcome, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::discovery::{ServedResource, ServedResources};
use crate::error::{Error, call};
use crate::meta::MetaObject;
use conditions::{ContentReport, update_conditions};

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

#[derive(Clone, Debug)]
pub struct NamespaceConfig {
    /// Namespaces deleted at once (upstream `--concurrent-namespace-syncs`, 10).
    pub workers: usize,
    /// How long objects still carrying finalizers are assumed to take to go (upstream's
    /// fixed 15 s); the namespace is looked at again after half of it.
    pub finalizer_estimate: Duration,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            workers: 10,
            finalizer_estimate: Duration::from_secs(conditions::FINALIZER_ESTIMATE_SECONDS),
        }
    }
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: NamespaceConfig, cancel: CancellationToken) {
    let namespaces = ctx.informers.get::<Namespace>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = namespaces.wait_synced() => {}
    }
    let queue =
        WorkQueue::<String>::with_backoff(Duration::from_millis(100), Duration::from_secs(60));
    {
        let queue = queue.clone();
        namespaces.add_handler(move |change: &Change<Namespace>| {
            if let Change::Added(ns) | Change::Updated { new: ns, .. } = change
                && ns.metadata.deletion_timestamp.is_some()
            {
                queue.add(ns.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let client = ctx.client.clone();
    let clock = ctx.clock.clone();
    let estimate = config.finalizer_estimate;
    run_workers("namespace", queue, config.workers, cancel, move |name: String| {
        let (client, clock) = (client.clone(), clock.clone());
        async move { sync_namespace(&client, &*clock, estimate, &name).await }
    })
    .await;
}

fn finalizers(ns: &Namespace) -> Vec<String> {
    ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default()
}

/// upstream's `NamespacedResourcesDeleter.Delete`.
async fn sync_namespace(
    client: &kube::Client,
    clock: &dyn rudder_client::Clock,
    finalizer_estimate: Duration,
    name: &str,
) -> Result<Outcome, Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = match call("get namespace", api.get(name)).await {
        Ok(ns) => ns,
        Err(e) if e.is_not_found() => return Ok(Outcome::Done),
        Err(e) => return Err(e),
    };
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Outcome::Done);
    }
    if ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating") {
        ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
        ns = call("update namespace status", api.replace_status(name, &PostParams::default(), &ns))
            .await?;
    }
    if !finalizers(&ns).iter().any(|f| f == FINALIZER) {
        return Ok(Outcome::Done);
    }

    let report = match ServedResources::discover(client).await {
        Ok(served) => delete_all_content(client, &served, name).await,
        Err(e) => {
            ContentReport { discovery_error: Some(e.to_string()), ..ContentReport::default() }
        }
    };
    let now = clock.now();
    let mut status = ns.status.clone().unwrap_or_default();
    let mut list = status.conditions.take().unwrap_or_default();
    if update_conditions(&mut list, &report.failing(now), now) {
        status.conditions = Some(list);
        ns.status = Some(status);
        match call(
            "update namespace conditions",
            api.replace_status(name, &PostParams::default(), &ns),
        )
        .await
        {
            Ok(updated) => ns = updated,
            Err(e) if e.is_not_found() => return Ok(Outcome::Done),
            Err(e) if e.is_conflict() => return Err(e),
            Err(e) => {
                tracing::debug!(namespace = %name, error = %e, "namespace conditions not updated")
            }
        }
    }
    if let Some(e) = &report.discovery_error {
        return Err(Error::Discovery(e.clone()));
    }
    if !report.delete_errors.is_empty() {
        return Err(Error::Retry(report.delete_errors.join(", ")));
    }
    if report.has_remaining() {
        // Upstream: estimate / 2 + 1 s, the estimate being the finalizer estimate when a
        // remaining object has finalizers, else zero.
        let estimate =
            if report.estimate_seconds() > 0 { finalizer_estimate } else { Duration::ZERO };
        let wait = estimate / 2 + Duration::from_secs(1);
        tracing::debug!(namespace = %name, ?wait, remaining = ?report.remaining, "namespace: content remains");
        return Ok(Outcome::RequeueAfter(wait));
    }

    // Everything is gone: finalize.
    let mut spec = ns.spec.clone().unwrap_or_default();
    spec.finalizers = Some(finalizers(&ns).into_iter().filter(|f| f != FINALIZER).collect());
    ns.spec = Some(spec);
    match call(
        "finalize namespace",
        api.replace_subresource("finalize", name, &PostParams::default(), &ns),
    )
    .await
    {
        Ok(_) => {
            tracing::info!(namespace = %name, "namespace: content removed; finalized");
            Ok(Outcome::Done)
        }
        Err(e) if e.is_not_found() => Ok(Outcome::Done),
        Err(e) => Err(e),
    }
}

/// Deletes every namespaced object in `namespace`, then counts what is left.
async fn delete_all_content(
    client: &kube::Client,
    served: &ServedResources,
    namespace: &str,
) -> ContentReport {
    let mut report = ContentReport::default();
    let resources: Vec<&ServedResource> =
        served.preferred().filter(|r| r.namespaced && r.supports("delete")).collect();
    for r in resources {
        let api: Api<MetaObject> = Api::namespaced_with(client.clone(), namespace, &r.resource);
        if let Err(e) = delete_content(&api, r).await {
            report.delete_errors.push(format!("{}: {e}", r.qualified_name()));
            continue;
        }
        if !r.supports("list") {
            continue;
        }
        match call("list", api.list(&ListParams::default())).await {
            Ok(list) => {
                if !list.items.is_empty() {
                    let key = format!("{}.{}", r.resource.plural, r.resource.group);
                    *report.remaining.entry(key).or_default() += list.items.len();
                }
                for item in &list.items {
                    for f in item.metadata.finalizers.iter().flatten() {
                        *report.finalizers.entry(f.clone()).or_default() += 1;
                    }
                }
            }
            Err(e) if matches!(e.status_code(), Some(404 | 405)) => {}
            Err(e) => report.delete_errors.push(format!("{}: {e}", r.qualified_name())),
        }
    }
    report
}

fn background() -> DeleteParams {
    DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    }
}

/// One resource's objects in the namespace: deletecollection, else list and delete each.
async fn delete_content(api: &Api<MetaObject>, r: &ServedResource) -> Result<(), Error> {
    if r.supports("deletecollection") {
        match call("deletecollection", api.delete_collection(&background(), &ListParams::default()))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if matches!(e.status_code(), Some(404 | 405)) => {}
            Err(e) => return Err(e),
        }
    }
    if !r.supports("list") {
        return Ok(());
    }
    let list = match call("list", api.list(&ListParams::default())).await {
        Ok(list) => list,
        Err(e) if matches!(e.status_code(), Some(404 | 405)) => return Ok(()),
        Err(e) => return Err(e),
    };
    for item in list.items {
        let Some(name) = item.metadata.name.as_deref() else { continue };
        if item.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match call("delete", api.delete(name, &background())).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
