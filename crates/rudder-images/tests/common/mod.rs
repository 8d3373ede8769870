//! Helpers shared by the integration tests: a store in its own temporary directory, and a
//! progress recorder.
#![allow(dead_code)]

use std::sync::Mutex;

use rudder_images::testing::Registry;
use rudder_images::{ImageStore, Progress, ProgressEvent, StoreOptions};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: ImageStore,
}

pub fn store(options: StoreOptions) -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path().join("images"), options).unwrap();
    TestStore { dir, store }
}

pub fn store_for(registry: &Registry) -> TestStore {
    store(registry.store_options())
}

/// Records events as `kind digest` strings.
#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn on_event(&self, event: &ProgressEvent<'_>) {
        let line = match event {
            ProgressEvent::Resolved { digest, layers, .. } => format!("resolved {digest} {layers}"),
            ProgressEvent::LayerPresent { digest, .. } => format!("present {digest}"),
            ProgressEvent::LayerStarted { digest, .. } => format!("started {digest}"),
            ProgressEvent::LayerBytes { .. } => return,
            ProgressEvent::LayerRetry { digest, .. } => format!("retry {digest}"),
            ProgressEvent::LayerUnpacking { digest } => format!("unpacking {digest}"),
            ProgressEvent::LayerDone { digest } => format!("done {digest}"),
            ProgressEvent::Done { digest, .. } => format!("finished {digest}"),
        };
        self.events.lock().unwrap().push(line);
    }
}

impl Recorder {
    pub fn count(&self, prefix: &str) -> usize {
        self.events.lock().unwrap().iter().filter(|e| e.starts_with(prefix)).count()
    }
}

/// Entries of a directory (names), sorted.
pub fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}
