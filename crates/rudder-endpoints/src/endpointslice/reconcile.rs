//! Which EndpointSlices to create, update and delete so that a Service's slices list
//! exactly the endpoints of its pods — computed without I/O, after upstream's reconciler
//! (`k8s.io/endpointslice`), whose aim is to touch as few slices as possible:
//!
//! 1. Pods are grouped by the ports they resolve (one group of slices per port set and
//!    address type).
//! 2. Each existing slice keeps the endpoints still wanted (updated in place when their
//!    conditions, node or zone changed) and loses the others; an endpoint already kept by
//!    an earlier slice is dropped from later ones, so no endpoint is listed twice. A slice
//!    left empty is deleted; one whose labels no longer match the Service's is updated.
//! 3. New endpoints first fill the slices being updated anyway (fullest first), then the
//!    unchanged slice they fit into most tightly, and only then new slices of at most
//!    `max_endpoints_per_slice`.
//! 4. Slices of other port sets, address types, or of an older Service with the same name
//!    are deleted; rather than create one slice and delete another, the deleted one is
//!    reused. A Service without endpoints keeps one empty placeholder slice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::jiff::Timestamp;

use super::compute::{
    EndpointKey, PortMapKey, address_types, endpoint_key, endpoint_ports, equal_beyond_key,
    is_placeholder_for, new_slice, owned_by, pod_to_endpoint, port_map_key, slice_labels,
};
use crate::selection::{
    ANNOTATION_LAST_CHANGE_TRIGGER_TIME, pod_node_name, publish_not_ready_addresses,
    should_pod_be_in_endpoints,
};

/// The writes that bring the slices to the wanted state. Slices to update are modified
/// copies of the cached ones (their resourceVersion makes the update conditional); slices
/// to create have no name yet (`generateName`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<EndpointSlice>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// What one reconcile starts from.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub service: &'a Service,
    /// The pods the Service selects.
    pub pods: &'a [Arc<Pod>],
    /// The slices this controller manages for the Service (none pending deletion).
    pub existing: &'a [Arc<EndpointSlice>],
    pub max_endpoints_per_slice: usize,
    /// For the last-change-trigger-time annotation of written slices.
    pub trigger_time: Option<Timestamp>,
    /// A Node's zone by name: `None` when the Node is not known, `Some(None)` when it has
    /// no zone label.
    pub node_zone: &'a dyn Fn(&str) -> Option<Option<String>>,
}

impl std::fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("service", &self.service.metadata.name)
            .field("pods", &self.pods.len())
            .field("existing", &self.existing.len())
            .finish_non_exhaustive()
    }
}

/// A pod left out because its Node is unknown: `(pod, node)`.
pub type SkippedPod = (String, String);

/// The plan, and the pods left out because the Node they are bound to is not known (the
/// caller retries later; with `publishNotReadyAddresses` such pods are listed anyway).
pub fn reconcile(input: &Input<'_>) -> (Plan, Vec<SkippedPod>) {
    let types = address_types(input.service);
    let mut plan = Plan::default();
    let mut skipped = Vec::new();
    let mut by_type: BTreeMap<&str, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    let mut other_types = Vec::new();
    for slice in input.existing {
        match types.get(slice.address_type.as_str()) {
            Some(t) => by_type.entry(t).or_default().push(slice.clone()),
            None => other_types.push((**slice).clone()),
        }
    }
    for address_type in types {
        let existing = by_type.remove(address_type).unwrap_or_default();
        let part = reconcile_address_type(input, &existing, address_type, &mut skipped);
        plan.create.extend(part.create);
        plan.update.extend(part.update);
        plan.delete.extend(part.delete);
    }
    plan.delete.extend(other_types);
    skipped.sort();
    skipped.dedup();
    (plan, skipped)
}

type EndpointSet = BTreeMap<EndpointKey, Endpoint>;

