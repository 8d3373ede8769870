//! What to do with one object given the state of each of its owners: upstream's
//! `attemptToDeleteItem` decision, without the I/O around it.

use super::graph::Uid;

/// Where one ownerReference points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents to go.
    Solid,
    /// No object with that uid is where the reference says.
    Dangling,
    /// The owner is being deleted with `foregroundDeletion`.
    WaitingForDependentsDeletion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    pub fn as_kube(self) -> kube::api::PropagationPolicy {
        match self {
            Propagation::Background => kube::api::PropagationPolicy::Background,
            Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
            Propagation::Orphan => kube::api::PropagationPolicy::Orphan,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Leave it alone.
    Keep,
    /// It has a solid owner: drop the references to these (gone or waiting) owners.
    RemoveReferences(Vec<Uid>),
    /// An owner waits for it and it has dependents of its own: delete it in the foreground,
    /// first making its own references non-blocking when `unblock` (a possible cycle).
    DeleteForeground { unblock: bool },
    /// No solid owner left: delete it.
    Delete(Propagation),
}

/// The facts about the object itself the decision uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemFacts {
    pub has_orphan_finalizer: bool,
    pub has_foreground_finalizer: bool,
    pub has_dependents: bool,
    pub dependent_deleting_dependents: bool,
}

/// Decides for an object with at least one ownerReference (`owners`: uid and state each).
pub fn decide(owners: &[(Uid, OwnerState)], item: ItemFacts) -> Decision {
    if owners.is_empty() {
        return Decision::Keep;
    }
    let solid = owners.iter().any(|(_, s)| *s == OwnerState::Solid);
    let waiting = owners.iter().any(|(_, s)| *s == OwnerState::WaitingForDependentsDeletion);
    if solid {
        let drop: Vec<Uid> = owners
            .iter()
            .filter(|(_, s)| *s != OwnerState::Solid)
            .map(|(u, _)| u.clone())
            .collect();
        return if drop.is_empty() { Decision::Keep } else { Decision::RemoveReferences(drop) };
    }
    if waiting && item.has_dependents {
        return Decision::DeleteForeground { unblock: item.dependent_deleting_dependents };
    }
    let policy = if item.has_orphan_finalizer {
        Propagation::Orphan
    } else if item.has_foreground_finalizer {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        s.into()
    }

    #[test]
    fn a_solid_owner_keeps_the_object_and_other_references_are_dropped() {
        let facts = ItemFacts::default();
        assert_eq!(decide(&[(uid("a"), OwnerState::Solid)], facts), Decision::Keep);
        assert_eq!(
            decide(
                &[
                    (uid("a"), OwnerState::Dangling),
                    (uid("b"), OwnerState::Solid),
                    (uid("c"), OwnerState::WaitingForDependentsDeletion)
                ],
                facts
            ),
            Decision::RemoveReferences(vec![uid("a"), uid("c")])
        );
    }

    #[test]
    fn without_solid_owners_the_object_goes() {
        let facts = ItemFacts::default();
        assert_eq!(
            decide(&[(uid("a"), OwnerState::Dangling)], facts),
            Decision::Delete(Propagation::Background)
        );
        // Its own finalizers pick the propagation.
        let orphaning = ItemFacts { has_orphan_finalizer: true, ..facts };
        assert_eq!(
            decide(&[(uid("a"), OwnerState::Dangling)], orphaning),
            Decision::Delete(Propagation::Orphan)
        );
        let foreground = ItemFacts { has_foreground_finalizer: true, ..facts };
        assert_eq!(
            decide(&[(uid("a"), OwnerState::Dangling)], foreground),
            Decision::Delete(Propagation::Foreground)
        );
        // A waiting owner with a leaf dependent: plain delete.
        assert_eq!(
            decide(&[(uid("a"), OwnerState::WaitingForDependentsDeletion)], facts),
            Decision::Delete(Propagation::Background)
        );
    }

    #[test]
    fn dependents_of_a_foreground_deletion_that_have_dependents_go_in_the_foreground() {
        let facts = ItemFacts { has_dependents: true, ..ItemFacts::default() };
        assert_eq!(
            decide(&[(uid("a"), OwnerState::WaitingForDependentsDeletion)], facts),
            Decision::DeleteForeground { unblock: false }
        );
        let cycle = ItemFacts { dependent_deleting_dependents: true, ..facts };
        assert_eq!(
            decide(&[(uid("a"), OwnerState::WaitingForDependentsDeletion)], cycle),
            Decision::DeleteForeground { unblock: true }
        );
        assert_eq!(decide(&[], facts), Decision::Keep);
    }
}
