//! Push-based watch fan-out for the backends that own their write path (sqlite, memory).
//!
//! The single writer publishes each committed batch of events here, in revision order.
//! Every watcher has a bounded queue of batches; a watcher whose queue is full is ended with
//! `WatchLagged` instead of making the writer wait. A new watcher registers first, remembers
//! the last published revision P, replays history up to P from the backend's log, and then
//! takes live batches (all of which are newer than P): nothing is missed or seen twice.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Result, StoreError};
use crate::storage::WatchStream;
use crate::types::{Event, Revision, key_in_prefix};

/// How many committed batches a watcher may have queued before it is ended.
pub const DEFAULT_WATCH_BUFFER_BATCHES: usize = 1024;

/// Events read back from history while a watcher catches up.
const REPLAY_PAGE: usize = 512;

/// The history a new watcher replays from.
#[async_trait]
pub(crate) trait EventLog: Send + Sync + 'static {
    /// Events under `prefix` with revisions in `from..=to`, in order, at most `limit`.
    /// Fails with `Compacted` if `from` is at or below the compaction point.
    async fn read_events(
        &self,
        prefix: &str,
        from: Revision,
        to: Revision,
        limit: usize,
    ) -> Result<Vec<Event>>;

    async fn compacted_revision(&self) -> Result<Revision>;
}

type Batch = Arc<[Event]>;

struct Subscriber {
    id: u64,
    tx: mpsc::Sender<Batch>,
    lagged: Arc<AtomicBool>,
}

struct HubState {
    published: Revision,
    next_id: u64,
    /// Watchers grouped by prefix, so a batch is filtered once per distinct prefix.
    groups: HashMap<String, Vec<Subscriber>>,
}

pub(crate) struct WatchHub {
    state: Mutex<HubState>,
    buffer_batches: usize,
}

impl WatchHub {
    pub fn new(published: Revision, buffer_batches: usize) -> Arc<Self> {
        Arc::new(WatchHub {
            state: Mutex::new(HubState { published, next_id: 0, groups: HashMap::new() }),
            buffer_batches: buffer_batches.max(1),
        })
    }

    /// Hands one committed batch (ascending revisions) to every interested watcher.
    pub fn publish(&self, events: &[Event]) {
        let Some(last) = events.last() else { return };
        let mut state = self.state.lock().expect("watch hub lock");
        state.published = last.revision();
        state.groups.retain(|prefix, subscribers| {
            let batch: Batch = if prefix.is_empty() {
                events.into()
            } else {
                let matching: Vec<Event> =
                    events.iter().filter(|e| key_in_prefix(&e.kv.key, prefix)).cloned().collect();
                if matching.is_empty() {
                    return true;
                }
                matching.into()
            };
            subscribers.retain(|s| match s.tx.try_send(batch.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            !subscribers.is_empty()
        });
    }

    pub fn watcher_count(&self) -> usize {
        self.state.lock().expect("watch hub lock").groups.values().map(Vec::len).sum()
    }

    fn unsubscribe(&self, prefix: &str, id: u64) {
        let mut state = self.state.lock().expect("watch hub lock");
        if let Some(subscribers) = state.groups.get_mut(prefix) {
            subscribers.retain(|s| s.id != id);
            if subscribers.is_empty() {
                state.groups.remove(prefix);
            }
        }
    }

    /// Starts a watch of `prefix` from `from` (inclusive; 0 = from now on).
    pub async fn watch(
        self: &Arc<Self>,
        prefix: &str,
        from: Revision,
        log: Arc<dyn EventLog>,
    ) -> Result<WatchStream> {
        let (tx, rx) = mpsc::channel(self.buffer_batches);
        let lagged = Arc::new(AtomicBool::new(false));
        let (id, published) = {
            let mut state = self.state.lock().expect("watch hub lock");
            let id = state.next_id;
            state.next_id += 1;
            let subscriber = Subscriber { id, tx, lagged: lagged.clone() };
            state.groups.entry(prefix.to_owned()).or_default().push(subscriber);
            (id, state.published)
        };
        let guard = Subscription { hub: Arc::downgrade(self), prefix: prefix.to_owned(), id };
        if from != 0 {
            let compacted = log.compacted_revision().await?;
            if from <= compacted {
                return Err(StoreError::Compacted { requested: from, compacted });
            }
        }
        let start = if from == 0 { published + 1 } else { from };
        let state = WatchState {
            prefix: prefix.to_owned(),
            start,
            replay_next: start,
            replay_until: published,
            log,
            buffered: VecDeque::new(),
            rx,
            lagged,
            buffer_batches: self.buffer_batches,
            done: false,
            _guard: guard,
        };
        Ok(WatchStream::new(futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })))
    }
}

/// Removes the watcher from the hub when its stream is dropped.
struct Subscription {
    hub: Weak<WatchHub>,
    prefix: String,
    id: u64,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(&self.prefix, self.id);
        }
    }
}

struct WatchState {
    prefix: String,
    start: Revision,
    replay_next: Revision,
    replay_until: Revision,
    log: Arc<dyn EventLog>,
    buffered: VecDeque<Event>,
    rx: mpsc::Receiver<Batch>,
    lagged: Arc<AtomicBool>,
    buffer_batches: usize,
    done: bool,
    _guard: Subscription,
}

impl WatchState {
    async fn next(&mut self) -> Option<Result<Event>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.buffered.pop_front() {
                return Some(Ok(event));
            }
            if self.replay_next <= self.replay_until {
                match self
                    .log
                    .read_events(&self.prefix, self.replay_next, self.replay_until, REPLAY_PAGE)
                    .await
                {
                    Ok(events) => {
                        self.replay_next = match events.last() {
                            Some(last) if events.len() == REPLAY_PAGE => last.revision() + 1,
                            _ => self.replay_until + 1,
                        };
                        self.buffered.extend(events);
                        continue;
                    }
                    Err(e) => return self.fail(e),
                }
            }
            match self.rx.recv().await {
                Some(batch) => {
                    let start = self.start;
                    self.buffered.extend(batch.iter().filter(|e| e.revision() >= start).cloned());
                }
                None if self.lagged.load(Ordering::Acquire) => {
                    return self
                        .fail(StoreError::WatchLagged { buffered_batches: self.buffer_batches });
                }
                None => return self.fail(StoreError::closed()),
            }
        }
    }

    fn fail(&mut self, e: StoreError) -> Option<Result<Event>> {
        self.done = true;
        Some(Err(e))
    }
}
