//! rudder's native container runtime. See [`runtime::NativeRuntime`] for the [`Runtime`]
//! implementation, [`shim`] for the per-container supervisor process, [`exec`] for running
//! processes in a running container, [`spec`] for the OCI spec, [`rootfs`] for overlayfs.
//!
//! [`Runtime`]: rudder_runtime::Runtime

pub mod exec;
pub mod frames;
pub mod image_adapter;
mod init_layer;
pub mod layout;
pub mod net_adapter;
pub mod providers;
mod record_cache;
pub mod rootfs;
pub mod runtime;
pub mod shim;
mod shim_io;
pub mod sockets;
pub mod spec;
mod streaming;
#[allow(unsafe_code)]
mod sys;
pub mod user;

pub use runtime::{NativeRuntime, ShimCommand};
