//! The delay before a Job replaces failed pods: `base * 2^(n-1)` capped at `max`, where `n`
//! counts the pod failures since the last success, measured from the last failure (upstream's
//! backoffRecord; 10 s and 6 min by default).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use rudder_client::ObjectKey;
use rudder_client::clock::elapsed;

use super::pods::finished_time;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// The record after newly seen finished pods.
    pub fn after(self, new_succeeded: &[Arc<Pod>], new_failed: &[Arc<Pod>]) -> BackoffRecord {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_time(p)).collect();
        failed.sort();
        if new_succeeded.is_empty() {
            let Some(last) = failed.last() else { return self };
            return BackoffRecord {
                failures_after_last_success: self.failures_after_last_success + failed.len() as u32,
                last_failure_time: Some(*last),
            };
        }
        let last_success = new_succeeded.iter().map(|p| finished_time(p)).max();
        let after: Vec<&Timestamp> = failed.iter().filter(|t| Some(**t) > last_success).collect();
        BackoffRecord {
            failures_after_last_success: after.len() as u32,
            last_failure_time: after.last().map(|t| **t),
        }
    }

    /// How long pod creation must still wait at `now`.
    pub fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let Some(last) = self.last_failure_time else { return Duration::ZERO };
        if self.failures_after_last_success == 0 {
            return Duration::ZERO;
        }
        let mut backoff = base;
        for _ in 1..self.failures_after_last_success {
            backoff = backoff.saturating_mul(2);
            if backoff >= max {
                backoff = max;
                break;
            }
        }
        backoff.min(max).saturating_sub(elapsed(last, now))
    }
}

/// The records of every Job (in memory, as upstream keeps them).
#[derive(Debug, Default)]
pub struct BackoffStore {
    records: Mutex<HashMap<ObjectKey, BackoffRecord>>,
}

impl BackoffStore {
    pub fn get(&self, key: &ObjectKey) -> BackoffRecord {
        self.records.lock().expect("backoff lock").get(key).copied().unwrap_or_default()
    }

    pub fn set(&self, key: &ObjectKey, record: BackoffRecord) {
        self.records.lock().expect("backoff lock").insert(key.clone(), record);
    }

    pub fn remove(&self, key: &ObjectKey) {
        self.records.lock().expect("backoff lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod_finished_at(second: i64) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(second).unwrap()));
        Arc::new(p)
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn doubling_delays_capped_and_reset_by_success() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(360);
        let r = BackoffRecord::default().after(&[], &[pod_finished_at(100)]);
        assert_eq!(r.failures_after_last_success, 1);
        assert_eq!(r.remaining(at(100), base, max), Duration::from_secs(10));
        assert_eq!(r.remaining(at(104), base, max), Duration::from_secs(6));
        assert_eq!(r.remaining(at(200), base, max), Duration::ZERO);
        let r = r.after(&[], &[pod_finished_at(110), pod_finished_at(120)]);
        assert_eq!((r.failures_after_last_success, r.last_failure_time), (3, Some(at(120))));
        assert_eq!(r.remaining(at(120), base, max), Duration::from_secs(40));
        let mut many = r;
        many.failures_after_last_success = 20;
        assert_eq!(many.remaining(at(120), base, max), max);
        // A success resets the count to the failures after it.
        let r = r.after(&[pod_finished_at(130)], &[pod_finished_at(125), pod_finished_at(140)]);
        assert_eq!((r.failures_after_last_success, r.last_failure_time), (1, Some(at(140))));
        let r = r.after(&[pod_finished_at(150)], &[]);
        assert_eq!(r, BackoffRecord::default());
    }
}
