//! Taints and tolerations: the well-known node taints, upstream's toleration matching, the
//! tolerations upstream's DefaultTolerationSeconds admission plugin would add, and when a
//! pod on a node with NoExecute taints must go.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::jiff::Timestamp;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

pub use rudder_client::objects::tolerates;

/// The tolerations a pod has once upstream's DefaultTolerationSeconds admission plugin ran:
/// NoExecute tolerations of `not-ready` and `unreachable` for `seconds` unless the pod
/// already tolerates them (a toleration with that key or no key, and NoExecute or no effect).
pub fn with_default_tolerations(tolerations: &[Toleration], seconds: i64) -> Vec<Toleration> {
    let mut all = tolerations.to_vec();
    for key in [NOT_READY, UNREACHABLE] {
        let has = tolerations.iter().any(|t| {
            let k = t.key.as_deref().unwrap_or_default();
            let e = t.effect.as_deref().unwrap_or_default();
            (k == key || k.is_empty()) && (e == NO_EXECUTE || e.is_empty())
        });
        if !has {
            all.push(Toleration {
                key: Some(key.to_owned()),
                operator: Some("Exists".to_owned()),
                effect: Some(NO_EXECUTE.to_owned()),
                toleration_seconds: Some(seconds),
                value: None,
            });
        }
    }
    all
}

/// What to do with a pod on a node with NoExecute taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Tolerated (forever, or there is no NoExecute taint).
    Keep,
    /// Some taint is not tolerated, or a toleration ran out.
    Now,
    /// Every taint is tolerated, the first toleration runs out then.
    At(Timestamp),
}

/// Decides for a pod with `tolerations` on a node with `taints`, each NoExecute taint given
/// with when it started to count (its timeAdded, or when it was first seen). Per taint the
/// first toleration that tolerates it is the one used (as upstream); a used toleration with
/// tolerationSeconds ends at start + seconds (zero or less: at once); the earliest end wins.
pub fn eviction(
    taints: &[(Taint, Timestamp)],
    tolerations: &[Toleration],
    now: Timestamp,
) -> Eviction {
    let mut earliest: Option<Timestamp> = None;
    for (taint, start) in taints.iter().filter(|(t, _)| t.effect == NO_EXECUTE) {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = used.toleration_seconds else { continue };
        if seconds <= 0 {
            return Eviction::Now;
        }
        let end = rudder_client::clock::add(*start, Duration::from_secs(seconds as u64));
        earliest = Some(earliest.map_or(end, |e| e.min(end)));
    }
    match earliest {
        None => Eviction::Keep,
        Some(end) if end <= now => Eviction::Now,
        Some(end) => Eviction::At(end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str) -> Taint {
        Taint { key: key.into(), effect: effect.into(), value: None, time_added: None }
    }

    fn toleration(key: &str, op: &str, effect: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = Taint { value: Some("v".into()), ..taint("k", NO_EXECUTE) };
        assert!(tolerates(&toleration("k", "Exists", "", None), &t));
        assert!(tolerates(&toleration("", "Exists", "", None), &t), "empty key with Exists");
        assert!(!tolerates(&toleration("k", "Exists", NO_SCHEDULE, None), &t));
        assert!(!tolerates(&toleration("other", "Exists", "", None), &t));
        let mut equal = toleration("k", "Equal", NO_EXECUTE, None);
        assert!(!tolerates(&equal, &t));
        equal.value = Some("v".into());
        assert!(tolerates(&equal, &t));
        equal.operator = None;
        assert!(tolerates(&equal, &t), "no operator means Equal");
    }

    #[test]
    fn default_tolerations_are_added_unless_the_pod_has_its_own() {
        let added = with_default_tolerations(&[], 300);
        assert_eq!(added.len(), 2);
        assert!(added.iter().all(|t| t.toleration_seconds == Some(300)));
        let own = [toleration(NOT_READY, "Exists", NO_EXECUTE, Some(5))];
        let added = with_default_tolerations(&own, 300);
        assert_eq!(added.len(), 2);
        assert_eq!(added[1].key.as_deref(), Some(UNREACHABLE));
        // A wildcard toleration covers both.
        let all = [toleration("", "Exists", "", None)];
        assert_eq!(with_default_tolerations(&all, 300).len(), 1);
        // A NoSchedule-only toleration does not.
        let ns = [toleration(UNREACHABLE, "Exists", NO_SCHEDULE, None)];
        assert_eq!(with_default_tolerations(&ns, 300).len(), 3);
    }

    #[test]
    fn toleration_seconds_count_from_the_taints_start() {
        let unreachable = (taint(UNREACHABLE, NO_EXECUTE), ts(0));
        let only = std::slice::from_ref(&unreachable);
        let defaults = with_default_tolerations(&[], 300);
        assert_eq!(eviction(only, &defaults, ts(10)), Eviction::At(ts(300)));
        assert_eq!(eviction(only, &defaults, ts(300)), Eviction::Now);
        // Not tolerated at all: at once.
        assert_eq!(eviction(only, &[], ts(0)), Eviction::Now);
        // Tolerated forever.
        let forever = [toleration(UNREACHABLE, "Exists", NO_EXECUTE, None)];
        assert_eq!(eviction(only, &forever, ts(99_999)), Eviction::Keep);
        // Zero or negative seconds: at once.
        let zero = [toleration(UNREACHABLE, "Exists", NO_EXECUTE, Some(0))];
        assert_eq!(eviction(only, &zero, ts(0)), Eviction::Now);
        // The earliest end over several taints; forever for one does not save the pod.
        let not_ready = (taint(NOT_READY, NO_EXECUTE), ts(100));
        let mixed = [
            toleration(UNREACHABLE, "Exists", NO_EXECUTE, None),
            toleration(NOT_READY, "Exists", NO_EXECUTE, Some(60)),
        ];
        assert_eq!(
            eviction(&[unreachable.clone(), not_ready], &mixed, ts(0)),
            Eviction::At(ts(160))
        );
        // NoSchedule taints never evict.
        assert_eq!(eviction(&[(taint("x", NO_SCHEDULE), ts(0))], &[], ts(0)), Eviction::Keep);
        // The first matching toleration is the one used.
        let first_wins = [
            toleration(UNREACHABLE, "Exists", NO_EXECUTE, Some(3600)),
            toleration("", "Exists", "", None),
        ];
        assert_eq!(eviction(&[unreachable], &first_wins, ts(0)), Eviction::At(ts(3600)));
    }
}
