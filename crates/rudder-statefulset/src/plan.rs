//! What one sync of a StatefulSet does (upstream's updateStatefulSet), decided without I/O
//! from the set, its current and update revisions, its pods and the cached claims.
//!
//! 1. Replicas: every ordinal in `[start, start + replicas)`. A failed (or succeeded) pod is
//!    deleted and made again; a missing pod is made (its claims first) at the current
//!    revision below the partition and at the update revision otherwise; a pending pod gets
//!    its missing claims; a pod whose identity labels are off is fixed; claim owners are set
//!    per the retention policy. `OrderedReady` stops at the first pod it made and at the first
//!    pod that is terminating, not Running and Ready, or not yet available; `Parallel` does
//!    all of them.
//! 2. Condemned pods (ordinals outside the range): their claims get the scale-down owners,
//!    then they are deleted, highest ordinal first; `OrderedReady` deletes one per sync and
//!    only while every other pod is healthy (the first unhealthy pod itself may go).
//! 3. `RollingUpdate`: the highest ordinal at or above the partition that is not at the
//!    update revision is deleted (it comes back at the update revision in a later sync),
//!    one at a time and only while the pods above it are healthy; with maxUnavailable, up to
//!    that many pods may be unavailable at once. `OnDelete` stops after 2.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::claims::{claims_for, is_stale_for, owners_up_to_date, updated_owner_refs};
use crate::pods::{
    ON_DELETE, allows_burst, end_ordinal, identity_matches, is_created, is_failed, is_healthy,
    is_pending, is_running_and_available, is_running_and_ready, is_succeeded, is_terminating,
    min_ready_seconds, name_of, new_pod, ordinal_of, pod_revision, replicas, start_ordinal,
    storage_matches, strategy_type, update_identity, uses_current_revision,
};

/// Most pods made in one sync (the rest in the next; bounds the plan on huge replica counts).
pub const MAX_CREATES_PER_SYNC: usize = 500;

/// Why a pod is deleted (decides the events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// Failed: recreated (event RecreatingFailedPod).
    Failed,
    /// Succeeded: recreated (event RecreatingTerminatedPod).
    Succeeded,
    /// Outside the ordinal range.
    ScaleDown,
    /// Not at the update revision.
    Update,
}

/// One write.
#[derive(Clone, Debug)]
pub enum Action {
    /// Create these claims (for the pod named), then the pod.
    CreatePod { pod: Pod, claims: Vec<PersistentVolumeClaim> },
    /// Create claims an existing pod lacks.
    CreateClaims { pod: String, claims: Vec<PersistentVolumeClaim> },
    /// Delete this pod (this uid).
    DeletePod { pod: Arc<Pod>, reason: DeleteReason },
    /// Replace the pod with this copy (identity labels fixed).
    UpdatePod { pod: Pod },
    /// Replace the claim with this copy (owner references per the retention policy).
    UpdateClaim { pod: String, claim: PersistentVolumeClaim },
    /// Progress needs something this controller does not watch to change: fail the sync so
    /// it is retried with back-off (upstream returns an error too).
    Wait { message: String },
}

/// Everything the sync decided.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub status: StatefulSetStatus,
    /// OrderedReady: steps run in order and stop at the first failure.
    pub monotonic: bool,
    /// Per replica, its steps in order (replicas in slow-start batches unless monotonic).
    pub replicas: Vec<Vec<Action>>,
    /// Claim owner fixes of condemned pods, then their deletions.
    pub condemned_claims: Vec<Action>,
    pub scale_down: Vec<Action>,
    /// Rolling-update deletions (each lowers currentReplicas by one once done).
    pub update: Vec<Action>,
    /// Look again then (a pod becomes available after minReadySeconds, or more to create).
    pub requeue_after: Option<Duration>,
}

