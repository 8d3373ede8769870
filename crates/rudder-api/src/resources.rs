//! The table of built-in resources rudder serves: group, version, kind, names, scope, verbs
//! and subresources. Discovery, URL routing and storage keys all come from here; a
//! CustomResourceDefinition will add rows of the same shape at run time.

/// Verbs of an ordinary read-write resource.
pub const STANDARD_VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const READ_ONLY_VERBS: &[&str] = &["get", "list"];

/// The `all` category that `kubectl get all` expands.
const ALL: &[&str] = &["all"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for the legacy core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub verbs: &'static [&'static str],
    pub subresources: &'static [&'static str],
}

impl ResourceInfo {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group as it appears in storage keys ("core" for the legacy group).
    pub fn storage_group(&self) -> &'static str {
        if self.group.is_empty() { "core" } else { self.group }
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr,
     short: $short:expr, cat: $cat:expr, namespaced: $ns:expr, verbs: $verbs:expr, sub: $sub:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            categories: $cat,
            namespaced: $ns,
            verbs: $verbs,
            subresources: $sub,
        }
    };
}

const NONE: &[&str] = &[];
const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["scale", "status"];

static BUILTIN: &[ResourceInfo] = &[
    // core/v1
    resource!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus",
        short: &["cs"], cat: NONE, namespaced: false, verbs: READ_ONLY_VERBS, sub: NONE),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap",
        short: &["cm"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints",
        short: &["ep"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "Event", "events", "event",
        short: &["ev"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange",
        short: &["limits"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "Namespace", "namespaces", "namespace",
        short: &["ns"], cat: NONE, namespaced: false,
        verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
        sub: &["finalize", "status"]),
    resource!("", "v1", "Node", "nodes", "node",
        short: &["no"], cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: &["proxy", "status"]),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
        short: &["pvc"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume",
        short: &["pv"], cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("", "v1", "Pod", "pods", "pod",
        short: &["po"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS,
        sub: &["attach", "binding", "eviction", "exec", "log", "portforward", "proxy", "status"]),
    resource!("", "v1", "PodTemplate", "podtemplates", "podtemplate",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller",
        short: &["rc"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS_SCALE),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota",
        short: &["quota"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("", "v1", "Secret", "secrets", "secret",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount",
        short: &["sa"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: &["token"]),
    resource!("", "v1", "Service", "services", "service",
        short: &["svc"], cat: ALL, namespaced: true,
        verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        sub: &["proxy", "status"]),
    // apps/v1
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset",
        short: &["ds"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("apps", "v1", "Deployment", "deployments", "deployment",
        short: &["deploy"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS_SCALE),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset",
        short: &["rs"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS_SCALE),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset",
        short: &["sts"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS_SCALE),
    // events.k8s.io/v1
    resource!("events.k8s.io", "v1", "Event", "events", "event",
        short: &["ev"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    // autoscaling/v2 (preferred) and v1
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        short: &["hpa"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("autoscaling", "v1", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
        short: &["hpa"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    // batch/v1
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob",
        short: &["cj"], cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("batch", "v1", "Job", "jobs", "job",
        short: NONE, cat: ALL, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    // networking.k8s.io/v1
    resource!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass",
        short: NONE, cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: NONE),
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress",
        short: &["ing"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy",
        short: &["netpol"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    // policy/v1
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget",
        short: &["pdb"], cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: STATUS),
    // rbac.authorization.k8s.io/v1
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
        short: NONE, cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: NONE),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole",
        short: NONE, cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: NONE),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    // storage.k8s.io/v1
    resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass",
        short: &["sc"], cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: NONE),
    // scheduling.k8s.io/v1
    resource!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass",
        short: &["pc"], cat: NONE, namespaced: false, verbs: STANDARD_VERBS, sub: NONE),
    // coordination.k8s.io/v1
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
    // apiextensions.k8s.io/v1: listed so that clients can tell that a kind is not a custom
    // resource; creating CustomResourceDefinitions is refused until rudder serves them.
    resource!("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition",
        short: &["crd", "crds"], cat: &["api-extensions"], namespaced: false, verbs: STANDARD_VERBS, sub: STATUS),
    // discovery.k8s.io/v1
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice",
        short: NONE, cat: NONE, namespaced: true, verbs: STANDARD_VERBS, sub: NONE),
];

/// Every built-in resource, grouped by API group in discovery order, preferred version
/// first within a group.
pub fn builtin_resources() -> &'static [ResourceInfo] {
    BUILTIN
}

/// The API groups (without the legacy core group) in discovery order, each with its
/// versions, preferred first.
pub fn builtin_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in BUILTIN.iter().filter(|r| !r.group.is_empty()) {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

/// The resource served at `group`/`version` under `plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    // Every request looks its resource up: by plural first (a handful share one), not a scan
    // of the whole table.
    static BY_PLURAL: std::sync::OnceLock<
        std::collections::HashMap<&'static str, Vec<&'static ResourceInfo>>,
    > = std::sync::OnceLock::new();
    BY_PLURAL
        .get_or_init(|| {
            let mut map = std::collections::HashMap::<_, Vec<_>>::new();
            for r in BUILTIN {
                map.entry(r.plural).or_default().push(r);
            }
            map
        })
        .get(plural)?
        .iter()
        .copied()
        .find(|r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for r in BUILTIN {
            assert!(r.plural.chars().all(|c| c.is_ascii_lowercase()), "{}", r.plural);
            assert!(r.singular.chars().all(|c| c.is_ascii_lowercase()), "{}", r.singular);
            let dupes = BUILTIN
                .iter()
                .filter(|o| o.group == r.group && o.version == r.version && o.plural == r.plural)
                .count();
            assert_eq!(dupes, 1, "{} served twice in {}", r.plural, r.api_version());
        }
        assert_eq!(find("apps", "v1", "deployments").unwrap().kind, "Deployment");
        assert_eq!(find("", "v1", "pods").unwrap().short_names, &["po"]);
        let groups = builtin_groups();
        let autoscaling = groups.iter().find(|(g, _)| *g == "autoscaling").unwrap();
        assert_eq!(autoscaling.1, vec!["v2", "v1"]);
    }
}
