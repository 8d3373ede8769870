//! Which k8s-openapi type holds the schema of each served kind.

use std::collections::HashMap;

use k8s_openapi::api;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// (group, version, kind, definition name) of every kind with a schema.
struct Kind {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    definition: fn() -> String,
    add: fn(&mut schemars::SchemaGenerator),
}

macro_rules! kinds {
    ($(($group:expr, $version:expr, $kind:expr, $ty:ty)),* $(,)?) => {
        &[$(Kind {
            group: $group,
            version: $version,
            kind: $kind,
            definition: || <$ty as JsonSchema>::schema_name().into_owned(),
            add: |g| { g.subschema_for::<$ty>(); },
        }),*]
    };
}

static KINDS: &[Kind] = kinds![
    ("", "v1", "Binding", api::core::v1::Binding),
    ("", "v1", "ComponentStatus", api::core::v1::ComponentStatus),
    ("", "v1", "ConfigMap", api::core::v1::ConfigMap),
    ("", "v1", "Endpoints", api::core::v1::Endpoints),
    ("", "v1", "Event", api::core::v1::Event),
    ("", "v1", "LimitRange", api::core::v1::LimitRange),
    ("", "v1", "Namespace", api::core::v1::Namespace),
    ("", "v1", "Node", api::core::v1::Node),
    ("", "v1", "PersistentVolumeClaim", api::core::v1::PersistentVolumeClaim),
    ("", "v1", "PersistentVolume", api::core::v1::PersistentVolume),
    ("", "v1", "Pod", api::core::v1::Pod),
    ("", "v1", "PodTemplate", api::core::v1::PodTemplate),
    ("", "v1", "ReplicationController", api::core::v1::ReplicationController),
    ("", "v1", "ResourceQuota", api::core::v1::ResourceQuota),
    ("", "v1", "Secret", api::core::v1::Secret),
    ("", "v1", "ServiceAccount", api::core::v1::ServiceAccount),
    ("", "v1", "Service", api::core::v1::Service),
    ("apps", "v1", "ControllerRevision", api::apps::v1::ControllerRevision),
    ("apps", "v1", "DaemonSet", api::apps::v1::DaemonSet),
    ("apps", "v1", "Deployment", api::apps::v1::Deployment),
    ("apps", "v1", "ReplicaSet", api::apps::v1::ReplicaSet),
    ("apps", "v1", "StatefulSet", api::apps::v1::StatefulSet),
    ("autoscaling", "v1", "Scale", api::autoscaling::v1::Scale),
    ("autoscaling", "v2", "HorizontalPodAutoscaler", api::autoscaling::v2::HorizontalPodAutoscaler),
    ("autoscaling", "v1", "HorizontalPodAutoscaler", api::autoscaling::v1::HorizontalPodAutoscaler),
    ("batch", "v1", "CronJob", api::batch::v1::CronJob),
    ("batch", "v1", "Job", api::batch::v1::Job),
    ("coordination.k8s.io", "v1", "Lease", api::coordination::v1::Lease),
    ("discovery.k8s.io", "v1", "EndpointSlice", api::discovery::v1::EndpointSlice),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition
    ),
    ("events.k8s.io", "v1", "Event", api::events::v1::Event),
    ("networking.k8s.io", "v1", "IngressClass", api::networking::v1::IngressClass),
    ("networking.k8s.io", "v1", "Ingress", api::networking::v1::Ingress),
    ("networking.k8s.io", "v1", "NetworkPolicy", api::networking::v1::NetworkPolicy),
    ("policy", "v1", "Eviction", api::policy::v1::Eviction),
    ("policy", "v1", "PodDisruptionBudget", api::policy::v1::PodDisruptionBudget),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", api::rbac::v1::ClusterRoleBinding),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", api::rbac::v1::ClusterRole),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", api::rbac::v1::RoleBinding),
    ("rbac.authorization.k8s.io", "v1", "Role", api::rbac::v1::Role),
    ("scheduling.k8s.io", "v1", "PriorityClass", api::scheduling::v1::PriorityClass),
    ("storage.k8s.io", "v1", "StorageClass", api::storage::v1::StorageClass),
];

pub fn definition_name(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    /// kind -> (group, version, definition name): looked up on every write.
    type ByKind = HashMap<&'static str, Vec<(&'static str, &'static str, String)>>;
    static NAMES: std::sync::OnceLock<ByKind> = std::sync::OnceLock::new();
    NAMES
        .get_or_init(|| {
            let mut map = ByKind::new();
            for k in KINDS {
                map.entry(k.kind).or_default().push((k.group, k.version, (k.definition)()));
            }
            map
        })
        .get(kind)?
        .iter()
        .find(|(g, v, _)| *g == group && *v == version)
        .map(|(_, _, d)| d.as_str())
}

/// Generates every schema reachable from the kinds, with their GVK extensions.
pub fn generate() -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    for k in KINDS {
        (k.add)(&mut generator);
    }
    let mut defs = generator.take_definitions(true);
    for k in KINDS {
        let name = (k.definition)();
        if let Some(Value::Object(schema)) = defs.get_mut(&name) {
            let entry =
                schema.entry("x-kubernetes-group-version-kind").or_insert_with(|| json!([]));
            if let Value::Array(list) = entry {
                list.push(json!({ "group": k.group, "kind": k.kind, "version": k.version }));
            }
        }
    }
    defs
}
