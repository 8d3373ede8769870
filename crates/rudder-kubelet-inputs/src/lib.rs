//! What a pod's containers are given by the kubelet: environment variables (upstream's
//! `makeEnvironmentVariables`: service links, `envFrom`, `$(VAR)` expansion, configMap/secret
//! keys, the downward API) and volumes (emptyDir, hostPath, configMap, secret, downwardAPI,
//! projected, persistentVolumeClaim) prepared under the kubelet's pods directory with
//! upstream's layout and atomic writer, mapped to the runtime's bind mounts.
//!
//! Objects are read through the [`ObjectSource`] trait ([`KubeSource`] over the API with
//! timeouts, [`MemorySource`] in memory for tests), so everything here is testable without a
//! server.

pub mod env;
pub mod expand;
pub mod fieldpath;
pub mod source;
pub mod volumes;

pub use env::{
    ContainerEnv, EnvContext, EnvError, SkippedEnvFromKeys, container_env, services_for_namespace,
};
pub use expand::{expand, expand_command};
pub use source::{BoundPod, KubeSource, MemorySource, ObjectSource, SourceError};
pub use volumes::{NodeInfoForVolumes, PodVolumes, PreparedVolume, VolumeError, VolumeManager};
