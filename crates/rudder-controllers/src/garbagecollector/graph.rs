//! The garbage collector's dependency graph: one small node per object of every watched
//! resource (uid, kind, namespace/name, ownerReferences, deletion state), owner -> dependent
//! links, and "virtual" nodes for owners referenced but never observed. Applying a change
//! returns which uids must be looked at (attempt to delete) or whose dependents must be
//! orphaned, as upstream's graph builder does. No I/O here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::meta::group_of;

pub type Uid = Arc<str>;

/// Where an object is: kind, namespace ("" when cluster-scoped), name and uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub api_version: Arc<str>,
    pub kind: Arc<str>,
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub uid: Uid,
}

impl Identity {
    /// Whether `r` (a reference to this uid from a dependent in `dependent_namespace`) names
    /// this object: same group, kind and name, and a namespaced owner in the dependent's
    /// namespace. The version may differ.
    pub fn matches_ref(&self, r: &OwnerRef, dependent_namespace: &str) -> bool {
        r.uid == self.uid
            && r.name == self.name
            && r.kind == self.kind
            && group_of(&r.api_version) == group_of(&self.api_version)
            && (self.namespace.is_empty() || *self.namespace == *dependent_namespace)
    }

    /// The key the absent-owner cache uses (the version does not matter).
    pub fn absent_key(&self) -> AbsentKey {
        (
            self.uid.clone(),
            group_of(&self.api_version).into(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// (uid, group, kind, namespace, name) of an owner verified absent.
pub type AbsentKey = (Uid, Arc<str>, Arc<str>, Arc<str>, Arc<str>);

/// One ownerReference, reduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    pub uid: Uid,
    pub api_version: Arc<str>,
    pub kind: Arc<str>,
    pub name: Arc<str>,
    pub block_owner_deletion: bool,
    pub controller: bool,
}

/// What a watch says about one object.
#[derive(Clone, Debug)]
pub struct ObjectSummary {
    pub identity: Identity,
    /// Which watched resource it came from.
    pub resource: u32,
    pub owners: Vec<OwnerRef>,
    pub being_deleted: bool,
    /// Has the `foregroundDeletion` finalizer.
    pub foreground: bool,
    /// Has the `orphan` finalizer.
    pub orphan: bool,
}

#[derive(Debug)]
pub enum GraphEvent {
    /// Added or updated (observed by a watch).
    Upsert(ObjectSummary),
    /// Deleted (observed by a watch).
    Delete(ObjectSummary),
    /// A worker found no object with this identity (GET said 404 or another uid).
    VirtualDelete(Identity),
    /// A (re)list of `resource` finished: observed nodes of it not in `seen` are gone.
    Resync { resource: u32, seen: HashSet<Uid> },
}

/// What the graph asks the workers to do.
#[derive(Debug, Default, PartialEq)]
pub struct Actions {
    pub attempt_to_delete: Vec<Uid>,
    pub attempt_to_orphan: Vec<Uid>,
}

#[derive(Debug)]
struct Node {
    identity: Identity,
    resource: Option<u32>,
    /// Seen through a watch (not only referenced as an owner).
    observed: bool,
    owners: Vec<OwnerRef>,
    dependents: HashSet<Uid>,
    being_deleted: bool,
    foreground: bool,
    orphan: bool,
    /// Being deleted with `foregroundDeletion`: waits for its blocking dependents.
    deleting_dependents: bool,
}

/// What a worker needs to know about one node.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemState {
    pub identity: Identity,
    pub observed: bool,
    pub being_deleted: bool,
    pub deleting_dependents: bool,
    pub has_dependents: bool,
    /// Some dependent is itself deleting its dependents (a possible cycle).
    pub dependent_deleting_dependents: bool,
}

/// How many verified-absent owners are remembered.
const ABSENT_CACHE_LIMIT: usize = 1024;

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
    strings: HashSet<Arc<str>>,
    absent: HashSet<AbsentKey>,
    absent_order: VecDeque<AbsentKey>,
}

impl Graph {
    pub fn new() -> Self {
        Graph::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.nodes.contains_key(uid)
    }

