//! The pieces an EndpointSlice is made of, computed without I/O: the address types a
//! Service wants, a pod's endpoint and resolved ports, the labels and owner of a slice, and
//! the keys the reconciler matches endpoints and port sets by.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rudder_client::objects::{controller_reference, pod_is_ready};

use crate::selection::{
    LABEL_HEADLESS, cluster_ip_is_none, find_port, ip_is_v6, is_headless, pod_hostname, pod_ips,
    pod_node_name, protocol, publish_not_ready_addresses, service_ports, should_set_hostname,
};

/// Label naming the Service a slice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages a slice.
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`LABEL_MANAGED_BY`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The component events are reported as (upstream's name).
pub const EVENT_SOURCE: &str = "endpoint-slice-controller";
/// The Node label an endpoint's zone comes from.
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
pub const ADDRESS_TYPE_IPV4: &str = "IPv4";
pub const ADDRESS_TYPE_IPV6: &str = "IPv6";

/// Whether this controller manages the slice.
pub fn managed_by_us(slice: &EndpointSlice) -> bool {
    label(slice, LABEL_MANAGED_BY) == Some(CONTROLLER_NAME)
}

/// The value of the slice's `kubernetes.io/service-name` label.
pub fn service_name_of(slice: &EndpointSlice) -> Option<&str> {
    label(slice, LABEL_SERVICE_NAME).filter(|n| !n.is_empty())
}

fn label<'a>(slice: &'a EndpointSlice, key: &str) -> Option<&'a str> {
    slice.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// The address types the Service's slices have: one per `spec.ipFamilies` entry; without
/// families (an old API server), the family of the cluster IP, or both for a headless one.
pub fn address_types(service: &Service) -> BTreeSet<&'static str> {
    let spec = service.spec.as_ref();
    let families = spec.and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    let mut types: BTreeSet<&'static str> = families
        .iter()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(ADDRESS_TYPE_IPV4),
            "IPv6" => Some(ADDRESS_TYPE_IPV6),
            _ => None,
        })
        .collect();
    if types.is_empty() {
        if is_headless(service) {
            types.extend([ADDRESS_TYPE_IPV4, ADDRESS_TYPE_IPV6]);
        } else {
            let v6 = spec.and_then(|s| s.cluster_ip.as_deref()).and_then(ip_is_v6);
            types.insert(if v6 == Some(true) { ADDRESS_TYPE_IPV6 } else { ADDRESS_TYPE_IPV4 });
        }
    }
    types
}

type PortTuple = (String, i32, String, Option<String>);

fn port_tuple(p: &EndpointPort) -> PortTuple {
    (
        p.name.clone().unwrap_or_default(),
        p.port.unwrap_or_default(),
        protocol(p.protocol.as_deref()).to_owned(),
        p.app_protocol.clone(),
    )
}

/// The ports the pod serves the Service on, sorted: each Service port the pod resolves
/// (named target ports it lacks are left out). A headless Service may have none.
pub fn endpoint_ports(service: &Service, pod: &Pod) -> Vec<EndpointPort> {
    if service_ports(service).is_empty() && cluster_ip_is_none(service) {
        return Vec::new();
    }
    let mut ports: Vec<EndpointPort> = service_ports(service)
        .iter()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(protocol(sp.protocol.as_deref()).to_owned()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort_by_key(port_tuple);
    ports
}

/// Identifies a set of ports regardless of order (upstream's PortMapKey).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapKey(Vec<PortTuple>);

pub fn port_map_key(ports: &[EndpointPort]) -> PortMapKey {
    let mut tuples: Vec<PortTuple> = ports.iter().map(port_tuple).collect();
    tuples.sort();
    PortMapKey(tuples)
}

/// Identifies an endpoint across reconciles: its addresses, hostname and pod. Conditions,
/// node and zone may change in place.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointKey {
    addresses: Vec<String>,
    hostname: String,
    namespace: String,
    name: String,
}

