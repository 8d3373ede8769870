//! The worker loop every controller runs: take a key, reconcile it, and on failure retry it
//! with back-off. Reconciles are level-triggered and idempotent; the same key is never
//! reconciled by two workers at once (the queue guarantees it).

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::queue::WorkQueue;

/// What a successful reconcile asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Look again after this long (e.g. when a deadline or minReadySeconds will pass).
    RequeueAfter(Duration),
}

/// Runs `workers` workers over `queue` until `cancel`, then shuts the queue down.
pub async fn run_workers<T, F, Fut, E>(
    name: &'static str,
    queue: Arc<WorkQueue<T>>,
    workers: usize,
    cancel: CancellationToken,
    reconcile: F,
) where
    T: Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
    F: Fn(T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, E>> + Send,
    E: Display,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let queue = queue.clone();
        let reconcile = reconcile.clone();
        tasks.spawn(async move {
            while let Some(key) = queue.get().await {
                let span = tracing::debug_span!("reconcile", controller = name, key = ?key);
                let result = reconcile(key.clone()).instrument(span).await;
                match result {
                    Ok(Outcome::Done) => queue.forget(&key),
                    Ok(Outcome::RequeueAfter(delay)) => {
                        queue.forget(&key);
                        queue.add_after(key.clone(), delay);
                    }
                    Err(e) => {
                        tracing::debug!(controller = name, key = ?key, error = %e, "reconcile failed; retrying");
                        queue.add_rate_limited(key.clone());
                    }
                }
                queue.done(&key);
            }
        });
    }
    cancel.cancelled().await;
    queue.shutdown();
    while tasks.join_next().await.is_some() {}
}