    pub fn apply(&mut self, event: GraphEvent) -> Actions {
        let mut actions = Actions::default();
        match event {
            GraphEvent::Upsert(s) => self.upsert(s, &mut actions),
            GraphEvent::Delete(s) => self.remove(&s.identity.uid, &mut actions),
            GraphEvent::VirtualDelete(identity) => self.virtual_delete(identity, &mut actions),
            GraphEvent::Resync { resource, seen } => {
                let gone: Vec<Uid> = self
                    .nodes
                    .values()
                    .filter(|n| n.observed && n.resource == Some(resource))
                    .filter(|n| !seen.contains(&n.identity.uid))
                    .map(|n| n.identity.uid.clone())
                    .collect();
                for uid in gone {
                    self.remove(&uid, &mut actions);
                }
            }
        }
        actions
    }

    fn intern(&mut self, s: &Arc<str>) -> Arc<str> {
        if let Some(existing) = self.strings.get(s) {
            return existing.clone();
        }
        self.strings.insert(s.clone());
        s.clone()
    }

    fn intern_summary(&mut self, mut s: ObjectSummary) -> ObjectSummary {
        s.identity.api_version = self.intern(&s.identity.api_version);
        s.identity.kind = self.intern(&s.identity.kind);
        s.identity.namespace = self.intern(&s.identity.namespace);
        for r in &mut s.owners {
            r.api_version = self.intern(&r.api_version);
            r.kind = self.intern(&r.kind);
            if let Some(owner) = self.nodes.get(&r.uid) {
                r.uid = owner.identity.uid.clone();
            }
        }
        s
    }

    fn upsert(&mut self, s: ObjectSummary, actions: &mut Actions) {
        let s = self.intern_summary(s);
        let uid = s.identity.uid.clone();
        let namespace = s.identity.namespace.clone();
        let Some(node) = self.nodes.get_mut(&uid) else {
            let node = Node {
                identity: s.identity,
                resource: Some(s.resource),
                observed: true,
                owners: s.owners.clone(),
                dependents: HashSet::new(),
                being_deleted: s.being_deleted,
                foreground: s.foreground,
                orphan: s.orphan,
                deleting_dependents: s.being_deleted && s.foreground,
            };
            self.nodes.insert(uid.clone(), node);
            self.add_dependent_to_owners(&uid, &namespace, &s.owners, actions);
            self.process_transitions(&uid, None, actions);
            return;
        };
        let old = (node.being_deleted, node.foreground, node.orphan);
        let mut recheck = Vec::new();
        if !node.observed || node.identity != s.identity {
            // A virtual node observed at last (or an object seen at another version): the
            // dependents that named it by other coordinates are checked again.
            recheck = node.dependents.iter().cloned().collect();
            node.identity = s.identity.clone();
            node.observed = true;
        }
        node.resource = Some(s.resource);
        let (added, removed, changed) = reference_diffs(&node.owners, &s.owners);
        node.owners = s.owners.clone();
        node.being_deleted = s.being_deleted;
        node.foreground = s.foreground;
        node.orphan = s.orphan;
        node.deleting_dependents = s.being_deleted && s.foreground;
        for dep in recheck {
            let matches = self.nodes.get(&dep).is_some_and(|d| {
                d.owners
                    .iter()
                    .filter(|r| r.uid == uid)
                    .all(|r| s.identity.matches_ref(r, &d.identity.namespace))
            });
            if !matches {
                actions.attempt_to_delete.push(dep);
            }
        }
        // Owners that were waiting for this dependent and are no longer blocked by it.
        for r in removed.iter().filter(|r| r.block_owner_deletion) {
            if self.nodes.contains_key(&r.uid) {
                actions.attempt_to_delete.push(r.uid.clone());
            }
        }
        for (old_ref, new_ref) in &changed {
            if old_ref.block_owner_deletion
                && !new_ref.block_owner_deletion
                && self.nodes.contains_key(&new_ref.uid)
            {
                actions.attempt_to_delete.push(new_ref.uid.clone());
            }
        }
        self.add_dependent_to_owners(&uid, &namespace, &added, actions);
        for r in &removed {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(&uid);
            }
        }
        self.process_transitions(&uid, Some(old), actions);
    }

