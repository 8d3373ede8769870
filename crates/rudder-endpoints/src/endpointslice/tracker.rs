//! Remembers the slices this controller wrote and deleted, per Service, so that it can tell
//! its own changes coming back through the watch (nothing to do) from anybody else's
//! (reconcile), and refuse to reconcile from a cache that does not show its own writes yet.
//! Upstream tracks slice generations; rudder's API server does not keep a generation for
//! EndpointSlices, so the resourceVersion (rudder's global revision, a number) is used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use rudder_client::ObjectKey;

use super::compute::service_name_of;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expected {
    /// We wrote this version (or a later one is to be seen).
    Version(u64),
    /// We deleted it.
    Deletion,
}

#[derive(Default)]
pub struct SliceTracker {
    services: Mutex<HashMap<ObjectKey, HashMap<String, Expected>>>,
}

impl std::fmt::Debug for SliceTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SliceTracker").finish_non_exhaustive()
    }
}

fn version(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref()?.parse().ok()
}

fn uid(slice: &EndpointSlice) -> String {
    slice.metadata.uid.clone().unwrap_or_default()
}

/// The key of the Service the slice belongs to (by its service-name label).
pub fn service_key_of(slice: &EndpointSlice) -> Option<ObjectKey> {
    Some((slice.metadata.namespace.clone().unwrap_or_default(), service_name_of(slice)?.to_owned()))
}

impl SliceTracker {
    fn expected(&self, slice: &EndpointSlice) -> Option<Expected> {
        let key = service_key_of(slice)?;
        self.services.lock().expect("tracker lock").get(&key)?.get(&uid(slice)).copied()
    }

    /// Whether the slice shows something we did not write ourselves.
    pub fn should_sync(&self, slice: &EndpointSlice) -> bool {
        match self.expected(slice) {
            Some(Expected::Version(v)) => version(slice).is_none_or(|r| r > v),
            Some(Expected::Deletion) | None => true,
        }
    }

    /// Whether the cached slices of the Service lag behind our writes: an older version
    /// than we wrote, one we deleted, or one we created missing.
    pub fn stale(&self, service: &ObjectKey, slices: &[Arc<EndpointSlice>]) -> bool {
        let services = self.services.lock().expect("tracker lock");
        let Some(expected) = services.get(service) else { return false };
        for slice in slices {
            match expected.get(&uid(slice)) {
                Some(Expected::Deletion) => return true,
                Some(Expected::Version(v)) if version(slice).is_some_and(|r| r < *v) => {
                    return true;
                }
                _ => {}
            }
        }
        expected.iter().any(|(uid, e)| {
            matches!(e, Expected::Version(_))
                && !slices.iter().any(|s| s.metadata.uid.as_deref() == Some(uid.as_str()))
        })
    }

    /// Records a slice as we wrote it.
    pub fn update(&self, slice: &EndpointSlice) {
        let (Some(key), Some(v)) = (service_key_of(slice), version(slice)) else { return };
        let mut services = self.services.lock().expect("tracker lock");
        services.entry(key).or_default().insert(uid(slice), Expected::Version(v));
    }

    /// Records that we deleted the slice.
    pub fn expect_deletion(&self, slice: &EndpointSlice) {
        let Some(key) = service_key_of(slice) else { return };
        let mut services = self.services.lock().expect("tracker lock");
        services.entry(key).or_default().insert(uid(slice), Expected::Deletion);
    }

    /// Forgets a deleted slice; true when the deletion was ours.
    pub fn handle_deletion(&self, slice: &EndpointSlice) -> bool {
        let Some(key) = service_key_of(slice) else { return false };
        let mut services = self.services.lock().expect("tracker lock");
        let Some(expected) = services.get_mut(&key) else { return false };
        expected.remove(&uid(slice)) == Some(Expected::Deletion)
    }

    pub fn delete_service(&self, service: &ObjectKey) {
        self.services.lock().expect("tracker lock").remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpointslice::compute::LABEL_SERVICE_NAME;

    fn slice(uid: &str, rv: &str) -> EndpointSlice {
        let mut s = EndpointSlice::default();
        s.metadata.namespace = Some("default".into());
        s.metadata.uid = Some(uid.into());
        s.metadata.resource_version = Some(rv.into());
        s.metadata.labels = Some([(LABEL_SERVICE_NAME.into(), "web".into())].into());
        s
    }

    #[test]
    fn own_writes_are_recognised_and_lagging_caches_detected() {
        let tracker = SliceTracker::default();
        let key = ("default".to_owned(), "web".to_owned());
        assert!(tracker.should_sync(&slice("a", "5")), "unknown slice");
        tracker.update(&slice("a", "10"));
        assert!(!tracker.should_sync(&slice("a", "10")), "our own write");
        assert!(tracker.should_sync(&slice("a", "11")), "somebody else's");
        assert!(tracker.stale(&key, &[Arc::new(slice("a", "9"))]), "older than our write");
        assert!(tracker.stale(&key, &[]), "our created slice missing");
        assert!(!tracker.stale(&key, &[Arc::new(slice("a", "10"))]));
        tracker.expect_deletion(&slice("a", "10"));
        assert!(tracker.stale(&key, &[Arc::new(slice("a", "10"))]), "deleted but still cached");
        assert!(!tracker.stale(&key, &[]));
        assert!(tracker.handle_deletion(&slice("a", "10")), "expected deletion");
        tracker.update(&slice("b", "12"));
        assert!(!tracker.handle_deletion(&slice("b", "12")), "unexpected deletion");
        tracker.delete_service(&key);
        assert!(!tracker.stale(&key, &[]));
    }
}
