//! The rolling update (upstream's `rolling.go`): scale the new ReplicaSet up as far as
//! maxSurge allows, else scale old ReplicaSets down as far as maxUnavailable allows (their
//! unavailable pods first), one kind of step per sync.
//!
//! The arithmetic is upstream's, with one difference: it reads every ReplicaSet
//! conservatively. Pods counted against maxSurge are `max(spec.replicas, status.replicas)`
//! (an old ReplicaSet scaled down still has its pods until its controller deleted them), and
//! pods counted as available are `min(status.availableReplicas, spec.replicas)` (a ReplicaSet
//! scaled down may delete available pods its status still counts). Upstream counts
//! spec.replicas and the status as they are, which lets the number of pods briefly exceed
//! replicas + maxSurge, and availability dip below replicas - maxUnavailable, while caches
//! catch up; here both bounds hold at every moment.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use rudder_client::Outcome;

use super::progress::deployment_complete;
use super::sync::{Controller, SyncState};
use super::util::{
    by_creation, max_surge, max_unavailable, replicas, rs_available, rs_replicas,
    rs_status_replicas,
};
use crate::Error;

/// One ReplicaSet as the rolling update counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RsCounts {
    /// spec.replicas.
    pub replicas: i32,
    /// Pods it may have: `max(spec.replicas, status.replicas)`.
    pub pods: i32,
    /// Pods surely available: `min(status.availableReplicas, spec.replicas)`.
    pub available: i32,
}

impl RsCounts {
    pub fn of(rs: &ReplicaSet) -> RsCounts {
        let replicas = rs_replicas(rs);
        RsCounts {
            replicas,
            pods: replicas.max(rs_status_replicas(rs)),
            available: rs_available(rs).min(replicas).max(0),
        }
    }
}

/// Upstream's NewRSNewReplicas for a rolling update: the new ReplicaSet grows by what
/// maxSurge leaves over all pods, never past `desired`.
pub fn new_rs_new_replicas(desired: i32, max_surge: i32, all: &[RsCounts], new: &RsCounts) -> i32 {
    let current: i32 = all.iter().map(|c| c.pods).sum();
    let max_total = desired + max_surge;
    if current >= max_total {
        return new.replicas;
    }
    new.replicas + (max_total - current).min(desired - new.replicas).max(0)
}

/// The size to give the new ReplicaSet now, if it should change (upstream's
/// reconcileNewReplicaSet).
pub fn new_rs_target(
    desired: i32,
    max_surge: i32,
    new: &RsCounts,
    all: &[RsCounts],
) -> Option<i32> {
    if new.replicas == desired {
        return None;
    }
    if new.replicas > desired {
        return Some(desired);
    }
    Some(new_rs_new_replicas(desired, max_surge, all, new)).filter(|n| *n != new.replicas)
}

/// The sizes of the active old ReplicaSets (`old`, oldest first) after upstream's
/// reconcileOldReplicaSets: first their unavailable pods go, as far as the surplus over the
/// minimum availability allows (counting the new ReplicaSet's unavailable pods against it),
/// then available ones while more than `desired - max_unavailable` are available.
pub fn scale_down_old(
    desired: i32,
    max_unavailable: i32,
    new: &RsCounts,
    old: &[RsCounts],
) -> Vec<i32> {
    let mut targets: Vec<i32> = old.iter().map(|c| c.replicas).collect();
    let old_replicas: i32 = targets.iter().sum();
    if old_replicas == 0 {
        return targets;
    }
    let all_replicas = old_replicas + new.replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = new.replicas - new.available;
    let max_scaled_down = all_replicas - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return targets;
    }
    // Unhealthy replicas first: removing them does not lower availability.
    let mut cleaned = 0;
    for (target, counts) in targets.iter_mut().zip(old) {
        if cleaned >= max_scaled_down {
            break;
        }
        if *target == 0 || *target == counts.available {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(*target - counts.available).max(0);
        *target -= n;
        cleaned += n;
    }
    // Then available ones, down to the minimum availability.
    let available: i32 =
        targets.iter().zip(old).map(|(t, c)| c.available.min(*t)).sum::<i32>() + new.available;
    if available <= min_available {
        return targets;
    }
    let to_scale_down = available - min_available;
    let mut scaled = 0;
    for target in targets.iter_mut() {
        if scaled >= to_scale_down {
            break;
        }
        if *target == 0 {
            continue;
        }
        let n = (*target).min(to_scale_down - scaled);
        *target -= n;
        scaled += n;
    }
    targets
}

impl Controller {
    /// One rolling-update sync (upstream's rolloutRolling).
    pub(super) async fn rollout_rolling(&self, s: &mut SyncState) -> Result<Outcome, Error> {
        let (new_rs, _) = self.get_all_replica_sets_and_sync_revision(s, true).await?;
        let Some(new_rs) = new_rs else { return self.sync_rollout_status(s, None).await };
        let desired = replicas(&s.d);
        let all: Vec<RsCounts> = s.rss.iter().map(|rs| RsCounts::of(rs)).collect();
        let new_counts = RsCounts::of(&new_rs);
        if let Some(target) = new_rs_target(desired, max_surge(&s.d), &new_counts, &all) {
            let (scaled, new_rs) = self.scale_replica_set(s, &new_rs, target).await?;
            if scaled {
                return self.sync_rollout_status(s, Some(new_rs)).await;
            }
        }
        let new_rs = s.current(&new_rs);
        let mut old: Vec<Arc<ReplicaSet>> = s
            .rss
            .iter()
            .filter(|rs| rs.metadata.uid != new_rs.metadata.uid && rs_replicas(rs) > 0)
            .cloned()
            .collect();
        old.sort_by(|a, b| by_creation(a, b));
        let old_counts: Vec<RsCounts> = old.iter().map(|rs| RsCounts::of(rs)).collect();
        let targets =
            scale_down_old(desired, max_unavailable(&s.d), &RsCounts::of(&new_rs), &old_counts);
        let mut scaled_down = false;
        for (rs, target) in old.iter().zip(targets) {
            if target != rs_replicas(rs) {
                self.scale_replica_set(s, rs, target).await?;
                scaled_down = true;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(s, Some(new_rs)).await;
        }
        if deployment_complete(&s.d, s.d.status.as_ref()) {
            self.cleanup_old(s, Some(&new_rs)).await?;
        }
        self.sync_rollout_status(s, Some(new_rs)).await
    }
}

#[cfg(test)]
mod tests;