    fn add_dependent_to_owners(
        &mut self,
        uid: &Uid,
        namespace: &Arc<str>,
        owners: &[OwnerRef],
        actions: &mut Actions,
    ) {
        for r in owners {
            match self.nodes.get_mut(&r.uid) {
                Some(owner) => {
                    owner.dependents.insert(uid.clone());
                    if owner.observed && !owner.identity.matches_ref(r, namespace) {
                        // The reference names the owner's uid with other coordinates.
                        actions.attempt_to_delete.push(uid.clone());
                    }
                }
                None => {
                    let identity = Identity {
                        api_version: r.api_version.clone(),
                        kind: r.kind.clone(),
                        namespace: namespace.clone(),
                        name: r.name.clone(),
                        uid: r.uid.clone(),
                    };
                    let node = Node {
                        identity,
                        resource: None,
                        observed: false,
                        owners: Vec::new(),
                        dependents: HashSet::from([uid.clone()]),
                        being_deleted: false,
                        foreground: false,
                        orphan: false,
                        deleting_dependents: false,
                    };
                    self.nodes.insert(r.uid.clone(), node);
                    actions.attempt_to_delete.push(r.uid.clone());
                }
            }
        }
    }

    /// Deletion starting with the `orphan` or `foregroundDeletion` finalizer.
    fn process_transitions(
        &mut self,
        uid: &Uid,
        old: Option<(bool, bool, bool)>,
        actions: &mut Actions,
    ) {
        let Some(node) = self.nodes.get(uid) else { return };
        let (old_deleting, old_foreground, old_orphan) = old.unwrap_or_default();
        if node.being_deleted && node.orphan && !(old_deleting && old_orphan) {
            actions.attempt_to_orphan.push(uid.clone());
            return;
        }
        if node.being_deleted && node.foreground && !(old_deleting && old_foreground) {
            actions.attempt_to_delete.extend(node.dependents.iter().cloned());
            actions.attempt_to_delete.push(uid.clone());
        }
    }