pub fn endpoint_key(endpoint: &Endpoint) -> EndpointKey {
    let mut addresses = endpoint.addresses.clone();
    addresses.sort();
    let target = endpoint.target_ref.as_ref();
    EndpointKey {
        addresses,
        hostname: endpoint.hostname.clone().unwrap_or_default(),
        namespace: target.and_then(|t| t.namespace.clone()).unwrap_or_default(),
        name: target.and_then(|t| t.name.clone()).unwrap_or_default(),
    }
}

/// Whether two endpoints with the same key are equal in what the key leaves out (node,
/// zone, conditions, target) — the pod's resourceVersion in the target aside.
pub fn equal_beyond_key(a: &Endpoint, b: &Endpoint) -> bool {
    let target = |e: &Endpoint| {
        e.target_ref.clone().map(|mut t| {
            t.resource_version = None;
            t
        })
    };
    let conditions = |e: &Endpoint| e.conditions.clone().unwrap_or_default();
    a.node_name == b.node_name
        && a.zone == b.zone
        && conditions(a) == conditions(b)
        && target(a) == target(b)
}

/// The pod's endpoint in a slice of `address_type`: its IPs of that family (canonical
/// form), conditions (serving = Ready; terminating = being deleted; ready = serving and not
/// terminating, or always with `publishNotReadyAddresses`), node, zone, pod reference and,
/// when the pod names this Service as its subdomain, hostname.
pub fn pod_to_endpoint(
    pod: &Pod,
    zone: Option<String>,
    service: &Service,
    address_type: &str,
) -> Endpoint {
    let serving = pod_is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready_addresses(service) || (serving && !terminating);
    let want_v6 = address_type == ADDRESS_TYPE_IPV6;
    let addresses = pod_ips(pod)
        .into_iter()
        .filter_map(|ip| ip.parse::<std::net::IpAddr>().ok())
        .filter(|ip| ip.is_ipv6() == want_v6)
        .map(|ip| ip.to_string())
        .collect();
    Endpoint {
        addresses,
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: pod_node_name(pod),
        zone: zone.filter(|z| !z.is_empty()),
        hostname: should_set_hostname(pod, service).then(|| pod_hostname(pod)).flatten(),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Endpoint::default()
    }
}

fn reserved(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

/// The labels a slice of the Service carries (the Service's labels but the reserved ones,
/// the headless label when it has no cluster IP, the service-name and managed-by labels),
/// and whether the slice's own non-reserved labels differ from the Service's.
pub fn slice_labels(
    current: Option<&BTreeMap<String, String>>,
    service: &Service,
) -> (BTreeMap<String, String>, bool) {
    let own = |labels: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        labels
            .into_iter()
            .flatten()
            .filter(|(k, _)| !reserved(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let mut labels = own(service.metadata.labels.as_ref());
    let changed = own(current) != labels;
    if is_headless(service) {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels.insert(LABEL_SERVICE_NAME.into(), service.metadata.name.clone().unwrap_or_default());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    (labels, changed)
}

/// A new, empty slice for the Service (`generateName: <service>-`, owned by it).
pub fn new_slice(service: &Service, ports: Vec<EndpointPort>, address_type: &str) -> EndpointSlice {
    let (labels, _) = slice_labels(None, service);
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: service.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![controller_reference(service)]),
            ..ObjectMeta::default()
        },
        address_type: address_type.to_owned(),
        endpoints: Vec::new(),
        ports: Some(ports),
    }
}

/// Whether the slice's controller owner is this very Service (same UID).
pub fn owned_by(slice: &EndpointSlice, service: &Service) -> bool {
    let uid = service.metadata.uid.as_deref();
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid && o.kind == "Service" && o.api_version == "v1")
}

/// Whether an existing slice is just the empty placeholder a Service without endpoints
/// gets (then it is kept rather than replaced by an identical one).
pub fn is_placeholder_for(slice: &EndpointSlice, service: &Service, address_type: &str) -> bool {
    let (labels, _) = slice_labels(None, service);
    slice.metadata.namespace == service.metadata.namespace
        && slice.metadata.labels.as_ref() == Some(&labels)
        && owned_by(slice, service)
        && slice.address_type == address_type
        && slice.endpoints.is_empty()
        && slice.ports.as_ref().is_none_or(Vec::is_empty)
}
