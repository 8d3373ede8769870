//! The `rudder.dev/local-path` provisioner (after rancher's local-path-provisioner): for a
//! claim of a class with this provisioner that has its node (`volume.kubernetes.io/selected-node`,
//! written once a consuming pod has a node), it creates PersistentVolume `pvc-<claim uid>`:
//! a `hostPath` (`DirectoryOrCreate`) directory `<dir>/pvc-<uid>_<namespace>_<name>` on that
//! node, pinned to it by required node affinity, with the claim's size and access modes and
//! the class's reclaim policy, pre-bound to the claim (the binder finishes the binding).
//! `<dir>` is the node's `rudder.dev/local-path-dir` annotation, else
//! `/var/lib/rudder/storage`. The kubelet creates the directory when it mounts the volume.
//!
//! [`run_node_reclaimer`] runs on each node and deletes released volumes of this node with
//! reclaim policy Delete: first the directory, then the PersistentVolume.

mod reclaimer;

pub use reclaimer::{reclaimable_dir, run_node_reclaimer};

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use rudder_client::{Change, Context, EventType, Informer, Outcome, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::binder::plan::Ev;
use crate::error::{Error, call};
use crate::matching;
use crate::{
    ANN_LOCAL_PATH_DIR, ANN_LOCAL_PATH_NODE, ANN_PROVISIONED_BY, DEFAULT_LOCAL_PATH_DIR,
    LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER,
};

#[derive(Clone, Debug)]
pub struct LocalPathConfig {
    /// The provisioner name classes must carry.
    pub provisioner: String,
    /// The directory on nodes that do not publish `rudder.dev/local-path-dir`.
    pub default_dir: String,
    pub workers: usize,
}

impl Default for LocalPathConfig {
    fn default() -> Self {
        LocalPathConfig {
            provisioner: LOCAL_PATH_PROVISIONER.to_owned(),
            default_dir: DEFAULT_LOCAL_PATH_DIR.to_owned(),
            workers: 2,
        }
    }
}

/// The volume's name for a claim.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.metadata.uid.as_deref().unwrap_or(""))
}

/// What to do about one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ProvisionPlan {
    /// Not ours, not yet, or done already.
    Nothing,
    /// Create this volume.
    Create(Box<PersistentVolume>),
    /// The claim cannot be served (a `ProvisioningFailed` event).
    Fail(Ev),
}

fn fail(message: impl Into<String>) -> ProvisionPlan {
    ProvisionPlan::Fail(Ev {
        kind: EventType::Warning,
        reason: "ProvisioningFailed",
        message: message.into(),
    })
}

