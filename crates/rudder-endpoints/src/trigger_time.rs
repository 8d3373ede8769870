//! The `endpoints.kubernetes.io/last-change-trigger-time` annotation: the earliest time of
//! the changes (a pod's Ready transition, the Service's creation) seen since the previous
//! reconcile of the Service, which lets a reader measure how long endpoint programming took.
//! Like upstream's tracker it can be off when one object changes twice between reconciles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use rudder_client::ObjectKey;
use rudder_client::objects::pod_condition;

#[derive(Default)]
struct State {
    service: Option<Timestamp>,
    pods: HashMap<String, Timestamp>,
}

/// Per Service, what the last reconcile saw.
#[derive(Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<ObjectKey, State>>,
}

impl std::fmt::Debug for TriggerTimeTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerTimeTracker").finish_non_exhaustive()
    }
}

fn pod_trigger_time(pod: &Pod) -> Option<Timestamp> {
    pod_condition(pod, "Ready").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl TriggerTimeTracker {
    /// Records what this reconcile sees and returns the time to annotate, `None` for none
    /// (the annotation is then removed). A Service seen for the first time gets its
    /// creation time. Must not be called concurrently for one Service (the work queue
    /// guarantees it).
    pub fn compute(
        &self,
        key: &ObjectKey,
        service: &Service,
        pods: &[Arc<Pod>],
    ) -> Option<Timestamp> {
        let mut states = self.states.lock().expect("trigger time lock");
        let known = states.contains_key(key);
        let state = states.entry(key.clone()).or_default();
        let mut min = None;
        let mut pod_times = HashMap::new();
        for pod in pods {
            let Some(t) = pod_trigger_time(pod) else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pods.get(&name).is_none_or(|last| t > *last) {
                min = earliest(min, t);
            }
            pod_times.insert(name, t);
        }
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(c) = created
            && state.service.is_none_or(|last| c > last)
        {
            min = earliest(min, c);
        }
        state.pods = pod_times;
        state.service = created;
        if !known {
            return created;
        }
        min
    }

    pub fn delete_service(&self, key: &ObjectKey) {
        self.states.lock().expect("trigger time lock").remove(key);
    }
}

/// The annotation's value: RFC 3339 in UTC with as many fractional digits as needed.
pub fn format(t: Timestamp) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{pod, service};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn first_sync_uses_creation_then_only_newer_transitions() {
        let tracker = TriggerTimeTracker::default();
        let key = ("default".to_owned(), "web".to_owned());
        let mut svc = service("web", &[]);
        let created: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        svc.metadata.creation_timestamp = Some(Time(created));
        let mut a = pod("a", "10.0.0.1", true, &[]);
        let ready_at: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        a.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(ready_at));
        let pods = vec![Arc::new(a.clone())];
        assert_eq!(tracker.compute(&key, &svc, &pods), Some(created));
        assert_eq!(tracker.compute(&key, &svc, &pods), None, "nothing new");
        let later: Timestamp = "2025-01-01T00:02:00Z".parse().unwrap();
        a.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
            Some(Time(later));
        assert_eq!(tracker.compute(&key, &svc, &[Arc::new(a)]), Some(later));
        tracker.delete_service(&key);
        assert_eq!(tracker.compute(&key, &svc, &[]), Some(created));
        assert_eq!(format(later), "2025-01-01T00:02:00Z");
    }
}
