//! rudder's native container runtime. See [`runtime::NativeRuntime`] for the [`Runtime`]
//! implementation, [`shim`] for the per-container supervisor process, [`exec`] for running
//! processes in a running container, [`spec`] for the OCI spec, [`rootfs`] for overlayfs.
//!
//! [`Runtime`]: rudder_runtime::Runtime

pub mod exec;
pub mod image_adapter;
pub mod layout;
pub mod net_adapter;
pub mod providers;
pub mod rootfs;
pub mod runtime;
pub mod shim;
pub mod spec;
pub mod user;

pub use runtime::{NativeRuntime, ShimCommand};
