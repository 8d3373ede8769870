//! The Endpoints a Service should have, computed from the Service and the pods it selects,
//! with no I/O: addresses per resolved port, packed into the canonical subsets (one subset
//! per distinct set of addresses, addresses and ports sorted), truncated at 1000 addresses,
//! and the decision whether the stored object must be written.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use rudder_client::objects::pod_is_ready;

use crate::selection::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, LABEL_HEADLESS, cluster_ip_is_none, find_port, ip_is_v6,
    is_headless, pod_hostname, pod_ips, pod_node_name, protocol, publish_not_ready_addresses,
    service_ports, should_pod_be_in_endpoints, should_set_hostname,
};

/// Most addresses one Endpoints object carries; beyond, it is truncated.
pub const MAX_CAPACITY: usize = 1000;
/// Annotation set (to `truncated`) on an Endpoints object that was truncated.
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Label marking the Endpoints this controller writes (upstream since 1.33).
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
/// This controller's name, the value of [`LABEL_MANAGED_BY`] and the events' source.
pub const CONTROLLER_NAME: &str = "endpoint-controller";

/// Whether this controller wrote (and so may delete) the Endpoints object.
pub fn managed_by_us(endpoints: &Endpoints) -> bool {
    endpoints.metadata.labels.as_ref().and_then(|l| l.get(LABEL_MANAGED_BY)).map(String::as_str)
        == Some(CONTROLLER_NAME)
}

/// The pod's address for the Service: the pod IP of the Service's first IP family.
fn address_for(service: &Service, pod: &Pod) -> Option<EndpointAddress> {
    let spec = service.spec.as_ref();
    let ips = pod_ips(pod);
    let want_v6 = match spec.and_then(|s| s.ip_families.as_ref()).and_then(|f| f.first()) {
        Some(family) => family == "IPv6",
        None if !is_headless(service) => {
            spec.and_then(|s| s.cluster_ip.as_deref()).and_then(ip_is_v6).unwrap_or(false)
        }
        None => ips.first().and_then(|ip| ip_is_v6(ip)).unwrap_or(false),
    };
    let ip = ips.into_iter().find(|ip| ip_is_v6(ip) == Some(want_v6))?;
    Some(EndpointAddress {
        ip: ip.to_owned(),
        node_name: pod_node_name(pod),
        hostname: should_set_hostname(pod, service).then(|| pod_hostname(pod)).flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    })
}

/// The canonical subsets for the Service and the pods it selects: ready pods (or every
/// pod with `publishNotReadyAddresses`) in `addresses`, the others in `notReadyAddresses`;
/// a pod is listed for the Service ports it resolves (a named targetPort it lacks is
/// skipped); a headless Service without ports lists addresses without ports.
pub fn desired_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = publish_not_ready_addresses(service);
    let ports = service_ports(service);
    let mut raw = Vec::new();
    for pod in pods {
        if !should_pod_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = address_for(service, pod) else { continue };
        let ready = publish || pod_is_ready(pod);
        let subset = |port: Option<EndpointPort>| {
            let addresses = Some(vec![address.clone()]);
            EndpointSubset {
                addresses: if ready { addresses.clone() } else { None },
                not_ready_addresses: if ready { None } else { addresses },
                ports: port.map(|p| vec![p]),
            }
        };
        if ports.is_empty() {
            if cluster_ip_is_none(service) {
                raw.push(subset(None));
            }
            continue;
        }
        for service_port in ports {
            let Some(number) = find_port(pod, service_port) else { continue };
            raw.push(subset(Some(EndpointPort {
                name: service_port.name.clone().filter(|n| !n.is_empty()),
                port: number,
                protocol: Some(protocol(service_port.protocol.as_deref()).to_owned()),
                app_protocol: service_port.app_protocol.clone(),
            })));
        }
    }
    repack(&raw)
}

type PortKey = (i32, String, String, Option<String>);
type AddressKey = (String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.port,
        p.name.clone().unwrap_or_default(),
        protocol(p.protocol.as_deref()).to_owned(),
        p.app_protocol.clone(),
    )
}

fn port_from_key((port, name, protocol, app_protocol): PortKey) -> EndpointPort {
    EndpointPort {
        port,
        name: (!name.is_empty()).then_some(name),
        protocol: Some(protocol),
        app_protocol,
    }
}

