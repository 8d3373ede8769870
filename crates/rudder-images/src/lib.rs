//! Container images on the node side (never depends on the store or the API server).
//!
//! - [`ImageStore`]: the content-addressed store under one root directory. `pull` from OCI
//!   distribution registries (docker v2 schema2 and OCI manifests, indexes resolved to
//!   linux/amd64, gzip/zstd/plain layers, digests verified as they stream, anonymous, basic
//!   and bearer-token auth, plain HTTP only for configured insecure registries, parallel
//!   bounded layer downloads with retries and timeouts, progress events); `import` of OCI
//!   layout and docker-archive tarballs; `get`/`list`/`remove` of image records; `gc`;
//!   `layer_dirs` for overlayfs. Each layer is unpacked once, by diff_id, and shared.
//! - [`Credentials`]: imagePullSecrets (docker config JSON) merged, looked up by registry.
//! - [`ImageRef`]: Docker-style reference normalisation.
//! - [`resolve_command`]: a container's process from pod `command`/`args` and the image's
//!   Entrypoint/Cmd, with upstream's rules.
//! - [`layer`]: unpacking one OCI layer into an overlayfs-ready directory.
//! - [`cli`]: the `rudder image ls` table and a one-line progress printer.
//! - `testing` (feature `testing`): a deterministic busybox test image, OCI-layout and
//!   docker-archive writers, a local `docker-registry` harness and a push helper.

pub mod cli;
pub mod command;
pub mod credentials;
pub mod digest;
pub mod layer;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use command::{CommandError, resolve_command};
pub use credentials::{Auth, Credentials, CredentialsError};
pub use digest::{Digest, DigestError};
pub use manifest::ImageConfig;
pub use progress::{NoProgress, Progress, ProgressEvent};
pub use reference::ImageRef;
pub use registry::{RegistryError, RegistryOptions, RetryPolicy};
pub use store::{GcStats, ImageRecord, ImageStore, LayerRecord, Removed, StoreError, StoreOptions};
