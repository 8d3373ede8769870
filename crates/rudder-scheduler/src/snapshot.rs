//! The scheduler's picture of the cluster: every node with the pods bound (or assumed) to it,
//! updated incrementally from watch events and read, unchanged, by one scheduling cycle at a
//! time. Indexes keep the expensive questions cheap: pods per namespace, nodes per owner,
//! nodes holding pods with affinity terms.

use crate::FastMap as HashMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::node_info::{NodeFacts, NodeInfo};
use crate::pod_info::{NamespaceLabels, PodInfo};

/// A pod the snapshot holds: bound (seen so in a watch) or assumed (we bound it, the watch
/// has not told yet).
#[derive(Clone, Debug)]
pub struct PodEntry {
    pub info: Arc<PodInfo>,
    pub node: Arc<str>,
    pub assumed: bool,
}

/// What changed about a node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeChange {
    Added,
    /// Something a filter or score reads changed (old facts, new facts).
    Changed(Box<NodeFacts>, Box<NodeFacts>),
    Unchanged,
}

/// One namespace's pods on known nodes: uid -> (slot, pod).
type NamespacePods = HashMap<Arc<str>, (usize, Arc<PodInfo>)>;

/// A zone while ordering nodes: first insertion sequence, key, (sequence, slot) of its nodes.
type ZoneNodes = (u64, String, Vec<(u64, usize)>);

#[derive(Debug, Default)]
pub struct Snapshot {
    slots: Vec<Option<NodeInfo>>,
    /// Insertion sequence of each slot's node (the node order within a zone).
    seqs: Vec<u64>,
    next_seq: u64,
    free: Vec<usize>,
    by_name: HashMap<Arc<str>, usize>,
    order: Vec<usize>,
    order_dirty: bool,
    pods: HashMap<Arc<str>, PodEntry>,
    /// Pods bound to nodes the snapshot does not know (yet or any more), by node name.
    orphans: HashMap<Arc<str>, Vec<Arc<str>>>,
    /// Per owner uid, the slots holding its pods and how many.
    owner_slots: HashMap<Arc<str>, HashMap<usize, u32>>,
    /// Per owner uid, its pods per zone (nodes with a `topology.kubernetes.io/zone` label).
    owner_zones: HashMap<Arc<str>, HashMap<Arc<str>, u32>>,
    /// Per namespace, the pods on known nodes and their slot.
    ns_pods: HashMap<Arc<str>, NamespacePods>,
    affinity_slots: BTreeSet<usize>,
    anti_affinity_slots: BTreeSet<usize>,
    pub namespaces: NamespaceLabels,
    /// The PVC/PV/StorageClass caches VolumeBinding reads (none: pods' volumes are not checked).
    pub volumes: Option<crate::volumes::VolumeListers>,
}

