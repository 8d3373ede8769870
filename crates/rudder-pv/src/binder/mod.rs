//! The PersistentVolume controller (upstream's `persistentvolume-binder`): binds unbound
//! claims to matching Available volumes (or to the volume they or a volume's `claimRef`
//! name), keeps the phases of both (PV: Available, Bound, Released, Failed; PVC: Pending,
//! Bound, Lost), releases a volume whose claim went away and reclaims it by its policy
//! (Retain: stays Released; Delete: the object is deleted, or left to the provisioner that
//! made it), assigns the default class to class-less claims nothing matched, and for
//! `WaitForFirstConsumer` classes writes `volume.kubernetes.io/selected-node` once a pod
//! using the claim has a node, then binds to a volume usable there or hands the claim to
//! its class's provisioner (`volume.kubernetes.io/storage-provisioner`).
//!
//! Decisions are in [`plan`] (pure); this module maps informer changes to keys and carries
//! the decisions out.

pub mod plan;
mod write;

pub use write::claim_reference;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use rudder_client::{Change, Context, Informer, Outcome, Recorder, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use crate::fresh::Fresh;
use crate::matching;
use plan::{ClaimInputs, ClaimPlan, Consumer, Reclaim, VolumePlan};

/// The event source upstream's controller reports as.
pub const COMPONENT: &str = "persistentvolume-controller";

#[derive(Clone, Debug)]
pub struct BinderConfig {
    /// Workers over the one queue of claims and volumes. One (the default) keeps two
    /// claims from racing for one volume; conflicts are caught by resourceVersion anyway.
    pub workers: usize,
}

impl Default for BinderConfig {
    fn default() -> Self {
        BinderConfig { workers: 1 }
    }
}

/// What the queue holds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    Claim { namespace: String, name: String },
    Volume(String),
}

fn claim_key(namespace: &str, name: &str) -> Key {
    Key::Claim { namespace: namespace.to_owned(), name: name.to_owned() }
}

struct Binder {
    client: kube::Client,
    ctx: Context,
    claims: Arc<Fresh<PersistentVolumeClaim>>,
    volumes: Arc<Fresh<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    recorder: Recorder,
    queue: Arc<WorkQueue<Key>>,
}

fn pod_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Queues every claim not bound yet (a new volume or class may serve it).
fn queue_unbound_claims(queue: &WorkQueue<Key>, claims: &Informer<PersistentVolumeClaim>) {
    for c in claims.list() {
        let done = c
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(crate::ANN_BIND_COMPLETED));
        if !done {
            queue.add(claim_key(
                c.metadata.namespace.as_deref().unwrap_or(""),
                c.metadata.name.as_deref().unwrap_or(""),
            ));
        }
    }
}

fn register_handlers(b: &Arc<Binder>) {
    let queue = b.queue.clone();
    let (claims, volumes) = (b.claims.clone(), b.volumes.clone());
    b.claims.informer().add_handler(move |change: &Change<PersistentVolumeClaim>| {
        let c = change.object();
        let (ns, name) = (
            c.metadata.namespace.as_deref().unwrap_or(""),
            c.metadata.name.as_deref().unwrap_or(""),
        );
        queue.add(claim_key(ns, name));
        if let Change::Deleted(_) = change {
            claims.deleted(&(ns.to_owned(), name.to_owned()));
            if let Some(v) = c.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                queue.add(Key::Volume(v.to_owned()));
            }
            for pv in volumes.informer().list() {
                let r = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
                if r.is_some_and(|r| {
                    r.namespace.as_deref() == Some(ns) && r.name.as_deref() == Some(name)
                }) {
                    queue.add(Key::Volume(pv.metadata.name.clone().unwrap_or_default()));
                }
            }
        }
    });
    let queue = b.queue.clone();
    let (claims, volumes) = (b.claims.clone(), b.volumes.clone());
    b.volumes.informer().add_handler(move |change: &Change<PersistentVolume>| {
        let pv = change.object();
        let name = pv.metadata.name.clone().unwrap_or_default();
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        if let Some(r) = claim_ref {
            queue.add(claim_key(
                r.namespace.as_deref().unwrap_or(""),
                r.name.as_deref().unwrap_or(""),
            ));
        }
        match change {
            Change::Deleted(_) => volumes.deleted(&(String::new(), name)),
            _ => {
                queue.add(Key::Volume(name));
                if claim_ref.is_none() {
                    queue_unbound_claims(&queue, claims.informer());
                }
            }
        }
    });
    let queue = b.queue.clone();
    let claims = b.claims.clone();
    b.classes.add_handler(move |_: &Change<StorageClass>| {
        queue_unbound_claims(&queue, claims.informer());
    });
    let queue = b.queue.clone();
    b.pods.add_handler(move |change: &Change<Pod>| {
        let relevant = match change {
            Change::Added(_) => true,
            Change::Updated { old, new } => pod_node(old) != pod_node(new),
            Change::Deleted(_) => false,
        };
        let pod = change.object();
        if relevant {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            for claim in matching::pod_claim_names(pod) {
                queue.add(claim_key(ns, claim));
            }
        }
    });
}

