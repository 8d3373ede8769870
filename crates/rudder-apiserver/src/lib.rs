//! rudder's API server: the Kubernetes REST API on the store.
//!
//! Request path: `server` (TLS, HTTP/2 + HTTP/1.1, client-certificate identity) ->
//! `handler` (routing: health, version, `discovery`, resource verbs) -> `registry` (every
//! verb once, on JSON objects, with per-kind `strategy`) -> the `Storage` trait. Responses
//! are objects, lists, `table`s or `watch` streams; errors become `Status` in `status`.

pub mod admission;
pub mod cached_object;
pub mod clock;
pub mod component_status;
pub mod defaults;
pub mod discovery;
pub mod form;
pub mod graceful;
pub mod handler;
pub mod kind_validation;
pub mod kubeconfig;
pub mod kubelet_client;
pub mod local;
pub mod object;
pub mod patch;
pub mod pki;
pub mod pod_log;
pub mod pod_stream;
pub mod pod_subresources;
pub mod raw_json;
pub mod registry;
pub mod request;
pub mod scale;
pub mod selectors;
pub mod server;
pub mod service_alloc;
mod smp;
pub mod status;
pub mod storage;
pub mod strategy;
pub mod table;
pub mod tls;
pub mod token_request;
pub mod validation;
pub mod watch;
pub mod watch_cache;

pub use server::{Datastore, ServerConfig, ServerError, Started, run};
