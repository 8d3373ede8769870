//! Exec, attach and port-forward for the kubelet's HTTPS server: the pod by name from the
//! pods bound here, its running container instance or its sandbox, and the runtime.

use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Pod;
use rudder_client::Informer;
use rudder_kubelet_server::{LocateError, StreamError, Streams};
use rudder_runtime::{
    AttachRequest, AttachSession, BoxStream, ContainerState, ExecRequest, ExecSession,
    PodSandboxState, Runtime,
};

use crate::{actions, labels};

pub struct PodStreams {
    pub pods: Arc<Informer<Pod>>,
    pub runtime: Arc<dyn Runtime>,
}

impl std::fmt::Debug for PodStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodStreams").finish_non_exhaustive()
    }
}

impl PodStreams {
    fn pod(&self, namespace: &str, name: &str) -> Result<Arc<Pod>, StreamError> {
        self.pods
            .get(namespace, name)
            .ok_or_else(|| LocateError::PodNotFound { pod: name.to_owned() }.into())
    }

    /// The running instance of `container` (an app or init container of the pod).
    async fn running(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
    ) -> Result<String, StreamError> {
        let pod = self.pod(namespace, name)?;
        let in_spec = actions::app_containers(&pod)
            .iter()
            .chain(actions::init_containers(&pod))
            .any(|c| c.name == container);
        if !in_spec {
            return Err(LocateError::ContainerNotFound {
                pod: name.to_owned(),
                container: container.to_owned(),
            }
            .into());
        }
        let uid = actions::pod_uid(&pod);
        let all = self.runtime.list_containers(None).await?;
        all.into_iter()
            .find(|c| {
                c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                    && c.metadata.name == container
                    && c.state == ContainerState::Running
            })
            .map(|c| c.id)
            // Upstream's wording when the container has no running instance.
            .ok_or_else(|| {
                StreamError::BadRequest(format!(
                    "container {container:?} in pod {name:?} is not running"
                ))
            })
    }
}

#[async_trait]
impl Streams for PodStreams {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession, StreamError> {
        let id = self.running(namespace, pod, container).await?;
        Ok(self.runtime.exec(&id, request).await?)
    }

    async fn attach(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        request: &AttachRequest,
    ) -> Result<AttachSession, StreamError> {
        let id = self.running(namespace, pod, container).await?;
        Ok(self.runtime.attach(&id, request).await?)
    }

    async fn port_forward(
        &self,
        namespace: &str,
        name: &str,
        port: u16,
    ) -> Result<BoxStream, StreamError> {
        let pod = self.pod(namespace, name)?;
        let uid = actions::pod_uid(&pod);
        let sandboxes = self.runtime.list_pod_sandboxes().await?;
        let sandbox = sandboxes
            .iter()
            .find(|s| {
                s.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                    && s.state == PodSandboxState::Ready
            })
            .ok_or_else(|| {
                StreamError::BadRequest(format!("pod {name:?} has no running sandbox"))
            })?;
        Ok(self.runtime.port_forward(&sandbox.id, port).await?)
    }
}