/// What the plan is made from.
pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// The set with the current revision's template.
    pub current_set: &'a StatefulSet,
    /// The set with the update revision's template.
    pub update_set: &'a StatefulSet,
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub collision_count: i32,
    /// The pods the set owns.
    pub pods: &'a [Arc<Pod>],
    /// The cached claim of this name.
    pub claim: &'a (dyn Fn(&str) -> Option<Arc<PersistentVolumeClaim>> + Send + Sync),
    pub now: Timestamp,
    /// Honour rollingUpdate.maxUnavailable.
    pub max_unavailable: bool,
}

/// A replica slot: the pod there, or the one that is to be made.
enum Slot {
    Existing(Arc<Pod>),
    New(Box<Pod>),
}

impl Slot {
    fn pod(&self) -> &Pod {
        match self {
            Slot::Existing(p) => p,
            Slot::New(p) => p,
        }
    }
}

pub fn plan(input: &Input<'_>) -> Result<Plan, String> {
    let set = input.set;
    let min_ready = min_ready_seconds(set);
    let now = input.now;
    let (start, end) = (start_ordinal(set), end_ordinal(set));
    let mut by_ordinal: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in input.pods {
        match ordinal_of(pod) {
            Some(o) if o >= start && o <= end => {
                by_ordinal.insert(o, pod.clone());
            }
            Some(_) => condemned.push(pod.clone()),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));

    let monotonic = !allows_burst(set);
    let mut out = Plan { monotonic, ..Plan::default() };
    let new_pod_for = |ordinal: i32| -> Result<Pod, String> {
        if uses_current_revision(input.current_set, ordinal) {
            new_pod(input.current_set, ordinal, input.current_revision)
        } else {
            new_pod(input.update_set, ordinal, input.update_revision)
        }
    };

    // Slots in ordinal order; at most MAX_CREATES_PER_SYNC new ones.
    let mut slots: Vec<Slot> = Vec::new();
    let mut to_create = 0usize;
    let mut truncated = false;
    let mut ordinal = start;
    while ordinal <= end {
        match by_ordinal.get(&ordinal) {
            Some(p) if !is_failed(p) && !is_succeeded(p) => slots.push(Slot::Existing(p.clone())),
            _ if to_create >= MAX_CREATES_PER_SYNC => {
                truncated = true;
                break;
            }
            _ => {
                to_create += 1;
                slots.push(Slot::New(Box::new(new_pod_for(ordinal)?)));
            }
        }
        ordinal += 1;
    }

    let first_unhealthy: Option<String> = slots
        .iter()
        .map(Slot::pod)
        .chain(condemned.iter().rev().map(|p| &**p))
        .find(|p| !is_healthy(p))
        .map(|p| name_of(p).to_owned());

    if set.metadata.deletion_timestamp.is_some() {
        out.status = status_of(input, &counted(&slots, &by_ordinal, &condemned));
        return Ok(out);
    }

    // 1. Replicas.
    let mut blocked = false;
    for slot in &slots {
        let mut steps = Vec::new();
        let stop = match slot {
            Slot::New(pod) => {
                let ordinal = ordinal_of(pod).unwrap_or(start);
                if let Some(old) = by_ordinal.get(&ordinal) {
                    let reason =
                        if is_failed(old) { DeleteReason::Failed } else { DeleteReason::Succeeded };
                    steps.push(Action::DeletePod { pod: old.clone(), reason });
                }
                // None: a stale claim; wait for the garbage collector.
                steps.extend(create_step(input, pod));
                monotonic
            }
            Slot::Existing(pod) => {
                existing_steps(input, pod, &mut steps, min_ready, now, monotonic)
            }
        };
        if !steps.is_empty() {
            out.replicas.push(steps);
        }
        if stop && monotonic {
            blocked = true;
            break;
        }
    }

    out.status = status_of(input, &counted(&slots, &by_ordinal, &condemned));
    out.requeue_after =
        rudder_workloads::replicaset::status::next_available_after(input.pods, min_ready, now)
            .map(|d| d + Duration::from_millis(100));
    if truncated {
        out.requeue_after = Some(Duration::ZERO);
    }
    if blocked {
        return Ok(out);
    }

    // 2. Condemned pods.
    for pod in &condemned {
        out.condemned_claims.extend(claim_owner_steps(input, pod));
    }
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return Ok(out);
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(name_of(pod));
        if monotonic && !first && !is_running_and_available(pod, min_ready, now) {
            return Ok(out);
        }
        out.scale_down
            .push(Action::DeletePod { pod: pod.clone(), reason: DeleteReason::ScaleDown });
        if monotonic {
            return Ok(out);
        }
    }

    // 3. Rolling update.
    if strategy_type(set) == ON_DELETE {
        return Ok(out);
    }
    let partition = crate::pods::partition(set).unwrap_or(0).max(0) as usize;
    let pods: Vec<&Pod> = slots.iter().map(Slot::pod).collect();
    let needs_update = |p: &Pod| pod_revision(p) != input.update_revision && !is_terminating(p);
    let delete = |p: &Pod| -> Option<Action> {
        let Slot::Existing(pod) = slots.iter().find(|s| name_of(s.pod()) == name_of(p))? else {
            return None;
        };
        Some(Action::DeletePod { pod: pod.clone(), reason: DeleteReason::Update })
    };
    if input.max_unavailable {
        let max = max_unavailable(set, replicas(set));
        let unavailable = pods
            .iter()
            .filter(|p| !is_healthy(p) || !is_running_and_available(p, min_ready, now))
            .count();
        let budget = max.saturating_sub(unavailable);
        for p in pods.iter().skip(partition).rev() {
            if out.update.len() >= budget {
                break;
            }
            if needs_update(p) {
                out.update.extend(delete(p));
            }
        }
    } else {
        for p in pods.iter().skip(partition).rev() {
            if needs_update(p) {
                out.update.extend(delete(p));
                break;
            }
            if !is_healthy(p) {
                break;
            }
        }
    }
    Ok(out)
}

