//! A rudder API server with both controllers running, and what the tests do to it: create
//! Services and pods, play the kubelet by writing pod status (IP, phase, Ready), and read
//! back what the controllers wrote.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rudder_endpoints::{EndpointSliceConfig, EndpointsConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Env {
    pub cluster: rudder_testkit::TestCluster,
    pub client: kube::Client,
    /// The context the controllers run with (its informers are theirs).
    pub ctx: rudder_client::Context,
    pub cancel: CancellationToken,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Env {
    /// A fresh cluster with the Endpoints and EndpointSlice controllers running.
    pub async fn start() -> Env {
        let cluster = rudder_testkit::TestCluster::start().await;
        let client = cluster.client();
        let cancel = CancellationToken::new();
        let ctx = rudder_client::Context::new(client.clone(), cancel.clone());
        tokio::spawn(rudder_endpoints::endpoints::run(
            ctx.clone(),
            EndpointsConfig::default(),
            cancel.clone(),
        ));
        tokio::spawn(rudder_endpoints::endpointslice::run(
            ctx.clone(),
            EndpointSliceConfig::default(),
            cancel.clone(),
        ));
        Env { cluster, client, ctx, cancel }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn endpoints(&self) -> Api<Endpoints> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a Service from its `spec` (and labels).
    pub async fn create_service(&self, name: &str, labels: Value, spec: Value) -> Service {
        let svc: Service = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": spec,
        }))
        .unwrap();
        self.services().create(&PostParams::default(), &svc).await.unwrap()
    }

    pub async fn patch_service(&self, name: &str, patch: Value) {
        self.services().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    /// Creates a pod (with `spec` merged into a one-container spec), then writes its status
    /// as a kubelet would: Running, `ip`, Ready as given.
    pub async fn create_pod(&self, name: &str, labels: Value, spec: Value, ip: &str, ready: bool) {
        let mut pod_spec = json!({ "containers": [{ "name": "c", "image": "busybox" }] });
        if let (Some(base), Some(extra)) = (pod_spec.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": labels },
            "spec": pod_spec,
        }))
        .unwrap();
        self.pods().create(&PostParams::default(), &pod).await.unwrap();
        self.write_status(name, ip, ready).await;
    }

    pub async fn write_status(&self, name: &str, ip: &str, ready: bool) {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let now = k8s_openapi::jiff::Timestamp::from_second(now).unwrap().to_string();
        let status = json!({ "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": now,
            }],
        }});
        self.pods()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
    }

    pub async fn set_labels(&self, pod: &str, labels: Value) {
        let patch = json!({ "metadata": { "labels": labels } });
        self.pods().patch(pod, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }

    pub async fn delete_pod(&self, name: &str) {
        self.pods().delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// The Endpoints' addresses, `(ready, not ready)`, each sorted; `None` when absent.
    pub async fn endpoint_ips(&self, service: &str) -> Option<(Vec<String>, Vec<String>)> {
        let ep = self.endpoints().get_opt(service).await.unwrap()?;
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for s in ep.subsets.iter().flatten() {
            ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
            not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        }
        ready.sort();
        not_ready.sort();
        Some((ready, not_ready))
    }

    /// The Service's slices (by the service-name label).
    pub async fn slices_of(&self, service: &str) -> Vec<EndpointSlice> {
        let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
        self.slices().list(&lp).await.unwrap().items
    }

    /// The endpoints of the controller's slices, `(ready, not ready)` addresses, each
    /// sorted. Panics if an address is listed twice.
    pub async fn slice_ips(&self, service: &str) -> (Vec<String>, Vec<String>) {
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        let mut seen = BTreeSet::new();
        let ours = |s: &EndpointSlice| {
            s.metadata.labels.as_ref().and_then(|l| l.get("endpointslice.kubernetes.io/managed-by"))
                == Some(&"endpointslice-controller.k8s.io".to_owned())
        };
        for slice in self.slices_of(service).await.into_iter().filter(ours) {
            for e in &slice.endpoints {
                for ip in &e.addresses {
                    assert!(seen.insert(ip.clone()), "{ip} listed twice");
                    if e.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                        ready.push(ip.clone());
                    } else {
                        not_ready.push(ip.clone());
                    }
                }
            }
        }
        ready.sort();
        not_ready.sort();
        (ready, not_ready)
    }

    /// Waits until Endpoints and EndpointSlices of `service` list exactly `ready` and
    /// `not_ready`.
    pub async fn expect_ips(&self, service: &str, ready: &[&str], not_ready: &[&str]) {
        let want = (strings(ready), strings(not_ready));
        eventually(&format!("Endpoints {service} = {want:?}"), || async {
            (self.endpoint_ips(service).await.as_ref() == Some(&want)).then_some(())
        })
        .await;
        eventually(&format!("EndpointSlices {service} = {want:?}"), || async {
            (self.slice_ips(service).await == want).then_some(())
        })
        .await;
    }
}

pub fn strings(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
