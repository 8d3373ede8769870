//! Service ClusterIPs (from the service CIDR, default 10.43.0.0/16) and NodePorts (30000-32767).
//! Each allocation is its own store key, created with create-if-absent, so an address or
//! port is never handed out twice, even by several API servers; it is released when the
//! Service is deleted or stops needing it.

use std::net::Ipv4Addr;

use bytes::Bytes;
use rand::Rng;
use rudder_api::{FieldError, ResourceInfo};
use rudder_store::{Storage, StoreError};
use serde_json::{Value, json};

use crate::status::ApiError;

pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 43, 0, 0), 16);
/// The `kubernetes` Service's address: the first of the range.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 1);
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;
/// Random probes before a full scan for a free address or port.
const RANDOM_ATTEMPTS: usize = 32;

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/registry/ranges/serviceips/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/registry/ranges/servicenodeports/{port}")
}

fn in_cidr(ip: Ipv4Addr) -> bool {
    let (net, bits) = SERVICE_CIDR;
    let mask = u32::MAX << (32 - bits);
    u32::from(ip) & mask == u32::from(net)
}

fn cidr_hosts() -> (u32, u32) {
    let (net, bits) = SERVICE_CIDR;
    let first = u32::from(net) + 1;
    let last = u32::from(net) + (1u32 << (32 - bits)) - 2;
    (first, last)
}

/// What a Service holds, so that it can be released.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub cluster_ip: Option<Ipv4Addr>,
    pub node_ports: Vec<u16>,
}

pub fn held_by(service: &Value) -> Held {
    let cluster_ip = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Ipv4Addr>().ok());
    let node_ports = service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| {
            ports.iter().filter_map(|p| p.get("nodePort")?.as_u64().map(|n| n as u16)).collect()
        })
        .unwrap_or_default();
    Held { cluster_ip, node_ports }
}

