//! The pod engine: one task owns every simulated pod's state (a small entry per pod, no task
//! per pod). It takes pod summaries from the shared watch, keeps one timer heap for all pods'
//! next transitions, and dispatches status writes and deletions from one queue with a bound
//! on how many are in flight. A write is skipped when the status it would write is the one
//! last written; a failed write is retried with back-off a bounded number of times.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use rudder_client::clock::elapsed;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cidr::PodIpAllocator;
use crate::pod_info::{ContainerSpec, PodInfo, QosClass};
use crate::pod_io::{PodWriter, WriteOutcome};
use crate::pod_state::{PodFacts, PodSim, Stage, Timing};
use crate::shared::Shared;

/// Failed writes of one pod are retried this often before waiting for its next change.
const MAX_WRITE_RETRIES: u32 = 10;
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

pub(crate) type PodKey = (String, String);

/// What the engine is told.
#[derive(Debug)]
pub(crate) enum EngineMsg {
    /// A pod on one of our nodes as the watch shows it now.
    Applied(Box<PodInfo>),
    Deleted {
        namespace: String,
        name: String,
        uid: String,
    },
    /// A full relist ended: these are all our pods; forget the others.
    Relisted(HashSet<PodKey>),
    /// `start_node`: the node's pods continue.
    NodeStarted(usize),
    Done {
        slot: u32,
        generation: u32,
        work: Work,
        outcome: WriteOutcome,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Work {
    Status,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Advance,
    Retry,
}

struct PodEntry {
    namespace: String,
    name: String,
    uid: String,
    node: usize,
    containers: Box<[ContainerSpec]>,
    init_containers: Box<[ContainerSpec]>,
    qos: QosClass,
    gates: Vec<(String, Option<bool>)>,
    has_scheduled_condition: bool,
    host_network: bool,
    sim: PodSim,
    pod_ip: Option<Ipv4Addr>,
    /// The IP is held in the node's allocator.
    ip_held: bool,
    /// Hash of the status last written (or adopted).
    written: Option<u64>,
    /// Hash of the status being written.
    in_flight: Option<u64>,
    queued: bool,
    /// Changed while a write was in flight: write again after it.
    dirty: bool,
    /// Waiting for its stopped node to start again.
    stalled: bool,
    deleting: bool,
    delete_sent: bool,
    failures: u32,
    /// The pending Advance timer.
    wake: Option<Instant>,
}

struct Slot {
    generation: u32,
    entry: Option<PodEntry>,
}

pub(crate) struct Engine {
    shared: Arc<Shared>,
    writer: PodWriter,
    timing: Timing,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: HashMap<PodKey, u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32, TimerKind)>>,
    queue: VecDeque<(u32, u32, Work)>,
    in_flight: usize,
    allocators: Vec<PodIpAllocator>,
    stalled: Vec<Vec<(u32, u32)>>,
    done_tx: mpsc::UnboundedSender<EngineMsg>,
}

fn hash_status(status: &k8s_openapi::api::core::v1::PodStatus) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(status).unwrap_or_default().hash(&mut h);
    h.finish()
}

impl Engine {
    pub fn new(
        shared: Arc<Shared>,
        writer: PodWriter,
        done_tx: mpsc::UnboundedSender<EngineMsg>,
    ) -> Self {
        let cfg = &shared.config;
        let timing = Timing {
            succeed_after: cfg.succeed_after,
            backoff_base: cfg.crash_loop_backoff_base,
            backoff_max: cfg.crash_loop_backoff_max.max(cfg.crash_loop_backoff_base),
        };
        let n = shared.nodes.len();
        Engine {
            writer,
            timing,
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            timers: BinaryHeap::new(),
            queue: VecDeque::new(),
            in_flight: 0,
            allocators: (0..n).map(|_| PodIpAllocator::default()).collect(),
            stalled: vec![Vec::new(); n],
            done_tx,
            shared,
        }
    }