    fn remove(&mut self, uid: &Uid, actions: &mut Actions) {
        let Some(node) = self.nodes.remove(uid) else { return };
        for r in &node.owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.remove(uid);
                if owner.deleting_dependents {
                    actions.attempt_to_delete.push(r.uid.clone());
                }
            }
        }
        if !node.dependents.is_empty() {
            self.mark_absent(node.identity.absent_key());
        }
        actions.attempt_to_delete.extend(node.dependents);
    }

    fn virtual_delete(&mut self, identity: Identity, actions: &mut Actions) {
        let Some(node) = self.nodes.get(&identity.uid) else { return };
        let (matching, nonmatching) = self.partition_dependents(node, &identity);
        let same = node.identity == identity;
        if !node.observed {
            if !nonmatching.is_empty() {
                // Dependents disagree on where this owner is: keep the virtual node for the
                // others, and let the matching ones be collected.
                if !matching.is_empty() {
                    self.mark_absent(identity.absent_key());
                    actions.attempt_to_delete.extend(matching);
                }
                if same
                    && let Some(alternative) = self.alternative_identity(&nonmatching, &identity)
                    && let Some(node) = self.nodes.get_mut(&identity.uid)
                {
                    node.identity = alternative;
                    actions.attempt_to_delete.push(identity.uid.clone());
                }
                return;
            }
            self.remove(&identity.uid, actions);
            self.mark_absent(identity.absent_key());
        } else if !same {
            // The observed object is elsewhere: only references by these coordinates dangle.
            if !matching.is_empty() {
                self.mark_absent(identity.absent_key());
                actions.attempt_to_delete.extend(matching);
            }
        } else {
            self.remove(&identity.uid, actions);
        }
    }

    fn partition_dependents(&self, node: &Node, identity: &Identity) -> (Vec<Uid>, Vec<Uid>) {
        let mut matching = Vec::new();
        let mut nonmatching = Vec::new();
        for dep_uid in &node.dependents {
            let Some(dep) = self.nodes.get(dep_uid) else { continue };
            let refs = dep.owners.iter().filter(|r| r.uid == identity.uid);
            let (mut found_match, mut found_mismatch) = (false, false);
            if !identity.namespace.is_empty() && identity.namespace != dep.identity.namespace {
                found_mismatch = true;
            } else {
                for r in refs {
                    if identity.matches_ref(r, &dep.identity.namespace) {
                        found_match = true;
                    } else {
                        found_mismatch = true;
                    }
                }
            }
            if found_match {
                matching.push(dep_uid.clone());
            }
            if found_mismatch {
                nonmatching.push(dep_uid.clone());
            }
        }
        (matching, nonmatching)
    }

    fn alternative_identity(&self, deps: &[Uid], absent: &Identity) -> Option<Identity> {
        let mut candidates: Vec<Identity> = deps
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .flat_map(|d| {
                d.owners.iter().filter(|r| r.uid == absent.uid).map(|r| Identity {
                    api_version: r.api_version.clone(),
                    kind: r.kind.clone(),
                    namespace: d.identity.namespace.clone(),
                    name: r.name.clone(),
                    uid: r.uid.clone(),
                })
            })
            .filter(|i| i.absent_key() != absent.absent_key())
            .collect();
        candidates.sort_by(|a, b| {
            (&a.kind, &a.api_version, &a.namespace, &a.name).cmp(&(
                &b.kind,
                &b.api_version,
                &b.namespace,
                &b.name,
            ))
        });
        candidates.into_iter().next()
    }

    pub fn mark_absent(&mut self, key: AbsentKey) {
        if self.absent.insert(key.clone()) {
            self.absent_order.push_back(key);
            while self.absent_order.len() > ABSENT_CACHE_LIMIT {
                if let Some(old) = self.absent_order.pop_front() {
                    self.absent.remove(&old);
                }
            }
        }
    }

    pub fn is_absent(&self, key: &AbsentKey) -> bool {
        self.absent.contains(key)
    }

    pub fn item(&self, uid: &str) -> Option<ItemState> {
        let node = self.nodes.get(uid)?;
        Some(ItemState {
            identity: node.identity.clone(),
            observed: node.observed,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            has_dependents: !node.dependents.is_empty(),
            dependent_deleting_dependents: node
                .dependents
                .iter()
                .any(|d| self.nodes.get(d).is_some_and(|d| d.deleting_dependents)),
        })
    }

    /// An owner as the graph knows it: `Some(waiting_for_dependents)` when an observed object
    /// with that uid is where `r` says it is, `None` when only the API can tell.
    pub fn observed_owner(&self, r: &OwnerRef, dependent_namespace: &str) -> Option<bool> {
        let node = self.nodes.get(&r.uid)?;
        (node.observed && node.identity.matches_ref(r, dependent_namespace))
            .then_some(node.deleting_dependents)
    }

    /// Dependents whose reference to `uid` has blockOwnerDeletion, with whether each is
    /// itself deleting its dependents.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<(Uid, bool)> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| d.owners.iter().any(|r| &*r.uid == uid && r.block_owner_deletion))
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    /// The identities of `uid`'s dependents.
    pub fn dependents(&self, uid: &str) -> Vec<Identity> {
        let Some(node) = self.nodes.get(uid) else { return Vec::new() };
        node.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .map(|d| d.identity.clone())
            .collect()
    }
}

/// References added, removed and changed (same uid, other fields) from `old` to `new`.
#[allow(clippy::type_complexity)]
fn reference_diffs(
    old: &[OwnerRef],
    new: &[OwnerRef],
) -> (Vec<OwnerRef>, Vec<OwnerRef>, Vec<(OwnerRef, OwnerRef)>) {
    let mut added = Vec::new();
    let mut changed = Vec::new();
    for n in new {
        match old.iter().find(|o| o.uid == n.uid) {
            Some(o) if o != n => changed.push((o.clone(), n.clone())),
            Some(_) => {}
            None => added.push(n.clone()),
        }
    }
    let removed = old.iter().filter(|o| !new.iter().any(|n| n.uid == o.uid)).cloned().collect();
    (added, removed, changed)
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
