//! What the native runtime needs from the image store and the pod network, as traits so the
//! runtime can be driven by the real `rudder-images` / `rudder-net` (see [`crate::adapters`])
//! or, in tests of one part, by something smaller.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rudder_runtime::{ImageInfo, PodSandboxConfig, Result};

use crate::spec::ImageDefaults;

/// An image present on the node, ready to become a rootfs.
#[derive(Clone, Debug)]
pub struct ResolvedImage {
    pub info: ImageInfo,
    /// Unpacked layer directories, bottom layer first.
    pub layers: Vec<PathBuf>,
    pub defaults: ImageDefaults,
    /// The image's `User` (may be a name from its /etc/passwd).
    pub user: String,
}

#[async_trait]
pub trait ImageProvider: Send + Sync + 'static {
    async fn pull(&self, image: &str, credentials: &[Vec<u8>]) -> Result<ImageInfo>;
    async fn resolve(&self, image: &str) -> Result<Option<ResolvedImage>>;
    async fn list(&self) -> Result<Vec<ImageInfo>>;
    async fn remove(&self, image: &str) -> Result<()>;
    /// Keeps the image's layers for the container `owner` until [`ImageProvider::unpin`],
    /// whatever happens to the image; fails if a layer is already gone. Stores that never
    /// delete layers need not do anything.
    async fn pin(&self, _owner: &str, _image: &ResolvedImage) -> Result<()> {
        Ok(())
    }
    async fn unpin(&self, _owner: &str) -> Result<()> {
        Ok(())
    }
}

/// A pod's namespaces and address.
#[derive(Clone, Debug)]
pub struct PodNetworkInfo {
    pub netns: PathBuf,
    pub ipc_ns: PathBuf,
    pub uts_ns: PathBuf,
    pub ip: Ipv4Addr,
}

/// Blocking calls (the runtime runs them on the blocking pool).
pub trait NetworkProvider: Send + Sync + 'static {
    /// Creates the sandbox's namespaces (hostname set) and network; idempotent per id.
    fn setup(&self, sandbox_id: &str, hostname: &str) -> Result<PodNetworkInfo>;
    /// Removes everything `setup` made; succeeds if already gone.
    fn teardown(&self, sandbox_id: &str) -> Result<()>;
    /// Writes /etc/hosts, /etc/resolv.conf and /etc/hostname for the pod into `dir`.
    fn write_pod_files(
        &self,
        dir: &Path,
        config: &PodSandboxConfig,
        ip: Option<Ipv4Addr>,
    ) -> Result<()>;
}
