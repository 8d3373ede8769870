//! What every pod worker shares: the runtime, the API, events, probes, volumes, back-offs.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use rudder_client::events::object_reference;
use rudder_client::{Clock, EventType, Informer, Recorder};
use rudder_kubelet_inputs::{NodeInfoForVolumes, ObjectSource, VolumeManager};
use rudder_runtime::Runtime;

use crate::backoff::Backoff;
use crate::config::KubeletConfig;
use crate::probes::Probes;
use crate::start_slots::StartSlots;
use crate::status_writer::StatusWriter;

pub struct Shared {
    pub cfg: Arc<KubeletConfig>,
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    pub status: StatusWriter,
    pub probes: Probes,
    pub volumes: Arc<VolumeManager>,
    pub source: Arc<dyn ObjectSource>,
    pub services: Arc<Informer<Service>>,
    pub crash_backoff: Mutex<Backoff>,
    pub image_backoff: Mutex<Backoff>,
    pub node_info: NodeInfoForVolumes,
    pub node_memory_bytes: u64,
    pub start_slots: StartSlots,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("node", &self.cfg.node_name).finish_non_exhaustive()
    }
}

impl Shared {
    pub fn now_ms(&self) -> u64 {
        self.clock.now().as_millisecond().max(0) as u64
    }

    /// An event about a pod, or about one of its containers when `container` is given
    /// (upstream's fieldPath `spec.containers{name}` / `spec.initContainers{name}`).
    pub fn event(
        &self,
        pod: &Pod,
        container: Option<(&str, bool)>,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let mut r = object_reference(pod);
        if let Some((name, init)) = container {
            let field = if init { "initContainers" } else { "containers" };
            r.field_path = Some(format!("spec.{field}{{{name}}}"));
        }
        self.recorder.event_for(r, kind, reason, message);
    }

    pub fn crash_backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.crash_backoff.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn image_backoff(&self) -> std::sync::MutexGuard<'_, Backoff> {
        self.image_backoff.lock().unwrap_or_else(|p| p.into_inner())
    }
}
