//! `podFailurePolicy`: the first rule matching a failed pod decides whether the Job fails at
//! once (`FailJob`), the failure is not counted against `backoffLimit` (`Ignore`), or it is
//! counted as usual (`Count`). Rules match on container exit codes (`In`/`NotIn`, non-zero
//! codes of terminated containers, optionally one container) or pod conditions (e.g.
//! `DisruptionTarget`). `FailIndex` needs backoffLimitPerIndex, which is not supported: it
//! counts the failure.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a failed pod means for its Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyMatch {
    /// The Job fails with this message (a `FailJob` rule matched).
    pub fail_job: Option<String>,
    /// The failure counts against backoffLimit.
    pub count: bool,
    /// The matched rule's action.
    pub action: Option<String>,
}

pub fn match_pod_failure_policy(policy: Option<&PodFailurePolicy>, pod: &Pod) -> PolicyMatch {
    let none = PolicyMatch { fail_job: None, count: true, action: None };
    let Some(policy) = policy else { return none };
    let status = pod.status.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            let containers = status.container_statuses.iter().flatten();
            let init = status.init_container_statuses.iter().flatten();
            containers.chain(init).find(|c| exit_code_matches(c, req)).map(|c| {
                let code = exit_code(c).unwrap_or(0);
                format!(
                    "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                    c.name, rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status.conditions.iter().flatten().find_map(|c| {
                patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status).then(|| {
                    format!(
                        "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                        c.type_, rule.action
                    )
                })
            })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        let action = Some(rule.action.clone());
        match rule.action.as_str() {
            "Ignore" => return PolicyMatch { fail_job: None, count: false, action },
            "Count" => return PolicyMatch { fail_job: None, count: true, action },
            "FailJob" => return PolicyMatch { fail_job: Some(message), count: true, action },
            // FailIndex without backoffLimitPerIndex: the rule does not apply (as upstream
            // with the feature off), the next rules are looked at.
            _ => continue,
        }
    }
    none
}

fn exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

fn exit_code_matches(c: &ContainerStatus, req: &PodFailurePolicyOnExitCodesRequirement) -> bool {
    let Some(code) = exit_code(c) else { return false };
    if code == 0 || req.container_name.as_ref().is_some_and(|n| *n != c.name) {
        return false;
    }
    match req.operator.as_str() {
        "In" => req.values.contains(&code),
        "NotIn" => !req.values.contains(&code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": [
            { "action": "FailJob", "onExitCodes": { "containerName": "main", "operator": "In", "values": [42] } },
            { "action": "Ignore", "onPodConditions": [{ "type": "DisruptionTarget", "status": "True" }] },
            { "action": "Count", "onExitCodes": { "operator": "NotIn", "values": [1] } },
        ]}))
        .unwrap()
    }

    fn failed_pod(code: i32, condition: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": "p", "namespace": "ns" },
            "status": {
                "phase": "Failed",
                "conditions": condition.map(|c| vec![json!({ "type": c, "status": "True" })]).unwrap_or_default(),
                "containerStatuses": [{
                    "name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                    "state": { "terminated": { "exitCode": code } }
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn rules_in_order() {
        let p = policy();
        let m = match_pod_failure_policy(Some(&p), &failed_pod(42, None));
        assert_eq!(
            m.fail_job.as_deref(),
            Some(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 0"
            )
        );
        let m = match_pod_failure_policy(Some(&p), &failed_pod(1, Some("DisruptionTarget")));
        assert_eq!((m.count, m.action.as_deref()), (false, Some("Ignore")));
        let m = match_pod_failure_policy(Some(&p), &failed_pod(3, None));
        assert_eq!((m.count, m.action.as_deref(), m.fail_job), (true, Some("Count"), None));
        let m = match_pod_failure_policy(Some(&p), &failed_pod(1, None));
        assert_eq!((m.count, m.action), (true, None), "no rule matched");
        let m = match_pod_failure_policy(None, &failed_pod(42, None));
        assert!(m.count && m.fail_job.is_none());
    }
}
