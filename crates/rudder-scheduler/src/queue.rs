//! The scheduling queue (upstream's PriorityQueue): pods waiting for a cycle, highest
//! `spec.priority` first then first come first served; pods backing off after a failed
//! attempt; unschedulable pods parked until a cluster change that could help (or the
//! periodic flush) moves them back. Time is passed in, so the queue is tested without a
//! clock.

use crate::FastMap as HashMap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use rudder_client::clock;

use crate::pod_info::PodInfo;

/// Where a queued pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    Active,
    Backoff,
    Unschedulable,
    /// Being scheduled or bound.
    InFlight,
    /// Has scheduling gates: waits for them to be removed.
    Gated,
}

#[derive(Clone, Debug)]
pub struct QueuedPod {
    pub info: Arc<PodInfo>,
    pub state: PodState,
    /// Scheduling attempts so far.
    pub attempts: u32,
    pub last_failure: Option<Timestamp>,
    pub unschedulable_since: Option<Timestamp>,
    /// The plugins that rejected it last ([`crate::filters::Plugin::bit`]); 0 = any event
    /// may help.
    pub plugins: u16,
    seq: u64,
}

fn gated(info: &PodInfo) -> bool {
    info.spec().and_then(|s| s.scheduling_gates.as_ref()).is_some_and(|g| !g.is_empty())
}

