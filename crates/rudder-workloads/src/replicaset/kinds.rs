//! The two kinds the ReplicaSet logic runs for: apps/v1 ReplicaSet (label selector) and
//! core/v1 ReplicationController (map selector). Upstream runs the same controller for both
//! by converting one into the other; here they share it through [`Replicated`].

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    PodTemplateSpec, ReplicationController, ReplicationControllerCondition,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rudder_client::objects::{map_selector_matches, selector_matches, selects_nothing};

use crate::api::NamespacedObject;

/// One condition of a ReplicaSet or ReplicationController (the two types are alike).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaCondition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Time>,
}

/// The status the controller computes and writes, common to both kinds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<ReplicaCondition>,
}

/// What the controller needs of its owner kind.
pub trait Replicated: NamespacedObject {
    /// The event source (`replicaset-controller`, `replication-controller`).
    const COMPONENT: &'static str;

    fn spec_replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// Whether the selector matches `labels`; an empty selector selects nothing.
    fn selects(&self, labels: &BTreeMap<String, String>) -> bool;
    fn replica_status(&self) -> ReplicaStatus;
    fn set_replica_status(&mut self, status: &ReplicaStatus);

    fn template_labels(&self) -> BTreeMap<String, String> {
        self.template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";

    fn spec_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .as_ref()
            .is_some_and(|s| !selects_nothing(&s.selector) && selector_matches(&s.selector, labels))
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else { return ReplicaStatus::default() };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| ReplicaCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }

    fn set_replica_status(&mut self, status: &ReplicaStatus) {
        let terminating_replicas = self.status.as_ref().and_then(|s| s.terminating_replicas);
        self.status = Some(ReplicaSetStatus {
            replicas: status.replicas,
            fully_labeled_replicas: Some(status.fully_labeled_replicas),
            ready_replicas: Some(status.ready_replicas),
            available_replicas: Some(status.available_replicas),
            observed_generation: Some(status.observed_generation),
            conditions: (!status.conditions.is_empty()).then(|| {
                status
                    .conditions
                    .iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
            terminating_replicas,
        });
    }
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";

    fn spec_replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        // An unset selector defaults to the template's labels (upstream's defaulting).
        let selector = self
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.template_labels());
        !selector.is_empty() && map_selector_matches(&selector, labels)
    }

    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = &self.status else { return ReplicaStatus::default() };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| ReplicaCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }

    fn set_replica_status(&mut self, status: &ReplicaStatus) {
        self.status = Some(ReplicationControllerStatus {
            replicas: status.replicas,
            fully_labeled_replicas: Some(status.fully_labeled_replicas),
            ready_replicas: Some(status.ready_replicas),
            available_replicas: Some(status.available_replicas),
            observed_generation: Some(status.observed_generation),
            conditions: (!status.conditions.is_empty()).then(|| {
                status
                    .conditions
                    .iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn selectors_of_both_kinds() {
        let mut rs = ReplicaSet { spec: Some(Default::default()), ..Default::default() };
        assert!(!rs.selects(&labels(&[("app", "web")])), "empty selector selects nothing");
        rs.spec.as_mut().unwrap().selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: None,
        };
        assert!(rs.selects(&labels(&[("app", "web"), ("x", "y")])));
        assert!(!rs.selects(&labels(&[("app", "db")])));

        let template = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            }),
            spec: None,
        };
        let mut rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                template: Some(template),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(rc.selects(&labels(&[("app", "web")])), "defaults to the template's labels");
        rc.spec.as_mut().unwrap().selector = Some(labels(&[("tier", "a")]));
        assert!(!rc.selects(&labels(&[("app", "web")])));
        assert!(rc.selects(&labels(&[("tier", "a")])));
    }

    #[test]
    fn status_round_trip() {
        let status = ReplicaStatus {
            replicas: 3,
            fully_labeled_replicas: 2,
            ready_replicas: 1,
            available_replicas: 1,
            observed_generation: 4,
            conditions: vec![ReplicaCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some("no".into()),
                last_transition_time: None,
            }],
        };
        let mut rs = ReplicaSet::default();
        rs.set_replica_status(&status);
        assert_eq!(rs.replica_status(), status);
        let mut rc = ReplicationController::default();
        rc.set_replica_status(&status);
        assert_eq!(rc.replica_status(), status);
    }
}
