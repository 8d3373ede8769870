//! What both controllers agree on about Services and Pods (upstream's
//! `k8s.io/endpointslice/util`): which Services get endpoints, which pods count, how a
//! Service port resolves to a pod's port, and which Services a pod change touches.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_client::ObjectKey;
use rudder_client::objects::{map_selector_matches, pod_is_ready};

/// Label on Endpoints and EndpointSlices of a Service without a cluster IP.
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// Annotation with the time of the pod or Service change that caused the last write.
pub const ANNOTATION_LAST_CHANGE_TRIGGER_TIME: &str =
    "endpoints.kubernetes.io/last-change-trigger-time";

/// The selector a Service's endpoints come from; `None` for a Service whose endpoints are
/// not ours to manage: no selector (an empty one counts as none, as it does in a real cluster
/// where empty maps do not survive storage) or type ExternalName.
pub fn service_selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether the Service selects the pod (same namespace, selector matches its labels).
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service_selector(service) else { return false };
    service.metadata.namespace == pod.metadata.namespace
        && map_selector_matches(selector, pod.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
}

/// The pods of `pods` the Service selects.
pub fn selected_pods(service: &Service, pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter().filter(|p| selects(service, p)).cloned().collect()
}

/// A Service without a cluster IP ("None" or unset).
pub fn is_headless(service: &Service) -> bool {
    let ip = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    ip.is_empty() || ip == "None"
}

/// `spec.clusterIP` is "None" (what upstream checks before allowing a port-less Service).
pub fn cluster_ip_is_none(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

pub fn publish_not_ready_addresses(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false)
}

pub fn service_ports(service: &Service) -> &[ServicePort] {
    service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default()
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// The pod's IPs in order: `status.podIPs`, or `status.podIP` when the list is empty.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// `Some(true)` for an IPv6 address, `Some(false)` for IPv4, `None` when it is not an IP.
pub fn ip_is_v6(ip: &str) -> Option<bool> {
    ip.parse::<IpAddr>().ok().map(|a| a.is_ipv6())
}

/// Whether the pod belongs in Endpoints/EndpointSlices at all: it has an IP, is not
/// terminal (Succeeded/Failed), and is not being deleted unless `include_terminating`.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if matches!(phase(pod), Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the address gets the pod's hostname: the pod sets `spec.hostname` and its
/// `spec.subdomain` names this Service (same namespace).
pub fn should_set_hostname(pod: &Pod, service: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace
}

pub fn pod_hostname(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty())
}

pub fn pod_node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty())
}

/// The protocol with its default.
pub fn protocol(p: Option<&str>) -> &str {
    p.filter(|p| !p.is_empty()).unwrap_or("TCP")
}

/// The pod port a Service port sends to: a numeric `targetPort` as is (the Service port
/// when unset), a named one looked up among the ports (same protocol) of the pod's
/// containers and of its sidecars (init containers with restartPolicy Always). `None` when
/// the pod has no such named port.
pub fn find_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    let name = match &service_port.target_port {
        None => return Some(service_port.port),
        Some(IntOrString::Int(n)) => return Some(*n),
        Some(IntOrString::String(name)) => name,
    };
    let spec = pod.spec.as_ref()?;
    let want = protocol(service_port.protocol.as_deref());
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(name) && protocol(p.protocol.as_deref()) == want)
        .map(|p| p.container_port)
}

/// The keys of the Services among `services` that select the pod.
pub fn services_for_pod(services: &[Arc<Service>], pod: &Pod) -> BTreeSet<ObjectKey> {
    services.iter().filter(|s| selects(s, pod)).map(|s| service_key(s)).collect()
}