fn reconcile_address_type(
    input: &Input<'_>,
    existing: &[Arc<EndpointSlice>],
    address_type: &str,
    skipped: &mut Vec<SkippedPod>,
) -> Plan {
    let service = input.service;
    let mut plan = Plan::default();
    let mut existing_by_ports: BTreeMap<PortMapKey, Vec<Arc<EndpointSlice>>> = BTreeMap::new();
    for slice in existing {
        if owned_by(slice, service) {
            let key = port_map_key(slice.ports.as_deref().unwrap_or_default());
            existing_by_ports.entry(key).or_default().push(slice.clone());
        } else {
            plan.delete.push((**slice).clone());
        }
    }

    let mut desired: BTreeMap<PortMapKey, (Vec<EndpointPort>, EndpointSet)> = BTreeMap::new();
    for pod in input.pods {
        if !should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = endpoint_ports(service, pod);
        let group =
            desired.entry(port_map_key(&ports)).or_insert_with(|| (ports, EndpointSet::new()));
        let zone = match pod_node_name(pod) {
            None => None,
            Some(node) => match (input.node_zone)(&node) {
                Some(zone) => zone,
                None if publish_not_ready_addresses(service) => None,
                None => {
                    skipped.push((pod.metadata.name.clone().unwrap_or_default(), node));
                    continue;
                }
            },
        };
        let endpoint = pod_to_endpoint(pod, zone, service, address_type);
        if !endpoint.addresses.is_empty() {
            group.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    for (key, (ports, wanted)) in desired.iter_mut() {
        let slices = existing_by_ports.get(key).map(Vec::as_slice).unwrap_or_default();
        let part = reconcile_ports(input, slices, std::mem::take(wanted), ports, address_type);
        plan.create.extend(part.create);
        plan.update.extend(part.update);
        plan.delete.extend(part.delete);
    }
    for (key, slices) in existing_by_ports {
        if !desired.contains_key(&key) {
            plan.delete.extend(slices.iter().map(|s| (**s).clone()));
        }
    }

    if existing.len() == plan.delete.len() && plan.create.is_empty() {
        if plan.delete.len() == 1 && is_placeholder_for(&plan.delete[0], service, address_type) {
            plan.delete.clear();
        } else {
            plan.create.push(new_slice(service, Vec::new(), address_type));
        }
    }

    reuse_deleted_slices(&mut plan, service);
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        set_trigger_time(slice, input.trigger_time);
    }
    plan
}

/// Steps 2 and 3 for the slices of one port set.
fn reconcile_ports(
    input: &Input<'_>,
    existing: &[Arc<EndpointSlice>],
    mut wanted: EndpointSet,
    ports: &[EndpointPort],
    address_type: &str,
) -> Plan {
    let max = input.max_endpoints_per_slice.max(1);
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut unchanged = BTreeSet::new();
    let mut to_update = BTreeSet::new();
    let mut to_delete = BTreeSet::new();

    for slice in existing {
        let name = slice.metadata.name.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for endpoint in &slice.endpoints {
            if let Some(want) = wanted.remove(&endpoint_key(endpoint)) {
                changed |= !equal_beyond_key(&want, endpoint);
                kept.push(want);
            }
        }
        let (labels, labels_changed) = slice_labels(slice.metadata.labels.as_ref(), input.service);
        let mut copy = (**slice).clone();
        if changed || kept.len() != slice.endpoints.len() {
            if kept.is_empty() {
                to_delete.insert(name.clone());
            } else {
                copy.endpoints = kept;
                copy.metadata.labels = Some(labels);
                to_update.insert(name.clone());
            }
        } else if labels_changed {
            copy.metadata.labels = Some(labels);
            to_update.insert(name.clone());
        } else {
            unchanged.insert(name.clone());
        }
        slices.insert(name, copy);
    }

    // Fill the slices that are written anyway, fullest first.
    if !wanted.is_empty() && !to_update.is_empty() {
        let mut order: Vec<&String> = to_update.iter().collect();
        order.sort_by_key(|n| std::cmp::Reverse(slices[*n].endpoints.len()));
        for name in order {
            let slice = slices.get_mut(name).expect("known slice");
            while slice.endpoints.len() < max {
                let Some((_, endpoint)) = wanted.pop_first() else { break };
                slice.endpoints.push(endpoint);
            }
        }
    }

    // Then the unchanged slice they fit most tightly into, then new slices.
    let mut create = Vec::new();
    while !wanted.is_empty() {
        let fit = (wanted.len() < max)
            .then(|| tightest_fit(unchanged.iter().map(|n| &slices[n]), wanted.len(), max))
            .flatten();
        let mut slice = match fit {
            Some(name) => {
                unchanged.remove(&name);
                to_update.insert(name.clone());
                slices.remove(&name).expect("known slice")
            }
            None => new_slice(input.service, ports.to_vec(), address_type),
        };
        while slice.endpoints.len() < max {
            let Some((_, endpoint)) = wanted.pop_first() else { break };
            slice.endpoints.push(endpoint);
        }
        match slice.metadata.name.clone() {
            Some(name) => {
                slices.insert(name, slice);
            }
            None => create.push(slice),
        }
    }

    Plan {
        create,
        update: to_update.iter().map(|n| slices[n].clone()).collect(),
        delete: to_delete.iter().map(|n| slices[n].clone()).collect(),
    }
}

/// The slice that is closest to full once `count` endpoints are added, if any has room.
fn tightest_fit<'a>(
    candidates: impl Iterator<Item = &'a EndpointSlice>,
    count: usize,
    max: usize,
) -> Option<String> {
    candidates
        .filter(|s| s.endpoints.len() + count <= max)
        .min_by_key(|s| max - (s.endpoints.len() + count))
        .and_then(|s| s.metadata.name.clone())
}

/// Turns "create one, delete another" into an update of the one to delete (same address
/// type and owned by this Service, so never a slice of an older Service of the same name).
fn reuse_deleted_slices(plan: &mut Plan, service: &Service) {
    let mut i = 0;
    while i < plan.delete.len() && !plan.create.is_empty() {
        let old = &plan.delete[i];
        let Some(new) = plan.create.last() else { break };
        if old.address_type == new.address_type && owned_by(old, service) {
            let old = plan.delete.remove(i);
            let mut new = plan.create.pop().expect("checked above");
            new.metadata.name = old.metadata.name;
            new.metadata.generate_name = old.metadata.generate_name;
            new.metadata.uid = old.metadata.uid;
            new.metadata.resource_version = old.metadata.resource_version;
            new.metadata.creation_timestamp = old.metadata.creation_timestamp;
            plan.update.push(new);
        } else {
            i += 1;
        }
    }
}

fn set_trigger_time(slice: &mut EndpointSlice, trigger_time: Option<Timestamp>) {
    let mut annotations = slice.metadata.annotations.take().unwrap_or_default();
    match trigger_time {
        Some(t) => {
            annotations
                .insert(ANNOTATION_LAST_CHANGE_TRIGGER_TIME.into(), crate::trigger_time::format(t));
        }
        None => {
            annotations.remove(ANNOTATION_LAST_CHANGE_TRIGGER_TIME);
        }
    }
    slice.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
