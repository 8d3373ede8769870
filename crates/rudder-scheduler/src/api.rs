//! The scheduler's writes, each in a background task with a timeout: bindings (whose result
//! comes back to the loop), PodScheduled=False conditions and nominations, and preemption
//! victims (DisruptionTarget condition, delete, `Preempted` event).

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use rudder_client::objects::pod_condition;
use rudder_client::{Context, EventType, Recorder};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::SchedulerConfig;
use crate::events::Input;
use crate::pod_info::PodInfo;

/// Upstream's limit on a FailedScheduling message.
const MESSAGE_LIMIT: usize = 1024;

/// What to do with `status.nominatedNodeName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NominatedNode {
    Keep,
    Set(String),
    Clear,
}

/// Cuts a message to upstream's limit, marking the cut with ` ...`.
pub fn truncate_message(msg: String) -> String {
    if msg.len() <= MESSAGE_LIMIT {
        return msg;
    }
    let mut end = MESSAGE_LIMIT - 4;
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} ...", &msg[..end])
}

fn pods(ctx: &Context, namespace: &str) -> Api<Pod> {
    Api::namespaced(ctx.client.clone(), namespace)
}

/// Binds in the background; the result comes back as [`Input::Bound`].
pub(crate) fn bind(
    ctx: &Context,
    config: &SchedulerConfig,
    pod: Arc<PodInfo>,
    node: Arc<str>,
    tx: mpsc::UnboundedSender<Input>,
) {
    let api = pods(ctx, &pod.namespace);
    let timeout = config.api_timeout;
    tokio::spawn(async move {
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name.to_string()),
                namespace: Some(pod.namespace.to_string()),
                uid: pod.pod.metadata.uid.clone(),
                ..ObjectMeta::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.to_string()),
                ..ObjectReference::default()
            },
        };
        let params = PostParams::default();
        let call =
            api.create_subresource::<Binding, Value>("binding", &pod.name, &params, &binding);
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("binding timed out after {timeout:?}")),
        };
        let _ = tx.send(Input::Bound { pod, node, result });
    });
}

async fn patch_status(api: Api<Pod>, name: String, body: Value, timeout: std::time::Duration) {
    let params = PatchParams::default();
    let patch = Patch::Strategic(&body);
    let call = api.patch_status(&name, &params, &patch);
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(pod = %name, error = %e, "patching pod status failed"),
        Err(_) => tracing::debug!(pod = %name, "patching pod status timed out"),
    }
}

/// PodScheduled=False reason for pods no node fits.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
/// PodScheduled=False reason for pods with scheduling gates.
pub const REASON_SCHEDULING_GATED: &str = "SchedulingGated";
pub const MSG_SCHEDULING_GATED: &str = "Scheduling is blocked due to non-empty scheduling gates";

/// The status patch setting PodScheduled=False with `reason` and `message` (and the
/// nomination), or `None` when the pod already says so.
pub fn unschedulable_patch(
    pod: &Pod,
    reason: &str,
    message: &str,
    nominate: &NominatedNode,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Value> {
    let current = pod_condition(pod, "PodScheduled");
    let same_condition = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let nominated_now =
        pod.status.as_ref().and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty());
    let nominated_next = match nominate {
        NominatedNode::Keep => nominated_now.clone(),
        NominatedNode::Set(n) => Some(n.clone()),
        NominatedNode::Clear => None,
    };
    if same_condition && nominated_next == nominated_now {
        return None;
    }
    let transition = match current {
        Some(c) if c.status == "False" => c.last_transition_time.clone().unwrap_or(Time(now)),
        _ => Time(now),
    };
    Some(json!({
        "status": {
            "conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": reason,
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": transition,
            }],
            "nominatedNodeName": nominated_next,
        }
    }))
}

/// Sets PodScheduled=False with `reason` and `message` (and the nomination) unless the pod
/// already says exactly that.
pub(crate) fn patch_unschedulable(
    ctx: &Context,
    config: &SchedulerConfig,
    pod: &PodInfo,
    reason: &str,
    message: String,
    nominate: NominatedNode,
) {
    let Some(body) = unschedulable_patch(&pod.pod, reason, &message, &nominate, ctx.clock.now())
    else {
        return;
    };
    tokio::spawn(patch_status(
        pods(ctx, &pod.namespace),
        pod.name.to_string(),
        body,
        config.api_timeout,
    ));
}

/// Changes only the nomination.
pub(crate) fn patch_nominated(
    ctx: &Context,
    config: &SchedulerConfig,
    pod: &PodInfo,
    nominate: NominatedNode,
) {
    let value = match nominate {
        NominatedNode::Set(n) => Value::String(n),
        _ => Value::Null,
    };
    let body = json!({ "status": { "nominatedNodeName": value } });
    tokio::spawn(patch_status(
        pods(ctx, &pod.namespace),
        pod.name.to_string(),
        body,
        config.api_timeout,
    ));
}

/// Preempts one victim: DisruptionTarget condition, delete (uid precondition), and the
/// `Preempted` event upstream records.
pub(crate) fn delete_victim(
    ctx: &Context,
    config: &SchedulerConfig,
    recorder: &Recorder,
    victim: Arc<PodInfo>,
    preemptor: &PodInfo,
    node: &str,
) {
    let api = pods(ctx, &victim.namespace);
    let timeout = config.api_timeout;
    let condition = json!({ "status": { "conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "PreemptionByScheduler",
        "message": format!("{}: preempting to accommodate a higher priority pod", config.scheduler_name),
        "lastTransitionTime": Time(ctx.clock.now()),
    }]}});
    let recorder = recorder.clone();
    let message = format!(
        "Preempted by pod {} on node {node}",
        preemptor.pod.metadata.uid.as_deref().unwrap_or("")
    );
    tokio::spawn(async move {
        let name = victim.name.to_string();
        patch_status(api.clone(), name.clone(), condition, timeout).await;
        let params = DeleteParams {
            preconditions: victim
                .pod
                .metadata
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match tokio::time::timeout(timeout, api.delete(&name, &params)).await {
            Ok(Ok(_)) => recorder.event(&*victim.pod, EventType::Normal, "Preempted", message),
            Ok(Err(e)) => {
                tracing::debug!(pod = %victim.key(), error = %e, "deleting a victim failed")
            }
            Err(_) => tracing::debug!(pod = %victim.key(), "deleting a victim timed out"),
        }
    });
}
