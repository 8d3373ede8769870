//! The Recreate strategy (upstream's `recreate.go`): scale every old ReplicaSet to 0, wait
//! until none of their pods is left running, then create (or scale up) the new ReplicaSet.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use rudder_client::Outcome;

use super::progress::deployment_complete;
use super::sync::{Controller, SyncState};
use super::util::{replicas, rs_replicas, rs_status_replicas};
use crate::Error;

/// Whether any old pod may still run: an old ReplicaSet reports pods, or a pod of one is in
/// a phase other than Succeeded or Failed.
pub fn old_pods_running(
    new_rs: Option<&Arc<ReplicaSet>>,
    old_rss: &[Arc<ReplicaSet>],
    pods_by_rs: &HashMap<String, Vec<Arc<Pod>>>,
) -> bool {
    if old_rss.iter().map(|rs| rs_status_replicas(rs)).sum::<i32>() > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.metadata.uid.as_deref());
    pods_by_rs.iter().filter(|(uid, _)| Some(uid.as_str()) != new_uid).any(|(_, pods)| {
        pods.iter().any(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
    })
}

impl Controller {
    /// One Recreate sync (upstream's rolloutRecreate).
    pub(super) async fn rollout_recreate(
        &self,
        s: &mut SyncState,
        pods_by_rs: &HashMap<String, Vec<Arc<Pod>>>,
    ) -> Result<Outcome, Error> {
        // No new ReplicaSet yet: it must not scale up before the old ones are down.
        let (new_rs, old_rss) = self.get_all_replica_sets_and_sync_revision(s, false).await?;
        let mut scaled_down = false;
        for rs in old_rss.iter().filter(|rs| rs_replicas(rs) > 0) {
            let (scaled, _) = self.scale_replica_set(s, rs, 0).await?;
            scaled_down |= scaled;
        }
        if scaled_down {
            return self.sync_rollout_status(s, new_rs).await;
        }
        let old_rss: Vec<Arc<ReplicaSet>> = old_rss.iter().map(|rs| s.current(rs)).collect();
        if old_pods_running(new_rs.as_ref(), &old_rss, pods_by_rs) {
            return self.sync_rollout_status(s, new_rs).await;
        }
        let new_rs = match new_rs {
            Some(rs) => rs,
            None => match self.get_all_replica_sets_and_sync_revision(s, true).await? {
                (Some(rs), _) => rs,
                (None, _) => return self.sync_rollout_status(s, None).await,
            },
        };
        self.scale_replica_set(s, &new_rs, replicas(&s.d)).await?;
        let new_rs = s.current(&new_rs);
        if deployment_complete(&s.d, s.d.status.as_ref()) {
            self.cleanup_old(s, Some(&new_rs)).await?;
        }
        self.sync_rollout_status(s, Some(new_rs)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetStatus;
    use k8s_openapi::api::core::v1::PodStatus;

    fn rs(uid: &str, status_replicas: i32) -> Arc<ReplicaSet> {
        let mut rs = ReplicaSet::default();
        rs.metadata.uid = Some(uid.into());
        rs.status = Some(ReplicaSetStatus { replicas: status_replicas, ..Default::default() });
        Arc::new(rs)
    }

    fn pod(phase: &str) -> Arc<Pod> {
        Arc::new(Pod {
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
            ..Default::default()
        })
    }

    #[test]
    fn old_pods_block_the_new_replica_set() {
        let new = rs("new", 0);
        let old = rs("old", 0);
        let mut pods = HashMap::new();
        assert!(!old_pods_running(Some(&new), std::slice::from_ref(&old), &pods));
        assert!(old_pods_running(Some(&new), &[rs("old", 1)], &pods), "status still counts pods");
        pods.insert("new".to_owned(), vec![pod("Running")]);
        assert!(
            !old_pods_running(Some(&new), std::slice::from_ref(&old), &pods),
            "new pods do not count"
        );
        pods.insert("old".to_owned(), vec![pod("Succeeded"), pod("Failed")]);
        assert!(
            !old_pods_running(Some(&new), std::slice::from_ref(&old), &pods),
            "finished pods do not count"
        );
        pods.insert("old".to_owned(), vec![pod("Unknown")]);
        assert!(old_pods_running(Some(&new), std::slice::from_ref(&old), &pods));
        pods.insert("old".to_owned(), vec![pod("Pending")]);
        assert!(old_pods_running(None, &[old], &pods));
    }
}
