//! The taints the node lifecycle controller owns, computed from a node's conditions:
//! NoSchedule taints for every condition upstream maps to one (and `unschedulable`), and the
//! NoExecute `not-ready`/`unreachable` taint that drives taint-based eviction.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::health::{NoExecuteMode, condition};
use crate::taints::{
    DISK_PRESSURE, MEMORY_PRESSURE, NETWORK_UNAVAILABLE, NO_EXECUTE, NO_SCHEDULE, NOT_READY,
    PID_PRESSURE, UNREACHABLE, UNSCHEDULABLE,
};

/// (condition, status, taint key): upstream's `nodeConditionToTaintKeyStatusMap`.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", MEMORY_PRESSURE),
    ("DiskPressure", "True", DISK_PRESSURE),
    ("NetworkUnavailable", "True", NETWORK_UNAVAILABLE),
    ("PIDPressure", "True", PID_PRESSURE),
];

const NO_SCHEDULE_KEYS: &[&str] = &[
    NOT_READY,
    UNREACHABLE,
    MEMORY_PRESSURE,
    DISK_PRESSURE,
    NETWORK_UNAVAILABLE,
    PID_PRESSURE,
    UNSCHEDULABLE,
];

/// The NoSchedule taint keys a node's conditions (and spec.unschedulable) call for.
pub fn no_schedule_keys(node: &Node) -> Vec<&'static str> {
    let mut keys: Vec<&'static str> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, status, _)| condition(node, type_).is_some_and(|c| c.status == *status))
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        keys.push(UNSCHEDULABLE);
    }
    keys
}

/// The NoExecute taint key the Ready condition calls for.
pub fn no_execute_key(node: &Node) -> Option<&'static str> {
    match condition(node, "Ready")?.status.as_str() {
        "False" => Some(NOT_READY),
        "Unknown" => Some(UNREACHABLE),
        _ => None,
    }
}

fn is(t: &Taint, key: &str, effect: &str) -> bool {
    t.key == key && t.effect == effect
}

fn new_taint(key: &str, effect: &str, now: Timestamp) -> Taint {
    Taint {
        key: key.to_owned(),
        effect: effect.to_owned(),
        value: None,
        time_added: Some(Time(now)),
    }
}

/// The node's taints with the controller's own brought in line with its conditions; `None`
/// when nothing changes. Taints the controller does not own are kept as they are, and so
/// are owned ones that stay (with their timeAdded).
pub fn desired_taints(node: &Node, mode: NoExecuteMode, now: Timestamp) -> Option<Vec<Taint>> {
    let current: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let want_no_schedule = no_schedule_keys(node);
    let want_no_execute = match mode {
        NoExecuteMode::Clear => None,
        _ => no_execute_key(node),
    };
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| {
            if t.effect == NO_SCHEDULE && NO_SCHEDULE_KEYS.contains(&t.key.as_str()) {
                return want_no_schedule.contains(&t.key.as_str());
            }
            if t.effect == NO_EXECUTE && (t.key == NOT_READY || t.key == UNREACHABLE) {
                return want_no_execute == Some(t.key.as_str());
            }
            true
        })
        .cloned()
        .collect();
    for key in &want_no_schedule {
        if !out.iter().any(|t| is(t, key, NO_SCHEDULE)) {
            out.push(new_taint(key, NO_SCHEDULE, now));
        }
    }
    if let Some(key) = want_no_execute
        && !out.iter().any(|t| is(t, key, NO_EXECUTE))
    {
        // A swap (unreachable <-> not-ready) happens in any mode; a new one only when
        // evictions are allowed in the zone.
        let swap = current
            .iter()
            .any(|t| t.effect == NO_EXECUTE && (t.key == NOT_READY || t.key == UNREACHABLE));
        if swap || mode == NoExecuteMode::Normal {
            out.push(new_taint(key, NO_EXECUTE, now));
        }
    }
    (out != current).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn node(conditions: &[(&str, &str)], taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec { taints: Some(taints), ..NodeSpec::default() }),
            status: Some(NodeStatus {
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| NodeCondition {
                            type_: (*t).into(),
                            status: (*s).into(),
                            ..NodeCondition::default()
                        })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<String> {
        taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
    }

    #[test]
    fn unknown_ready_means_unreachable_for_scheduling_and_execution() {
        let n = node(&[("Ready", "Unknown"), ("MemoryPressure", "Unknown")], vec![]);
        let taints = desired_taints(&n, NoExecuteMode::Normal, ts(1)).unwrap();
        assert_eq!(
            keys(&taints),
            [format!("{UNREACHABLE}:NoSchedule"), format!("{UNREACHABLE}:NoExecute")]
        );
        assert!(taints.iter().all(|t| t.time_added == Some(Time(ts(1)))));
        // Held zone: NoSchedule only.
        let taints = desired_taints(&n, NoExecuteMode::Hold, ts(1)).unwrap();
        assert_eq!(keys(&taints), [format!("{UNREACHABLE}:NoSchedule")]);
    }

    #[test]
    fn not_ready_swaps_even_when_held_and_ready_clears() {
        let unreachable = vec![
            new_taint(UNREACHABLE, NO_SCHEDULE, ts(0)),
            new_taint(UNREACHABLE, NO_EXECUTE, ts(0)),
            Taint { key: "user".into(), effect: NO_EXECUTE.into(), value: None, time_added: None },
        ];
        let n = node(&[("Ready", "False")], unreachable.clone());
        let taints = desired_taints(&n, NoExecuteMode::Hold, ts(5)).unwrap();
        assert_eq!(
            keys(&taints),
            [
                "user:NoExecute".to_owned(),
                format!("{NOT_READY}:NoSchedule"),
                format!("{NOT_READY}:NoExecute")
            ]
        );
        let n = node(&[("Ready", "True")], unreachable.clone());
        assert_eq!(
            keys(&desired_taints(&n, NoExecuteMode::Normal, ts(5)).unwrap()),
            ["user:NoExecute"]
        );
        // Master disruption: NoExecute goes, NoSchedule stays.
        let n = node(&[("Ready", "Unknown")], unreachable);
        let taints = desired_taints(&n, NoExecuteMode::Clear, ts(5)).unwrap();
        assert_eq!(
            keys(&taints),
            [format!("{UNREACHABLE}:NoSchedule"), "user:NoExecute".to_owned()]
        );
        assert_eq!(taints[0].time_added, Some(Time(ts(0))), "kept taints keep their time");
    }

    #[test]
    fn pressure_conditions_and_unschedulable_are_no_schedule_taints() {
        let mut n = node(
            &[
                ("Ready", "True"),
                ("MemoryPressure", "True"),
                ("DiskPressure", "False"),
                ("PIDPressure", "True"),
            ],
            vec![],
        );
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let taints = desired_taints(&n, NoExecuteMode::Normal, ts(0)).unwrap();
        assert_eq!(
            keys(&taints),
            [
                format!("{MEMORY_PRESSURE}:NoSchedule"),
                format!("{PID_PRESSURE}:NoSchedule"),
                format!("{UNSCHEDULABLE}:NoSchedule")
            ]
        );
        n.spec.as_mut().unwrap().taints = Some(taints);
        assert_eq!(desired_taints(&n, NoExecuteMode::Normal, ts(9)), None, "stable");
        assert_eq!(no_execute_key(&node(&[], vec![])), None);
    }
}
