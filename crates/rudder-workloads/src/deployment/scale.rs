//! Scaling a Deployment outside a rollout step (upstream's `scale`): when spec.replicas
//! changes, or while paused. One active ReplicaSet (or none) takes the whole count; a
//! saturated new ReplicaSet means the old ones go to 0; otherwise, during a rolling update,
//! the difference is spread over the active ReplicaSets in proportion to their sizes (read
//! from their max-replicas annotation), so a half-done rollout stays half done.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};

use super::util::{
    active, by_creation, by_size_newer, by_size_older, desired_replicas_annotation,
    is_rolling_update, max_replicas_annotation, max_surge, replicas, rs_available, rs_replicas,
};

/// Upstream's FindActiveOrLatest: the only active ReplicaSet, or the newest when none is
/// active; `None` when several are active.
pub fn find_active_or_latest(
    new_rs: Option<&Arc<ReplicaSet>>,
    old_rss: &[Arc<ReplicaSet>],
) -> Option<Arc<ReplicaSet>> {
    let mut olds = old_rss.to_vec();
    olds.sort_by(|a, b| by_creation(b, a));
    let mut all = olds.clone();
    all.extend(new_rs.cloned());
    let act = active(&all);
    match act.len() {
        0 => new_rs.cloned().or_else(|| olds.first().cloned()),
        1 => act.into_iter().next(),
        _ => None,
    }
}

/// Whether the new ReplicaSet runs the whole Deployment: as many replicas as desired, the
/// same desired count recorded, all of them available.
pub fn is_saturated(d: &Deployment, rs: Option<&Arc<ReplicaSet>>) -> bool {
    let Some(rs) = rs else { return false };
    let desired = replicas(d);
    rs_replicas(rs) == desired
        && desired_replicas_annotation(rs) == Some(desired)
        && rs_available(rs) == desired
}

/// A ReplicaSet's share of a scaling: its size scaled by the Deployment's new size over the
/// size recorded in its max-replicas annotation (else the Deployment's current replicas).
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let desired = replicas(d);
    if desired == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = desired + max_surge(d);
    let annotated = max_replicas_annotation(rs)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let new_size =
        f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    new_size.round() as i32 - rs_replicas(rs)
}

/// How much of `to_add` (negative: to remove) this ReplicaSet takes, given `added` so far.
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let f = fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 { f.min(allowed) } else { f.max(allowed) }
}

