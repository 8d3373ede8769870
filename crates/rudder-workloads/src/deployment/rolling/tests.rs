use super::*;
use crate::deployment::util::resolve_fenceposts;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn c(replicas: i32, pods: i32, available: i32) -> RsCounts {
    RsCounts { replicas, pods, available }
}

#[test]
fn new_replica_set_grows_within_the_surge() {
    // 10 desired, surge 3: old 10 pods, new 0 -> new 3.
    assert_eq!(new_rs_target(10, 3, &c(0, 0, 0), &[c(10, 10, 10), c(0, 0, 0)]), Some(3));
    // At the limit: nothing.
    assert_eq!(new_rs_target(10, 3, &c(3, 3, 0), &[c(10, 10, 10), c(3, 3, 0)]), None);
    // Old pods still terminating count against the surge.
    assert_eq!(new_rs_target(10, 3, &c(3, 3, 3), &[c(8, 10, 8), c(3, 3, 3)]), None);
    assert_eq!(new_rs_target(10, 3, &c(3, 3, 3), &[c(8, 8, 8), c(3, 3, 3)]), Some(5));
    // Never past desired; above desired: back to desired.
    assert_eq!(new_rs_target(4, 10, &c(1, 1, 1), &[c(1, 1, 1)]), Some(4));
    assert_eq!(new_rs_target(4, 1, &c(6, 6, 6), &[c(6, 6, 6)]), Some(4));
    assert_eq!(new_rs_target(4, 1, &c(4, 4, 4), &[c(4, 4, 4)]), None);
}

#[test]
fn old_replica_sets_shrink_unhealthy_first_then_to_min_available() {
    // upstream's example: 10 replicas, maxUnavailable 2, maxSurge 3; new 5 (all unavailable),
    // old 8 (one unavailable after a node failure): nothing can go.
    assert_eq!(scale_down_old(10, 2, &c(5, 5, 0), &[c(8, 8, 7)]), [8]);
    // Rolled back to the good template: new 1 unavailable: 4 of the old unavailable go.
    assert_eq!(scale_down_old(10, 2, &c(8, 8, 7), &[c(5, 5, 0)]), [1]);
    // Available pods go down to desired - maxUnavailable.
    assert_eq!(scale_down_old(4, 1, &c(1, 1, 1), &[c(4, 4, 4)]), [2]);
    // Oldest first across several old ReplicaSets.
    assert_eq!(scale_down_old(4, 0, &c(2, 2, 2), &[c(1, 1, 1), c(3, 3, 3)]), [0, 2]);
    // Nothing old left.
    assert_eq!(scale_down_old(4, 1, &c(4, 4, 4), &[c(0, 0, 0)]), [0]);
}

/// A ReplicaSet in the simulation: its spec and its pods (ready or not).
#[derive(Clone, Debug)]
struct SimRs {
    spec: i32,
    pods: Vec<bool>,
}

impl SimRs {
    fn counts(&self) -> RsCounts {
        let ready = self.pods.iter().filter(|r| **r).count() as i32;
        RsCounts::of_parts(self.spec, self.pods.len() as i32, ready)
    }
}

impl RsCounts {
    fn of_parts(spec: i32, status_replicas: i32, status_available: i32) -> RsCounts {
        RsCounts {
            replicas: spec,
            pods: spec.max(status_replicas),
            available: status_available.min(spec),
        }
    }
}

fn check(rss: &[SimRs], max_pods: i32, min_ready: i32, what: &str) {
    let pods: usize = rss.iter().map(|r| r.pods.len()).sum();
    let ready: usize = rss.iter().map(|r| r.pods.iter().filter(|p| **p).count()).sum();
    assert!(pods as i32 <= max_pods, "{what}: {pods} pods > {max_pods}: {rss:?}");
    assert!(ready as i32 >= min_ready, "{what}: {ready} ready < {min_ready}: {rss:?}");
}

/// Rolls `desired` replicas from one old ReplicaSet (plus `extra_old` more, half scaled)
/// to a new one, `ready_per_step` pods becoming ready per step, and checks after every
/// single pod change that there are never more than desired + surge pods nor fewer than
/// desired - unavailable ready ones, and that the rollout finishes.
fn simulate(desired: i32, surge: IntOrString, unavailable: IntOrString, ready_per_step: usize) {
    let (max_surge, max_unavailable) =
        resolve_fenceposts(Some(&surge), Some(&unavailable), desired).unwrap();
    let max_unavailable = max_unavailable.min(desired);
    let what = format!(
        "{desired} surge {surge:?} unavailable {unavailable:?} ready/step {ready_per_step}"
    );
    let mut old = vec![SimRs { spec: desired, pods: vec![true; desired as usize] }];
    let mut new = SimRs { spec: 0, pods: vec![] };
    let (max_pods, min_ready) = (desired + max_surge, desired - max_unavailable);
    for step in 0..10_000 {
        // The Deployment controller: one kind of step.
        let all: Vec<RsCounts> =
            old.iter().map(SimRs::counts).chain(std::iter::once(new.counts())).collect();
        if let Some(target) = new_rs_target(desired, max_surge, &new.counts(), &all) {
            new.spec = target;
        } else {
            let counts: Vec<RsCounts> = old.iter().map(SimRs::counts).collect();
            for (rs, t) in
                old.iter_mut().zip(scale_down_old(desired, max_unavailable, &new.counts(), &counts))
            {
                rs.spec = t;
            }
        }
        // The ReplicaSet controllers, one pod at a time: creates first, then deletes
        // (not-ready pods first), checking after each.
        for rs in old.iter_mut().chain(std::iter::once(&mut new)) {
            while (rs.pods.len() as i32) < rs.spec {
                rs.pods.push(false);
            }
        }
        let snapshot: Vec<SimRs> =
            old.iter().cloned().chain(std::iter::once(new.clone())).collect();
        check(&snapshot, max_pods, min_ready, &what);
        for rs in old.iter_mut().chain(std::iter::once(&mut new)) {
            while (rs.pods.len() as i32) > rs.spec {
                let victim = rs.pods.iter().position(|r| !*r).unwrap_or(0);
                rs.pods.remove(victim);
            }
        }
        let snapshot: Vec<SimRs> =
            old.iter().cloned().chain(std::iter::once(new.clone())).collect();
        check(&snapshot, max_pods, min_ready, &what);
        // Pods become ready, a few per step.
        let mut budget = ready_per_step;
        for p in new.pods.iter_mut().filter(|r| !**r) {
            if budget == 0 {
                break;
            }
            *p = true;
            budget -= 1;
        }
        let done = new.spec == desired
            && new.pods.iter().all(|r| *r)
            && new.pods.len() as i32 == desired
            && old.iter().all(|r| r.spec == 0 && r.pods.is_empty());
        if done {
            return;
        }
        assert!(step < 9_999, "{what}: no progress: old {old:?} new {new:?}");
    }
}

#[test]
fn rolling_updates_respect_surge_and_unavailability_for_many_settings() {
    let values = [
        IntOrString::Int(0),
        IntOrString::Int(1),
        IntOrString::Int(2),
        IntOrString::Int(5),
        IntOrString::String("0%".into()),
        IntOrString::String("10%".into()),
        IntOrString::String("25%".into()),
        IntOrString::String("50%".into()),
        IntOrString::String("100%".into()),
    ];
    for desired in [1, 2, 3, 4, 5, 7, 10, 16] {
        for surge in &values {
            for unavailable in &values {
                for ready_per_step in [1, 100] {
                    simulate(desired, surge.clone(), unavailable.clone(), ready_per_step);
                }
            }
        }
    }
}
