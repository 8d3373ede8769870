//! API discovery: legacy (`/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<g>/<v>`) and
//! aggregated v2 (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`),
//! both generated from the resource table.

use rudder_api::ResourceInfo;
use rudder_api::resources::{builtin_groups, builtin_resources};
use serde_json::{Value, json};

pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an `Accept` header asks for aggregated discovery v2.
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: String = part.chars().filter(|c| !c.is_whitespace()).collect();
        p.contains("g=apidiscovery.k8s.io")
            && p.contains("v=v2")
            && p.contains("as=APIGroupDiscoveryList")
    })
}

/// (kind, group, version, verbs) of a subresource of `r`.
fn subresource(
    r: &ResourceInfo,
    sub: &str,
) -> (String, &'static str, &'static str, &'static [&'static str]) {
    const GPU: &[&str] = &["get", "patch", "update"];
    const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
    match sub {
        "status" => (r.kind.to_owned(), "", "", GPU),
        "scale" => ("Scale".into(), "autoscaling", "v1", GPU),
        "binding" => ("Binding".into(), "", "", &["create"]),
        "eviction" => ("Eviction".into(), "policy", "v1", &["create"]),
        "log" => ("Pod".into(), "", "", &["get"]),
        "exec" => ("PodExecOptions".into(), "", "", &["create", "get"]),
        "attach" => ("PodAttachOptions".into(), "", "", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions".into(), "", "", &["create", "get"]),
        "proxy" => (format!("{}ProxyOptions", r.kind), "", "", PROXY),
        "finalize" => (r.kind.to_owned(), "", "", &["update"]),
        "token" => ("TokenRequest".into(), "authentication.k8s.io", "v1", &["create"]),
        _ => (r.kind.to_owned(), "", "", GPU),
    }
}

fn resources_in(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    builtin_resources().iter().filter(move |r| r.group == group && r.version == version)
}

pub fn group_versions(group: &str) -> Option<Vec<&'static str>> {
    builtin_groups().into_iter().find(|(g, _)| *g == group).map(|(_, v)| v)
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn api_group(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v }))
        .collect();
    json!({
        "name": name,
        "versions": vs,
        "preferredVersion": { "groupVersion": format!("{name}/{}", versions[0]), "version": versions[0] },
    })
}

pub fn api_group_list() -> Value {
    let groups: Vec<Value> = builtin_groups().iter().map(|(g, vs)| api_group(g, vs)).collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

pub fn api_group_doc(group: &str) -> Option<Value> {
    let versions = group_versions(group)?;
    let mut g = api_group(group, &versions);
    g["kind"] = json!("APIGroup");
    g["apiVersion"] = json!("v1");
    Some(g)
}

/// `APIResourceList` for one group version, or None if it is not served.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in resources_in(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, g, v, verbs) = subresource(r, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !g.is_empty() {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version =
        if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn discovery_version(group: &str, version: &str) -> Value {
    let resources: Vec<Value> = resources_in(group, version)
        .map(|r| {
            let subs: Vec<Value> = r
                .subresources
                .iter()
                .map(|sub| {
                    let (kind, g, v, verbs) = subresource(r, sub);
                    json!({
                        "subresource": sub,
                        "responseKind": { "group": g, "version": v, "kind": kind },
                        "verbs": verbs,
                    })
                })
                .collect();
            let mut e = json!({
                "resource": r.plural,
                "responseKind": { "group": "", "version": "", "kind": r.kind },
                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                "singularResource": r.singular,
                "verbs": r.verbs,
            });
            if !r.short_names.is_empty() {
                e["shortNames"] = json!(r.short_names);
            }
            if !r.categories.is_empty() {
                e["categories"] = json!(r.categories);
            }
            if !subs.is_empty() {
                e["subresources"] = json!(subs);
            }
            e
        })
        .collect();
    json!({ "version": version, "resources": resources, "freshness": "Current" })
}

/// Aggregated discovery: `core` for `/api`, every named group for `/apis`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![json!({
            "metadata": { "name": "", "creationTimestamp": null },
            "versions": [discovery_version("", "v1")],
        })]
    } else {
        builtin_groups()
            .iter()
            .map(|(g, vs)| {
                json!({
                    "metadata": { "name": g, "creationTimestamp": null },
                    "versions": vs.iter().map(|v| discovery_version(g, v)).collect::<Vec<_>>(),
                })
            })
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}
