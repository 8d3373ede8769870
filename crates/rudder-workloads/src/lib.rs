//! The workload controllers of the controller manager, shaped after upstream's
//! (`pkg/controller/replicaset`, `pkg/controller/deployment`): one module per controller,
//! each `pub async fn run(ctx, config, cancel)` over the process's shared informers, with
//! event handlers that only enqueue keys and a level-triggered `reconcile(key)` that reads
//! caches and writes with preconditions.
//!
//! Shared by every controller that owns pods or other objects:
//! - [`pod_control`]: pods from templates (generateName, labels, controller reference),
//!   create/delete with events, slow-start batches;
//! - [`claim`]: the controller reference manager (adopt orphans that match, release owned
//!   objects that no longer match, never touch objects controlled by someone else);
//! - [`expectations`]: creates/deletes a controller made but its cache has not seen yet;
//! - [`pod_ranking`]: which pods to delete first (upstream's ActivePods ordering);
//! - [`recent`]: this controller's own recent writes, preferred over an older cached copy;
//! - [`history`]: ControllerRevisions (names, hashes, numbering, claim, truncation) for the
//!   DaemonSet and StatefulSet controllers.
//!
//! Decisions are pure functions (unit tested without a server); I/O sits around them.

pub mod api;
pub mod claim;
pub mod daemonset;
pub mod deployment;
pub mod error;
pub mod expectations;
pub mod history;
pub mod pod_control;
pub mod pod_ranking;
pub mod recent;
pub mod replicaset;
pub mod replicationcontroller;

pub use daemonset::DaemonSetConfig;
pub use deployment::DeploymentConfig;
pub use error::Error;
pub use replicaset::ReplicaSetConfig;
pub use replicationcontroller::ReplicationControllerConfig;
