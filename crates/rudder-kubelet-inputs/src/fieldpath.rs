//! The downward API: values of a pod's fields (`fieldRef`) and of its containers' resources
//! (`resourceFieldRef`), formatted like upstream (labels and annotations as sorted `k="v"`
//! lines, resources divided by the divisor and rounded up).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Field paths the API accepts in a pod's `fieldRef` (upstream's
/// `ConvertDownwardAPIFieldLabel`).
const POD_FIELD_LABELS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// Checks a `fieldRef`'s apiVersion and path like upstream's conversion does.
fn check_field_label(selector: &ObjectFieldSelector) -> Result<(), String> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if !version.is_empty() && version != "v1" {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = selector.field_path.as_str();
    if POD_FIELD_LABELS.contains(&path) || subscript(path).is_some() {
        Ok(())
    } else {
        Err(format!("field label not supported: {path}"))
    }
}

/// `metadata.labels['k']` -> ("metadata.labels", "k").
fn subscript(path: &str) -> Option<(&str, &str)> {
    let (base, rest) = path.split_once('[')?;
    if base != "metadata.labels" && base != "metadata.annotations" {
        return None;
    }
    let key = rest.strip_suffix(']')?.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((base, key))
}

/// The value of a pod metadata field (upstream's `ExtractFieldPathAsString`): the only fields
/// a downwardAPI volume can show.
pub fn metadata_field_value(pod: &Pod, selector: &ObjectFieldSelector) -> Result<String, String> {
    check_field_label(selector)?;
    let meta = &pod.metadata;
    let path = selector.field_path.as_str();
    if let Some((base, key)) = subscript(path) {
        let map = if base == "metadata.labels" { &meta.labels } else { &meta.annotations };
        return Ok(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default());
    }
    match path {
        "metadata.annotations" => Ok(format_map(meta.annotations.as_ref())),
        "metadata.labels" => Ok(format_map(meta.labels.as_ref())),
        "metadata.name" => Ok(meta.name.clone().unwrap_or_default()),
        "metadata.namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        "metadata.uid" => Ok(meta.uid.clone().unwrap_or_default()),
        _ => Err(format!("unsupported fieldPath: {path}")),
    }
}

/// What the kubelet knows about addresses when it resolves `status.*IP*` fields.
#[derive(Clone, Copy, Debug)]
pub struct Addresses<'a> {
    pub host_ips: &'a [String],
    pub pod_ips: &'a [String],
}

/// The value of a `fieldRef` in a container's env (upstream's `podFieldSelectorRuntimeValue`).
pub fn env_field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    addresses: Addresses<'_>,
) -> Result<String, String> {
    check_field_label(selector)?;
    let spec = pod.spec.as_ref();
    match selector.field_path.as_str() {
        "spec.nodeName" => Ok(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
        "spec.serviceAccountName" => {
            Ok(spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default())
        }
        "status.hostIP" => match addresses.host_ips.first() {
            Some(ip) => Ok(ip.clone()),
            None => Err("the node's IP address is not known".to_owned()),
        },
        "status.hostIPs" if addresses.host_ips.is_empty() => {
            Err("the node's IP address is not known".to_owned())
        }
        "status.hostIPs" => Ok(addresses.host_ips.join(",")),
        "status.podIP" => Ok(addresses.pod_ips.first().cloned().unwrap_or_default()),
        "status.podIPs" => Ok(addresses.pod_ips.join(",")),
        _ => metadata_field_value(pod, selector),
    }
}

/// Sorted `key="value"` lines (Go's `%q` quoting), no trailing newline.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    let Some(map) = map else { return String::new() };
    let lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}={}", go_quote(v))).collect();
    lines.join("\n")
}

/// A double-quoted string with Go's escapes (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Resources a limit defaults to the node's allocatable amount of, when unset.
const DEFAULTED_LIMITS: &[&str] = &["cpu", "memory", "ephemeral-storage"];