fn address_key(a: &EndpointAddress) -> AddressKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|r| r.uid.clone()).unwrap_or_default())
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Expands subsets to (port, address, ready) and packs them again canonically: the ports
/// offered by exactly the same addresses (with the same readiness) share one subset; an
/// address not ready on a port is not ready there even if listed ready elsewhere; addresses
/// are deduplicated by IP and pod UID and sorted by them, ports and subsets sorted too.
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    let mut addresses: BTreeMap<AddressKey, EndpointAddress> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    for subset in subsets {
        let ports: Vec<Option<PortKey>> = match subset.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ports) => ports.iter().map(|p| Some(port_key(p))).collect(),
        };
        let listed = subset
            .addresses
            .iter()
            .flatten()
            .map(|a| (a, true))
            .chain(subset.not_ready_addresses.iter().flatten().map(|a| (a, false)));
        for (address, ready) in listed {
            let key = address_key(address);
            addresses.entry(key.clone()).or_insert_with(|| address.clone());
            for port in &ports {
                by_port
                    .entry(port.clone())
                    .or_default()
                    .entry(key.clone())
                    .and_modify(|r| *r = *r && ready)
                    .or_insert(ready);
            }
        }
    }
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, Vec<PortKey>> = BTreeMap::new();
    for (port, set) in by_port {
        let group = groups.entry(set.into_iter().collect()).or_default();
        group.extend(port);
    }
    groups
        .into_iter()
        .map(|(set, ports)| {
            let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
            for (key, is_ready) in set {
                let address = addresses[&key].clone();
                if is_ready { ready.push(address) } else { not_ready.push(address) }
            }
            EndpointSubset {
                addresses: non_empty(ready),
                not_ready_addresses: non_empty(not_ready),
                ports: non_empty(ports.into_iter().map(port_from_key).collect()),
            }
        })
        .collect()
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// Cuts the subsets down to `max` addresses, ready ones first, spreading the cut over the
/// subsets in proportion to their size (rounded up, so the last ones may get fewer).
/// Returns whether anything was cut.
pub fn truncate(subsets: &mut Vec<EndpointSubset>, max: usize) -> bool {
    let (total_ready, total_not_ready) = count(subsets);
    if total_ready + total_not_ready <= max {
        return false;
    }
    let truncate_ready = total_ready > max;
    let (budget, total) =
        if truncate_ready { (max, total_ready) } else { (max - total_ready, total_not_ready) };
    let mut left = budget;
    for subset in subsets.iter_mut() {
        let list =
            if truncate_ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = (n * budget).div_ceil(total.max(1)).min(left);
        if let Some(l) = list.as_mut() {
            l.truncate(share);
        }
        left -= list.as_ref().map_or(0, Vec::len);
        if list.as_ref().is_some_and(Vec::is_empty) {
            *list = None;
        }
        if truncate_ready {
            subset.not_ready_addresses = None;
        }
    }
    subsets.retain(|s| s.addresses.is_some() || s.not_ready_addresses.is_some());
    true
}

/// The labels the Endpoints carry: the Service's (reserved keys aside), the headless label
/// for a Service without a cluster IP, and the managed-by label.
pub fn desired_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| *k != LABEL_HEADLESS && *k != LABEL_MANAGED_BY)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// Subsets as compared: canonical, without the pods' resourceVersions, empty names unset.
fn comparable(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    let mut subsets = repack(subsets.map(Vec::as_slice).unwrap_or_default());
    for subset in &mut subsets {
        for a in subset.addresses.iter_mut().chain(subset.not_ready_addresses.iter_mut()).flatten()
        {
            if let Some(r) = a.target_ref.as_mut() {
                r.resource_version = None;
            }
            a.node_name = a.node_name.take().filter(|n| !n.is_empty());
            a.hostname = a.hostname.take().filter(|h| !h.is_empty());
        }
    }
    subsets
}

/// What to write: `None` when the stored Endpoints already match (subsets compared
/// canonically, labels, the over-capacity annotation); otherwise the object to create
/// (`current` is `None`) or to update (a copy of `current`, so its resourceVersion makes
/// the update conditional). The trigger-time annotation is refreshed with every write but
/// never causes one.
pub fn plan(
    service: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger_time: Option<Timestamp>,
) -> Option<Endpoints> {
    let mut subsets = desired_subsets(service, pods);
    let truncated = truncate(&mut subsets, MAX_CAPACITY);
    let labels = desired_labels(service);
    if let Some(current) = current {
        let annotated = current
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY));
        if comparable(current.subsets.as_ref()) == comparable(Some(&subsets))
            && current.metadata.labels.as_ref() == Some(&labels)
            && annotated == truncated
        {
            return None;
        }
    }
    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        subsets: None,
    });
    endpoints.subsets = non_empty(subsets);
    endpoints.metadata.labels = Some(labels);
    let mut annotations = endpoints.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(t) => annotations
            .insert(ANNOTATION_LAST_CHANGE_TRIGGER_TIME.into(), crate::trigger_time::format(t)),
        None => annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME),
    };
    if truncated {
        annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
    } else {
        annotations.remove(ANNOTATION_OVER_CAPACITY);
    }
    endpoints.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    Some(endpoints)
}

#[cfg(test)]
#[path = "compute_tests.rs"]
mod tests;
