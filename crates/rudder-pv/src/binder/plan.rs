//! The binder's decisions, pure: what to do next with a claim or a volume given what the
//! caches hold (upstream's syncUnboundClaim, syncBoundClaim and syncVolume, minus the I/O).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_client::EventType;

use crate::matching::{self, NodeRef};
use crate::{ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY};

/// An event to record with a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ev {
    pub kind: EventType,
    pub reason: &'static str,
    pub message: String,
}

impl Ev {
    fn normal(reason: &'static str, message: impl Into<String>) -> Ev {
        Ev { kind: EventType::Normal, reason, message: message.into() }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Ev {
        Ev { kind: EventType::Warning, reason, message: message.into() }
    }
}

pub const MSG_WAIT_FOR_FIRST_CONSUMER: &str =
    "waiting for first consumer to be created before binding";
pub const MSG_NO_CLASS: &str =
    "no persistent volumes available for this claim and no storage class is set";

/// A pod that uses a claim: its name and the node it is on, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub pod: String,
    pub node: Option<String>,
}

/// What the caches say around an unbound claim.
#[derive(Clone, Copy, Debug)]
pub struct ClaimInputs<'a> {
    pub volumes: &'a [Arc<PersistentVolume>],
    /// The claim's StorageClass, if it names one that exists.
    pub class: Option<&'a StorageClass>,
    /// The default class's name, if there is one.
    pub default_class: Option<&'a str>,
    /// The pods using the claim (not finished), by name.
    pub consumers: &'a [Consumer],
    /// The labels of the claim's selected node, when it has one and the node is known.
    pub node_labels: Option<&'a BTreeMap<String, String>>,
}

/// The next step for a claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimPlan {
    /// Bind the claim and this volume to each other (finishing whatever part is missing).
    Bind(Arc<PersistentVolume>),
    /// Give the claim the default class (retroactive default class assignment).
    AssignClass(String),
    /// Record the node the claim's first consumer runs on.
    SelectNode(String),
    /// Ask `provisioner` for a volume (annotations on the claim), then wait.
    Provision { provisioner: String },
    /// Keep (or make) the claim Pending.
    Pending(Option<Ev>),
    /// Mark the claim Lost.
    Lost(Ev),
}

/// An unbound claim (no `bind-completed` annotation).
pub fn unbound_claim(claim: &PersistentVolumeClaim, inputs: ClaimInputs<'_>) -> ClaimPlan {
    let requested = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if !requested.is_empty() {
        return requested_volume(claim, requested, inputs.volumes);
    }
    let delay = matching::is_delay_binding(inputs.class);
    let selected = matching::selected_node(claim);
    let fallback_labels;
    let node = match (delay, selected) {
        (true, Some(name)) => {
            let labels = match inputs.node_labels {
                Some(l) => l,
                None => {
                    fallback_labels =
                        BTreeMap::from([(crate::LABEL_HOSTNAME.to_owned(), name.to_owned())]);
                    &fallback_labels
                }
            };
            Some(NodeRef { name, labels })
        }
        _ => None,
    };
    if let Some(pv) = matching::find_best_match(claim, inputs.volumes, delay, node) {
        return ClaimPlan::Bind(pv.clone());
    }
    if !matching::claim_has_class(claim)
        && let Some(default) = inputs.default_class
    {
        return ClaimPlan::AssignClass(default.to_owned());
    }
    if delay && selected.is_none() {
        let mut scheduled: Vec<&Consumer> =
            inputs.consumers.iter().filter(|c| c.node.is_some()).collect();
        scheduled.sort_by(|a, b| a.pod.cmp(&b.pod));
        if let Some(node) = scheduled.first().and_then(|c| c.node.clone()) {
            return ClaimPlan::SelectNode(node);
        }
        let mut waiting: Vec<&str> = inputs.consumers.iter().map(|c| c.pod.as_str()).collect();
        waiting.sort_unstable();
        let ev = match waiting.as_slice() {
            [] => Ev::normal("WaitForFirstConsumer", MSG_WAIT_FOR_FIRST_CONSUMER),
            [one] => {
                Ev::normal("WaitForPodScheduled", format!("waiting for pod {one} to be scheduled"))
            }
            many => Ev::normal(
                "WaitForPodScheduled",
                format!("waiting for pods {} to be scheduled", many.join(",")),
            ),
        };
        return ClaimPlan::Pending(Some(ev));
    }
    let class = matching::claim_class(claim);
    if !class.is_empty() {
        return match inputs.class {
            Some(sc) => ClaimPlan::Provision { provisioner: sc.provisioner.clone() },
            None => ClaimPlan::Pending(Some(Ev::warning(
                "ProvisioningFailed",
                format!("storageclass.storage.k8s.io {class:?} not found"),
            ))),
        };
    }
    ClaimPlan::Pending(Some(Ev::normal("FailedBinding", MSG_NO_CLASS)))
}