/// The sizes `scale` sets: `(ReplicaSet, new size)` for the ReplicaSets to write, in order.
/// Entries whose size does not change are included only in the proportional case (their
/// replicas annotations may still need an update).
pub fn plan_scale(
    d: &Deployment,
    new_rs: Option<&Arc<ReplicaSet>>,
    old_rss: &[Arc<ReplicaSet>],
) -> Vec<(Arc<ReplicaSet>, i32)> {
    let desired = replicas(d);
    if let Some(rs) = find_active_or_latest(new_rs, old_rss) {
        if rs_replicas(&rs) == desired {
            return Vec::new();
        }
        return vec![(rs, desired)];
    }
    if is_saturated(d, new_rs) {
        return active(old_rss).into_iter().map(|rs| (rs, 0)).collect();
    }
    if !is_rolling_update(d) {
        return Vec::new();
    }
    let mut all = old_rss.to_vec();
    all.extend(new_rs.cloned());
    let mut all = active(&all);
    let current: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if desired > 0 { desired + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    match to_add.signum() {
        1 => all.sort_by(|a, b| by_size_newer(a, b)),
        -1 => all.sort_by(|a, b| by_size_older(a, b)),
        _ => {}
    }
    let mut added = 0;
    let mut sizes: Vec<i32> = all
        .iter()
        .map(|rs| {
            if to_add == 0 {
                return rs_replicas(rs);
            }
            let p = proportion(rs, d, to_add, added);
            added += p;
            rs_replicas(rs) + p
        })
        .collect();
    // Leftovers (rounding) go to the largest ReplicaSet.
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        *first = (*first + to_add - added).max(0);
    }
    all.into_iter().zip(sizes.drain(..)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::util::{DESIRED_REPLICAS_ANNOTATION, MAX_REPLICAS_ANNOTATION};
    use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use k8s_openapi::jiff::Timestamp;
    use std::collections::BTreeMap;

    fn d(replicas: i32, surge: i32, unavailable: i32) -> Deployment {
        crate::deployment::util::tests::deployment(
            replicas,
            IntOrString::Int(surge),
            IntOrString::Int(unavailable),
        )
    }

    fn rs(name: &str, created: i64, replicas: i32, max: Option<i32>) -> Arc<ReplicaSet> {
        let mut annotations = BTreeMap::new();
        if let Some(m) = max {
            annotations.insert(MAX_REPLICAS_ANNOTATION.to_owned(), m.to_string());
        }
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(1_700_000_000 + created).unwrap(),
                )),
                annotations: Some(annotations),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: None,
        })
    }

    fn sizes(plan: &[(Arc<ReplicaSet>, i32)]) -> Vec<(String, i32)> {
        plan.iter().map(|(rs, n)| (rs.metadata.name.clone().unwrap(), *n)).collect()
    }

    #[test]
    fn single_active_takes_everything() {
        let old = rs("old", 0, 0, None);
        let new = rs("new", 10, 3, None);
        assert_eq!(
            sizes(&plan_scale(&d(5, 1, 1), Some(&new), std::slice::from_ref(&old))),
            [("new".into(), 5)]
        );
        assert!(plan_scale(&d(3, 1, 1), Some(&new), std::slice::from_ref(&old)).is_empty());
        // Nothing active: the newest takes it.
        let new0 = rs("new", 10, 0, None);
        assert_eq!(
            sizes(&plan_scale(&d(2, 1, 1), Some(&new0), std::slice::from_ref(&old))),
            [("new".into(), 2)]
        );
        assert_eq!(sizes(&plan_scale(&d(2, 1, 1), None, &[old])), [("old".into(), 2)]);
    }

    #[test]
    fn saturated_new_scales_olds_to_zero() {
        let mut new = (*rs("new", 10, 3, None)).clone();
        new.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(DESIRED_REPLICAS_ANNOTATION.into(), "3".into());
        new.status = Some(ReplicaSetStatus { available_replicas: Some(3), ..Default::default() });
        let old = rs("old", 0, 1, None);
        let plan = plan_scale(&d(3, 1, 1), Some(&Arc::new(new)), &[old]);
        assert_eq!(sizes(&plan), [("old".into(), 0)]);
    }

    #[test]
    fn proportional_scaling_mid_rollout() {
        // 10 replicas, surge 3: old 8 + new 5 = 13 (max 13). Scale to 20 (max 23): +10.
        let old = rs("old", 0, 8, Some(13));
        let new = rs("new", 10, 5, Some(13));
        let plan = plan_scale(&d(20, 3, 2), Some(&new), std::slice::from_ref(&old));
        let total: i32 = plan.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 23);
        assert_eq!(sizes(&plan), [("old".into(), 14), ("new".into(), 9)]);
        // Scale down to 5 (max 8): -5, larger first.
        let plan = plan_scale(&d(5, 3, 2), Some(&new), std::slice::from_ref(&old));
        assert_eq!(plan.iter().map(|(_, n)| n).sum::<i32>(), 8);
        assert_eq!(sizes(&plan), [("old".into(), 5), ("new".into(), 3)]);
        // To zero: everything goes.
        let plan = plan_scale(&d(0, 3, 2), Some(&new), &[old]);
        assert_eq!(sizes(&plan), [("old".into(), 0), ("new".into(), 0)]);
    }

    #[test]
    fn many_proportional_scalings_keep_the_total_and_never_go_negative() {
        for desired in 0..30 {
            for (a, b) in [(1, 1), (3, 7), (10, 2), (5, 5), (0, 4)] {
                let old = rs("old", 0, a, Some(a + b));
                let mid = rs("mid", 5, b, Some(a + b));
                let new = rs("new", 10, 1, Some(a + b));
                let dep = d(desired, 1, 1);
                let plan = plan_scale(&dep, Some(&new), &[old, mid]);
                if plan.len() <= 1 {
                    continue;
                }
                let total: i32 = plan.iter().map(|(_, n)| n).sum();
                let want = if desired > 0 { desired + 1 } else { 0 };
                assert_eq!(total, want, "desired {desired}, sizes {:?}", sizes(&plan));
                assert!(plan.iter().all(|(_, n)| *n >= 0));
            }
        }
    }
}
