//! How big a memory-backed volume (tmpfs) may grow.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The size of a memory-backed volume (upstream's `calculateEmptyDirMemorySize`): the node's
/// allocatable memory, lowered to the pod's memory limit when every container has one, lowered
/// to the volume's `sizeLimit` when set. None: nothing known (tmpfs's default).
pub fn memory_volume_size(
    pod: &Pod,
    allocatable: &BTreeMap<String, Quantity>,
    size_limit: Option<&Quantity>,
) -> Option<u64> {
    let mut size = allocatable.get("memory").and_then(bytes);
    let lower = |size: Option<u64>, candidate: Option<u64>| match (size, candidate) {
        (Some(s), Some(c)) if c <= s => Some(c),
        (None, Some(c)) => Some(c),
        (s, _) => s,
    };
    size = lower(size, pod_memory_limit(pod));
    lower(size, size_limit.and_then(bytes))
}

/// A pod's memory limit when every container has one: the larger of the app containers' sum
/// and the largest init container's.
fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        let q = c.resources.as_ref()?.limits.as_ref()?.get("memory")?;
        bytes(q)
    };
    let mut sum = 0u64;
    for c in &spec.containers {
        sum = sum.saturating_add(limit(c)?);
    }
    let mut init_max = 0u64;
    for c in spec.init_containers.iter().flatten() {
        init_max = init_max.max(limit(c)?);
    }
    Some(sum.max(init_max))
}

/// A positive quantity in whole units, rounded up.
fn bytes(q: &Quantity) -> Option<u64> {
    let milli = rudder_api::quantity::parse_milli(&q.0).ok().filter(|m| *m > 0)?;
    u64::try_from((milli + 999) / 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn container(limit: Option<&str>) -> Container {
        Container {
            resources: Some(ResourceRequirements {
                limits: limit.map(|l| [("memory".to_owned(), Quantity(l.to_owned()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec { containers, init_containers: Some(init), ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn smallest_of_allocatable_pod_limit_and_size_limit() {
        let alloc: BTreeMap<String, Quantity> = [("memory".into(), Quantity("1Gi".into()))].into();
        let gi = 1u64 << 30;
        let mi = 1u64 << 20;
        let unlimited = pod(vec![container(Some("64Mi")), container(None)], vec![]);
        assert_eq!(memory_volume_size(&unlimited, &alloc, None), Some(gi));
        let limited = pod(vec![container(Some("64Mi")), container(Some("64Mi"))], vec![]);
        assert_eq!(memory_volume_size(&limited, &alloc, None), Some(128 * mi));
        let big_init = pod(vec![container(Some("64Mi"))], vec![container(Some("256Mi"))]);
        assert_eq!(memory_volume_size(&big_init, &alloc, None), Some(256 * mi));
        let q = Quantity("16Mi".into());
        assert_eq!(memory_volume_size(&limited, &alloc, Some(&q)), Some(16 * mi));
        // A sizeLimit above what the pod may use does not raise it.
        let q = Quantity("4Gi".into());
        assert_eq!(memory_volume_size(&limited, &alloc, Some(&q)), Some(128 * mi));
        assert_eq!(memory_volume_size(&unlimited, &BTreeMap::new(), None), None);
    }
}