/// Runs the controller until `cancel`.
pub async fn run(ctx: Context, config: BinderConfig, cancel: CancellationToken) {
    let informers = &ctx.informers;
    let (claims, volumes) =
        (informers.get::<PersistentVolumeClaim>(), informers.get::<PersistentVolume>());
    let (classes, pods, nodes) =
        (informers.get::<StorageClass>(), informers.get::<Pod>(), informers.get::<Node>());
    let synced = async {
        claims.wait_synced().await;
        volumes.wait_synced().await;
        classes.wait_synced().await;
        pods.wait_synced().await;
        nodes.wait_synced().await;
    };
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = synced => {}
    }
    let binder = Arc::new(Binder {
        client: ctx.client.clone(),
        recorder: ctx.recorder(COMPONENT),
        ctx: ctx.clone(),
        claims: Fresh::new(claims),
        volumes: Fresh::new(volumes),
        classes,
        pods,
        nodes,
        queue: WorkQueue::new(),
    });
    register_handlers(&binder);
    let queue = binder.queue.clone();
    run_workers("persistentvolume-binder", queue, config.workers, cancel, move |key: Key| {
        let binder = binder.clone();
        async move { binder.sync(key).await }
    })
    .await;
}

impl Binder {
    async fn sync(&self, key: Key) -> Result<Outcome, Error> {
        match key {
            Key::Claim { namespace, name } => self.sync_claim(&namespace, &name).await?,
            Key::Volume(name) => self.sync_volume(&name).await?,
        }
        Ok(Outcome::Done)
    }

    fn consumers(&self, claim: &PersistentVolumeClaim) -> Vec<Consumer> {
        let ns = claim.metadata.namespace.as_deref().unwrap_or("");
        let name = claim.metadata.name.as_deref().unwrap_or("");
        self.pods
            .list_namespace(ns)
            .iter()
            .filter(|p| !pod_finished(p) && matching::pod_claim_names(p).any(|c| c == name))
            .map(|p| Consumer {
                pod: p.metadata.name.clone().unwrap_or_default(),
                node: pod_node(p).map(str::to_owned),
            })
            .collect()
    }

