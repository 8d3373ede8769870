//! The ServiceAccount controller (upstream's `serviceaccount` ServiceAccountsController):
//! every active namespace has a `default` ServiceAccount, created again when deleted.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use rudder_client::{Change, Context, Outcome, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};

#[derive(Clone, Debug)]
pub struct ServiceAccountConfig {
    /// The ServiceAccounts every namespace gets.
    pub service_accounts: Vec<String>,
    pub workers: usize,
}

impl Default for ServiceAccountConfig {
    fn default() -> Self {
        ServiceAccountConfig { service_accounts: vec!["default".into()], workers: 2 }
    }
}

/// Whether a namespace is active (not being deleted).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: ServiceAccountConfig, cancel: CancellationToken) {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = async { namespaces.wait_synced().await; accounts.wait_synced().await } => {}
    }
    let queue = WorkQueue::<String>::new();
    {
        let queue = queue.clone();
        namespaces.add_handler(move |change: &Change<Namespace>| {
            if let Change::Added(ns) | Change::Updated { new: ns, .. } = change {
                queue.add(ns.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    {
        let queue = queue.clone();
        let names = config.service_accounts.clone();
        accounts.add_handler(move |change: &Change<ServiceAccount>| {
            if let Change::Deleted(sa) = change
                && names.iter().any(|n| Some(n) == sa.metadata.name.as_ref())
            {
                queue.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        });
    }
    let client = ctx.client.clone();
    let names = config.service_accounts.clone();
    run_workers("serviceaccount", queue, config.workers, cancel, move |ns: String| {
        let (client, namespaces, accounts, names) =
            (client.clone(), namespaces.clone(), accounts.clone(), names.clone());
        async move {
            let Some(namespace) = namespaces.get("", &ns) else { return Ok(Outcome::Done) };
            if !is_active(&namespace) {
                return Ok(Outcome::Done);
            }
            for name in &names {
                if accounts.get(&ns, name).is_some() {
                    continue;
                }
                create(&client, &ns, name).await?;
            }
            Ok::<_, Error>(Outcome::Done)
        }
    })
    .await;
}

async fn create(client: &kube::Client, namespace: &str, name: &str) -> Result<(), Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa = ServiceAccount {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..ObjectMeta::default() },
        ..ServiceAccount::default()
    };
    match call("create serviceaccount", api.create(&PostParams::default(), &sa)).await {
        Ok(_) => {
            tracing::debug!(%namespace, %name, "serviceaccount created");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Ok(()),
        // The namespace went away or started terminating meanwhile.
        Err(e) if matches!(e.status_code(), Some(403 | 404)) => Ok(()),
        Err(e) => Err(e),
    }
}
