//! Node health as the node lifecycle controller judges it: when it last saw the node alive
//! (a new Lease renewTime or a new Ready heartbeat, timed by this controller's own clock, so
//! clocks need not agree), the conditions a silent node gets, and the disruption state of
//! each zone.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The conditions the controller sets to Unknown (upstream: Ready and the kubelet's
/// pressure conditions).
pub const MONITORED_CONDITIONS: &[&str] =
    &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// The Ready condition's status (`True`, `False`, `Unknown`), if the node has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// What this controller last observed of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeHealth {
    /// When the node was last seen alive, by this controller's clock.
    pub probe: Timestamp,
    pub ready_heartbeat: Option<Timestamp>,
    pub lease_renew: Option<Timestamp>,
}

fn heartbeat(node: &Node) -> Option<Timestamp> {
    condition(node, "Ready").and_then(|c| c.last_heartbeat_time.as_ref()).map(|t| t.0)
}

fn renew_time(lease: Option<&Lease>) -> Option<Timestamp> {
    lease.and_then(|l| l.spec.as_ref()).and_then(|s| s.renew_time.as_ref()).map(|t| t.0)
}

impl NodeHealth {
    /// First sight of a node: it counts as alive now.
    pub fn new(node: &Node, lease: Option<&Lease>, now: Timestamp) -> Self {
        NodeHealth { probe: now, ready_heartbeat: heartbeat(node), lease_renew: renew_time(lease) }
    }

    /// Takes in what is observed now; a changed Ready heartbeat or a later Lease renewTime
    /// counts as a sign of life. Returns whether it did.
    pub fn observe(&mut self, node: &Node, lease: Option<&Lease>, now: Timestamp) -> bool {
        let mut alive = false;
        let hb = heartbeat(node);
        if hb != self.ready_heartbeat {
            self.ready_heartbeat = hb;
            alive = true;
        }
        let renew = renew_time(lease);
        if renew.is_some() && (self.lease_renew.is_none() || renew > self.lease_renew) {
            self.lease_renew = renew;
            alive = true;
        }
        if alive {
            self.probe = now;
        }
        alive
    }

    /// Whether the node has been silent for longer than `grace`.
    pub fn expired(&self, now: Timestamp, grace: Duration) -> bool {
        rudder_client::clock::elapsed(self.probe, now) > grace
    }
}

