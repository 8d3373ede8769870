//! Resource amounts as the scheduler counts them: CPU in millicores, memory and ephemeral
//! storage in bytes, every other resource (extended resources, hugepages) as a scalar count.
//! Pod requests follow upstream's `PodRequests`: regular containers (and sidecars) add up, init
//! containers run one at a time so the pod needs the largest of them, overhead is added.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What a container without a CPU request counts as when scoring (upstream's default).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// What a container without a memory request counts as when scoring (200 MiB).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Other resources, sorted by name, no duplicates.
    pub scalars: Vec<(Arc<str>, i64)>,
}

impl Resources {
    pub fn cpu_memory(milli_cpu: i64, memory: i64) -> Resources {
        Resources { milli_cpu, memory, ..Resources::default() }
    }

    /// Parses a resource list (`requests`, `allocatable`, `overhead`); `pods` is not a
    /// resource here (see [`allowed_pods`]) and unparsable amounts count as zero.
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, quantity_value(name, q));
        }
        r
    }

    /// Sets one resource by name (`pods` is ignored).
    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            "cpu" => self.milli_cpu = value,
            "memory" => self.memory = value,
            "ephemeral-storage" => self.ephemeral_storage = value,
            "pods" => {}
            _ => match self.scalars.binary_search_by(|(n, _)| (**n).cmp(name)) {
                Ok(i) => self.scalars[i].1 = value,
                Err(i) => self.scalars.insert(i, (Arc::from(name), value)),
            },
        }
    }

    pub fn scalar(&self, name: &str) -> i64 {
        match self.scalars.binary_search_by(|(n, _)| (**n).cmp(name)) {
            Ok(i) => self.scalars[i].1,
            Err(_) => 0,
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            let now = self.scalar(name);
            self.set(name, now.saturating_add(*v));
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            let now = self.scalar(name);
            self.set(name, now.saturating_sub(*v));
        }
    }

    /// Each resource becomes the larger of the two.
    pub fn set_max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, v) in &other.scalars {
            if *v > self.scalar(name) {
                self.set(name, *v);
            }
        }
    }

    /// True when nothing at all is requested (upstream skips the resource checks then).
    pub fn is_empty(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalars.iter().all(|(_, v)| *v == 0)
    }
}

/// A quantity as the scheduler counts it: millicores for `cpu`, whole units (rounded up)
/// for everything else.
pub fn quantity_value(name: &str, q: &Quantity) -> i64 {
    let milli = rudder_api::quantity::parse_milli(&q.0).unwrap_or(0);
    let value = if name == "cpu" {
        milli
    } else {
        // ceil(milli / 1000), also for negative amounts (which validation refuses anyway)
        milli.div_euclid(1000) + i128::from(milli.rem_euclid(1000) != 0)
    };
    value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// `allocatable.pods`, the most pods the node takes (0 when absent, as upstream).
pub fn allowed_pods(list: Option<&BTreeMap<String, Quantity>>) -> i64 {
    list.and_then(|l| l.get("pods")).map(|q| quantity_value("pods", q)).unwrap_or(0)
}

/// A pod's requests, and the CPU and memory it counts for when scoring ("non-zero":
/// containers without a request count the defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequests {
    pub requests: Resources,
    pub non_zero_milli_cpu: i64,
    pub non_zero_memory: i64,
}

/// A container's requests; a resource with a limit but no request requests its limit
/// (upstream's API defaulting, which rudder's server does not apply).
fn container_requests(c: &Container) -> Resources {
    let mut r = Resources::default();
    let Some(res) = c.resources.as_ref() else { return r };
    if let Some(limits) = &res.limits {
        for (name, q) in limits {
            r.set(name, quantity_value(name, q));
        }
    }
    if let Some(requests) = &res.requests {
        for (name, q) in requests {
            r.set(name, quantity_value(name, q));
        }
    }
    r
}

