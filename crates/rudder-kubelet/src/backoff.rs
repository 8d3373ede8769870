//! Per-key exponential back-off (crash loops, image pulls), on explicit times so it is
//! tested without waiting: the first retry is immediate, each later one waits twice as long
//! as the one before (up to a cap), and a container that ran long enough is forgiven.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    /// When the last retry happened (ms on the caller's clock).
    last_ms: u64,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, entries: HashMap::new() }
    }

    /// Time left before `key` may be retried at `now_ms` (None: retry now).
    pub fn remaining(&self, key: &str, now_ms: u64) -> Option<Duration> {
        let e = self.entries.get(key)?;
        let until = e.last_ms + e.delay.as_millis() as u64;
        (now_ms < until).then(|| Duration::from_millis(until - now_ms))
    }

    /// The delay in force for `key` (what upstream's "back-off 20s restarting ..." says).
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }

    /// Records a retry at `now_ms`: the next one waits `initial`, then twice as long.
    pub fn record_retry(&mut self, key: &str, now_ms: u64) {
        let delay = match self.entries.get(key) {
            None => self.initial,
            Some(e) => (e.delay * 2).min(self.max),
        };
        self.entries.insert(key.to_owned(), Entry { delay, last_ms: now_ms });
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every key starting with `prefix` (a pod's containers when it goes).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }

    /// Drops entries idle for more than twice the cap (upstream's GC rule).
    pub fn gc(&mut self, now_ms: u64) {
        let horizon = 2 * self.max.as_millis() as u64;
        self.entries.retain(|_, e| now_ms.saturating_sub(e.last_ms) <= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_retry_is_immediate_then_doubles_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        assert_eq!(b.remaining("k", 0), None);
        b.record_retry("k", 0);
        assert_eq!(b.remaining("k", 4_000), Some(Duration::from_secs(6)));
        assert_eq!(b.remaining("k", 10_000), None);
        let mut t = 10_000;
        let mut seen = vec![b.delay("k").unwrap().as_secs()];
        for _ in 0..7 {
            b.record_retry("k", t);
            seen.push(b.delay("k").unwrap().as_secs());
            t += b.delay("k").unwrap().as_millis() as u64;
        }
        assert_eq!(seen, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        b.reset("k");
        assert_eq!(b.remaining("k", t), None);
    }

    #[test]
    fn forgets_per_pod_and_idle_keys() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        b.record_retry("uid1/a", 0);
        b.record_retry("uid2/a", 0);
        b.forget_prefix("uid1/");
        assert!(b.delay("uid1/a").is_none() && b.delay("uid2/a").is_some());
        b.gc(601_000);
        assert!(b.delay("uid2/a").is_none());
    }
}
