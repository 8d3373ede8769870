//! Persistent volumes for rudder: upstream's PersistentVolume controller (`binder`: binds
//! claims to volumes, tracks phases, releases and reclaims volumes, and for
//! `WaitForFirstConsumer` classes records the node a consuming pod landed on), a
//! local-path dynamic provisioner (`localpath`, provisioner `rudder.dev/local-path`: hostPath
//! volumes under a per-node directory, pinned to that node) and the node-side reclaimer that
//! removes a released local-path volume's directory before deleting the volume.
//!
//! The matching rules (`matching`) are pure and shared with the scheduler's volume filter.

pub mod binder;
pub mod localpath;
pub mod matching;

mod error;
mod fresh;

pub use error::Error;

/// On a claim: the binding finished (`"yes"`).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the controller (not the user) made the binding (`"yes"`).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim of a `WaitForFirstConsumer` class: the node its first consumer runs on.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: the provisioner expected to create its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta spelling of [`ANN_STORAGE_PROVISIONER`], still written by upstream.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a volume: the provisioner that created it.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The deprecated way to name a class, still honoured before `storageClassName`.
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// On a StorageClass: the class claims without one get (`"true"`).
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta spelling of [`ANN_DEFAULT_CLASS`].
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
/// The provisioner name of classes that only use pre-created volumes.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// The local-path provisioner's name (a StorageClass's `provisioner`).
pub const LOCAL_PATH_PROVISIONER: &str = "rudder.dev/local-path";
/// On a Node: the directory local-path volumes are created under (published by the kubelet).
pub const ANN_LOCAL_PATH_DIR: &str = "rudder.dev/local-path-dir";
/// On a local-path volume: the name of the node holding its directory.
pub const ANN_LOCAL_PATH_NODE: &str = "rudder.dev/local-path-node";
/// Where local-path volumes go on a node that does not say otherwise.
pub const DEFAULT_LOCAL_PATH_DIR: &str = "/var/lib/rudder/storage";
/// The node label local-path volumes are pinned with.
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
