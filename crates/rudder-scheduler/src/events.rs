//! What the scheduling loop reacts to: informer changes (turned into [`Input`]s by handlers
//! that only enqueue), binding results, and which plugins a change may satisfy.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use rudder_client::Context;
use rudder_client::informer::Change;
use tokio::sync::mpsc;

use crate::filters::Plugin;
use crate::node_info::NodeFacts;
use crate::pod_info::PodInfo;

/// What the loop reacts to.
#[derive(Debug)]
pub(crate) enum Input {
    Node(Arc<Node>),
    NodeDeleted(Arc<Node>),
    Pod {
        old: Option<Arc<Pod>>,
        new: Arc<Pod>,
    },
    PodDeleted(Arc<Pod>),
    PriorityClass(Arc<PriorityClass>),
    PriorityClassDeleted(Arc<PriorityClass>),
    Namespace(Arc<Namespace>),
    NamespaceDeleted(Arc<Namespace>),
    Bound {
        pod: Arc<PodInfo>,
        node: Arc<str>,
        result: Result<(), String>,
    },
    /// A PersistentVolumeClaim, PersistentVolume or StorageClass changed.
    Volumes,
}

pub(crate) const ALL_PLUGINS: u16 = u16::MAX;
/// Plugins a departing bound pod may satisfy.
pub(crate) const POD_GONE_PLUGINS: u16 = (1 << Plugin::NodeResourcesFit as u16)
    | (1 << Plugin::NodePorts as u16)
    | (1 << Plugin::InterPodAffinity as u16)
    | (1 << Plugin::PodTopologySpread as u16);
/// Plugins a newly bound pod may satisfy (affinity to it, spreading).
pub(crate) const POD_ADDED_PLUGINS: u16 =
    (1 << Plugin::InterPodAffinity as u16) | (1 << Plugin::PodTopologySpread as u16);
/// The most events applied before the next cycle gets a turn.
pub(crate) const DRAIN_BATCH: usize = 4096;

pub(crate) fn register_handlers(ctx: &Context, tx: &mpsc::UnboundedSender<Input>) {
    let t = tx.clone();
    ctx.informers.get::<Node>().add_handler(move |c: &Change<Node>| {
        let _ = t.send(match c {
            Change::Added(n) | Change::Updated { new: n, .. } => Input::Node(n.clone()),
            Change::Deleted(n) => Input::NodeDeleted(n.clone()),
        });
    });
    let t = tx.clone();
    ctx.informers.get::<Pod>().add_handler(move |c: &Change<Pod>| {
        let _ = t.send(match c {
            Change::Added(p) => Input::Pod { old: None, new: p.clone() },
            Change::Updated { old, new } => Input::Pod { old: Some(old.clone()), new: new.clone() },
            Change::Deleted(p) => Input::PodDeleted(p.clone()),
        });
    });
    let t = tx.clone();
    ctx.informers.get::<PriorityClass>().add_handler(move |c: &Change<PriorityClass>| {
        let _ = t.send(match c {
            Change::Added(p) | Change::Updated { new: p, .. } => Input::PriorityClass(p.clone()),
            Change::Deleted(p) => Input::PriorityClassDeleted(p.clone()),
        });
    });
    let t = tx.clone();
    ctx.informers.get::<PersistentVolumeClaim>().add_handler(move |_: &Change<_>| {
        let _ = t.send(Input::Volumes);
    });
    let t = tx.clone();
    ctx.informers.get::<PersistentVolume>().add_handler(move |_: &Change<_>| {
        let _ = t.send(Input::Volumes);
    });
    let t = tx.clone();
    ctx.informers.get::<StorageClass>().add_handler(move |_: &Change<_>| {
        let _ = t.send(Input::Volumes);
    });
    let t = tx.clone();
    ctx.informers.get::<Namespace>().add_handler(move |c: &Change<Namespace>| {
        let _ = t.send(match c {
            Change::Added(n) | Change::Updated { new: n, .. } => Input::Namespace(n.clone()),
            Change::Deleted(n) => Input::NamespaceDeleted(n.clone()),
        });
    });
}

pub(crate) fn uid_of(pod: &Pod) -> Arc<str> {
    match &pod.metadata.uid {
        Some(u) if !u.is_empty() => Arc::from(u.as_str()),
        _ => Arc::from(
            format!(
                "{}/{}",
                pod.metadata.namespace.as_deref().unwrap_or(""),
                pod.metadata.name.as_deref().unwrap_or("")
            )
            .as_str(),
        ),
    }
}

pub(crate) fn assigned_node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

pub(crate) fn finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Whether an update could change where (or whether) the pod fits: spec or labels, not
/// status (so our own condition patches do not requeue it).
pub(crate) fn spec_changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
}

pub(crate) fn facts_plugins(old: &NodeFacts, new: &NodeFacts) -> u16 {
    let mut bits = 0;
    if old.allocatable != new.allocatable || old.allowed_pods != new.allowed_pods {
        bits |= Plugin::NodeResourcesFit.bit();
    }
    if old.labels != new.labels {
        bits |= Plugin::NodeAffinity.bit()
            | Plugin::VolumeBinding.bit()
            | Plugin::PodTopologySpread.bit()
            | Plugin::InterPodAffinity.bit();
    }
    if old.taints != new.taints {
        bits |= Plugin::TaintToleration.bit() | Plugin::PodTopologySpread.bit();
    }
    if old.unschedulable != new.unschedulable {
        bits |= Plugin::NodeUnschedulable.bit();
    }
    bits
}
