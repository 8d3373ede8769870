//! How many pods start at once on this node. Starting a pod (volumes, sandbox, container
//! create and start) is CPU work in the agent, the shims and the kernel; thirty pods started
//! all at once share the CPU and all become Running near the end of the batch. A few at a
//! time, first come first served, they become Running one after another, with less
//! contention: the median start is earlier and the last one is no later.
//!
//! A worker holds a [`Slot`] for one pass that starts something and gives it up while it
//! waits on something that is not CPU (an image pull, a postStart hook), taking a slot again
//! afterwards.

use tokio::sync::{Semaphore, SemaphorePermit};

/// The node's start slots (FIFO: a waiting worker is served before later ones).
#[derive(Debug)]
pub struct StartSlots {
    slots: Semaphore,
}

impl StartSlots {
    /// `size` pods may start at once (at least one).
    pub fn new(size: usize) -> Self {
        StartSlots { slots: Semaphore::new(size.max(1)) }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits for a slot.
    pub async fn take(&self) -> Slot<'_> {
        let mut slot = Slot { slots: &self.slots, permit: None };
        slot.resume().await;
        slot
    }
}

/// A slot held by one worker; released when dropped.
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a Semaphore,
    permit: Option<SemaphorePermit<'a>>,
}

impl Slot<'_> {
    /// Gives the slot up (for a wait that is not start work).
    pub fn pause(&mut self) {
        self.permit = None;
    }

    /// Takes a slot again, waiting behind the workers already waiting.
    pub async fn resume(&mut self) {
        if self.permit.is_none() {
            // The semaphore is never closed.
            self.permit = self.slots.acquire().await.ok();
        }
    }

    pub fn is_held(&self) -> bool {
        self.permit.is_some()
    }
}

/// Runs `work` (a wait that is not start work) with the slot, if any, given up meanwhile;
/// takes a slot again before returning.
pub async fn without_slot<T>(slot: Option<&mut Slot<'_>>, work: impl Future<Output = T>) -> T {
    let Some(slot) = slot else { return work.await };
    slot.pause();
    let out = work.await;
    slot.resume().await;
    out
}

/// Upstream's kubelet has no such limit; twice the CPUs keeps the CPUs busy while some
/// starts wait on the disk, and no more.
pub fn default_size() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn at_most_size_hold_a_slot_and_pausing_frees_one() {
        let slots = StartSlots::new(2);
        let mut a = slots.take().await;
        let b = slots.take().await;
        assert_eq!(slots.available(), 0);
        // A third waits until one is given up.
        let waiting = slots.take();
        tokio::pin!(waiting);
        assert!(futures::poll!(&mut waiting).is_pending());
        a.pause();
        assert!(!a.is_held());
        let c = waiting.await;
        assert!(c.is_held());
        // `a` comes back only when another slot is free.
        {
            let resumed = a.resume();
            tokio::pin!(resumed);
            assert!(futures::poll!(&mut resumed).is_pending());
            drop(b);
            resumed.await;
        }
        assert!(a.is_held());
        drop((a, c));
        assert_eq!(slots.available(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_workers_never_exceed_the_size() {
        let slots = Arc::new(StartSlots::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..24 {
            let (slots, inside, most) = (slots.clone(), inside.clone(), most.clone());
            tasks.spawn(async move {
                let mut slot = slots.take().await;
                for _ in 0..3 {
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    slot.pause();
                    tokio::task::yield_now().await;
                    slot.resume().await;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3, "at most 3 at once");
        assert_eq!(slots.available(), 3);
    }

    #[test]
    fn a_size_of_zero_is_one() {
        assert_eq!(StartSlots::new(0).available(), 1);
        assert!(default_size() >= 2);
    }
}