/// The step that makes `pod` (its missing claims first), or None while one of its claims
/// still belongs to an earlier pod of the same name.
fn create_step(input: &Input<'_>, pod: &Pod) -> Option<Action> {
    let ordinal = ordinal_of(pod)?;
    let mut missing = Vec::new();
    for mut claim in claims_for(input.update_set, ordinal) {
        let name = claim.metadata.name.clone().unwrap_or_default();
        match (input.claim)(&name) {
            Some(existing) if is_stale_for(&existing, input.set, pod) => return None,
            Some(existing) if existing.metadata.deletion_timestamp.is_some() => {
                return Some(Action::Wait { message: format!("pvc {name} is being deleted") });
            }
            Some(_) => {}
            None => {
                claim.metadata.owner_references =
                    Some(updated_owner_refs(&claim, input.set, pod)).filter(|r| !r.is_empty());
                missing.push(claim);
            }
        }
    }
    Some(Action::CreatePod { pod: pod.clone(), claims: missing })
}

/// Steps for a pod that exists; true when an OrderedReady sync must stop at it.
fn existing_steps(
    input: &Input<'_>,
    pod: &Arc<Pod>,
    steps: &mut Vec<Action>,
    min_ready: i32,
    now: Timestamp,
    monotonic: bool,
) -> bool {
    let name = name_of(pod).to_owned();
    let ordinal = ordinal_of(pod).unwrap_or(0);
    let missing: Vec<PersistentVolumeClaim> = claims_for(input.set, ordinal)
        .into_iter()
        .filter(|c| (input.claim)(c.metadata.name.as_deref().unwrap_or("")).is_none())
        .collect();
    if (is_pending(pod) || !storage_matches(input.set, pod)) && !missing.is_empty() {
        steps.push(Action::CreateClaims { pod: name.clone(), claims: missing });
    }
    // Terminating, not Running and Ready, or not available yet: OrderedReady waits here.
    let waits = is_terminating(pod) || !is_running_and_available(pod, min_ready, now);
    if waits && monotonic {
        return true;
    }
    if !identity_matches(input.set, pod) {
        let mut fixed = (**pod).clone();
        update_identity(input.set, &mut fixed, ordinal);
        steps.push(Action::UpdatePod { pod: fixed });
    }
    steps.extend(claim_owner_steps(input, pod));
    waits
}