/// The value of a `resourceFieldRef` (upstream's `ExtractContainerResourceValue`), with unset
/// cpu/memory/ephemeral-storage limits defaulted to the node's `allocatable`. `container` is
/// the container the selector is evaluated for when it names none (env); a selector naming a
/// container is looked up in the pod.
pub fn resource_field_value(
    pod: &Pod,
    container: Option<&Container>,
    selector: &ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let named = selector.container_name.as_deref().filter(|n| !n.is_empty());
    let container = match (named, container) {
        (Some(name), _) => {
            find_container(pod, name).ok_or_else(|| format!("container {name} not found"))?
        }
        (None, Some(c)) => c,
        (None, None) => return Err("resourceFieldRef needs a containerName".to_owned()),
    };
    let divisor = match &selector.divisor {
        Some(q) if !q.0.is_empty() && milli(q)? != 0 => milli(q)?,
        _ => 1000,
    };
    if divisor <= 0 {
        return Err(format!("invalid divisor for resource {}", selector.resource));
    }
    let (kind, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") {
        return Err(format!("unsupported container resource : {}", selector.resource));
    }
    let resources = container.resources.as_ref();
    let amount = match kind {
        "limits" => {
            let set = resources.and_then(|r| r.limits.as_ref()).and_then(|l| l.get(resource));
            match set {
                Some(q) => milli(q)?,
                None if DEFAULTED_LIMITS.contains(&resource) => {
                    allocatable.get(resource).map(milli).transpose()?.unwrap_or(0)
                }
                None => 0,
            }
        }
        "requests" => resources
            .and_then(|r| r.requests.as_ref())
            .and_then(|l| l.get(resource))
            .map(milli)
            .transpose()?
            .unwrap_or(0),
        _ => return Err(format!("unsupported container resource : {}", selector.resource)),
    };
    let value = if resource == "cpu" {
        ceil_div(amount, divisor)
    } else {
        // Memory and storage: whole units (rounded up) divided by the divisor's whole units.
        ceil_div(ceil_div(amount, 1000), ceil_div(divisor, 1000).max(1))
    };
    Ok(value.to_string())
}

fn milli(q: &Quantity) -> Result<i128, String> {
    rudder_api::quantity::parse_milli(&q.0).map_err(|e| format!("quantity {:?}: {e}", q.0))
}

fn ceil_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if a % b != 0 && ((a < 0) == (b < 0)) { q + 1 } else { q }
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.labels =
            Some([("b".into(), "2".into()), ("a".into(), "x\"y\n".into())].into());
        let c = Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                limits: Some([("memory".into(), q("64Mi"))].into()),
                requests: Some([("cpu".into(), q("250m")), ("memory".into(), q("1000"))].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        pod.spec = Some(PodSpec { containers: vec![c], ..Default::default() });
        pod
    }

    fn sel(path: &str) -> ObjectFieldSelector {
        ObjectFieldSelector { api_version: Some("v1".into()), field_path: path.into() }
    }

    fn res(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: Some("c".into()),
            divisor: divisor.map(q),
            resource: resource.into(),
        }
    }

    #[test]
    fn labels_are_sorted_quoted_lines() {
        let p = pod();
        assert_eq!(
            metadata_field_value(&p, &sel("metadata.labels")).unwrap(),
            "a=\"x\\\"y\\n\"\nb=\"2\""
        );
        assert_eq!(metadata_field_value(&p, &sel("metadata.labels['b']")).unwrap(), "2");
        assert_eq!(metadata_field_value(&p, &sel("metadata.labels['zz']")).unwrap(), "");
        assert_eq!(metadata_field_value(&p, &sel("metadata.annotations")).unwrap(), "");
    }

    #[test]
    fn unsupported_paths_and_versions_are_errors() {
        let p = pod();
        assert_eq!(
            metadata_field_value(&p, &sel("spec.hostname")).unwrap_err(),
            "field label not supported: spec.hostname"
        );
        assert_eq!(
            metadata_field_value(&p, &sel("spec.nodeName")).unwrap_err(),
            "unsupported fieldPath: spec.nodeName"
        );
        let mut s = sel("metadata.name");
        s.api_version = Some("v2".into());
        assert_eq!(metadata_field_value(&p, &s).unwrap_err(), "unsupported pod version: v2");
    }

    #[test]
    fn resources_divide_round_up_and_default_limits_to_allocatable() {
        let p = pod();
        let alloc: BTreeMap<String, Quantity> =
            [("cpu".into(), q("3500m")), ("memory".into(), q("8Gi"))].into();
        let v = |r: &str, d: Option<&str>| resource_field_value(&p, None, &res(r, d), &alloc);
        assert_eq!(v("limits.memory", None).unwrap(), "67108864");
        assert_eq!(v("limits.memory", Some("1Mi")).unwrap(), "64");
        assert_eq!(v("limits.memory", Some("1G")).unwrap(), "1");
        assert_eq!(v("requests.memory", Some("1Ki")).unwrap(), "1");
        assert_eq!(v("requests.cpu", None).unwrap(), "1");
        assert_eq!(v("requests.cpu", Some("1m")).unwrap(), "250");
        // Unset limits: the node's allocatable amount.
        assert_eq!(v("limits.cpu", None).unwrap(), "4");
        assert_eq!(v("limits.cpu", Some("1m")).unwrap(), "3500");
        assert_eq!(v("requests.ephemeral-storage", None).unwrap(), "0");
        assert_eq!(v("limits.ephemeral-storage", None).unwrap(), "0");
        assert_eq!(
            v("limits.gpu", None).unwrap_err(),
            "unsupported container resource : limits.gpu"
        );
        let mut missing = res("limits.cpu", None);
        missing.container_name = Some("nope".into());
        assert_eq!(
            resource_field_value(&p, None, &missing, &alloc).unwrap_err(),
            "container nope not found"
        );
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\tb\u{1}é\\"), "\"a\\tb\\x01é\\\\\"");
    }
}
