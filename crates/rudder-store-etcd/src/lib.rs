//! The etcd v3 backend of [`rudder_store::Storage`], for control planes that share state
//! across several servers. Revisions are etcd's own (one per committed transaction), so
//! they are the resourceVersions clients see, exactly as with upstream Kubernetes.
//!
//! [`process::EtcdProcess`] runs a real etcd on a free loopback port for tests and
//! benchmarks.

mod backend;
pub mod process;

pub use backend::{EtcdConfig, EtcdStorage};