fn has_request(c: &Container, name: &str) -> bool {
    c.resources.as_ref().is_some_and(|r| {
        r.requests.as_ref().is_some_and(|m| m.contains_key(name))
            || r.limits.as_ref().is_some_and(|m| m.contains_key(name))
    })
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Sums containers, takes the max with init containers (sidecars counted the way upstream
/// does), adds overhead; `per_container` gives each container's amount.
fn combine(spec: &PodSpec, per_container: impl Fn(&Container) -> Resources) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&per_container(c));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let mut this = per_container(c);
        if is_sidecar(c) {
            total.add(&this);
            sidecars.add(&this);
            this = sidecars.clone();
        } else {
            this.add(&sidecars);
        }
        init_max.set_max(&this);
    }
    total.set_max(&init_max);
    if let Some(overhead) = &spec.overhead {
        total.add(&Resources::from_list(overhead));
    }
    total
}

/// What a pod requests (see [`PodRequests`]).
pub fn pod_requests(spec: &PodSpec) -> PodRequests {
    let requests = combine(spec, container_requests);
    let non_zero = combine(spec, |c| {
        let r = container_requests(c);
        let cpu = if has_request(c, "cpu") { r.milli_cpu } else { DEFAULT_MILLI_CPU_REQUEST };
        let memory = if has_request(c, "memory") { r.memory } else { DEFAULT_MEMORY_REQUEST };
        Resources::cpu_memory(cpu, memory)
    });
    PodRequests {
        requests,
        non_zero_milli_cpu: non_zero.milli_cpu,
        non_zero_memory: non_zero.memory,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| {
                pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn containers_add_init_containers_take_the_max_and_overhead_adds() {
        // upstream's example: init 2/1G and 2/3G, containers 2/1G and 1/1G -> 3 cpu, 3G
        let spec = PodSpec {
            init_containers: Some(vec![
                container(&[("cpu", "2"), ("memory", "1G")], &[]),
                container(&[("cpu", "2"), ("memory", "3G")], &[]),
            ]),
            containers: vec![
                container(&[("cpu", "2"), ("memory", "1G")], &[]),
                container(&[("cpu", "1"), ("memory", "1G")], &[]),
            ],
            overhead: Some([("cpu".to_owned(), Quantity("250m".into()))].into()),
            ..Default::default()
        };
        let r = pod_requests(&spec);
        assert_eq!(r.requests.milli_cpu, 3250);
        assert_eq!(r.requests.memory, 3_000_000_000);
    }

    #[test]
    fn sidecars_run_alongside_and_limits_default_requests() {
        let mut sidecar = container(&[("cpu", "500m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            init_containers: Some(vec![sidecar, container(&[("cpu", "1")], &[])]),
            containers: vec![container(&[], &[("cpu", "200m"), ("example.com/gpu", "2")])],
            ..Default::default()
        };
        let r = pod_requests(&spec);
        // containers 200m + sidecar 500m = 700m; init 1 + sidecar 500m = 1500m -> max
        assert_eq!(r.requests.milli_cpu, 1500);
        assert_eq!(r.requests.scalar("example.com/gpu"), 2);
        assert_eq!(r.requests.memory, 0);
        // non-zero: 200Mi for each container without a memory request; the container and
        // the sidecar run together (the init container runs beside the sidecar only)
        assert_eq!(r.non_zero_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn best_effort_pods_count_defaults_when_scoring() {
        let spec = PodSpec { containers: vec![container(&[], &[])], ..Default::default() };
        let r = pod_requests(&spec);
        assert!(r.requests.is_empty());
        assert_eq!(r.non_zero_milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(r.non_zero_memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn quantities_round_up_to_units() {
        assert_eq!(quantity_value("memory", &Quantity("1Ki".into())), 1024);
        assert_eq!(quantity_value("memory", &Quantity("1500m".into())), 2);
        assert_eq!(quantity_value("cpu", &Quantity("1.5".into())), 1500);
        assert_eq!(allowed_pods(Some(&[("pods".to_owned(), Quantity("110".into()))].into())), 110);
        assert_eq!(allowed_pods(None), 0);
    }
}
