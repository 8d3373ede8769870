//! Back-off for deleting failed daemon pods (upstream's flowcontrol.Backoff as the
//! DaemonSet controller uses it, 1 s doubling to 15 min): a node whose daemon pods keep
//! failing (say, the kubelet rejects them) is not hot-looped through delete and create.
//! Entries idle for twice the maximum are forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Per-key exponential back-off.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL_BACKOFF, MAX_BACKOFF)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, entries: Mutex::new(HashMap::new()) }
    }

    fn expired(&self, e: &Entry, now: Timestamp) -> bool {
        clock::elapsed(e.last_update, now) > 2 * self.max
    }

    /// The remaining wait if `key` is backing off at `now`.
    pub fn in_backoff(&self, key: &str, now: Timestamp) -> Option<Duration> {
        let entries = self.entries.lock().expect("backoff lock");
        let e = entries.get(key)?;
        if self.expired(e, now) {
            return None;
        }
        let since = clock::elapsed(e.last_update, now);
        (since < e.backoff).then(|| e.backoff - since)
    }

    /// The current delay of `key` (zero when unknown).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.lock().expect("backoff lock").get(key).map(|e| e.backoff).unwrap_or_default()
    }

    /// Records a failure of `key` at `now`: the delay starts at the initial value and doubles
    /// with each failure, up to the maximum.
    pub fn next(&self, key: &str, now: Timestamp) {
        let mut entries = self.entries.lock().expect("backoff lock");
        let backoff = match entries.get(key) {
            Some(e) if !self.expired(e, now) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        entries.insert(key.to_owned(), Entry { backoff, last_update: now });
    }

    /// Forgets entries idle for twice the maximum.
    pub fn gc(&self, now: Timestamp) {
        let max = self.max;
        self.entries
            .lock()
            .expect("backoff lock")
            .retain(|_, e| clock::elapsed(e.last_update, now) <= 2 * max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_expires() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let at = |s: u64| clock::add(t0, Duration::from_secs(s));
        assert_eq!(b.in_backoff("k", t0), None);
        b.next("k", t0);
        assert_eq!(b.in_backoff("k", t0), Some(Duration::from_secs(1)));
        assert_eq!(b.in_backoff("k", at(1)), None);
        b.next("k", at(1));
        assert_eq!(b.get("k"), Duration::from_secs(2));
        b.next("k", at(2));
        b.next("k", at(3));
        assert_eq!(b.get("k"), Duration::from_secs(4), "capped");
        assert_eq!(b.in_backoff("k", at(5)), Some(Duration::from_secs(2)));
        // Idle for more than twice the maximum: starts over.
        b.next("k", at(20));
        assert_eq!(b.get("k"), Duration::from_secs(1));
        b.gc(at(100));
        assert_eq!(b.get("k"), Duration::ZERO);
    }
}
