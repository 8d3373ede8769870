//! The cluster housekeeping controllers of the controller manager, each a module with
//! `pub async fn run(ctx, config, cancel)`:
//!
//! - `garbagecollector`: ownerReferences across every resource the API serves (found by
//!   discovery), with background, foreground and orphan propagation. Its graph keeps only
//!   what the decisions need (uid, kind, namespace/name, owners, deletion state).
//! - `namespace`: empties a Terminating namespace, then finalizes it.
//! - `serviceaccount`: a `default` ServiceAccount in every active namespace.
//! - `nodeipam`: pod CIDRs for Nodes from the cluster CIDR.
//! - `nodelifecycle`: Node health from Leases and status heartbeats (conditions Unknown,
//!   `unreachable`/`not-ready` and the other condition taints).
//! - `tainteviction`: deletes pods from nodes with NoExecute taints they do not tolerate.
//! - `podgc`: force-deletes pods of vanished nodes, terminating pods that cannot finish,
//!   and terminated pods beyond a threshold.
//!
//! Decisions are pure functions (unit-tested); the modules around them do the I/O.

pub mod discovery;
pub mod error;
pub mod garbagecollector;
pub mod meta;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod serviceaccount;
pub mod tainteviction;
pub mod taints;

pub use error::Error;
