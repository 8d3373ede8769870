//! A Deployment's status and conditions without I/O (upstream's `calculateStatus`,
//! `syncRolloutStatus`, `requeueStuckDeployment`, `checkPausedConditions`): the counts
//! `kubectl get deploy` and `kubectl rollout status` read, Available (minimum availability),
//! and Progressing with its reasons (NewReplicaSetCreated, FoundNewReplicaSet,
//! ReplicaSetUpdated, NewReplicaSetAvailable, ProgressDeadlineExceeded, DeploymentPaused,
//! DeploymentResumed, ReplicaSetCreateError), plus the ReplicaFailure of its ReplicaSets.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;

use super::util::{
    max_unavailable, paused, progress_deadline_seconds, replicas, rs_available, rs_ready,
    rs_replicas, rs_status_replicas,
};
use crate::replicaset::status::api_time;

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// A condition whose times are `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(api_time(now)),
        last_transition_time: Some(api_time(now)),
    }
}

pub fn get_condition<'a>(
    status: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Sets a condition unless one of that type with the same status and reason is there; a
/// transition time is kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// A status with every count present (the form this controller writes), for comparisons.
pub fn normalized(status: Option<&DeploymentStatus>) -> DeploymentStatus {
    let mut s = status.cloned().unwrap_or_default();
    for field in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        field.get_or_insert(0);
    }
    s.observed_generation.get_or_insert(0);
    if s.conditions.as_ref().is_some_and(|c| c.is_empty()) {
        s.conditions = None;
    }
    s
}

fn sum(rss: &[Arc<ReplicaSet>], f: impl Fn(&ReplicaSet) -> i32) -> i32 {
    rss.iter().map(|rs| f(rs)).sum()
}

/// Counts from the ReplicaSets, the observed generation, and the Available condition.
pub fn calculate_status(
    all: &[Arc<ReplicaSet>],
    new_rs: Option<&Arc<ReplicaSet>>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = sum(all, rs_available);
    let total = sum(all, rs_replicas);
    let current = d.status.as_ref();
    let mut status = DeploymentStatus {
        observed_generation: Some(d.metadata.generation.unwrap_or(0)),
        replicas: Some(sum(all, rs_status_replicas)),
        updated_replicas: Some(new_rs.map(|rs| rs_status_replicas(rs)).unwrap_or(0)),
        ready_replicas: Some(sum(all, rs_ready)),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: current.and_then(|s| s.collision_count),
        conditions: current.and_then(|s| s.conditions.clone()).filter(|c| !c.is_empty()),
        terminating_replicas: current.and_then(|s| s.terminating_replicas),
    };
    let c = if available >= replicas(d) - max_unavailable(d) {
        condition(
            AVAILABLE,
            "True",
            MINIMUM_REPLICAS_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            MINIMUM_REPLICAS_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, c);
    status
}

/// All desired replicas updated and available, no old ones left, and this generation seen.
pub fn deployment_complete(d: &Deployment, status: Option<&DeploymentStatus>) -> bool {
    let s = normalized(status);
    let want = replicas(d);
    s.updated_replicas == Some(want)
        && s.replicas == Some(want)
        && s.available_replicas == Some(want)
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Progress since the status the Deployment has: more updated, fewer old, more ready or
/// available replicas.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = normalized(d.status.as_ref());
    let new = normalized(Some(new));
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// No progress reported within progressDeadlineSeconds of the last report.
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline_seconds(d) else { return false };
    let Some(c) = get_condition(Some(new), PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => return false,
        Some(TIMED_OUT) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref().map(|t| t.0) else { return false };
    clock::elapsed(from, now) > Duration::from_secs(deadline.max(0) as u64)
}

fn named(kind: &str, d: &Deployment, new_rs: Option<&Arc<ReplicaSet>>, what: &str) -> String {
    match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(name) => format!("ReplicaSet {name:?} {what}"),
        None => format!("{kind} {:?} {what}", d.metadata.name.as_deref().unwrap_or("")),
    }
}

/// The status after a rollout step (upstream's syncRolloutStatus): counts, Available, the
/// Progressing condition (complete, progressing, or timed out), and the ReplicaSets'
/// ReplicaFailure (the new one's first).
pub fn rollout_status(
    all: &[Arc<ReplicaSet>],
    new_rs: Option<&Arc<ReplicaSet>>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate_status(all, new_rs, d, now);
    let has_deadline = progress_deadline_seconds(d).is_some();
    if !has_deadline {
        remove_condition(&mut status, PROGRESSING);
    }
    let current = get_condition(d.status.as_ref(), PROGRESSING);
    let complete_before = status.replicas == status.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if has_deadline && !complete_before {
        if deployment_complete(d, Some(&status)) {
            let msg = named("Deployment", d, new_rs, "has successfully progressed.");
            set_condition(&mut status, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now));
        } else if deployment_progressing(d, &status) {
            let msg = named("Deployment", d, new_rs, "is progressing.");
            let mut c = condition(PROGRESSING, "True", REPLICA_SET_UPDATED, msg, now);
            // Progress refreshes lastUpdateTime even with the same reason.
            if let Some(current) = current {
                if current.status == "True" {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut status, PROGRESSING);
            }
            set_condition(&mut status, c);
        } else if deployment_timed_out(d, &status, now) {
            let msg = named("Deployment", d, new_rs, "has timed out progressing.");
            set_condition(&mut status, condition(PROGRESSING, "False", TIMED_OUT, msg, now));
        }
    }
    let failure = new_rs
        .into_iter()
        .chain(all.iter())
        .flat_map(|rs| rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default())
        .find(|c| c.type_ == REPLICA_FAILURE);
    match failure {
        Some(f) => set_condition(
            &mut status,
            DeploymentCondition {
                type_: f.type_,
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => remove_condition(&mut status, REPLICA_FAILURE),
    }
    status
}

/// When to look again for a rollout that may be stuck: at lastUpdateTime +
/// progressDeadlineSeconds (`None`: no deadline, no Progressing condition, complete, or
/// already timed out).
pub fn progress_check_after(
    d: &Deployment,
    new: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = progress_deadline_seconds(d)?;
    let current = get_condition(d.status.as_ref(), PROGRESSING)?;
    if deployment_complete(d, Some(new)) || current.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = current.last_update_time.as_ref()?.0;
    let due = clock::add(from, Duration::from_secs(deadline.max(0) as u64));
    let after = clock::elapsed(now, due);
    // A second more, so the check lands after the deadline (the API keeps whole seconds).
    Some(after + Duration::from_secs(1))
}

/// The Progressing condition pausing or resuming sets (upstream's checkPausedConditions),
/// or `None` when nothing changes. A reported timeout is never overwritten.
pub fn paused_condition(d: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    progress_deadline_seconds(d)?;
    let current = get_condition(d.status.as_ref(), PROGRESSING);
    if current.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
        return None;
    }
    let paused_now = current.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
    match (paused(d), paused_now) {
        (true, false) => {
            Some(condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now))
        }
        (false, true) => {
            Some(condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