/// A claim that names its volume (`spec.volumeName`) but is not bound yet.
fn requested_volume(
    claim: &PersistentVolumeClaim,
    name: &str,
    volumes: &[Arc<PersistentVolume>],
) -> ClaimPlan {
    let Some(pv) = volumes.iter().find(|v| v.metadata.name.as_deref() == Some(name)) else {
        return ClaimPlan::Pending(None);
    };
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claim_ref.is_none() {
        return match matching::check_volume_satisfies_claim(pv, claim) {
            Ok(()) => ClaimPlan::Bind(pv.clone()),
            Err(why) => ClaimPlan::Pending(Some(Ev::warning(
                "VolumeMismatch",
                format!("Cannot bind to requested volume {name:?}: {why}"),
            ))),
        };
    }
    if matching::is_volume_bound_to_claim(pv, claim) {
        return ClaimPlan::Bind(pv.clone());
    }
    ClaimPlan::Pending(Some(Ev::warning(
        "FailedBinding",
        format!("volume {name:?} already bound to a different claim."),
    )))
}

/// A claim whose binding completed once.
pub fn bound_claim(
    claim: &PersistentVolumeClaim,
    volume: Option<&Arc<PersistentVolume>>,
) -> ClaimPlan {
    let name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if name.is_empty() {
        return ClaimPlan::Lost(Ev::warning(
            "ClaimLost",
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        ));
    }
    let Some(pv) = volume else {
        return ClaimPlan::Lost(Ev::warning(
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
        ));
    };
    match pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        None => ClaimPlan::Bind(pv.clone()),
        Some(_) if matching::is_volume_bound_to_claim(pv, claim) => ClaimPlan::Bind(pv.clone()),
        Some(_) => ClaimPlan::Lost(Ev::warning(
            "ClaimMisbound",
            "Two claims are bound to the same volume, this one is bound incorrectly",
        )),
    }
}

/// What to do when a released volume is reclaimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reclaim {
    /// Retain: the volume stays Released until an administrator acts.
    Keep,
    /// Delete the PersistentVolume object.
    DeleteObject,
    /// Another component (the provisioner that made it) deletes it.
    External,
    /// Not supported: mark the volume Failed with this event.
    Fail(Ev),
}

/// The next step for a volume.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumePlan {
    /// Set the phase (no-op when it is already so).
    Phase(&'static str),
    /// Its claim is gone: Released (unless Released or Failed already), then reclaim.
    Release(Reclaim),
    /// The claim's sync finishes the binding.
    SyncClaim { namespace: String, name: String },
    /// Undo a binding the claim does not share (`keep_claim_ref`: the user pre-bound it,
    /// so only the uid goes).
    Unbind { keep_claim_ref: bool },
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref()).unwrap_or("Retain")
}

fn annotated(pv: &PersistentVolume, key: &str) -> bool {
    pv.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(key))
}

fn reclaim(pv: &PersistentVolume) -> Reclaim {
    match reclaim_policy(pv) {
        "Retain" => Reclaim::Keep,
        "Delete" if annotated(pv, ANN_PROVISIONED_BY) => Reclaim::External,
        "Delete" => Reclaim::DeleteObject,
        other => Reclaim::Fail(Ev::warning(
            "VolumeFailedRecycle",
            format!("reclaim policy {other:?} is not supported"),
        )),
    }
}

/// A volume, with the claim its `claimRef` names if that claim exists with the same uid.
pub fn volume(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumePlan {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return VolumePlan::Phase("Available");
    };
    let uid = r.uid.as_deref().unwrap_or("");
    if uid.is_empty() {
        // Pre-bound by the user; the claim's sync binds it.
        return VolumePlan::Phase("Available");
    }
    let claim = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid));
    let Some(claim) = claim else {
        return VolumePlan::Release(reclaim(pv));
    };
    let bound_to = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("");
    if bound_to.is_empty() {
        return VolumePlan::SyncClaim {
            namespace: claim.metadata.namespace.clone().unwrap_or_default(),
            name: claim.metadata.name.clone().unwrap_or_default(),
        };
    }
    if Some(bound_to) == pv.metadata.name.as_deref() {
        return VolumePlan::Phase("Bound");
    }
    if annotated(pv, ANN_PROVISIONED_BY) && reclaim_policy(pv) == "Delete" {
        return VolumePlan::Release(Reclaim::External);
    }
    VolumePlan::Unbind { keep_claim_ref: !annotated(pv, ANN_BOUND_BY_CONTROLLER) }
}

#[cfg(test)]
mod tests;
