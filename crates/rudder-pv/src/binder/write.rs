//! The binder's writes: every update carries the resourceVersion it was decided on (a stale
//! decision fails with 409 and is retried), and what we wrote is remembered until the watch
//! delivers it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::PostParams;

use super::Binder;
use crate::error::{Error, call};
use crate::matching;
use crate::{ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER};

fn claims_api(client: &kube::Client, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
    Api::namespaced(client.clone(), claim.metadata.namespace.as_deref().unwrap_or(""))
}

/// The `claimRef` a bound volume carries.
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

impl Binder {
    pub(super) async fn replace_claim(
        &self,
        claim: PersistentVolumeClaim,
    ) -> Result<Arc<PersistentVolumeClaim>, Error> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let api = claims_api(&self.client, &claim);
        let new = call(
            "update persistentvolumeclaim",
            api.replace(&name, &PostParams::default(), &claim),
        )
        .await?;
        Ok(self.claims.wrote(new))
    }

    pub(super) async fn replace_volume(
        &self,
        pv: PersistentVolume,
    ) -> Result<Arc<PersistentVolume>, Error> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let new = call("update persistentvolume", api.replace(&name, &PostParams::default(), &pv))
            .await?;
        Ok(self.volumes.wrote(new))
    }

    /// Sets a volume's phase (and message); nothing when it is already so.
    pub(super) async fn update_volume_phase(
        &self,
        pv: Arc<PersistentVolume>,
        phase: &str,
        message: Option<String>,
    ) -> Result<Arc<PersistentVolume>, Error> {
        if pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase) {
            return Ok(pv);
        }
        let mut new = (*pv).clone();
        let status = new.status.get_or_insert_default();
        status.phase = Some(phase.to_owned());
        status.message = message;
        status.last_phase_transition_time = Some(Time(self.ctx.clock.now()));
        let name = pv.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let new = call(
            "update persistentvolume status",
            api.replace_status(&name, &PostParams::default(), &new),
        )
        .await?;
        tracing::info!(volume = %name, phase, "volume entered phase");
        Ok(self.volumes.wrote(new))
    }

    /// Sets a claim's phase, and its access modes and capacity from `volume` (cleared
    /// without one); nothing when all is so already.
    pub(super) async fn update_claim_status(
        &self,
        claim: Arc<PersistentVolumeClaim>,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<Arc<PersistentVolumeClaim>, Error> {
        let mut new = (*claim).clone();
        let old_status = claim.status.clone().unwrap_or_default();
        let status = new.status.get_or_insert_default();
        let phase_changes = old_status.phase.as_deref() != Some(phase);
        status.phase = Some(phase.to_owned());
        match volume {
            None => {
                status.access_modes = None;
                status.capacity = None;
            }
            Some(pv) => {
                status.access_modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
                // The capacity is taken when the claim becomes Bound, not later.
                if phase_changes {
                    status.capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
                }
            }
        }
        if new.status.as_ref() == Some(&old_status) && !phase_changes {
            return Ok(claim);
        }
        let name = claim.metadata.name.clone().unwrap_or_default();
        let api = claims_api(&self.client, &claim);
        let new = call(
            "update persistentvolumeclaim status",
            api.replace_status(&name, &PostParams::default(), &new),
        )
        .await?;
        if phase_changes {
            tracing::info!(claim = %format!("{}/{name}", claim.metadata.namespace.as_deref().unwrap_or("")), phase, "claim entered phase");
        }
        Ok(self.claims.wrote(new))
    }

    pub(super) async fn delete_volume(&self, pv: &PersistentVolume) -> Result<(), Error> {
        let name = pv.metadata.name.clone().unwrap_or_default();
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let params = rudder_client::api::delete_exactly(pv.metadata.uid.as_deref(), None);
        match call("delete persistentvolume", api.delete(&name, &params)).await {
            Ok(_) => {
                tracing::info!(volume = %name, "released volume deleted (reclaim policy Delete)");
                Ok(())
            }
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Binds both ways (upstream's bind): the volume's claimRef, its phase, the claim's
    /// volumeName and annotations, the claim's status. Each step is skipped when done.
    pub(super) async fn bind(
        &self,
        pv: Arc<PersistentVolume>,
        claim: Arc<PersistentVolumeClaim>,
    ) -> Result<(), Error> {
        let prebound = matching::is_volume_bound_to_claim(&pv, &claim);
        let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let ref_done = claim_ref.is_some_and(|r| {
            r.namespace == claim.metadata.namespace
                && r.name == claim.metadata.name
                && r.uid.is_some()
                && r.uid == claim.metadata.uid
        });
        let pv = if ref_done {
            pv
        } else {
            let mut new = (*pv).clone();
            new.spec.get_or_insert_default().claim_ref = Some(claim_reference(&claim));
            if !prebound {
                new.metadata
                    .annotations
                    .get_or_insert_default()
                    .insert(ANN_BOUND_BY_CONTROLLER.to_owned(), "yes".to_owned());
            }
            self.replace_volume(new).await?
        };
        let pv = self.update_volume_phase(pv, "Bound", None).await?;
        let pv_name = pv.metadata.name.clone().unwrap_or_default();
        let volume_name =
            claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
        let completed =
            claim.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANN_BIND_COMPLETED));
        let claim = if volume_name == pv_name && completed {
            claim
        } else {
            let mut new = (*claim).clone();
            let annotations = new.metadata.annotations.get_or_insert_default();
            if volume_name != pv_name {
                if volume_name.is_empty() {
                    annotations.insert(ANN_BOUND_BY_CONTROLLER.to_owned(), "yes".to_owned());
                }
                new.spec.get_or_insert_default().volume_name = Some(pv_name.clone());
            }
            new.metadata
                .annotations
                .get_or_insert_default()
                .insert(ANN_BIND_COMPLETED.to_owned(), "yes".to_owned());
            self.replace_claim(new).await?
        };
        self.update_claim_status(claim, "Bound", Some(&pv)).await?;
        Ok(())
    }
}
