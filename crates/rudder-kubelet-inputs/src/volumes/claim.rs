//! persistentVolumeClaim volumes: the claim must be Bound; its PersistentVolume must be a
//! node-local kind (hostPath or local), whose path becomes the bind source.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::PersistentVolume;

use super::content::Failure;
use super::host_path::check_type;
use crate::source::ObjectSource;

/// Where a claim's data lives on this node.
pub async fn resolve(
    source: &dyn ObjectSource,
    namespace: &str,
    claim_name: &str,
) -> Result<PathBuf, Failure> {
    let Some(claim) = source.get_persistent_volume_claim(namespace, claim_name).await? else {
        return Err(Failure::Message(format!("persistentvolumeclaim \"{claim_name}\" not found")));
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(Failure::Message(format!(
            "can't start pod because PVC {namespace}/{claim_name} is being deleted"
        )));
    }
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if !bound || volume_name.is_empty() {
        return Err(Failure::Message(format!(
            "persistentvolumeclaim \"{claim_name}\" is not bound"
        )));
    }
    let Some(pv) = source.get_persistent_volume(&volume_name).await? else {
        return Err(Failure::Message(format!("persistentvolume \"{volume_name}\" not found")));
    };
    let claim_uid = claim.metadata.uid.as_deref();
    let ref_uid =
        pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.uid.as_deref());
    if let (Some(a), Some(b)) = (claim_uid, ref_uid)
        && a != b
    {
        return Err(Failure::Message(format!(
            "persistentvolume \"{volume_name}\" is bound to another claim than {namespace}/{claim_name}"
        )));
    }
    volume_path(&pv)
}

/// The node path of a hostPath or local PersistentVolume.
pub fn volume_path(pv: &PersistentVolume) -> Result<PathBuf, Failure> {
    let name = pv.metadata.name.as_deref().unwrap_or("");
    let spec = pv.spec.as_ref();
    if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        let path = PathBuf::from(&h.path);
        check_type(&path, h.type_.as_deref()).map_err(Failure::Message)?;
        return Ok(path);
    }
    if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        let path = PathBuf::from(&l.path);
        if !path.exists() {
            return Err(Failure::Message(format!(
                "local volume {name}: path {:?} does not exist",
                l.path
            )));
        }
        return Ok(path);
    }
    Err(Failure::Message(format!(
        "persistentvolume \"{name}\" is of a kind this node cannot mount (only hostPath and local)"
    )))
}
