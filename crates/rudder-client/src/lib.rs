//! What every rudder control loop (scheduler, controllers, simulated nodes, kubelet) shares
//! as an API client: clients from kubeconfigs (`config`), shared watch-fed caches with
//! change handlers (`informer`), a deduplicating work queue with back-off (`queue`) and the
//! worker loop over it (`controller`), events (`events`), Lease leader election (`leader`),
//! an injectable clock (`clock`) and object helpers (`objects`). None of it touches the
//! store: everything goes through the API.

pub mod api;
pub mod clock;
pub mod config;
pub mod context;
pub mod controller;
pub mod events;
pub mod informer;
pub mod leader;
pub mod objects;
pub mod queue;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    ClientError, client_from_kubeconfig_file, client_from_kubeconfig_text, client_over,
};
pub use context::Context;
pub use controller::{Outcome, run_workers};
pub use events::{EventType, Recorder};
pub use informer::{Change, Informer, Informers, ObjectKey};
pub use leader::{LeaderElectionConfig, LeaderElector};
pub use queue::WorkQueue;
