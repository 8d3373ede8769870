//! The node side of local-path volumes: a released volume of this node with reclaim policy
//! Delete loses its directory, then its PersistentVolume. The directory is only removed
//! when it is exactly `<base_dir>/pvc-...` (no `..`, no other parent); a symlink there is
//! removed itself, never followed, and `remove_dir_all` does not follow symlinks inside.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use rudder_client::{Change, Context, EventType, Outcome, WorkQueue, run_workers};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, call};
use crate::{ANN_LOCAL_PATH_NODE, ANN_PROVISIONED_BY, LABEL_HOSTNAME, LOCAL_PATH_PROVISIONER};

/// The directory of a local-path volume at `path`, if it is one we may delete under
/// `base_dir`; otherwise why not.
pub fn reclaimable_dir(base_dir: &Path, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() || !base_dir.is_absolute() {
        return Err(format!("path {path:?} or base {base_dir:?} is not absolute"));
    }
    if p.components().any(|c| !matches!(c, Component::RootDir | Component::Normal(_))) {
        return Err(format!("path {path:?} is not a plain path"));
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.starts_with("pvc-") {
        return Err(format!("path {path:?} is not a local-path volume directory"));
    }
    let parent = p.parent().unwrap_or(Path::new("/"));
    let base: PathBuf = base_dir.components().collect();
    let inside = parent == base || std::fs::canonicalize(base_dir).is_ok_and(|c| c == parent);
    if !inside {
        return Err(format!("path {path:?} is not directly under {}", base_dir.display()));
    }
    Ok(p.to_owned())
}

/// Removes a volume directory without following a symlink in its place.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(dir),
        Ok(_) => std::fs::remove_file(dir),
    }
}

/// A Released local-path volume with reclaim policy Delete whose directory is on `node`.
pub fn reclaimable_here(pv: &PersistentVolume, node: &str) -> bool {
    let annotations = pv.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(ANN_PROVISIONED_BY).map(String::as_str) != Some(LOCAL_PATH_PROVISIONER) {
        return false;
    }
    let spec = pv.spec.clone().unwrap_or_default();
    if spec.persistent_volume_reclaim_policy.as_deref() != Some("Delete")
        || pv.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released")
        || spec.host_path.is_none()
    {
        return false;
    }
    match annotations.get(ANN_LOCAL_PATH_NODE) {
        Some(n) => n == node,
        None => spec
            .node_affinity
            .and_then(|a| a.required)
            .into_iter()
            .flat_map(|s| s.node_selector_terms)
            .flat_map(|t| t.match_expressions.unwrap_or_default())
            .any(|r| {
                r.key == LABEL_HOSTNAME
                    && r.operator == "In"
                    && r.values.unwrap_or_default().iter().any(|v| v == node)
            }),
    }
}

/// Runs on a node until `cancel`: reclaims released local-path volumes of `node_name` whose
/// directories live under `base_dir`.
pub async fn run_node_reclaimer(
    ctx: Context,
    node_name: String,
    base_dir: PathBuf,
    cancel: CancellationToken,
) {
    let volumes = ctx.informers.get::<PersistentVolume>();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = volumes.wait_synced() => {}
    }
    let queue = WorkQueue::<String>::new();
    {
        let (queue, node) = (queue.clone(), node_name.clone());
        volumes.add_handler(move |change: &Change<PersistentVolume>| {
            if !matches!(change, Change::Deleted(_)) && reclaimable_here(change.object(), &node) {
                queue.add(change.object().metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let recorder = ctx.recorder(LOCAL_PATH_PROVISIONER);
    let client = ctx.client.clone();
    let (node, base) = (Arc::new(node_name), Arc::new(base_dir));
    run_workers("local-path-reclaimer", queue, 1, cancel, move |name: String| {
        let (client, recorder, volumes) = (client.clone(), recorder.clone(), volumes.clone());
        let (node, base) = (node.clone(), base.clone());
        async move {
            let Some(pv) = volumes.get("", &name) else { return Ok(Outcome::Done) };
            if !reclaimable_here(&pv, &node) {
                return Ok(Outcome::Done);
            }
            let path = pv.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.clone());
            let dir = match reclaimable_dir(&base, path.as_deref().unwrap_or("")) {
                Ok(dir) => dir,
                Err(why) => {
                    // Not ours to remove; it stays Released for an administrator.
                    recorder.event(&*pv, EventType::Warning, "VolumeFailedDelete", why);
                    return Ok(Outcome::Done);
                }
            };
            let removed = {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || remove_dir(&dir))
                    .await
                    .map_err(|e| Error::Io(e.to_string()))?
            };
            if let Err(e) = removed {
                let msg = format!("removing {}: {e}", dir.display());
                recorder.event(&*pv, EventType::Warning, "VolumeFailedDelete", msg.clone());
                return Err(Error::Io(msg));
            }
            let api: Api<PersistentVolume> = Api::all(client);
            let params = rudder_client::api::delete_exactly(pv.metadata.uid.as_deref(), None);
            match call("delete persistentvolume", api.delete(&name, &params)).await {
                Ok(_) => {
                    tracing::info!(volume = %name, dir = %dir.display(), "local-path volume deleted");
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            Ok::<_, Error>(Outcome::Done)
        }
    })
    .await;
}