/// Owner fixes of the pod's cached claims (upstream's UpdatePodClaimForRetentionPolicy).
fn claim_owner_steps(input: &Input<'_>, pod: &Pod) -> Vec<Action> {
    let Some(ordinal) = ordinal_of(pod) else { return Vec::new() };
    claims_for(input.set, ordinal)
        .iter()
        .filter_map(|c| (input.claim)(c.metadata.name.as_deref().unwrap_or("")))
        .filter(|c| !owners_up_to_date(c, input.set, pod))
        .map(|c| {
            let mut claim = (*c).clone();
            claim.metadata.owner_references = Some(updated_owner_refs(&c, input.set, pod));
            Action::UpdateClaim { pod: name_of(pod).to_owned(), claim }
        })
        .collect()
}

/// The pods the status counts: those in the range that stay, and the condemned.
fn counted(
    slots: &[Slot],
    by_ordinal: &BTreeMap<i32, Arc<Pod>>,
    condemned: &[Arc<Pod>],
) -> Vec<Arc<Pod>> {
    let mut pods: Vec<Arc<Pod>> = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Existing(p) => Some(p.clone()),
            Slot::New(_) => None,
        })
        .collect();
    // Slots past a truncated plan still count.
    let last = slots.last().and_then(|s| ordinal_of(s.pod()));
    pods.extend(
        by_ordinal.iter().filter(|(o, _)| last.is_some_and(|l| **o > l)).map(|(_, p)| p.clone()),
    );
    pods.extend(condemned.iter().cloned());
    pods
}

/// The status the pods give (upstream's updateStatus/computeReplicaStatus).
fn status_of(input: &Input<'_>, pods: &[Arc<Pod>]) -> StatefulSetStatus {
    let min_ready = min_ready_seconds(input.set);
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods {
        if is_created(pod) {
            replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready, input.now) {
                available += 1;
            }
        }
        if is_created(pod) && !is_terminating(pod) {
            let revision = pod_revision(pod);
            if revision == input.current_revision {
                current += 1;
            }
            if revision == input.update_revision {
                updated += 1;
            }
        }
    }
    StatefulSetStatus {
        observed_generation: input.set.metadata.generation,
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(input.current_revision.to_owned()),
        update_revision: Some(input.update_revision.to_owned()),
        collision_count: Some(input.collision_count),
        conditions: input.set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

/// rollingUpdate.maxUnavailable as a pod count (percentages round down), at least 1.
pub fn max_unavailable(set: &StatefulSet, replicas: i32) -> usize {
    let value = set
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.as_ref());
    let n = match value {
        None => 1,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => {
            match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
                Some(percent) => percent * i64::from(replicas) / 100,
                None => 1,
            }
        }
    };
    n.max(1) as usize
}

/// A RollingUpdate whose pods are all updated and ready is complete: the update revision
/// becomes the current one (upstream's completeRollingUpdate).
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let updated = status.updated_replicas.unwrap_or(0);
    if strategy_type(set) == crate::pods::ROLLING_UPDATE
        && updated == status.replicas
        && status.ready_replicas.unwrap_or(0) == status.replicas
    {
        status.current_replicas = Some(updated);
        status.current_revision = status.update_revision.clone();
    }
}

/// Whether `status` differs from what the set shows (upstream's inconsistentStatus, plus
/// the collision count).
pub fn status_changed(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let old = set.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || n(status.current_replicas) != n(old.current_replicas)
        || n(status.ready_replicas) != n(old.ready_replicas)
        || n(status.updated_replicas) != n(old.updated_replicas)
        || n(status.available_replicas) != n(old.available_replicas)
        || status.current_revision != old.current_revision
        || status.update_revision != old.update_revision
        || n(status.collision_count) != n(old.collision_count)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
