//! The controllers that publish where a Service's pods are, for the service proxy and the
//! cluster DNS to read (upstream's `pkg/controller/endpoint` and
//! `pkg/controller/endpointslice` with the `k8s.io/endpointslice` reconciler):
//!
//! - [`endpoints::run`]: one core/v1 `Endpoints` per Service with a selector.
//! - [`endpointslice::run`]: discovery.k8s.io/v1 `EndpointSlice`s per Service with a
//!   selector, at most `max_endpoints_per_slice` endpoints each, changed with as little
//!   churn as possible.
//!
//! Both read the process's shared informers (Services, Pods, Endpoints or EndpointSlices,
//! Nodes for zones), enqueue only Service keys from their handlers, and reconcile one
//! Service at a time: pure computation (`endpoints::compute`, `endpointslice::reconcile`)
//! then writes with resourceVersion preconditions. Services without a selector are left to
//! their users (EndpointSlice mirroring of such Endpoints is not done here).

mod api;
pub mod endpoints;
pub mod endpointslice;
mod error;
pub mod selection;
pub mod trigger_time;

#[cfg(test)]
mod testutil;

pub use endpoints::EndpointsConfig;
pub use endpointslice::EndpointSliceConfig;
pub use error::Error;
