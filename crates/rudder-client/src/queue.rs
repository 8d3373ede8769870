//! A work queue of keys, shaped after upstream's: a key is queued at most once, is never
//! handed to two workers at the same time (a key added while it is being processed is
//! queued again when `done`), can be added after a delay, and failing keys come back with a
//! per-key exponential back-off (capped).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

struct State<T> {
    queue: VecDeque<T>,
    /// Keys that are queued or must be queued again once their processing is done.
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// Keys waiting for a delayed add, with when they are due.
    waiting: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    shutdown: bool,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    base_delay: Duration,
    max_delay: Duration,
}

impl<T> std::fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkQueue").field("base_delay", &self.base_delay).finish_non_exhaustive()
    }
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    /// A queue whose failing keys are retried after 5 ms, 10 ms, ... up to 5 minutes.
    pub fn new() -> Arc<Self> {
        Self::with_backoff(Duration::from_millis(5), Duration::from_secs(300))
    }

    pub fn with_backoff(base_delay: Duration, max_delay: Duration) -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                waiting: HashMap::new(),
                failures: HashMap::new(),
                shutdown: false,
            }),
            notify: Notify::new(),
            base_delay,
            max_delay,
        })
    }

    pub fn add(&self, item: T) {
        let mut s = self.state.lock().expect("queue lock");
        if s.shutdown || !s.dirty.insert(item.clone()) {
            return;
        }
        if !s.processing.contains(&item) {
            s.queue.push_back(item);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `item` once `delay` has passed (an earlier pending delayed add wins).
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let due = Instant::now() + delay;
        {
            let mut s = self.state.lock().expect("queue lock");
            if s.shutdown {
                return;
            }
            match s.waiting.get(&item) {
                Some(existing) if *existing <= due => return,
                _ => {
                    s.waiting.insert(item.clone(), due);
                }
            }
        }
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let Some(queue) = queue.upgrade() else { return };
            let fire = {
                let mut s = queue.state.lock().expect("queue lock");
                // A later delayed add replaced ours with an earlier one that fired already, or
                // with a later one that will fire on its own.
                if s.waiting.get(&item) == Some(&due) {
                    s.waiting.remove(&item);
                    true
                } else {
                    false
                }
            };
            if fire {
                queue.add(item);
            }
        });
    }

    /// Adds `item` after its next back-off delay (doubling with every failure).
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let failures = {
            let mut s = self.state.lock().expect("queue lock");
            let n = s.failures.entry(item.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let factor = 1u32.checked_shl(failures.saturating_sub(1).min(31)).unwrap_or(u32::MAX);
        let delay = self.base_delay.saturating_mul(factor).min(self.max_delay);
        self.add_after(item, delay);
    }

    /// Clears `item`'s failure count.
    pub fn forget(&self, item: &T) {
        self.state.lock().expect("queue lock").failures.remove(item);
    }

    pub fn failures(&self, item: &T) -> u32 {
        self.state.lock().expect("queue lock").failures.get(item).copied().unwrap_or(0)
    }

    /// The next key to process; `None` once the queue is shut down.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock().expect("queue lock");
                if s.shutdown {
                    return None;
                }
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            notified.await;
        }
    }

    /// Marks `item` processed; queues it again if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.state.lock().expect("queue lock");
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    pub fn shutdown(&self) {
        self.state.lock().expect("queue lock").shutdown = true;
        self.notify.notify_waiters();
    }

    /// Keys queued and ready (not counting delayed ones or those being processed).
    pub fn len(&self) -> usize {
        self.state.lock().expect("queue lock").queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_never_hands_a_key_to_two_workers() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "a");
        q.add("a"); // while processing: not queued yet
        assert_eq!(q.get().await.unwrap(), "b");
        assert!(q.is_empty());
        q.done(&a);
        assert_eq!(q.get().await.unwrap(), "a");
    }

    #[tokio::test(start_paused = true)]
    async fn delayed_and_rate_limited_adds() {
        let q = WorkQueue::with_backoff(Duration::from_millis(100), Duration::from_millis(250));
        q.add_rate_limited("x");
        q.add_rate_limited("x");
        q.add_rate_limited("x");
        assert_eq!(q.failures(&"x"), 3);
        // The first delayed add (100 ms) wins over the later ones.
        tokio::time::advance(Duration::from_millis(99)).await;
        assert!(q.is_empty());
        tokio::time::advance(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(q.get().await.unwrap(), "x");
        q.done(&"x");
        q.forget(&"x");
        assert_eq!(q.failures(&"x"), 0);
        q.shutdown();
        assert_eq!(q.get().await, None);
    }
}