    async fn sync_claim(&self, namespace: &str, name: &str) -> Result<(), Error> {
        let Some(claim) = self.claims.get(namespace, name) else { return Ok(()) };
        let bind_completed = claim
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(crate::ANN_BIND_COMPLETED));
        let plan = if bind_completed {
            let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            let volume =
                volume_name.filter(|v| !v.is_empty()).and_then(|v| self.volumes.get("", v));
            plan::bound_claim(&claim, volume.as_ref())
        } else {
            let volumes = self.volumes.list();
            let class_name = matching::claim_class(&claim);
            let class = if class_name.is_empty() { None } else { self.classes.get("", class_name) };
            let classes = self.classes.list();
            let default_class =
                matching::default_class(&classes).and_then(|c| c.metadata.name.clone());
            let consumers = self.consumers(&claim);
            let node = matching::selected_node(&claim).and_then(|n| self.nodes.get("", n));
            let inputs = ClaimInputs {
                volumes: &volumes,
                class: class.as_deref(),
                default_class: default_class.as_deref(),
                consumers: &consumers,
                node_labels: node.as_ref().and_then(|n| n.metadata.labels.as_ref()),
            };
            plan::unbound_claim(&claim, inputs)
        };
        tracing::debug!(claim = %format!("{namespace}/{name}"), ?plan, "claim sync");
        self.carry_out_claim(claim, plan).await
    }

    async fn carry_out_claim(
        &self,
        claim: Arc<PersistentVolumeClaim>,
        plan: ClaimPlan,
    ) -> Result<(), Error> {
        match plan {
            ClaimPlan::Bind(pv) => self.bind(pv, claim).await,
            ClaimPlan::AssignClass(class) => {
                let mut new = (*claim).clone();
                new.spec.get_or_insert_default().storage_class_name = Some(class);
                self.replace_claim(new).await.map(drop)
            }
            ClaimPlan::SelectNode(node) => {
                let mut new = (*claim).clone();
                new.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(crate::ANN_SELECTED_NODE.to_owned(), node);
                self.replace_claim(new).await.map(drop)
            }
            ClaimPlan::Provision { provisioner } => {
                let annotations = claim.metadata.annotations.clone().unwrap_or_default();
                let claim = if annotations.get(crate::ANN_STORAGE_PROVISIONER) != Some(&provisioner)
                    || annotations.get(crate::ANN_BETA_STORAGE_PROVISIONER) != Some(&provisioner)
                {
                    let mut new = (*claim).clone();
                    let a = new.metadata.annotations.get_or_insert_default();
                    a.insert(crate::ANN_STORAGE_PROVISIONER.to_owned(), provisioner.clone());
                    a.insert(crate::ANN_BETA_STORAGE_PROVISIONER.to_owned(), provisioner.clone());
                    self.replace_claim(new).await?
                } else {
                    claim
                };
                self.recorder.event(
                    &*claim,
                    rudder_client::EventType::Normal,
                    "ExternalProvisioning",
                    format!(
                        "Waiting for a volume to be created either by the external provisioner \
                         '{provisioner}' or manually by the system administrator. If volume \
                         creation is delayed, please verify that the provisioner is running and \
                         correctly registered."
                    ),
                );
                self.update_claim_status(claim, "Pending", None).await.map(drop)
            }
            ClaimPlan::Pending(ev) => {
                if let Some(ev) = ev {
                    self.recorder.event(&*claim, ev.kind, ev.reason, ev.message);
                }
                self.update_claim_status(claim, "Pending", None).await.map(drop)
            }
            ClaimPlan::Lost(ev) => {
                if claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
                    return Ok(());
                }
                let claim = self.update_claim_status(claim, "Lost", None).await?;
                self.recorder.event(&*claim, ev.kind, ev.reason, ev.message);
                Ok(())
            }
        }
    }

    async fn sync_volume(&self, name: &str) -> Result<(), Error> {
        let Some(pv) = self.volumes.get("", name) else { return Ok(()) };
        let mut claim = None;
        if let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
            && r.uid.as_deref().is_some_and(|u| !u.is_empty())
        {
            let (ns, claim_name) =
                (r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or(""));
            claim = self.claims.get(ns, claim_name);
            let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
            if claim.is_none() && phase != "Released" && phase != "Failed" {
                // The cache may lag (a claim just created): ask the API before releasing.
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
                claim =
                    call("get persistentvolumeclaim", api.get_opt(claim_name)).await?.map(Arc::new);
            }
        }
        let plan = plan::volume(&pv, claim.as_deref());
        tracing::debug!(volume = %name, ?plan, "volume sync");
        match plan {
            VolumePlan::Phase(phase) => self.update_volume_phase(pv, phase, None).await.map(drop),
            VolumePlan::SyncClaim { namespace, name } => {
                self.queue.add(Key::Claim { namespace, name });
                Ok(())
            }
            VolumePlan::Release(reclaim) => {
                let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
                let pv = if phase != "Released" && phase != "Failed" {
                    self.update_volume_phase(pv, "Released", None).await?
                } else {
                    pv
                };
                match reclaim {
                    Reclaim::Keep | Reclaim::External => Ok(()),
                    Reclaim::DeleteObject => self.delete_volume(&pv).await,
                    Reclaim::Fail(ev) => {
                        let pv = self
                            .update_volume_phase(pv, "Failed", Some(ev.message.clone()))
                            .await?;
                        self.recorder.event(&*pv, ev.kind, ev.reason, ev.message);
                        Ok(())
                    }
                }
            }
            VolumePlan::Unbind { keep_claim_ref } => {
                let mut new = (*pv).clone();
                if let Some(spec) = new.spec.as_mut() {
                    if keep_claim_ref {
                        if let Some(r) = spec.claim_ref.as_mut() {
                            r.uid = None;
                        }
                    } else {
                        spec.claim_ref = None;
                    }
                }
                if let Some(a) = new.metadata.annotations.as_mut() {
                    a.remove(crate::ANN_BOUND_BY_CONTROLLER);
                }
                let pv = self.replace_volume(new).await?;
                self.update_volume_phase(pv, "Available", None).await.map(drop)
            }
        }
    }
}