/// Decides about one claim, given its class, its node (when selected and known) and whether
/// its volume exists already.
pub fn plan(
    config: &LocalPathConfig,
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    node: Option<&Node>,
    volume_exists: bool,
) -> ProvisionPlan {
    let Some(class) = class.filter(|c| c.provisioner == config.provisioner) else {
        return ProvisionPlan::Nothing;
    };
    let spec = claim.spec.clone().unwrap_or_default();
    if claim.metadata.deletion_timestamp.is_some()
        || spec.volume_name.as_deref().is_some_and(|v| !v.is_empty())
        || volume_exists
    {
        return ProvisionPlan::Nothing;
    }
    let Some(node_name) = matching::selected_node(claim) else {
        if matching::is_delay_binding(Some(class)) {
            // Waits for its first consumer.
            return ProvisionPlan::Nothing;
        }
        return fail("configuration error, no node was specified");
    };
    if spec.selector.is_some() {
        return fail("claim Selector is not supported");
    }
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.is_empty() || modes.iter().any(|m| m != "ReadWriteOnce" && m != "ReadWriteOncePod") {
        return fail("NodePath only supports ReadWriteOnce and ReadWriteOncePod access modes");
    }
    if spec.volume_mode.as_deref().is_some_and(|m| m != "Filesystem") {
        return fail(format!(
            "volumeMode {:?} is not supported, only Filesystem",
            spec.volume_mode.as_deref().unwrap_or("")
        ));
    }
    let Some(request) = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
    else {
        return fail("claim has no storage request");
    };
    // The node may not be in the cache yet: go with what its name says.
    let labels = node.and_then(|n| n.metadata.labels.clone()).unwrap_or_default();
    let hostname = labels.get(LABEL_HOSTNAME).cloned().unwrap_or_else(|| node_name.to_owned());
    let dir = node
        .and_then(|n| n.metadata.annotations.as_ref())
        .and_then(|a| a.get(ANN_LOCAL_PATH_DIR))
        .filter(|d| d.starts_with('/'))
        .map(|d| d.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| config.default_dir.trim_end_matches('/').to_owned());
    let name = volume_name(claim);
    let path = format!(
        "{dir}/{name}_{}_{}",
        claim.metadata.namespace.as_deref().unwrap_or(""),
        claim.metadata.name.as_deref().unwrap_or("")
    );
    let pv = PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some(BTreeMap::from([
                (ANN_PROVISIONED_BY.to_owned(), config.provisioner.clone()),
                (ANN_LOCAL_PATH_NODE.to_owned(), node_name.to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: Some(modes),
            capacity: Some(BTreeMap::from([("storage".to_owned(), request)])),
            claim_ref: Some(crate::binder::claim_reference(claim)),
            host_path: Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: LABEL_HOSTNAME.to_owned(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class.reclaim_policy.clone().unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: Some("Filesystem".into()),
            mount_options: class.mount_options.clone(),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    };
    ProvisionPlan::Create(Box::new(pv))
}

/// Runs the provisioner until `cancel`.
pub async fn run(ctx: Context, config: LocalPathConfig, cancel: CancellationToken) {
    let informers = &ctx.informers;
    let claims = informers.get::<PersistentVolumeClaim>();
    let volumes = informers.get::<PersistentVolume>();
    let classes = informers.get::<StorageClass>();
    let nodes = informers.get::<Node>();
    let synced = async {
        claims.wait_synced().await;
        volumes.wait_synced().await;
        classes.wait_synced().await;
        nodes.wait_synced().await;
    };
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = synced => {}
    }
    let queue = WorkQueue::<(String, String)>::new();
    {
        let queue = queue.clone();
        claims.add_handler(move |change: &Change<PersistentVolumeClaim>| {
            if !matches!(change, Change::Deleted(_)) {
                let c = change.object();
                queue.add((
                    c.metadata.namespace.clone().unwrap_or_default(),
                    c.metadata.name.clone().unwrap_or_default(),
                ));
            }
        });
    }
    {
        let (queue, claims) = (queue.clone(), claims.clone());
        classes.add_handler(move |_: &Change<StorageClass>| queue_pending(&queue, &claims));
    }
    {
        // A volume deleted while its claim still waits: make it again.
        let queue = queue.clone();
        volumes.add_handler(move |change: &Change<PersistentVolume>| {
            if let Change::Deleted(pv) = change
                && let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref())
            {
                queue.add((
                    r.namespace.clone().unwrap_or_default(),
                    r.name.clone().unwrap_or_default(),
                ));
            }
        });
    }
    let recorder = ctx.recorder(&config.provisioner);
    let client = ctx.client.clone();
    let config = Arc::new(config);
    let workers = config.workers;
    run_workers("local-path-provisioner", queue, workers, cancel, move |(ns, name)| {
        let (client, recorder, config) = (client.clone(), recorder.clone(), config.clone());
        let (claims, volumes, classes, nodes) =
            (claims.clone(), volumes.clone(), classes.clone(), nodes.clone());
        async move {
            let Some(claim) = claims.get(&ns, &name) else { return Ok(Outcome::Done) };
            let class_name = matching::claim_class(&claim);
            let class = if class_name.is_empty() { None } else { classes.get("", class_name) };
            let node = matching::selected_node(&claim).and_then(|n| nodes.get("", n));
            let exists = volumes.get("", &volume_name(&claim)).is_some();
            match plan(&config, &claim, class.as_deref(), node.as_deref(), exists) {
                ProvisionPlan::Nothing => {}
                ProvisionPlan::Fail(ev) => recorder.event(&*claim, ev.kind, ev.reason, ev.message),
                ProvisionPlan::Create(pv) => {
                    recorder.event(
                        &*claim,
                        EventType::Normal,
                        "Provisioning",
                        format!("External provisioner is provisioning volume for claim \"{ns}/{name}\""),
                    );
                    let pv_name = pv.metadata.name.clone().unwrap_or_default();
                    let api: Api<PersistentVolume> = Api::all(client.clone());
                    match call("create persistentvolume", api.create(&PostParams::default(), &pv)).await {
                        Ok(_) => {}
                        Err(e) if e.is_already_exists() => {}
                        Err(e) => {
                            recorder.event(
                                &*claim,
                                EventType::Warning,
                                "ProvisioningFailed",
                                format!("failed to provision volume: {e}"),
                            );
                            return Err(e);
                        }
                    }
                    tracing::info!(claim = %format!("{ns}/{name}"), volume = %pv_name, "local-path volume provisioned");
                    recorder.event(
                        &*claim,
                        EventType::Normal,
                        "ProvisioningSucceeded",
                        format!("Successfully provisioned volume {pv_name}"),
                    );
                }
            }
            Ok::<_, Error>(Outcome::Done)
        }
    })
    .await;
}

fn queue_pending(queue: &WorkQueue<(String, String)>, claims: &Informer<PersistentVolumeClaim>) {
    for c in claims.list() {
        if c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_none_or(str::is_empty) {
            queue.add((
                c.metadata.namespace.clone().unwrap_or_default(),
                c.metadata.name.clone().unwrap_or_default(),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
