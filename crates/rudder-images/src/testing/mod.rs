//! Test support for this crate and the others (enable the `testing` feature in
//! dev-dependencies): a deterministic busybox test image ([`busybox`], [`ImageBuilder`]),
//! OCI-layout and docker-archive tarball writers, a local registry ([`Registry`], Debian's
//! `docker-registry`) and pushes to it ([`push`], [`push_index`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use rudder_images::testing::{self, Registry};
//! let registry = Registry::start(None)?;
//! testing::push(&registry, "library/busybox:1.0", &testing::busybox()?).await?;
//! let store = rudder_images::ImageStore::open("/tmp/store", registry.store_options())?;
//! let image = store
//!     .pull(&registry.reference("library/busybox:1.0"), &registry.credentials(), &rudder_images::NoProgress)
//!     .await?;
//! # Ok(()) }
//! ```

mod image;
mod push;
mod registry;

pub use image::{
    APPLETS, BUSYBOX_PATH, Entry, ImageBuilder, PATH_ENV, TestImage, TestLayer, busybox,
    busybox_rootfs_tar, compress, docker_archive_tar, oci_layout_tar, tar_layer,
};
pub use push::{push, push_index};
pub use registry::{REGISTRY_BIN, Registry};

#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("registry: {0}")]
    Registry(String),
    #[error("push: {0}")]
    Push(String),
}
