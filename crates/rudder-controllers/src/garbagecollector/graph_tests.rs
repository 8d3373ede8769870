use super::*;

fn a(s: &str) -> Arc<str> {
    s.into()
}

fn identity(kind: &str, ns: &str, name: &str, uid: &str) -> Identity {
    let api_version = if kind == "ReplicaSet" { "apps/v1" } else { "v1" };
    Identity {
        api_version: a(api_version),
        kind: a(kind),
        namespace: a(ns),
        name: a(name),
        uid: a(uid),
    }
}

fn owner_ref(owner: &Identity, block: bool) -> OwnerRef {
    OwnerRef {
        uid: owner.uid.clone(),
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        block_owner_deletion: block,
        controller: false,
    }
}

fn object(id: &Identity, owners: Vec<OwnerRef>) -> ObjectSummary {
    ObjectSummary {
        identity: id.clone(),
        resource: 0,
        owners,
        being_deleted: false,
        foreground: false,
        orphan: false,
    }
}

fn sorted(mut v: Vec<Uid>) -> Vec<Uid> {
    v.sort();
    v.dedup();
    v
}

#[test]
fn deleting_an_owner_queues_its_dependents_and_remembers_it_absent() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    let pod = identity("Pod", "ns", "p", "p1");
    assert_eq!(g.apply(GraphEvent::Upsert(object(&owner, vec![]))), Actions::default());
    let actions = g.apply(GraphEvent::Upsert(object(&pod, vec![owner_ref(&owner, false)])));
    assert_eq!(actions, Actions::default(), "an observed owner needs no check");
    assert_eq!(g.dependents("o1"), vec![pod.clone()]);
    assert_eq!(g.observed_owner(&owner_ref(&owner, false), "ns"), Some(false));
    // Same uid, other name: the graph cannot vouch for it.
    let mut renamed = owner_ref(&owner, false);
    renamed.name = a("other");
    assert_eq!(g.observed_owner(&renamed, "ns"), None);

    let actions = g.apply(GraphEvent::Delete(object(&owner, vec![])));
    assert_eq!(actions.attempt_to_delete, vec![a("p1")]);
    assert!(g.is_absent(&owner.absent_key()));
    assert!(!g.contains("o1"));
    assert_eq!(g.observed_owner(&owner_ref(&owner, false), "ns"), None);
}

#[test]
fn an_unseen_owner_becomes_a_virtual_node_that_is_checked_and_replaced_when_observed() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    let pod = identity("Pod", "ns", "p", "p1");
    let actions = g.apply(GraphEvent::Upsert(object(&pod, vec![owner_ref(&owner, true)])));
    assert_eq!(actions.attempt_to_delete, vec![a("o1")], "virtual owner checked via the API");
    let item = g.item("o1").unwrap();
    assert!(!item.observed);
    assert!(item.has_dependents);
    assert_eq!(g.observed_owner(&owner_ref(&owner, true), "ns"), None);
    // The watch delivers the owner: the node is now real, the dependents stay linked.
    let actions = g.apply(GraphEvent::Upsert(object(&owner, vec![])));
    assert_eq!(actions, Actions::default());
    assert!(g.item("o1").unwrap().observed);
    assert_eq!(g.dependents("o1"), vec![pod]);
}

#[test]
fn a_virtual_delete_removes_the_virtual_owner_and_queues_the_dependents() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    let pod = identity("Pod", "ns", "p", "p1");
    g.apply(GraphEvent::Upsert(object(&pod, vec![owner_ref(&owner, false)])));
    let actions = g.apply(GraphEvent::VirtualDelete(owner.clone()));
    assert_eq!(actions.attempt_to_delete, vec![a("p1")]);
    assert!(!g.contains("o1"));
    assert!(g.is_absent(&owner.absent_key()));
}

#[test]
fn foreground_deletion_queues_the_owner_and_all_dependents_and_tracks_blockers() {
    let mut g = Graph::new();
    let rs = identity("ReplicaSet", "ns", "rs", "r1");
    let p1 = identity("Pod", "ns", "p1", "p1");
    let p2 = identity("Pod", "ns", "p2", "p2");
    g.apply(GraphEvent::Upsert(object(&rs, vec![])));
    g.apply(GraphEvent::Upsert(object(&p1, vec![owner_ref(&rs, true)])));
    g.apply(GraphEvent::Upsert(object(&p2, vec![owner_ref(&rs, false)])));
    let mut deleting = object(&rs, vec![]);
    deleting.being_deleted = true;
    deleting.foreground = true;
    let actions = g.apply(GraphEvent::Upsert(deleting.clone()));
    assert_eq!(sorted(actions.attempt_to_delete), vec![a("p1"), a("p2"), a("r1")]);
    assert!(g.item("r1").unwrap().deleting_dependents);
    assert_eq!(g.observed_owner(&owner_ref(&rs, true), "ns"), Some(true));
    assert_eq!(g.blocking_dependents("r1"), vec![(a("p1"), false)]);
    // The same state again is no new transition.
    assert_eq!(g.apply(GraphEvent::Upsert(deleting)), Actions::default());
    // The blocking pod goes: the owner is looked at again.
    let actions = g.apply(GraphEvent::Delete(object(&p1, vec![])));
    assert_eq!(actions.attempt_to_delete, vec![a("r1")]);
    assert!(g.blocking_dependents("r1").is_empty());
}

