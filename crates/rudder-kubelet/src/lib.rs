//! The kubelet: rudder's node agent. It registers the Node (capacity, addresses, conditions,
//! Lease heartbeats), watches the pods bound to it and runs them through the node's
//! [`rudder_runtime::Runtime`]: sandboxes, init then app containers, restarts with back-off,
//! image pulls, environment and volumes (`rudder-kubelet-inputs`), probes, hooks, status,
//! graceful termination; it re-adopts what an earlier agent process started.
//!
//! Layout: [`config`] (settings), [`machine`] (host facts), [`node`] (Node object, status,
//! Lease), [`actions`] (pure: what a pod needs next), [`pod_status`] (pure: the status to
//! report), [`backoff`], [`runtime_config`] (Pod -> runtime configs), [`worker`] (one task per
//! pod doing the I/O), [`manager`] (the pod watch, the runtime relist, orphan cleanup),
//! [`start_slots`] (how many pods start at once), [`probes`], [`status_writer`] (batched
//! status patches), [`logs`] (`kubectl logs` files).

pub mod actions;
pub mod backoff;
pub mod config;
pub mod error;
pub mod handlers;
pub mod kubelet;
pub mod labels;
pub mod logs;
pub mod machine;
pub mod manager;
pub mod node;
pub mod pod_status;
pub mod probes;
pub mod runtime_config;
pub mod shared;
pub mod start_slots;
pub mod status_writer;
pub mod streaming;
pub mod worker;

pub use config::KubeletConfig;
pub use error::KubeletError;
pub use kubelet::{KubeletDeps, KubeletState, RuntimeFuture, run};
