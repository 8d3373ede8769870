//! What a control loop is given: a client with its component's identity, the process's
//! shared informers, and the clock.

use std::sync::Arc;

use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::events::Recorder;
use crate::informer::Informers;

#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub informers: Informers,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl Context {
    /// A context with the system clock; informers stop with `cancel`.
    pub fn new(client: Client, cancel: CancellationToken) -> Self {
        Context::with_clock(client, cancel, Arc::new(SystemClock))
    }

    pub fn with_clock(client: Client, cancel: CancellationToken, clock: Arc<dyn Clock>) -> Self {
        Context { informers: Informers::new(client.clone(), cancel), client, clock }
    }

    /// An event recorder reporting as `component` (e.g. `deployment-controller`).
    pub fn recorder(&self, component: &str) -> Recorder {
        Recorder::new(self.client.clone(), component, self.clock.clone())
    }
}