fn zone_key(node: &NodeInfo) -> String {
    let l = node.labels();
    let get = |a: &str, b: &str| l.get(a).or_else(|| l.get(b)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() { String::new() } else { format!("{region}:\0:{zone}") }
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    pub fn num_nodes(&self) -> usize {
        self.by_name.len()
    }

    /// The node in `slot` (slots come from [`Snapshot::order`] and the indexes).
    pub fn node(&self, slot: usize) -> &NodeInfo {
        self.slots[slot].as_ref().expect("live slot")
    }

    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn node_by_name(&self, name: &str) -> Option<&NodeInfo> {
        self.slot_of(name).map(|s| self.node(s))
    }

    /// Every node's slot, zones interleaved (as upstream's node tree lists them) so that
    /// scoring a fraction of the nodes still spans zones. Call [`Snapshot::prepare`] after
    /// changes.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Rebuilds the node order if nodes came or went.
    pub fn prepare(&mut self) {
        if !self.order_dirty {
            return;
        }
        self.order_dirty = false;
        let mut zones: Vec<ZoneNodes> = Vec::new();
        let mut zone_index: HashMap<String, usize> = HashMap::default();
        for &slot in self.by_name.values() {
            let key = zone_key(self.node(slot));
            let seq = self.seqs[slot];
            let i = *zone_index.entry(key.clone()).or_insert_with(|| {
                zones.push((seq, key, Vec::new()));
                zones.len() - 1
            });
            zones[i].0 = zones[i].0.min(seq);
            zones[i].2.push((seq, slot));
        }
        zones.sort_by_key(|z| z.0);
        for z in &mut zones {
            z.2.sort_unstable();
        }
        self.order.clear();
        let longest = zones.iter().map(|z| z.2.len()).max().unwrap_or(0);
        for i in 0..longest {
            for z in &zones {
                if let Some((_, slot)) = z.2.get(i) {
                    self.order.push(*slot);
                }
            }
        }
    }

    /// Adds or updates a node; pods already bound to it join it.
    pub fn upsert_node(&mut self, node: &Node) -> NodeChange {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let facts = NodeFacts::of(node);
        if let Some(&slot) = self.by_name.get(name) {
            let info = self.slots[slot].as_mut().expect("live slot");
            if info.facts == facts {
                return NodeChange::Unchanged;
            }
            let old = info.facts.clone();
            let zone_before = zone_key(info);
            let zone_label_before = info.zone.clone();
            let owners: Vec<Arc<str>> =
                info.pods.iter().filter_map(|p| p.owner_uid.clone()).collect();
            info.set_facts(facts.clone());
            let zone_label_after = info.zone.clone();
            if zone_key(info) != zone_before {
                self.order_dirty = true;
            }
            if zone_label_before != zone_label_after {
                for owner in &owners {
                    self.count_owner_zone(owner, zone_label_before.as_ref(), -1);
                    self.count_owner_zone(owner, zone_label_after.as_ref(), 1);
                }
            }
            return NodeChange::Changed(Box::new(old), Box::new(facts));
        }
        let info = NodeInfo::new(name, facts);
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(info);
                s
            }
            None => {
                self.slots.push(Some(info));
                self.seqs.push(0);
                self.slots.len() - 1
            }
        };
        self.seqs[slot] = self.next_seq;
        self.next_seq += 1;
        let name = self.node(slot).name.clone();
        self.by_name.insert(name.clone(), slot);
        self.order_dirty = true;
        for uid in self.orphans.remove(&name).unwrap_or_default() {
            if let Some(entry) = self.pods.get(&uid) {
                let info = entry.info.clone();
                self.attach(slot, info);
            }
        }
        NodeChange::Added
    }

    /// Removes a node; its pods stay known (bound to a node that is gone) but leave every
    /// node's sums.
    pub fn remove_node(&mut self, name: &str) -> bool {
        let Some(slot) = self.by_name.remove(name) else { return false };
        let uids: Vec<Arc<str>> = self.node(slot).pods.iter().map(|p| p.uid.clone()).collect();
        for uid in &uids {
            self.detach(slot, uid);
        }
        let info = self.slots[slot].take().expect("live slot");
        self.orphans.entry(info.name.clone()).or_default().extend(uids);
        self.free.push(slot);
        self.order_dirty = true;
        true
    }

    fn count_owner_zone(&mut self, owner: &Arc<str>, zone: Option<&Arc<str>>, by: i64) {
        let Some(zone) = zone else { return };
        if by > 0 {
            *self.owner_zones.entry(owner.clone()).or_default().entry(zone.clone()).or_insert(0) +=
                1;
        } else if let Some(zones) = self.owner_zones.get_mut(owner) {
            if let Some(n) = zones.get_mut(zone) {
                *n -= 1;
                if *n == 0 {
                    zones.remove(zone);
                }
            }
            if zones.is_empty() {
                self.owner_zones.remove(owner);
            }
        }
    }

    fn attach(&mut self, slot: usize, pod: Arc<PodInfo>) {
        if let Some(owner) = &pod.owner_uid {
            *self.owner_slots.entry(owner.clone()).or_default().entry(slot).or_insert(0) += 1;
            let zone = self.node(slot).zone.clone();
            self.count_owner_zone(owner, zone.as_ref(), 1);
        }
        self.ns_pods
            .entry(pod.namespace.clone())
            .or_default()
            .insert(pod.uid.clone(), (slot, pod.clone()));
        let node = self.slots[slot].as_mut().expect("live slot");
        node.add_pod(pod);
        if node.pods_with_affinity > 0 {
            self.affinity_slots.insert(slot);
        }
        if node.pods_with_required_anti_affinity > 0 {
            self.anti_affinity_slots.insert(slot);
        }
    }

    fn detach(&mut self, slot: usize, uid: &str) -> Option<Arc<PodInfo>> {
        let node = self.slots[slot].as_mut().expect("live slot");
        let pod = node.remove_pod(uid)?;
        if node.pods_with_affinity == 0 {
            self.affinity_slots.remove(&slot);
        }
        if node.pods_with_required_anti_affinity == 0 {
            self.anti_affinity_slots.remove(&slot);
        }
        if let Some(owner) = &pod.owner_uid {
            let zone = self.node(slot).zone.clone();
            self.count_owner_zone(owner, zone.as_ref(), -1);
        }
        if let Some(owner) = &pod.owner_uid
            && let Some(slots) = self.owner_slots.get_mut(owner)
        {
            if let Some(n) = slots.get_mut(&slot) {
                *n -= 1;
                if *n == 0 {
                    slots.remove(&slot);
                }
            }
            if slots.is_empty() {
                self.owner_slots.remove(owner);
            }
        }
        if let Some(ns) = self.ns_pods.get_mut(&pod.namespace) {
            ns.remove(uid);
            if ns.is_empty() {
                self.ns_pods.remove(&pod.namespace);
            }
        }
        Some(pod)
    }

    /// Puts a pod on `node` (replacing what the snapshot had for its uid).
    fn place(&mut self, pod: Arc<PodInfo>, node: Arc<str>, assumed: bool) {
        self.remove_pod(&pod.uid);
        let uid = pod.uid.clone();
        match self.by_name.get(&node).copied() {
            Some(slot) => self.attach(slot, pod.clone()),
            None => self.orphans.entry(node.clone()).or_default().push(uid.clone()),
        }
        self.pods.insert(uid, PodEntry { info: pod, node, assumed });
    }

    /// A pod the watch shows bound to `node` (confirms an assumed one).
    pub fn add_bound_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, Arc::from(node), false);
    }

    /// A pod we are binding to `node`: counted there at once.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.place(pod, Arc::from(node), true);
    }

    /// Drops an assumed pod (its binding failed); bound pods stay.
    pub fn forget_pod(&mut self, uid: &str) -> bool {
        if self.pods.get(uid).is_some_and(|e| e.assumed) {
            self.remove_pod(uid);
            true
        } else {
            false
        }
    }

    /// Removes a pod wherever it is.
    pub fn remove_pod(&mut self, uid: &str) -> Option<PodEntry> {
        let entry = self.pods.remove(uid)?;
        match self.by_name.get(&entry.node).copied() {
            Some(slot) => {
                self.detach(slot, uid);
            }
            None => {
                if let Some(list) = self.orphans.get_mut(&entry.node) {
                    list.retain(|u| &**u != uid);
                    if list.is_empty() {
                        self.orphans.remove(&entry.node);
                    }
                }
            }
        }
        Some(entry)
    }

    pub fn pod(&self, uid: &str) -> Option<&PodEntry> {
        self.pods.get(uid)
    }

    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }

    /// Pods on known nodes in `namespace`, with their slot.
    pub fn pods_in_namespace(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = (usize, &Arc<PodInfo>)> + '_ {
        self.ns_pods.get(namespace).into_iter().flat_map(|m| m.values().map(|(s, p)| (*s, p)))
    }

    /// Every namespace that has pods on known nodes.
    pub fn pod_namespaces(&self) -> impl Iterator<Item = &str> + '_ {
        self.ns_pods.keys().map(|k| &**k)
    }

    /// Slots holding pods of `owner`, with how many.
    pub fn owner_slots(&self, owner: &str) -> Option<&HashMap<usize, u32>> {
        self.owner_slots.get(owner)
    }

    /// Pods of `owner` per zone.
    pub fn owner_zones(&self, owner: &str) -> Option<&HashMap<Arc<str>, u32>> {
        self.owner_zones.get(owner)
    }

    /// Slots with pods that have pod affinity or anti-affinity terms.
    pub fn affinity_slots(&self) -> &BTreeSet<usize> {
        &self.affinity_slots
    }

    /// Slots with pods that have required anti-affinity terms.
    pub fn anti_affinity_slots(&self) -> &BTreeSet<usize> {
        &self.anti_affinity_slots
    }
}
