//! The engine's write queue: enqueueing, dispatching under the in-flight bound, and what a
//! finished write does (remember what was written, retry with back-off, forget gone pods).

use std::cmp::Reverse;

use tokio::time::Instant;

use super::{
    Engine, MAX_WRITE_RETRIES, RETRY_BASE, RETRY_MAX, TimerKind, Work, entry_mut, hash_status,
    render,
};
use crate::pod_io::WriteOutcome;
use crate::pod_state::Stage;

impl Engine {
    pub(super) fn enqueue(&mut self, slot: u32, generation: u32, work: Work) {
        let Some(e) = self.entry(slot, generation) else { return };
        if e.in_flight.is_some() {
            e.dirty = true;
            return;
        }
        if e.queued {
            return; // a queued status write becomes the delete at dispatch if need be
        }
        e.queued = true;
        self.queue.push_back((slot, generation, work));
    }

    /// Starts queued writes while fewer than the bound are in flight.
    pub(crate) fn dispatch(&mut self) {
        let max = self.shared.config.max_concurrent_pod_writes;
        while self.in_flight < max {
            let Some((slot, generation, work)) = self.queue.pop_front() else { return };
            let shared = self.shared.clone();
            let Some(e) = entry_mut(&mut self.slots, slot, generation) else { continue };
            if !e.queued {
                continue; // a duplicate already handled
            }
            e.queued = false;
            let node = &shared.nodes[e.node];
            if !node.is_running() {
                if !e.stalled {
                    e.stalled = true;
                    self.stalled[e.node].push((slot, generation));
                }
                continue;
            }
            let work = if e.deleting { Work::Delete } else { work };
            match work {
                Work::Delete => {
                    if e.delete_sent {
                        continue;
                    }
                    e.delete_sent = true;
                    e.in_flight = Some(0);
                    self.in_flight += 1;
                    self.writer.delete(
                        slot,
                        generation,
                        e.namespace.clone(),
                        e.name.clone(),
                        e.uid.clone(),
                        self.done_tx.clone(),
                    );
                }
                Work::Status => {
                    if e.sim.stage == Stage::Pending {
                        continue;
                    }
                    let status = render(e, node.id.internal_ip);
                    let hash = hash_status(&status);
                    if e.written == Some(hash) {
                        continue;
                    }
                    e.in_flight = Some(hash);
                    self.in_flight += 1;
                    self.writer.write_status(
                        slot,
                        generation,
                        e.namespace.clone(),
                        e.name.clone(),
                        e.uid.clone(),
                        status,
                        self.done_tx.clone(),
                    );
                }
            }
        }
    }

    pub(super) fn done(&mut self, slot: u32, generation: u32, work: Work, outcome: WriteOutcome) {
        let Some(e) = self.entry(slot, generation) else { return };
        let hash = e.in_flight.take();
        let dirty = std::mem::take(&mut e.dirty);
        match outcome {
            WriteOutcome::Written => {
                e.failures = 0;
                if work == Work::Status {
                    e.written = hash;
                }
            }
            // The pod is gone, or a different pod now has its name: the watch tells the rest.
            WriteOutcome::Gone => {
                self.forget(slot);
                return;
            }
            WriteOutcome::Failed => {
                e.failures += 1;
                e.delete_sent = false;
                if e.failures > MAX_WRITE_RETRIES {
                    tracing::warn!(pod = %e.name, namespace = %e.namespace, "giving up writing the pod until it changes again");
                    e.failures = 0;
                    return;
                }
                let factor = 1u32 << (e.failures - 1).min(16);
                let delay = RETRY_BASE.saturating_mul(factor).min(RETRY_MAX);
                // The retry goes through the queue again (as a delete if the pod is deleting).
                self.timers.push(Reverse((
                    Instant::now() + delay,
                    slot,
                    generation,
                    TimerKind::Retry,
                )));
                return;
            }
        }
        if dirty {
            self.enqueue(slot, generation, Work::Status);
        }
    }
}