    /// Runs until `cancel`, taking watch events from `events` and everything else from
    /// `control`.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<EngineMsg>,
        mut control: mpsc::UnboundedReceiver<EngineMsg>,
        cancel: CancellationToken,
    ) {
        loop {
            let next = self.timers.peek().map(|Reverse((at, ..))| *at);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                Some(msg) = control.recv() => self.handle(msg),
                Some(msg) = events.recv() => self.handle(msg),
                _ = sleep_until(next), if next.is_some() => self.fire_timers(),
            }
            self.dispatch();
        }
    }

    fn now(&self) -> k8s_openapi::jiff::Timestamp {
        self.shared.clock.now()
    }

    fn entry(&mut self, slot: u32, generation: u32) -> Option<&mut PodEntry> {
        entry_mut(&mut self.slots, slot, generation)
    }

    pub(crate) fn handle(&mut self, msg: EngineMsg) {
        match msg {
            EngineMsg::Applied(info) => self.applied(*info),
            EngineMsg::Deleted { namespace, name, uid } => {
                if let Some(&slot) = self.index.get(&(namespace, name))
                    && self.slots[slot as usize].entry.as_ref().is_some_and(|e| e.uid == uid)
                {
                    self.forget(slot);
                }
            }
            EngineMsg::Relisted(keys) => {
                let gone: Vec<u32> = self
                    .index
                    .iter()
                    .filter(|(k, _)| !keys.contains(*k))
                    .map(|(_, s)| *s)
                    .collect();
                for slot in gone {
                    self.forget(slot);
                }
            }
            EngineMsg::NodeStarted(node) => self.resume_node(node),
            EngineMsg::Done { slot, generation, work, outcome } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.done(slot, generation, work, outcome);
            }
        }
    }

    fn applied(&mut self, info: PodInfo) {
        let key = (info.namespace.clone(), info.name.clone());
        if let Some(&slot) = self.index.get(&key) {
            let generation = self.slots[slot as usize].generation;
            let same = self.slots[slot as usize].entry.as_ref().is_some_and(|e| e.uid == info.uid);
            if same {
                self.update(slot, generation, info);
                return;
            }
            self.forget(slot);
        }
        let terminal = matches!(info.observed.phase.as_deref(), Some("Succeeded" | "Failed"));
        if terminal && !info.deleting {
            return; // finished before we saw it: nothing to simulate
        }
        let now = self.now();
        let host_ip = self.shared.nodes[info.node].id.internal_ip;
        let adopted = if info.deleting {
            None
        } else {
            PodSim::adopt(
                info.restart_policy,
                info.plan.clone(),
                info.active_deadline,
                &info.observed,
                &self.timing,
                now,
            )
        };
        let was_adopted = adopted.is_some();
        let sim = adopted.unwrap_or_else(|| {
            PodSim::new(info.restart_policy, info.plan.clone(), info.active_deadline)
        });
        let host_network = info.host_network;
        let mut entry = PodEntry {
            namespace: info.namespace,
            name: info.name,
            uid: info.uid,
            node: info.node,
            containers: info.containers.into(),
            init_containers: info.init_containers.into(),
            qos: info.qos,
            gates: info.readiness_gates,
            has_scheduled_condition: info.has_scheduled_condition,
            host_network,
            sim,
            pod_ip: None,
            ip_held: false,
            written: None,
            in_flight: None,
            queued: false,
            dirty: false,
            stalled: false,
            deleting: info.deleting,
            delete_sent: false,
            failures: 0,
            wake: None,
        };
        if was_adopted {
            entry.pod_ip = if host_network { Some(host_ip) } else { info.observed.pod_ip };
            if let (Some(ip), false) = (entry.pod_ip, host_network) {
                self.allocators[entry.node].reserve(ip);
                entry.ip_held = true;
            }
            entry.written = Some(hash_status(&render(&entry, host_ip)));
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { generation: 0, entry: None });
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.slots[slot as usize].entry = Some(entry);
        self.index.insert(key, slot);
        if info.deleting {
            self.enqueue(slot, generation, Work::Delete);
        } else if was_adopted {
            self.schedule(slot, generation);
        } else {
            let at = Instant::now() + self.shared.config.ready_delay;
            self.set_wake(slot, generation, at);
        }
    }

    fn update(&mut self, slot: u32, generation: u32, info: PodInfo) {
        let running = self.shared.nodes[info.node].is_running();
        let now = self.now();
        let timing = self.timing;
        let Some(e) = self.entry(slot, generation) else { return };
        e.has_scheduled_condition = info.has_scheduled_condition;
        if e.deleting {
            return;
        }
        if info.deleting {
            e.deleting = true;
            e.wake = None;
            self.release_ip(slot, generation);
            self.enqueue(slot, generation, Work::Delete);
            return;
        }
        let mut changed = false;
        if e.sim.plan.not_ready != info.plan.not_ready {
            e.sim.plan.not_ready = info.plan.not_ready;
            changed = true;
        }
        if e.gates != info.readiness_gates {
            e.gates = info.readiness_gates;
            changed = true;
        }
        if changed && running && e.sim.stage != Stage::Pending && !e.stalled {
            let gates_ready = e.gates.iter().all(|(_, s)| *s == Some(true));
            if e.sim.advance(now, &timing, gates_ready) {
                self.enqueue(slot, generation, Work::Status);
            }
            self.schedule(slot, generation);
        }
    }

    fn forget(&mut self, slot: u32) {
        let generation = self.slots[slot as usize].generation;
        self.release_ip(slot, generation);
        let s = &mut self.slots[slot as usize];
        if let Some(e) = s.entry.take() {
            self.index.remove(&(e.namespace, e.name));
            s.generation = s.generation.wrapping_add(1);
            self.free.push(slot);
        }
    }

    fn release_ip(&mut self, slot: u32, generation: u32) {
        let Some(e) = self.entry(slot, generation) else { return };
        if !e.ip_held {
            return;
        }
        e.ip_held = false;
        let (node, ip) = (e.node, e.pod_ip);
        if let Some(ip) = ip {
            self.allocators[node].release(ip);
        }
    }

    fn set_wake(&mut self, slot: u32, generation: u32, at: Instant) {
        let Some(e) = self.entry(slot, generation) else { return };
        if e.wake == Some(at) {
            return;
        }
        e.wake = Some(at);
        self.timers.push(Reverse((at, slot, generation, TimerKind::Advance)));
    }

    /// Sets the Advance timer to the pod's next transition.
    fn schedule(&mut self, slot: u32, generation: u32) {
        let now = self.now();
        let timing = self.timing;
        let Some(e) = self.entry(slot, generation) else { return };
        match e.sim.next_wake(&timing) {
            Some(at) => {
                let at = Instant::now() + elapsed(now, at);
                self.set_wake(slot, generation, at);
            }
            None => e.wake = None,
        }
    }

    pub(crate) fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, slot, generation, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Advance => {
                    let Some(e) = self.entry(slot, generation) else { continue };
                    if e.wake != Some(at) {
                        continue; // replaced by a later schedule
                    }
                    e.wake = None;
                    self.step(slot, generation);
                }
                TimerKind::Retry => self.enqueue(slot, generation, Work::Status),
            }
        }
    }

    /// Moves one pod along to now (or parks it if its node is stopped).
    fn step(&mut self, slot: u32, generation: u32) {
        let now = self.now();
        let timing = self.timing;
        let cfg = &self.shared.config;
        let Some(e) = entry_mut(&mut self.slots, slot, generation) else { return };
        let node = &self.shared.nodes[e.node];
        if !node.is_running() {
            if !e.stalled {
                e.stalled = true;
                self.stalled[e.node].push((slot, generation));
            }
            return;
        }
        if e.deleting {
            return;
        }
        if e.sim.stage == Stage::Pending && e.pod_ip.is_none() {
            if e.host_network {
                e.pod_ip = Some(node.id.internal_ip);
            } else {
                let cidr = node.pod_cidr(cfg);
                e.pod_ip = self.allocators[e.node].allocate(cidr);
                e.ip_held = e.pod_ip.is_some();
                if e.pod_ip.is_none() {
                    tracing::warn!(pod = %e.name, namespace = %e.namespace, node = %node.id.name, %cidr, "pod CIDR exhausted; pod runs without an IP");
                }
            }
        }
        let gates_ready = e.gates.iter().all(|(_, s)| *s == Some(true));
        let changed = e.sim.advance(now, &timing, gates_ready);
        let terminal = e.sim.is_terminal();
        if terminal {
            // Like a torn-down sandbox: the address is free again (the status keeps it).
            self.release_ip(slot, generation);
        }
        if changed {
            self.enqueue(slot, generation, Work::Status);
        }
        self.schedule(slot, generation);
    }

    fn resume_node(&mut self, node: usize) {
        let parked = std::mem::take(&mut self.stalled[node]);
        for (slot, generation) in parked {
            let Some(e) = self.entry(slot, generation) else { continue };
            e.stalled = false;
            if e.deleting {
                e.delete_sent = false;
                self.enqueue(slot, generation, Work::Delete);
            } else {
                self.step(slot, generation);
                self.enqueue(slot, generation, Work::Status);
            }
        }
    }

    /// Counts for tests: (pods tracked, addresses held on node 0).
    #[cfg(test)]
    pub fn counts(&self) -> (usize, usize) {
        (self.index.len(), self.allocators[0].in_use())
    }
}

fn entry_mut(slots: &mut [Slot], slot: u32, generation: u32) -> Option<&mut PodEntry> {
    let s = slots.get_mut(slot as usize)?;
    if s.generation != generation {
        return None;
    }
    s.entry.as_mut()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn render(e: &PodEntry, host_ip: Ipv4Addr) -> k8s_openapi::api::core::v1::PodStatus {
    e.sim.render(&PodFacts {
        namespace: &e.namespace,
        name: &e.name,
        uid: &e.uid,
        containers: &e.containers,
        init_containers: &e.init_containers,
        qos: e.qos,
        host_ip,
        pod_ip: e.pod_ip,
        has_scheduled_condition: e.has_scheduled_condition,
        readiness_gates: &e.gates,
    })
}

#[path = "engine_writes.rs"]
mod writes;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
