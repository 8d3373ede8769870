//! Graceful deletion: what a DELETE does with `gracePeriodSeconds` (upstream's
//! `rest.BeforeDelete` and the pod strategy's `CheckGracefulDelete`).
//!
//! Only pods are deleted gracefully. A pod bound to a node and not yet terminated stays with
//! `metadata.deletionTimestamp = now + grace` and `metadata.deletionGracePeriodSeconds =
//! grace` until its kubelet has stopped the containers and deletes it with grace 0 (and the
//! pod's uid as precondition). A later DELETE may only shorten the grace period; grace 0
//! removes the pod at once (or, with finalizers left, marks it with grace 0 until they go).

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::object;

/// The grace period a pod gets when neither the request nor its spec says (upstream's
/// default for `terminationGracePeriodSeconds`).
pub const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// What a DELETE does to the stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not graceful: remove it now, unless finalizers (or a namespace's emptying) hold it, in
    /// which case it is marked with grace 0.
    Now,
    /// A graceful deletion is already under way and this request does not shorten it: the
    /// object is answered unchanged (and its finalizers are not touched, as upstream).
    Pending,
    /// Store the object with these deletion fields; it stays until its grace ends.
    Graceful { deletion_timestamp: SystemTime, grace_seconds: i64 },
}

/// The grace period a first DELETE gives a pod (upstream's pod `CheckGracefulDelete`).
pub fn pod_grace_seconds(pod: &Value, requested: Option<i64>) -> i64 {
    let mut period = requested.unwrap_or_else(|| {
        object::path(pod, "spec.terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
    });
    let node = object::path(pod, "spec.nodeName").and_then(Value::as_str).unwrap_or("");
    if node.is_empty() {
        period = 0;
    }
    if matches!(
        object::path(pod, "status.phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    period
}

/// Decides what a DELETE with `requested` (`DeleteOptions.gracePeriodSeconds`) does to
/// `current`, an object of `kind`, at `now`.
pub fn plan(kind: &str, current: &Value, requested: Option<i64>, now: SystemTime) -> Plan {
    if object::meta_str(current, "deletionTimestamp").is_some() {
        let existing = object::meta(current)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if existing <= 0 {
            return Plan::Now;
        }
        let Some(requested) = requested else { return Plan::Pending };
        let requested = requested.max(0);
        if requested >= existing {
            return Plan::Pending;
        }
        if requested == 0 {
            return Plan::Now;
        }
        let old = object::meta_str(current, "deletionTimestamp")
            .and_then(crate::clock::parse_rfc3339)
            .unwrap_or(now);
        let start = old.checked_sub(Duration::from_secs(existing as u64)).unwrap_or(old);
        return Plan::Graceful {
            deletion_timestamp: start + Duration::from_secs(requested as u64),
            grace_seconds: requested,
        };
    }
    if kind != "Pod" {
        return Plan::Now;
    }
    match pod_grace_seconds(current, requested) {
        0 => Plan::Now,
        grace => Plan::Graceful {
            deletion_timestamp: now + Duration::from_secs(grace as u64),
            grace_seconds: grace,
        },
    }
}

/// Whether an update may finish a pending deletion: only when no graceful period is running
/// (upstream's `shouldDeleteDuringUpdate`; the kubelet ends a graceful one with a DELETE).
pub fn grace_over(obj: &Value) -> bool {
    object::meta(obj)
        .and_then(|m| m.get("deletionGracePeriodSeconds"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        <= 0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn pod(node: &str, phase: &str, grace: Option<i64>) -> Value {
        let mut p = json!({
            "metadata": { "name": "p" },
            "spec": { "nodeName": node, "containers": [{ "name": "c" }] },
            "status": { "phase": phase },
        });
        if let Some(g) = grace {
            p["spec"]["terminationGracePeriodSeconds"] = json!(g);
        }
        p
    }

    #[test]
    fn a_scheduled_running_pod_gets_its_grace_period() {
        assert_eq!(
            plan("Pod", &pod("n1", "Running", Some(45)), None, t(0)),
            Plan::Graceful { deletion_timestamp: t(45), grace_seconds: 45 }
        );
        assert_eq!(
            plan("Pod", &pod("n1", "Running", None), None, t(0)),
            Plan::Graceful { deletion_timestamp: t(30), grace_seconds: 30 }
        );
        assert_eq!(
            plan("Pod", &pod("n1", "Pending", Some(45)), Some(5), t(0)),
            Plan::Graceful { deletion_timestamp: t(5), grace_seconds: 5 }
        );
        assert_eq!(
            plan("Pod", &pod("n1", "Running", Some(45)), Some(-3), t(0)),
            Plan::Graceful { deletion_timestamp: t(1), grace_seconds: 1 }
        );
    }

    #[test]
    fn unscheduled_terminated_or_forced_pods_and_other_kinds_go_now() {
        assert_eq!(plan("Pod", &pod("", "Pending", Some(45)), None, t(0)), Plan::Now);
        assert_eq!(plan("Pod", &pod("n1", "Succeeded", Some(45)), None, t(0)), Plan::Now);
        assert_eq!(plan("Pod", &pod("n1", "Failed", None), None, t(0)), Plan::Now);
        assert_eq!(plan("Pod", &pod("n1", "Running", Some(45)), Some(0), t(0)), Plan::Now);
        assert_eq!(plan("Pod", &pod("n1", "Running", Some(0)), None, t(0)), Plan::Now);
        assert_eq!(plan("ConfigMap", &json!({ "metadata": {} }), Some(30), t(0)), Plan::Now);
    }

    #[test]
    fn a_second_delete_may_only_shorten_the_grace_period() {
        let mut p = pod("n1", "Running", Some(30));
        p["metadata"]["deletionTimestamp"] = json!(crate::clock::rfc3339(t(30)));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(plan("Pod", &p, None, t(10)), Plan::Pending);
        assert_eq!(plan("Pod", &p, Some(30), t(10)), Plan::Pending);
        assert_eq!(plan("Pod", &p, Some(60), t(10)), Plan::Pending);
        assert_eq!(
            plan("Pod", &p, Some(10), t(10)),
            Plan::Graceful { deletion_timestamp: t(10), grace_seconds: 10 }
        );
        assert_eq!(plan("Pod", &p, Some(0), t(10)), Plan::Now);
        assert!(!grace_over(&p));
        p["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        assert_eq!(plan("Pod", &p, None, t(10)), Plan::Now);
        assert!(grace_over(&p));
    }
}