/// The conditions of a node silent for too long: the monitored ones set to Unknown (added
/// when missing). `None` when they already are.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions =
        node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for type_ in MONITORED_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == *type_) {
            None => {
                conditions.push(NodeCondition {
                    type_: (*type_).to_owned(),
                    status: "Unknown".to_owned(),
                    reason: Some("NodeStatusNeverUpdated".to_owned()),
                    message: Some("Kubelet never posted node status.".to_owned()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".to_owned();
                c.reason = Some("NodeStatusUnknown".to_owned());
                c.message = Some("Kubelet stopped posting node status.".to_owned());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed.then_some(conditions)
}

/// A zone's health (upstream's `ComputeZoneState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

pub fn zone_state(ready: usize, not_ready: usize, unhealthy_threshold: f64) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready as f64 / (ready + not_ready) as f64 >= unhealthy_threshold
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The zone a node is in: region and zone labels (both empty: the "" zone).
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let get = |k: &str| labels.and_then(|l| l.get(k)).cloned().unwrap_or_default();
    let region = get("topology.kubernetes.io/region");
    let zone = get("topology.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\u{0}:{zone}")
    }
}

/// What NoExecute tainting may do in a zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoExecuteMode {
    /// Add, swap and remove NoExecute taints.
    Normal,
    /// No new NoExecute taints (swaps and removals still happen): a partially disrupted zone
    /// of a small cluster, where upstream's eviction rate is zero.
    Hold,
    /// Every zone is fully disrupted (upstream's "master disruption mode", likely a problem
    /// on the control plane's side): NoExecute taints are removed and none added.
    Clear,
}

/// The mode of every zone from the Ready status of every node (zone, Ready status). A
/// partially disrupted zone is held only when it is small (upstream's eviction rate for
/// zones above `large_cluster_threshold` nodes is reduced, not zero; rudder does not rate
/// limit, so those stay normal).
pub fn zone_modes(
    nodes: &[(String, Option<String>)],
    unhealthy_threshold: f64,
    large_cluster_threshold: usize,
) -> BTreeMap<String, NoExecuteMode> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (zone, ready) in nodes {
        let entry = counts.entry(zone.clone()).or_default();
        if ready.as_deref() == Some("True") {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    let states: BTreeMap<String, ZoneState> = counts
        .iter()
        .map(|(zone, (ready, not_ready))| {
            (zone.clone(), zone_state(*ready, *not_ready, unhealthy_threshold))
        })
        .collect();
    let all_full = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    states
        .into_iter()
        .map(|(zone, state)| {
            let mode = if all_full {
                NoExecuteMode::Clear
            } else if state == ZoneState::PartialDisruption
                && counts.get(&zone).is_some_and(|(r, n)| r + n <= large_cluster_threshold)
            {
                NoExecuteMode::Hold
            } else {
                NoExecuteMode::Normal
            };
            (zone, mode)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        let conditions = ready.map(|(status, hb)| {
            vec![NodeCondition {
                type_: "Ready".into(),
                status: status.into(),
                reason: Some("KubeletReady".into()),
                last_heartbeat_time: Some(Time(ts(hb))),
                last_transition_time: Some(Time(ts(0))),
                ..NodeCondition::default()
            }]
        });
        Node { status: Some(NodeStatus { conditions, ..NodeStatus::default() }), ..Node::default() }
    }

    fn lease(renew: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(renew))),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn lease_renewals_and_heartbeats_count_by_the_controllers_clock() {
        let n = node(Some(("True", 0)));
        // The node's clock is far behind ours: only changes matter, not the values.
        let mut h = NodeHealth::new(&n, Some(&lease(-1000)), ts(5000));
        assert!(!h.expired(ts(5040), Duration::from_secs(40)));
        assert!(h.expired(ts(5041), Duration::from_secs(40)));
        assert!(!h.observe(&n, Some(&lease(-1000)), ts(5030)), "nothing new");
        assert!(h.observe(&n, Some(&lease(-999)), ts(5030)));
        assert_eq!(h.probe, ts(5030));
        assert!(
            !h.observe(&n, Some(&lease(-2000)), ts(5035)),
            "an older renewal is no sign of life"
        );
        assert!(h.observe(&node(Some(("True", 7))), Some(&lease(-999)), ts(5050)));
        assert_eq!(h.probe, ts(5050));
        assert!(!h.expired(ts(5090), Duration::from_secs(40)));
    }

    #[test]
    fn silent_nodes_get_unknown_conditions_once() {
        let n = node(Some(("True", 0)));
        let conditions = unknown_conditions(&n, ts(100)).unwrap();
        assert_eq!(conditions.len(), 4);
        let ready = &conditions[0];
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(0))), "heartbeat kept");
        assert_eq!(ready.last_transition_time, Some(Time(ts(100))));
        assert_eq!(conditions[1].reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let mut n2 = n.clone();
        n2.status.as_mut().unwrap().conditions = Some(conditions);
        assert_eq!(unknown_conditions(&n2, ts(200)), None);
    }

    #[test]
    fn zone_states_and_modes_follow_upstream() {
        assert_eq!(zone_state(0, 1, 0.55), ZoneState::FullDisruption);
        assert_eq!(zone_state(1, 1, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(2, 3, 0.55), ZoneState::PartialDisruption);
        assert_eq!(zone_state(10, 3, 0.55), ZoneState::Normal);
        assert_eq!(zone_state(0, 0, 0.55), ZoneState::Normal);

        let t = |z: &str, r: Option<&str>| (z.to_owned(), r.map(str::to_owned));
        // One healthy node keeps evictions going.
        let modes = zone_modes(&[t("", Some("True")), t("", Some("Unknown"))], 0.55, 50);
        assert_eq!(modes[""], NoExecuteMode::Normal);
        // Everything down everywhere: clear.
        let modes = zone_modes(&[t("a", Some("Unknown")), t("b", None)], 0.55, 50);
        assert_eq!(modes["a"], NoExecuteMode::Clear);
        assert_eq!(modes["b"], NoExecuteMode::Clear);
        // One zone fully down, another fine: the down zone is tainted normally.
        let modes = zone_modes(&[t("a", Some("Unknown")), t("b", Some("True"))], 0.55, 50);
        assert_eq!(modes["a"], NoExecuteMode::Normal);
        // Most of a small cluster down: hold.
        let down =
            [t("", Some("True")), t("", Some("False")), t("", Some("False")), t("", Some("False"))];
        assert_eq!(zone_modes(&down, 0.55, 50)[""], NoExecuteMode::Hold);
        assert_eq!(zone_modes(&down, 0.55, 3)[""], NoExecuteMode::Normal);
    }
}
