//! The writes of a sync (upstream's StatefulPodControl), each reported as an event on the set
//! in upstream's words: `SuccessfulCreate` "create Pod web-0 in StatefulSet web successful",
//! "create Claim www-web-0 Pod web-0 in StatefulSet web success", `FailedCreate` "create Pod
//! web-0 in StatefulSet web failed error: ...", `SuccessfulDelete`, `SuccessfulUpdate`,
//! `RecreatingFailedPod` "StatefulSet ns/web is recreating failed Pod web-0".

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::PostParams;
use rudder_client::{EventType, Recorder};
use rudder_workloads::api::{Target, call, delete_exactly};

use crate::Error;
use crate::plan::{Action, DeleteReason};
use crate::pods::{name_of, set_name, set_namespace};

/// Whether the sync may go on after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Nothing failed, but the cache was behind (the pod exists already): stop this sync and
    /// let the watch bring the change.
    Stop,
}

pub struct PodControl<'a> {
    pub client: &'a Client,
    pub recorder: &'a Recorder,
    pub set: &'a StatefulSet,
}

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

impl PodControl<'_> {
    /// Runs one step.
    pub async fn run(&self, action: &Action) -> Result<Flow, Error> {
        match action {
            Action::CreatePod { pod, claims } => self.create_pod(pod, claims).await,
            Action::CreateClaims { pod, claims } => {
                self.create_claims(pod, claims).await?;
                Ok(Flow::Continue)
            }
            Action::DeletePod { pod, reason } => self.delete_pod(pod, *reason).await,
            Action::UpdatePod { pod } => self.update_pod(pod).await,
            Action::UpdateClaim { pod, claim } => self.update_claim(pod, claim).await,
            Action::Wait { message } => Err(Error::Waiting {
                namespace: set_namespace(self.set).to_owned(),
                name: set_name(self.set).to_owned(),
                message: message.clone(),
            }),
        }
    }

    fn pod_event(&self, verb: &str, pod: &str, error: Option<&Error>) {
        let set = set_name(self.set);
        match error {
            None => self.recorder.event(
                self.set,
                EventType::Normal,
                &format!("Successful{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} successful"),
            ),
            Some(e) => self.recorder.event(
                self.set,
                EventType::Warning,
                &format!("Failed{}", title(verb)),
                format!("{verb} Pod {pod} in StatefulSet {set} failed error: {}", e.message()),
            ),
        }
    }

    fn claim_event(&self, verb: &str, pod: &str, claim: &str, error: Option<&Error>) {
        let set = set_name(self.set);
        match error {
            None => self.recorder.event(
                self.set,
                EventType::Normal,
                &format!("Successful{}", title(verb)),
                format!("{verb} Claim {claim} Pod {pod} in StatefulSet {set} success"),
            ),
            Some(e) => self.recorder.event(
                self.set,
                EventType::Warning,
                &format!("Failed{}", title(verb)),
                format!(
                    "{verb} Claim {claim} for Pod {pod} in StatefulSet {set} failed error: {}",
                    e.message()
                ),
            ),
        }
    }

    fn pods(&self) -> kube::Api<Pod> {
        kube::Api::namespaced(self.client.clone(), set_namespace(self.set))
    }

    fn target<'b>(&'b self, verb: &'static str, kind: &'static str, name: &'b str) -> Target<'b> {
        Target { verb, kind, namespace: set_namespace(self.set), name }
    }

    async fn create_claims(
        &self,
        pod: &str,
        claims: &[PersistentVolumeClaim],
    ) -> Result<(), Error> {
        let api: kube::Api<PersistentVolumeClaim> =
            kube::Api::namespaced(self.client.clone(), set_namespace(self.set));
        let mut errors = Vec::new();
        for claim in claims {
            let name = claim.metadata.name.as_deref().unwrap_or("");
            let t = self.target("create", "PersistentVolumeClaim", name);
            match call(t, api.create(&PostParams::default(), claim)).await {
                Ok(_) => self.claim_event("create", pod, name, None),
                // Made in an earlier sync the cache has not shown yet.
                Err(e) if e.is_already_exists() => {}
                Err(e) => {
                    let e = Error::from(e);
                    if !e.is_namespace_terminating() {
                        self.claim_event("create", pod, name, Some(&e));
                    }
                    errors.push(e);
                }
            }
        }
        Error::aggregate(errors)
    }

    async fn create_pod(&self, pod: &Pod, claims: &[PersistentVolumeClaim]) -> Result<Flow, Error> {
        let name = name_of(pod);
        if let Err(e) = self.create_claims(name, claims).await {
            if !e.is_namespace_terminating() {
                self.pod_event("create", name, Some(&e));
            }
            return Err(e);
        }
        let t = self.target("create", "Pod", name);
        match call(t, self.pods().create(&PostParams::default(), pod)).await {
            Ok(_) => {
                self.pod_event("create", name, None);
                Ok(Flow::Continue)
            }
            Err(e) if e.is_already_exists() => Ok(Flow::Stop),
            Err(e) => {
                let e = Error::from(e);
                if !e.is_namespace_terminating() {
                    self.pod_event("create", name, Some(&e));
                }
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, pod: &Pod, reason: DeleteReason) -> Result<Flow, Error> {
        let name = name_of(pod);
        let (ns, set) = (set_namespace(self.set), set_name(self.set));
        match reason {
            DeleteReason::Failed => self.recorder.event(
                self.set,
                EventType::Warning,
                "RecreatingFailedPod",
                format!("StatefulSet {ns}/{set} is recreating failed Pod {name}"),
            ),
            DeleteReason::Succeeded => self.recorder.event(
                self.set,
                EventType::Normal,
                "RecreatingTerminatedPod",
                format!("StatefulSet {ns}/{set} is recreating terminated Pod {name}"),
            ),
            DeleteReason::ScaleDown | DeleteReason::Update => {}
        }
        let params = delete_exactly(pod.metadata.uid.as_deref(), None);
        let t = self.target("delete", "Pod", name);
        match call(t, self.pods().delete(name, &params)).await {
            Ok(_) => {
                self.pod_event("delete", name, None);
                Ok(Flow::Continue)
            }
            // Gone already, or replaced by a pod with another uid.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(Flow::Continue),
            Err(e) => {
                let e = Error::from(e);
                self.pod_event("delete", name, Some(&e));
                Err(e)
            }
        }
    }

    async fn update_pod(&self, pod: &Pod) -> Result<Flow, Error> {
        let name = name_of(pod);
        let t = self.target("update", "Pod", name);
        match call(t, self.pods().replace(name, &PostParams::default(), pod)).await {
            Ok(_) => {
                self.pod_event("update", name, None);
                Ok(Flow::Continue)
            }
            Err(e) => {
                let e = Error::from(e);
                self.pod_event("update", name, Some(&e));
                Err(e)
            }
        }
    }

    async fn update_claim(&self, pod: &str, claim: &PersistentVolumeClaim) -> Result<Flow, Error> {
        let api: kube::Api<PersistentVolumeClaim> =
            kube::Api::namespaced(self.client.clone(), set_namespace(self.set));
        let name = claim.metadata.name.as_deref().unwrap_or("");
        let t = self.target("update owners of", "PersistentVolumeClaim", name);
        match call(t, api.replace(name, &PostParams::default(), claim)).await {
            Ok(_) => Ok(Flow::Continue),
            Err(e) if e.is_not_found() => Ok(Flow::Continue),
            Err(e) => {
                let e = Error::from(e);
                self.pod_event("update", pod, Some(&e));
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn verbs_become_reasons() {
        assert_eq!(super::title("create"), "Create");
        assert_eq!(super::title(""), "");
    }
}