pub fn service_key(service: &Service) -> ObjectKey {
    (
        service.metadata.namespace.clone().unwrap_or_default(),
        service.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether an update may change the pod's endpoints, and whether it may change which
/// Services select it.
fn pod_endpoints_changed(old: &Pod, new: &Pod) -> (bool, bool) {
    let hostname = |p: &Pod| p.spec.as_ref().map(|s| (s.hostname.clone(), s.subdomain.clone()));
    let labels_changed =
        old.metadata.labels != new.metadata.labels || hostname(old) != hostname(new);
    let changed = old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || pod_is_ready(old) != pod_is_ready(new)
        || pod_ips(old) != pod_ips(new)
        || phase(old) != phase(new)
        || pod_node_name(old) != pod_node_name(new);
    (changed, labels_changed)
}

/// The Services a pod update may affect (upstream's GetServicesToUpdateOnPodChange): none
/// when nothing relevant changed; those selecting the new pod when only its endpoint
/// changed; when its labels changed, the Services it left or joined, or all of the old
/// and new ones if its endpoint changed too.
pub fn services_for_pod_update(
    services: &[Arc<Service>],
    old: &Pod,
    new: &Pod,
) -> BTreeSet<ObjectKey> {
    if old.metadata.resource_version == new.metadata.resource_version {
        return BTreeSet::new();
    }
    let (changed, labels_changed) = pod_endpoints_changed(old, new);
    if !changed && !labels_changed {
        return BTreeSet::new();
    }
    let now = services_for_pod(services, new);
    if !labels_changed {
        return now;
    }
    let before = services_for_pod(services, old);
    if changed {
        now.union(&before).cloned().collect()
    } else {
        now.symmetric_difference(&before).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pod, service};

    #[test]
    fn named_ports_resolve_per_pod_and_protocol() {
        let svc = service("web", &[("http", 80, IntOrString::String("http".into()))]);
        let port = &service_ports(&svc)[0];
        let a = pod("a", "10.0.0.1", true, &[("http", 8080)]);
        let b = pod("b", "10.0.0.2", true, &[("http", 9090)]);
        let c = pod("c", "10.0.0.3", true, &[("metrics", 9100)]);
        assert_eq!(find_port(&a, port), Some(8080));
        assert_eq!(find_port(&b, port), Some(9090));
        assert_eq!(find_port(&c, port), None);
        let mut udp = port.clone();
        udp.protocol = Some("UDP".into());
        assert_eq!(find_port(&a, &udp), None, "protocol must match");
        let numeric = service("web", &[("", 80, IntOrString::Int(8443))]);
        assert_eq!(find_port(&c, &service_ports(&numeric)[0]), Some(8443));
    }

    #[test]
    fn which_pods_count() {
        let mut p = pod("a", "10.0.0.1", false, &[]);
        assert!(should_pod_be_in_endpoints(&p, false), "not ready still counts");
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(!should_pod_be_in_endpoints(&p, false));
        assert!(should_pod_be_in_endpoints(&p, true));
        let mut done = pod("b", "10.0.0.2", true, &[]);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!should_pod_be_in_endpoints(&done, true));
        let no_ip = pod("c", "", true, &[]);
        assert!(!should_pod_be_in_endpoints(&no_ip, true));
    }

    #[test]
    fn pod_updates_enqueue_the_services_they_affect() {
        let web = Arc::new(service("web", &[]));
        let mut api = service("api", &[]);
        api.spec.as_mut().unwrap().selector = Some([("tier".into(), "api".into())].into());
        let services = vec![web, Arc::new(api)];
        let old = pod("a", "10.0.0.1", true, &[]);
        let mut new = old.clone();
        new.metadata.resource_version = Some("2".into());
        assert!(services_for_pod_update(&services, &old, &new).is_empty(), "nothing changed");
        // Readiness flip: the Services selecting it.
        new.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
        let keys = services_for_pod_update(&services, &old, &new);
        assert_eq!(keys, [("default".into(), "web".into())].into());
        // Only labels changed: the Services it left or joined.
        let mut moved = old.clone();
        moved.metadata.resource_version = Some("3".into());
        moved.metadata.labels = Some([("tier".into(), "api".into())].into());
        let keys = services_for_pod_update(&services, &old, &moved);
        assert_eq!(
            keys,
            [("default".into(), "api".into()), ("default".into(), "web".into())].into()
        );
    }
}