async fn claim(store: &dyn Storage, key: &str, owner: &str) -> Result<bool, StoreError> {
    match store.create(key, Bytes::from(owner.to_owned())).await {
        Ok(_) => Ok(true),
        Err(StoreError::KeyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

pub async fn release(store: &dyn Storage, held: &Held) {
    if let Some(ip) = held.cluster_ip {
        let _ = store.delete(&ip_key(ip), None).await;
    }
    for port in &held.node_ports {
        let _ = store.delete(&port_key(*port), None).await;
    }
}

fn needs_node_ports(service: &Value) -> bool {
    matches!(
        service.pointer("/spec/type").and_then(Value::as_str),
        Some("NodePort" | "LoadBalancer")
    )
}

/// Allocates what `service` asks for and does not have yet (what `already` holds is kept).
/// On error, everything this call claimed is released again.
pub async fn allocate(
    store: &dyn Storage,
    info: &ResourceInfo,
    service: &mut Value,
    already: &Held,
) -> Result<Held, ApiError> {
    let owner = format!(
        "{}/{}",
        service.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default(),
        service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
    );
    let name =
        service.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let store_err = |e: StoreError| ApiError::from_store(e, info, &name);
    let mut claimed = Held::default();
    let result: Result<(), ApiError> = async {
        let requested = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_owned();
        if requested != "None" && already.cluster_ip.is_none() {
            let ip = if requested.is_empty() {
                let mut found = None;
                let (first, last) = cidr_hosts();
                for _ in 0..RANDOM_ATTEMPTS {
                    let candidate = Ipv4Addr::from(rand::thread_rng().gen_range(first + 1..=last));
                    if claim(store, &ip_key(candidate), &owner).await.map_err(store_err)? {
                        found = Some(candidate);
                        break;
                    }
                }
                if found.is_none() {
                    for n in first + 1..=last {
                        if claim(store, &ip_key(Ipv4Addr::from(n)), &owner).await.map_err(store_err)? {
                            found = Some(Ipv4Addr::from(n));
                            break;
                        }
                    }
                }
                found.ok_or_else(|| {
                    ApiError::new(500, "InternalError", "failed to allocate a serviceIP: range is full")
                })?
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    ApiError::invalid(info, &name, &[FieldError::invalid("spec.clusterIP", requested.as_str(), "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")])
                })?;
                if !in_cidr(ip) {
                    return Err(ApiError::invalid(info, &name, &[FieldError::invalid(
                        "spec.clusterIPs",
                        requested.as_str(),
                        format!("failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}", SERVICE_CIDR.0, SERVICE_CIDR.1),
                    )]));
                }
                if !claim(store, &ip_key(ip), &owner).await.map_err(store_err)? {
                    return Err(ApiError::invalid(info, &name, &[FieldError::invalid(
                        "spec.clusterIPs",
                        requested.as_str(),
                        format!("failed to allocate IP {ip}: provided IP is already allocated"),
                    )]));
                }
                ip
            };
            claimed.cluster_ip = Some(ip);
            service["spec"]["clusterIP"] = json!(ip.to_string());
            service["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        if needs_node_ports(service) {
            let ports = service.pointer_mut("/spec/ports").and_then(Value::as_array_mut);
            for (i, port) in ports.into_iter().flatten().enumerate() {
                // 0 (what Go clients send for "unset") asks for a port like an absent field.
                match port.get("nodePort").and_then(Value::as_u64).filter(|p| *p != 0) {
                    Some(p) if already.node_ports.contains(&(p as u16)) => {}
                    Some(p) => {
                        let p16 = u16::try_from(p).ok().filter(|p| NODE_PORTS.contains(p));
                        let Some(p16) = p16 else {
                            return Err(ApiError::invalid(info, &name, &[FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                p,
                                "provided port is not in the valid range. The range of valid ports is 30000-32767",
                            )]));
                        };
                        if !claim(store, &port_key(p16), &owner).await.map_err(store_err)? {
                            return Err(ApiError::invalid(info, &name, &[FieldError::invalid(
                                format!("spec.ports[{i}].nodePort"),
                                p,
                                "provided port is already allocated",
                            )]));
                        }
                        claimed.node_ports.push(p16);
                    }
                    None => {
                        let mut found = None;
                        for _ in 0..RANDOM_ATTEMPTS {
                            let candidate = rand::thread_rng().gen_range(NODE_PORTS);
                            if claim(store, &port_key(candidate), &owner).await.map_err(store_err)? {
                                found = Some(candidate);
                                break;
                            }
                        }
                        if found.is_none() {
                            for candidate in NODE_PORTS {
                                if claim(store, &port_key(candidate), &owner).await.map_err(store_err)? {
                                    found = Some(candidate);
                                    break;
                                }
                            }
                        }
                        let p = found.ok_or_else(|| {
                            ApiError::new(500, "InternalError", "failed to allocate a nodePort: range is full")
                        })?;
                        claimed.node_ports.push(p);
                        port["nodePort"] = json!(p);
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(claimed),
        Err(e) => {
            release(store, &claimed).await;
            Err(e)
        }
    }
}

/// Upstream's Service defaults.
pub fn default_service(service: &mut Value) {
    let spec = &mut service["spec"];
    if !spec.is_object() {
        *spec = json!({});
    }
    let s = spec.as_object_mut().expect("object");
    s.entry("type").or_insert_with(|| json!("ClusterIP"));
    s.entry("sessionAffinity").or_insert_with(|| json!("None"));
    let headless = s.get("clusterIP").and_then(Value::as_str) == Some("None");
    if s.get("type").and_then(Value::as_str) != Some("ExternalName") {
        s.entry("ipFamilies").or_insert_with(|| json!(["IPv4"]));
        s.entry("ipFamilyPolicy").or_insert_with(|| json!("SingleStack"));
        s.entry("internalTrafficPolicy").or_insert_with(|| json!("Cluster"));
        if headless {
            s.entry("clusterIPs").or_insert_with(|| json!(["None"]));
        }
    }
    if matches!(s.get("type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer")) {
        s.entry("externalTrafficPolicy").or_insert_with(|| json!("Cluster"));
    }
    if let Some(ports) = s.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                p.entry("protocol").or_insert_with(|| json!("TCP"));
                if !p.contains_key("targetPort")
                    && let Some(port) = p.get("port").cloned()
                {
                    p.insert("targetPort".into(), port);
                }
            }
        }
    }
    if service.get("status").is_none() {
        service["status"] = json!({ "loadBalancer": {} });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use rudder_store::MemoryStorage;

    use super::*;

    fn info() -> &'static ResourceInfo {
        rudder_api::resources::find("", "v1", "services").unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_allocations_are_unique_and_released() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut svc = json!({
                    "metadata": {"name": format!("s{i}"), "namespace": "default"},
                    "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]},
                });
                allocate(&*store, info(), &mut svc, &Held::default()).await.unwrap()
            }));
        }
        let mut ips = BTreeSet::new();
        let mut ports = BTreeSet::new();
        let mut all = Vec::new();
        for t in tasks {
            let held = t.await.unwrap();
            let ip = held.cluster_ip.unwrap();
            assert!(in_cidr(ip) && ip != KUBERNETES_SERVICE_IP);
            assert!(ips.insert(ip), "{ip} handed out twice");
            for p in &held.node_ports {
                assert!(NODE_PORTS.contains(p));
                assert!(ports.insert(*p), "port {p} handed out twice");
            }
            all.push(held);
        }
        assert_eq!(ports.len(), 400);
        // A taken address is refused; once released it can be had again.
        let taken = all[0].cluster_ip.unwrap();
        let mut svc = json!({"metadata": {"name": "x"}, "spec": {"clusterIP": taken.to_string()}});
        let err = allocate(&*store, info(), &mut svc, &Held::default()).await.unwrap_err();
        assert!(err.message.contains("provided IP is already allocated"), "{}", err.message);
        release(&*store, &all[0]).await;
        let mut svc = json!({"metadata": {"name": "x"}, "spec": {"clusterIP": taken.to_string(),
            "type": "NodePort", "ports": [{"port": 80, "nodePort": all[0].node_ports[0]}]}});
        let held = allocate(&*store, info(), &mut svc, &Held::default()).await.unwrap();
        assert_eq!(held.cluster_ip, Some(taken));
        assert_eq!(held.node_ports, vec![all[0].node_ports[0]]);
    }

    #[tokio::test]
    async fn out_of_range_requests_are_invalid_and_leave_nothing_claimed() {
        let store = MemoryStorage::new();
        let mut svc = json!({"metadata": {"name": "x"}, "spec": {"clusterIP": "10.44.0.5"}});
        let err = allocate(&store, info(), &mut svc, &Held::default()).await.unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("is not in the valid range"), "{}", err.message);
        let mut svc = json!({"metadata": {"name": "y"}, "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        let err = allocate(&store, info(), &mut svc, &Held::default()).await.unwrap_err();
        assert!(err.message.contains("spec.ports[0].nodePort"), "{}", err.message);
        // The ClusterIP claimed before the bad port was released again.
        assert_eq!(store.count("/registry/ranges/").await.unwrap(), 0);
    }
}
