//! Pull progress: events a [`Progress`] receives while an image is pulled or imported. Any
//! `Fn(&ProgressEvent) + Send + Sync` closure is a `Progress`; [`NoProgress`] ignores them.
//! Calls come from several tasks at once (layers download in parallel) and must be cheap.

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent<'a> {
    /// The manifest is resolved: the image digest, its layer count and their total size.
    Resolved { reference: &'a str, digest: &'a str, layers: usize, total_bytes: u64 },
    /// A layer is already unpacked in the store (shared with another image): nothing to do.
    LayerPresent { digest: &'a str, size_bytes: u64 },
    /// A layer download started (or restarted, after a retry).
    LayerStarted { digest: &'a str, size_bytes: u64 },
    /// Bytes of a layer downloaded so far.
    LayerBytes { digest: &'a str, done_bytes: u64, size_bytes: u64 },
    /// A transient failure; the download is retried after a back-off.
    LayerRetry { digest: &'a str, attempt: u32, error: &'a str },
    /// Downloaded and verified; unpacking.
    LayerUnpacking { digest: &'a str },
    /// Unpacked (and moved into the store).
    LayerDone { digest: &'a str },
    /// The image record is written.
    Done { reference: &'a str, digest: &'a str },
}

pub trait Progress: Send + Sync {
    fn on_event(&self, event: &ProgressEvent<'_>);
}

impl<F: Fn(&ProgressEvent<'_>) + Send + Sync> Progress for F {
    fn on_event(&self, event: &ProgressEvent<'_>) {
        self(event)
    }
}

/// Ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn on_event(&self, _: &ProgressEvent<'_>) {}
}
