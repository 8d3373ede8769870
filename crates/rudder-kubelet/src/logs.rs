//! Where `kubectl logs` reads from: the CRI log file of a pod's container instance, for the
//! kubelet's HTTPS server.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use rudder_client::Informer;
use rudder_kubelet_server::{LocateError, LogFile, LogLocator};
use rudder_runtime::{ContainerState, Runtime};

use crate::{actions, labels};

pub struct Logs {
    pub pods: Arc<Informer<Pod>>,
    pub runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for Logs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logs").finish_non_exhaustive()
    }
}

fn waiting_reason(pod: &Pod, container: &str) -> Option<String> {
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|s| s.name == container)?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[async_trait]
impl LogLocator for Logs {
    async fn locate(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LocateError> {
        let pod = self
            .pods
            .get(namespace, name)
            .ok_or_else(|| LocateError::PodNotFound { pod: name.to_owned() })?;
        let in_spec = actions::app_containers(&pod)
            .iter()
            .chain(actions::init_containers(&pod))
            .any(|c| c.name == container);
        if !in_spec {
            return Err(LocateError::ContainerNotFound {
                pod: name.to_owned(),
                container: container.to_owned(),
            });
        }
        let uid = actions::pod_uid(&pod);
        let all = self
            .runtime
            .list_containers(None)
            .await
            .map_err(|_| LocateError::not_available(container, name))?;
        let mut mine: Vec<_> = all
            .into_iter()
            .filter(|c| {
                c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                    && c.metadata.name == container
                    && c.state != ContainerState::Created
            })
            .collect();
        mine.sort_by(|a, b| {
            b.metadata.attempt.cmp(&a.metadata.attempt).then(b.created_at_ns.cmp(&a.created_at_ns))
        });
        let chosen = if previous {
            mine.get(1).ok_or_else(|| LocateError::previous_not_found(container, name))?
        } else {
            mine.first().ok_or_else(|| {
                LocateError::waiting_to_start(
                    container,
                    name,
                    &waiting_reason(&pod, container).unwrap_or_else(|| "ContainerCreating".into()),
                )
            })?
        };
        let path =
            chosen.log_path.clone().ok_or_else(|| LocateError::not_available(container, name))?;
        Ok(LogFile { path, container_id: chosen.id.clone() })
    }

    async fn is_running(&self, container_id: &str) -> bool {
        matches!(self.runtime.container_status(container_id).await, Ok(s) if s.state == ContainerState::Running)
    }
}