#[derive(Debug)]
pub struct SchedulingQueue {
    pods: HashMap<Arc<str>, QueuedPod>,
    active: BinaryHeap<(i32, Reverse<u64>, Arc<str>)>,
    backoff: BinaryHeap<Reverse<(Timestamp, u64, Arc<str>)>>,
    /// The unschedulable pods (what cluster events look through).
    parked: HashSet<Arc<str>>,
    next_seq: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            pods: HashMap::default(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            parked: HashSet::new(),
            next_seq: 0,
            initial_backoff,
            max_backoff,
        }
    }

    fn activate(&mut self, uid: &Arc<str>) {
        self.parked.remove(uid);
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(p) = self.pods.get_mut(uid) {
            p.state = PodState::Active;
            p.seq = seq;
            self.active.push((p.info.priority, Reverse(seq), uid.clone()));
        }
    }

    /// How long a pod that failed `attempts` times backs off.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.max_backoff {
                return self.max_backoff;
            }
        }
        d.min(self.max_backoff)
    }

    fn backoff_until(&self, p: &QueuedPod) -> Option<Timestamp> {
        p.last_failure.map(|t| clock::add(t, self.backoff_duration(p.attempts)))
    }

    /// Active again, or backing off first if its back-off has not passed.
    fn requeue(&mut self, uid: &Arc<str>, now: Timestamp) {
        let Some(p) = self.pods.get(uid) else { return };
        match self.backoff_until(p) {
            Some(due) if due > now => {
                self.parked.remove(uid);
                let seq = self.next_seq;
                self.next_seq += 1;
                let p = self.pods.get_mut(uid).expect("present");
                p.state = PodState::Backoff;
                p.seq = seq;
                self.backoff.push(Reverse((due, seq, uid.clone())));
            }
            _ => self.activate(uid),
        }
    }

    /// A new unscheduled pod, or a newer version of one already queued. `changed` says
    /// whether the update could change the outcome (spec or labels, not just status): an
    /// unschedulable pod then gets another try.
    pub fn upsert(&mut self, info: Arc<PodInfo>, changed: bool, now: Timestamp) {
        let uid = info.uid.clone();
        let Some(p) = self.pods.get_mut(&uid) else {
            let is_gated = gated(&info);
            self.pods.insert(
                uid.clone(),
                QueuedPod {
                    info,
                    state: PodState::Gated,
                    attempts: 0,
                    last_failure: None,
                    unschedulable_since: None,
                    plugins: 0,
                    seq: 0,
                },
            );
            if !is_gated {
                self.activate(&uid);
            }
            return;
        };
        let is_gated = gated(&info);
        p.info = info;
        match p.state {
            PodState::Gated if !is_gated => self.activate(&uid),
            PodState::Unschedulable if changed => self.requeue(&uid, now),
            _ => {}
        }
    }

    pub fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        self.parked.remove(uid);
        self.pods.remove(uid)
    }

    /// Queued pods (any state, in flight included).
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    pub fn get(&self, uid: &str) -> Option<&QueuedPod> {
        self.pods.get(uid)
    }

    /// The next pod to schedule: highest priority, then longest waiting. It stays known
    /// (in flight) until [`SchedulingQueue::remove`] or a failure report.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        while let Some((_, Reverse(seq), uid)) = self.active.pop() {
            if let Some(p) = self.pods.get_mut(&uid)
                && p.state == PodState::Active
                && p.seq == seq
            {
                p.state = PodState::InFlight;
                p.attempts += 1;
                return Some(p.info.clone());
            }
        }
        None
    }

    /// The attempt found no node: park the pod until something changes.
    pub fn unschedulable(&mut self, uid: &str, plugins: u16, now: Timestamp) {
        if let Some(p) = self.pods.get_mut(uid) {
            p.state = PodState::Unschedulable;
            p.plugins = plugins;
            p.last_failure = Some(now);
            p.unschedulable_since = Some(now);
            self.parked.insert(p.info.uid.clone());
        }
    }

    /// The attempt failed for another reason (a binding error): retry after back-off.
    pub fn retry(&mut self, uid: &str, now: Timestamp) {
        let Some(p) = self.pods.get_mut(uid) else { return };
        p.last_failure = Some(now);
        let uid = p.info.uid.clone();
        self.requeue(&uid, now);
    }

    /// A cluster change that may help pods rejected by any of `plugins` (bits): those go
    /// back to active (or back-off). Returns how many moved.
    pub fn move_unschedulable(&mut self, plugins: u16, now: Timestamp) -> usize {
        let moving: Vec<Arc<str>> = self
            .parked
            .iter()
            .filter(|u| {
                self.pods.get(*u).is_some_and(|p| p.plugins == 0 || p.plugins & plugins != 0)
            })
            .cloned()
            .collect();
        for uid in &moving {
            self.requeue(uid, now);
        }
        moving.len()
    }

    /// Pods whose back-off has passed become active.
    pub fn flush_backoff(&mut self, now: Timestamp) {
        while let Some(Reverse((due, seq, uid))) = self.backoff.peek().cloned() {
            if due > now {
                break;
            }
            self.backoff.pop();
            if self.pods.get(&uid).is_some_and(|p| p.state == PodState::Backoff && p.seq == seq) {
                self.activate(&uid);
            }
        }
    }

    /// Pods unschedulable for longer than `max` get another try (upstream's
    /// podMaxInUnschedulablePodsDuration).
    pub fn flush_unschedulable(&mut self, now: Timestamp, max: Duration) -> usize {
        let moving: Vec<Arc<str>> = self
            .parked
            .iter()
            .filter(|u| {
                self.pods.get(*u).is_some_and(|p| {
                    p.unschedulable_since.is_some_and(|t| clock::add(t, max) <= now)
                })
            })
            .cloned()
            .collect();
        for uid in &moving {
            self.requeue(uid, now);
        }
        moving.len()
    }

    /// When the earliest back-off ends.
    pub fn next_backoff_due(&self) -> Option<Timestamp> {
        self.backoff.peek().map(|Reverse((due, _, _))| *due)
    }

    /// How many pods are in each state.
    pub fn counts(&self) -> QueueCounts {
        let mut c = QueueCounts::default();
        for p in self.pods.values() {
            match p.state {
                PodState::Active => c.active += 1,
                PodState::Backoff => c.backoff += 1,
                PodState::Unschedulable => c.unschedulable += 1,
                PodState::InFlight => c.in_flight += 1,
                PodState::Gated => c.gated += 1,
            }
        }
        c
    }
}

/// Queue sizes by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
    pub gated: usize,
}
