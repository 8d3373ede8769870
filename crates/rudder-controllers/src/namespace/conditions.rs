//! The namespace conditions upstream's namespace deleter maintains while a namespace
//! terminates: each of the five types is either failing (True, with what failed) or in its
//! "ok" form (False).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::NamespaceCondition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// (type, ok reason, ok message), in upstream's order.
const TYPES: &[(&str, &str, &str)] = &[
    (DISCOVERY_FAILURE, "ResourcesDiscovered", "All resources successfully discovered"),
    (GV_PARSING_FAILURE, "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    (
        CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (CONTENT_REMAINING, "ContentRemoved", "All content successfully removed"),
    (FINALIZERS_REMAINING, "ContentRemoved", "All content successfully removed"),
];

/// What one pass over a namespace's content found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentReport {
    pub discovery_error: Option<String>,
    /// One message per resource whose deletion failed.
    pub delete_errors: Vec<String>,
    /// Objects left per resource (`pods.`, `deployments.apps`: upstream's `resource.group`).
    pub remaining: BTreeMap<String, usize>,
    /// Objects left per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
}

/// Seconds upstream assumes finalizers take to complete.
pub const FINALIZER_ESTIMATE_SECONDS: u64 = 15;

impl ContentReport {
    pub fn has_remaining(&self) -> bool {
        self.remaining.values().any(|n| *n > 0)
    }

    /// How long until the remaining content is likely gone (seconds).
    pub fn estimate_seconds(&self) -> u64 {
        if self.finalizers.values().any(|n| *n > 0) { FINALIZER_ESTIMATE_SECONDS } else { 0 }
    }

    /// The failing conditions.
    pub fn failing(&self, now: Timestamp) -> Vec<NamespaceCondition> {
        let failing = |type_: &str, reason: &str, message: String| NamespaceCondition {
            type_: type_.to_owned(),
            status: "True".to_owned(),
            reason: Some(reason.to_owned()),
            message: Some(message),
            last_transition_time: Some(Time(now)),
        };
        let mut out = Vec::new();
        if let Some(e) = &self.discovery_error {
            out.push(failing(DISCOVERY_FAILURE, "DiscoveryFailed", e.clone()));
        }
        if !self.delete_errors.is_empty() {
            let mut msgs = self.delete_errors.clone();
            msgs.sort();
            out.push(failing(
                CONTENT_FAILURE,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    msgs.len(),
                    msgs.join(", ")
                ),
            ));
        }
        let remaining: Vec<String> = self
            .remaining
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        if !remaining.is_empty() {
            out.push(failing(
                CONTENT_REMAINING,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            ));
        }
        let finalizers: Vec<String> = self
            .finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !finalizers.is_empty() {
            out.push(failing(
                FINALIZERS_REMAINING,
                "SomeFinalizerRemain",
                format!("Some finalizers are remaining: {}", finalizers.join(", ")),
            ));
        }
        out
    }
}

/// Upstream's `updateConditions`: every maintained type set to its failing form or its ok
/// form; the transition time moves only when the status changes. Returns whether anything
/// changed.
pub fn update_conditions(
    conditions: &mut Vec<NamespaceCondition>,
    failing: &[NamespaceCondition],
    now: Timestamp,
) -> bool {
    let mut changed = false;
    for (type_, ok_reason, ok_message) in TYPES {
        let wanted = failing.iter().find(|c| c.type_ == *type_).cloned().unwrap_or_else(|| {
            NamespaceCondition {
                type_: (*type_).to_owned(),
                status: "False".to_owned(),
                reason: Some((*ok_reason).to_owned()),
                message: Some((*ok_message).to_owned()),
                last_transition_time: Some(Time(now)),
            }
        });
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            None => {
                conditions.push(wanted);
                changed = true;
            }
            Some(old) => {
                if old.status != wanted.status
                    || old.reason != wanted.reason
                    || old.message != wanted.message
                {
                    if old.status != wanted.status {
                        old.last_transition_time = Some(Time(now));
                    }
                    old.status = wanted.status;
                    old.reason = wanted.reason;
                    old.message = wanted.message;
                    changed = true;
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn all_ok_conditions_then_remaining_content_then_ok_again() {
        let mut conditions = Vec::new();
        assert!(update_conditions(&mut conditions, &[], ts(0)));
        assert_eq!(conditions.len(), 5);
        assert!(conditions.iter().all(|c| c.status == "False"));
        assert!(!update_conditions(&mut conditions, &[], ts(1)), "nothing changed");

        let mut report = ContentReport::default();
        report.remaining.insert("pods.".into(), 2);
        report.remaining.insert("configmaps.".into(), 0);
        report.finalizers.insert("example.com/hold".into(), 1);
        assert!(report.has_remaining());
        assert_eq!(report.estimate_seconds(), FINALIZER_ESTIMATE_SECONDS);
        assert!(update_conditions(&mut conditions, &report.failing(ts(2)), ts(2)));
        let remaining = conditions.iter().find(|c| c.type_ == CONTENT_REMAINING).unwrap();
        assert_eq!(remaining.status, "True");
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances")
        );
        assert_eq!(remaining.last_transition_time, Some(Time(ts(2))));
        let finalizers = conditions.iter().find(|c| c.type_ == FINALIZERS_REMAINING).unwrap();
        assert_eq!(
            finalizers.message.as_deref(),
            Some("Some finalizers are remaining: example.com/hold in 1 resource instances")
        );

        assert!(update_conditions(&mut conditions, &[], ts(3)));
        let remaining = conditions.iter().find(|c| c.type_ == CONTENT_REMAINING).unwrap();
        assert_eq!(remaining.status, "False");
        assert_eq!(remaining.message.as_deref(), Some("All content successfully removed"));
    }

    #[test]
    fn discovery_and_deletion_failures() {
        let report = ContentReport {
            discovery_error: Some("boom".into()),
            delete_errors: vec!["b: no".into(), "a: no".into()],
            ..ContentReport::default()
        };
        assert!(!report.has_remaining());
        assert_eq!(report.estimate_seconds(), 0);
        let failing = report.failing(ts(0));
        assert_eq!(failing.len(), 2);
        assert_eq!(failing[0].type_, DISCOVERY_FAILURE);
        assert_eq!(
            failing[1].message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a: no, b: no")
        );
    }
}
