//! Expectations (upstream's `UIDTrackingControllerExpectations`): after a controller creates
//! or deletes pods for an owner it waits until its cache has seen every one of those changes
//! before it counts the owner's pods again, so a cache that lags behind the controller's own
//! writes never makes it create (or delete) twice. Creations are counted; deletions are
//! tracked by pod key, so each is observed once whether it shows up as a deletionTimestamp
//! or as the delete itself. Expectations that are never met expire after five minutes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rudder_client::ObjectKey;
use rudder_client::clock::{self, Clock};

/// How long unmet expectations hold a controller back (upstream's ExpectationsTimeout).
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Record {
    creations: i64,
    deletions: HashSet<ObjectKey>,
    set_at: Timestamp,
}

/// Expectations of every owner of one controller, keyed by the owner's `(namespace, name)`.
#[derive(Debug)]
pub struct Expectations {
    clock: Arc<dyn Clock>,
    records: Mutex<HashMap<ObjectKey, Record>>,
}

impl Expectations {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Expectations { clock, records: Mutex::new(HashMap::new()) }
    }

    /// Whether the owner may be synced: nothing expected, everything observed, or the
    /// expectations expired.
    pub fn satisfied(&self, owner: &ObjectKey) -> bool {
        let records = self.records.lock().expect("expectations lock");
        match records.get(owner) {
            None => true,
            Some(r) if r.creations <= 0 && r.deletions.is_empty() => true,
            Some(r) => clock::elapsed(r.set_at, self.clock.now()) > EXPECTATIONS_TTL,
        }
    }

    /// Whether the owner may be synced, and then `read` (the owner's objects from the
    /// cache), in that order. The informer caches an object before its handlers observe it,
    /// so when every expected change was observed at the check, the read includes them all.
    /// Read before the check, an object created last round and observed in between would be
    /// missing from a read that the check then lets the sync act on: it would be created
    /// again.
    pub async fn satisfied_then<T>(
        &self,
        owner: &ObjectKey,
        read: impl Future<Output = T>,
    ) -> (bool, T) {
        let satisfied = self.satisfied(owner);
        (satisfied, read.await)
    }

    /// Expects `count` pod creations (replacing earlier expectations).
    pub fn expect_creations(&self, owner: &ObjectKey, count: usize) {
        let record =
            Record { creations: count as i64, deletions: HashSet::new(), set_at: self.clock.now() };
        self.records.lock().expect("expectations lock").insert(owner.clone(), record);
    }

    /// Expects the deletion of exactly these pods (replacing earlier expectations).
    pub fn expect_deletions(&self, owner: &ObjectKey, pods: impl IntoIterator<Item = ObjectKey>) {
        let record = Record {
            creations: 0,
            deletions: pods.into_iter().collect(),
            set_at: self.clock.now(),
        };
        self.records.lock().expect("expectations lock").insert(owner.clone(), record);
    }

    /// Expects `count` creations and the deletion of exactly these pods at once (replacing
    /// earlier expectations; upstream's SetExpectations, used by controllers that create and
    /// delete in one round, like the DaemonSet controller).
    pub fn expect(
        &self,
        owner: &ObjectKey,
        count: usize,
        pods: impl IntoIterator<Item = ObjectKey>,
    ) {
        let record = Record {
            creations: count as i64,
            deletions: pods.into_iter().collect(),
            set_at: self.clock.now(),
        };
        self.records.lock().expect("expectations lock").insert(owner.clone(), record);
    }

    /// One expected creation was seen (or will never happen: a create that failed or was
    /// skipped).
    pub fn creation_observed(&self, owner: &ObjectKey) {
        if let Some(r) = self.records.lock().expect("expectations lock").get_mut(owner) {
            r.creations -= 1;
        }
    }

    /// `pod`'s deletion was seen (or will never happen); counted only if it was expected.
    pub fn deletion_observed(&self, owner: &ObjectKey, pod: &ObjectKey) {
        if let Some(r) = self.records.lock().expect("expectations lock").get_mut(owner) {
            r.deletions.remove(pod);
        }
    }

    /// Forgets an owner (it was deleted).
    pub fn forget(&self, owner: &ObjectKey) {
        self.records.lock().expect("expectations lock").remove(owner);
    }

    /// Creations and deletions still expected (for logs and tests).
    pub fn pending(&self, owner: &ObjectKey) -> (i64, usize) {
        let records = self.records.lock().expect("expectations lock");
        records.get(owner).map(|r| (r.creations.max(0), r.deletions.len())).unwrap_or((0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rudder_client::ManualClock;

    fn key(name: &str) -> ObjectKey {
        ("ns".into(), name.into())
    }

    #[test]
    fn creations_and_deletions_must_be_observed_or_expire() {
        let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_000_000).unwrap()));
        let e = Expectations::new(clock.clone());
        let rs = key("rs");
        assert!(e.satisfied(&rs), "nothing expected");
        e.expect_creations(&rs, 2);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(!e.satisfied(&rs));
        e.creation_observed(&rs);
        assert!(e.satisfied(&rs));

        e.expect_deletions(&rs, [key("a"), key("b")]);
        assert_eq!(e.pending(&rs), (0, 2));
        e.deletion_observed(&rs, &key("a"));
        e.deletion_observed(&rs, &key("a")); // seen twice (deletionTimestamp, then delete)
        e.deletion_observed(&rs, &key("zzz")); // not expected: ignored
        assert!(!e.satisfied(&rs));
        e.deletion_observed(&rs, &key("b"));
        assert!(e.satisfied(&rs));

        e.expect_creations(&rs, 1);
        clock.advance(EXPECTATIONS_TTL);
        assert!(!e.satisfied(&rs), "not yet expired");
        clock.advance(Duration::from_secs(1));
        assert!(e.satisfied(&rs), "expired");
        e.forget(&rs);
        assert_eq!(e.pending(&rs), (0, 0));
    }
}