#[test]
fn a_dependent_dropping_a_blocking_reference_unblocks_the_owner() {
    let mut g = Graph::new();
    let rs = identity("ReplicaSet", "ns", "rs", "r1");
    let p1 = identity("Pod", "ns", "p1", "p1");
    g.apply(GraphEvent::Upsert(object(&rs, vec![])));
    g.apply(GraphEvent::Upsert(object(&p1, vec![owner_ref(&rs, true)])));
    let actions = g.apply(GraphEvent::Upsert(object(&p1, vec![owner_ref(&rs, false)])));
    assert_eq!(actions.attempt_to_delete, vec![a("r1")]);
    let actions = g.apply(GraphEvent::Upsert(object(&p1, vec![])));
    assert_eq!(actions, Actions::default(), "a non-blocking reference removed unblocks nothing");
    assert!(g.dependents("r1").is_empty());
}

#[test]
fn orphan_finalizer_queues_the_owner_for_orphaning_once() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    g.apply(GraphEvent::Upsert(object(&owner, vec![])));
    let mut orphaning = object(&owner, vec![]);
    orphaning.being_deleted = true;
    orphaning.orphan = true;
    let actions = g.apply(GraphEvent::Upsert(orphaning.clone()));
    assert_eq!(actions.attempt_to_orphan, vec![a("o1")]);
    assert!(actions.attempt_to_delete.is_empty());
    assert_eq!(g.apply(GraphEvent::Upsert(orphaning)), Actions::default());
}

#[test]
fn a_relist_removes_what_it_did_not_see() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    let keep = identity("ConfigMap", "ns", "keep", "k1");
    let pod = identity("Pod", "ns", "p", "p1");
    g.apply(GraphEvent::Upsert(object(&owner, vec![])));
    g.apply(GraphEvent::Upsert(object(&keep, vec![])));
    let mut p = object(&pod, vec![owner_ref(&owner, false)]);
    p.resource = 1;
    g.apply(GraphEvent::Upsert(p));
    let actions = g.apply(GraphEvent::Resync { resource: 0, seen: HashSet::from([a("k1")]) });
    assert_eq!(actions.attempt_to_delete, vec![a("p1")]);
    assert!(!g.contains("o1"));
    assert!(g.contains("k1"));
    assert!(g.contains("p1"), "other resources are not touched");
}

#[test]
fn references_by_wrong_coordinates_are_rechecked() {
    let mut g = Graph::new();
    let owner = identity("ConfigMap", "ns", "owner", "o1");
    g.apply(GraphEvent::Upsert(object(&owner, vec![])));
    // A dependent in another namespace names a namespaced owner: checked.
    let stranger = identity("Pod", "other", "p", "p1");
    let actions = g.apply(GraphEvent::Upsert(object(&stranger, vec![owner_ref(&owner, false)])));
    assert_eq!(actions.attempt_to_delete, vec![a("p1")]);
    // A virtual owner seen with other coordinates than its dependent named.
    let mut g = Graph::new();
    let pod = identity("Pod", "ns", "p", "p2");
    let mut wrong = owner_ref(&owner, false);
    wrong.kind = a("Secret");
    g.apply(GraphEvent::Upsert(object(&pod, vec![wrong])));
    let actions = g.apply(GraphEvent::Upsert(object(&owner, vec![])));
    assert_eq!(actions.attempt_to_delete, vec![a("p2")]);
}

#[test]
fn strings_are_shared_between_nodes() {
    let mut g = Graph::new();
    let p1 = identity("Pod", "ns", "p1", "p1");
    let p2 = identity("Pod", "ns", "p2", "p2");
    g.apply(GraphEvent::Upsert(object(&p1, vec![])));
    g.apply(GraphEvent::Upsert(object(&p2, vec![])));
    let k1 = g.item("p1").unwrap().identity.kind;
    let k2 = g.item("p2").unwrap().identity.kind;
    assert!(Arc::ptr_eq(&k1, &k2));
}
