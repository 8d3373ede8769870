//! `Table` responses (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`): the columns
//! `kubectl get` prints, computed on the server like upstream's printers.

use std::time::SystemTime;

use rudder_api::ResourceInfo;
use serde_json::{Value, json};

use crate::clock::{human_duration, parse_rfc3339};
use crate::object::{self, path};

struct Column {
    name: &'static str,
    kind: &'static str,
    format: &'static str,
    priority: u8,
    cell: fn(&Value, SystemTime) -> Value,
}

fn col(name: &'static str, cell: fn(&Value, SystemTime) -> Value) -> Column {
    Column { name, kind: "string", format: "", priority: 0, cell }
}

fn int_col(name: &'static str, cell: fn(&Value, SystemTime) -> Value) -> Column {
    Column { kind: "integer", ..col(name, cell) }
}

fn wide(name: &'static str, cell: fn(&Value, SystemTime) -> Value) -> Column {
    Column { priority: 1, ..col(name, cell) }
}

fn name_col() -> Column {
    Column { format: "name", ..col("Name", |o, _| json!(object::name(o).unwrap_or_default())) }
}

fn age_col() -> Column {
    col("Age", |o, now| json!(age(o, now)))
}

pub fn age(obj: &Value, now: SystemTime) -> String {
    object::meta_str(obj, "creationTimestamp")
        .and_then(parse_rfc3339)
        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn str_at(o: &Value, p: &str) -> String {
    match path(o, p) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

fn int_at(o: &Value, p: &str) -> i64 {
    path(o, p).and_then(Value::as_i64).unwrap_or(0)
}

fn count_at(o: &Value, p: &str) -> usize {
    match path(o, p) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

fn pod_ready(o: &Value, _: SystemTime) -> Value {
    let total = count_at(o, "spec.containers");
    let ready = path(o, "status.containerStatuses")
        .and_then(Value::as_array)
        .map_or(0, |cs| cs.iter().filter(|c| c.get("ready") == Some(&json!(true))).count());
    json!(format!("{ready}/{total}"))
}

fn pod_status(o: &Value, _: SystemTime) -> Value {
    if object::meta_str(o, "deletionTimestamp").is_some() {
        return json!("Terminating");
    }
    let reason = str_at(o, "status.reason");
    if !reason.is_empty() {
        return json!(reason);
    }
    let waiting = path(o, "status.containerStatuses").and_then(Value::as_array).and_then(|cs| {
        cs.iter().find_map(|c| {
            path(c, "state.waiting.reason")
                .or_else(|| path(c, "state.terminated.reason"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
    });
    json!(waiting.unwrap_or_else(|| or_none(str_at(o, "status.phase"))))
}

fn pod_restarts(o: &Value, _: SystemTime) -> Value {
    let n: i64 = path(o, "status.containerStatuses").and_then(Value::as_array).map_or(0, |cs| {
        cs.iter().map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0)).sum()
    });
    json!(n)
}

fn service_ports(o: &Value, _: SystemTime) -> Value {
    let ports = path(o, "spec.ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let text: Vec<String> = ports
        .iter()
        .map(|p| {
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) => format!("{port}:{np}/{proto}"),
                None => format!("{port}/{proto}"),
            }
        })
        .collect();
    json!(if text.is_empty() { "<none>".to_owned() } else { text.join(",") })
}

fn selector_text(o: &Value, p: &str) -> String {
    match path(o, p) {
        Some(Value::Object(m)) => {
            let labels = m.get("matchLabels").and_then(Value::as_object).unwrap_or(m);
            let parts: Vec<String> =
                labels.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect();
            or_none(parts.join(","))
        }
        _ => "<none>".into(),
    }
}

fn containers_field(o: &Value, p: &str, field: &str) -> String {
    path(o, p)
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c.get(field)?.as_str()).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn or_default(s: String, default: &str) -> String {
    if s.is_empty() { default.to_owned() } else { s }
}

fn access_modes(o: &Value, p: &str) -> String {
    path(o, p)
        .and_then(Value::as_array)
        .map(|modes| {
            modes
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn node_address(o: &Value, kind: &str) -> String {
    path(o, "status.addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == kind))
        .and_then(|x| x["address"].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn subjects(o: &Value, kind: &str) -> String {
    let names: Vec<String> = path(o, "subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| match (kind, s["namespace"].as_str()) {
            ("ServiceAccount", Some(ns)) => {
                format!("{ns}/{}", s["name"].as_str().unwrap_or_default())
            }
            _ => s["name"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    names.join(", ")
}

/// `resource: used/hard` pairs of a quota, requests or limits.
fn quota_text(o: &Value, limits: bool) -> String {
    let hard = path(o, "status.hard").or_else(|| path(o, "spec.hard")).and_then(Value::as_object);
    let used = path(o, "status.used").and_then(Value::as_object);
    let mut parts = Vec::new();
    for (k, v) in hard.into_iter().flatten() {
        if k.starts_with("limits.") != limits {
            continue;
        }
        let u = used.and_then(|u| u.get(k)).and_then(Value::as_str).unwrap_or("0");
        parts.push(format!("{k}: {u}/{}", v.as_str().unwrap_or_default()));
    }
    parts.join(", ")
}

fn push_template_wide(cols: &mut Vec<Column>) {
    cols.push(wide("Containers", |o, _| {
        json!(containers_field(o, "spec.template.spec.containers", "name"))
    }));
    cols.push(wide("Images", |o, _| {
        json!(containers_field(o, "spec.template.spec.containers", "image"))
    }));
    cols.push(wide("Selector", |o, _| json!(selector_text(o, "spec.selector"))));
}

fn columns(info: &ResourceInfo) -> Vec<Column> {
    let mut cols = vec![name_col()];
    match info.kind {
        "Namespace" => cols.push(col("Status", |o, _| json!(str_at(o, "status.phase")))),
        "ConfigMap" => cols
            .push(int_col("Data", |o, _| json!(count_at(o, "data") + count_at(o, "binaryData")))),
        "Secret" => {
            cols.push(col("Type", |o, _| json!(str_at(o, "type"))));
            cols.push(int_col("Data", |o, _| json!(count_at(o, "data"))));
        }
        "ServiceAccount" => cols.push(int_col("Secrets", |o, _| json!(count_at(o, "secrets")))),
        "Pod" => {
            cols.push(col("Ready", pod_ready));
            cols.push(col("Status", pod_status));
            cols.push(int_col("Restarts", pod_restarts));
            cols.push(age_col());
            cols.push(wide("IP", |o, _| json!(or_none(str_at(o, "status.podIP")))));
            cols.push(wide("Node", |o, _| json!(or_none(str_at(o, "spec.nodeName")))));
            cols.push(wide("Nominated Node", |o, _| {
                json!(or_none(str_at(o, "status.nominatedNodeName")))
            }));
            cols.push(wide("Readiness Gates", |o, _| {
                json!(if count_at(o, "spec.readinessGates") == 0 {
                    "<none>".to_owned()
                } else {
                    format!("0/{}", count_at(o, "spec.readinessGates"))
                })
            }));
            return cols;
        }
        "Deployment" => {
            cols.push(col("Ready", |o, _| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "status.readyReplicas"),
                    path(o, "spec.replicas").and_then(Value::as_i64).unwrap_or(1)
                ))
            }));
            cols.push(int_col("Up-to-date", |o, _| json!(int_at(o, "status.updatedReplicas"))));
            cols.push(int_col("Available", |o, _| json!(int_at(o, "status.availableReplicas"))));
            cols.push(age_col());
            cols.push(wide("Containers", |o, _| {
                json!(containers_field(o, "spec.template.spec.containers", "name"))
            }));
            cols.push(wide("Images", |o, _| {
                json!(containers_field(o, "spec.template.spec.containers", "image"))
            }));
            cols.push(wide("Selector", |o, _| json!(selector_text(o, "spec.selector"))));
            return cols;
        }
        "ReplicaSet" | "ReplicationController" => {
            cols.push(int_col("Desired", |o, _| {
                json!(path(o, "spec.replicas").and_then(Value::as_i64).unwrap_or(1))
            }));
            cols.push(int_col("Current", |o, _| json!(int_at(o, "status.replicas"))));
            cols.push(int_col("Ready", |o, _| json!(int_at(o, "status.readyReplicas"))));
            cols.push(age_col());
            push_template_wide(&mut cols);
            return cols;
        }
        "StatefulSet" => {
            cols.push(col("Ready", |o, _| {
                json!(format!(
                    "{}/{}",
                    int_at(o, "status.readyReplicas"),
                    path(o, "spec.replicas").and_then(Value::as_i64).unwrap_or(1)
                ))
            }));
            cols.push(age_col());
            cols.push(wide("Containers", |o, _| {
                json!(containers_field(o, "spec.template.spec.containers", "name"))
            }));
            cols.push(wide("Images", |o, _| {
                json!(containers_field(o, "spec.template.spec.containers", "image"))
            }));
            return cols;
        }
        "DaemonSet" => {
            let int_col = |name, cell| int_col(name, cell);
            cols.push(int_col("Desired", |o, _| json!(int_at(o, "status.desiredNumberScheduled"))));
            cols.push(int_col("Current", |o, _| json!(int_at(o, "status.currentNumberScheduled"))));
            cols.push(int_col("Ready", |o, _| json!(int_at(o, "status.numberReady"))));
            cols.push(int_col("Up-to-date", |o, _| {
                json!(int_at(o, "status.updatedNumberScheduled"))
            }));
            cols.push(int_col("Available", |o, _| json!(int_at(o, "status.numberAvailable"))));
            cols.push(col("Node Selector", |o, _| {
                let parts: Vec<String> = path(o, "spec.template.spec.nodeSelector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect()
                    })
                    .unwrap_or_default();
                json!(or_none(parts.join(",")))
            }));
            cols.push(age_col());
            push_template_wide(&mut cols);
            return cols;
        }
        "Job" => {
            cols.push(col("Status", |o, _| {
                let conditions = path(o, "status.conditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let is =
                    |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] == "True");
                json!(if is("Complete") {
                    "Complete"
                } else if is("Failed") {
                    "Failed"
                } else if is("FailureTarget") {
                    "FailureTarget"
                } else if is("Suspended") {
                    "Suspended"
                } else {
                    "Running"
                })
            }));
            cols.push(col("Completions", |o, _| {
                let succeeded = int_at(o, "status.succeeded");
                json!(match path(o, "spec.completions").and_then(Value::as_i64) {
                    Some(c) => format!("{succeeded}/{c}"),
                    None =>
                        match path(o, "spec.parallelism").and_then(Value::as_i64).unwrap_or(1) {
                            p if p > 1 => format!("{succeeded}/1 of {p}"),
                            _ => format!("{succeeded}/1"),
                        },
                })
            }));
            cols.push(col("Duration", |o, now| {
                let start = object::path(o, "status.startTime")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339);
                let end = object::path(o, "status.completionTime")
                    .and_then(Value::as_str)
                    .and_then(parse_rfc3339)
                    .unwrap_or(now);
                json!(
                    start
                        .map(|s| human_duration(end.duration_since(s).unwrap_or_default()))
                        .unwrap_or_default()
                )
            }));
            cols.push(age_col());
            push_template_wide(&mut cols);
            return cols;
        }
        "CronJob" => {
            cols.push(col("Schedule", |o, _| json!(str_at(o, "spec.schedule"))));
            cols.push(col("Timezone", |o, _| json!(or_none(str_at(o, "spec.timeZone")))));
            cols.push(col("Suspend", |o, _| {
                json!(if path(o, "spec.suspend") == Some(&json!(true)) { "True" } else { "False" })
            }));
            cols.push(int_col("Active", |o, _| json!(count_at(o, "status.active"))));
            cols.push(col("Last Schedule", |o, now| {
                json!(
                    object::path(o, "status.lastScheduleTime")
                        .and_then(Value::as_str)
                        .and_then(parse_rfc3339)
                        .map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
                        .unwrap_or_else(|| "<none>".into())
                )
            }));
            cols.push(age_col());
            cols.push(wide("Containers", |o, _| {
                json!(containers_field(o, "spec.jobTemplate.spec.template.spec.containers", "name"))
            }));
            cols.push(wide("Images", |o, _| {
                json!(containers_field(
                    o,
                    "spec.jobTemplate.spec.template.spec.containers",
                    "image"
                ))
            }));
            return cols;
        }
        "Endpoints" => cols.push(col("Endpoints", |o, _| {
            let mut out = Vec::new();
            for subset in path(o, "subsets").and_then(Value::as_array).into_iter().flatten() {
                let ports: Vec<i64> = subset["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_i64())
                    .collect();
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    let ip = a["ip"].as_str().unwrap_or_default();
                    if ports.is_empty() {
                        out.push(ip.to_owned());
                    }
                    out.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                }
            }
            json!(match out.len() {
                0 => "<none>".to_owned(),
                n if n > 3 => format!("{} + {} more...", out[..3].join(","), n - 3),
                _ => out.join(","),
            })
        })),
        "Ingress" => {
            cols.push(col("Class", |o, _| json!(or_none(str_at(o, "spec.ingressClassName")))));
            cols.push(col("Hosts", |o, _| {
                let hosts: Vec<String> = path(o, "spec.rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["host"].as_str().map(str::to_owned))
                    .collect();
                json!(if hosts.is_empty() { "*".to_owned() } else { hosts.join(",") })
            }));
            cols.push(col("Address", |o, _| {
                json!(containers_field(o, "status.loadBalancer.ingress", "ip"))
            }));
            cols.push(col("Ports", |o, _| {
                json!(if count_at(o, "spec.tls") > 0 { "80, 443" } else { "80" })
            }));
        }
        "PersistentVolume" => {
            cols.push(col("Capacity", |o, _| json!(str_at(o, "spec.capacity.storage"))));
            cols.push(col("Access Modes", |o, _| json!(access_modes(o, "spec.accessModes"))));
            cols.push(col("Reclaim Policy", |o, _| {
                json!(str_at(o, "spec.persistentVolumeReclaimPolicy"))
            }));
            cols.push(col("Status", |o, _| json!(str_at(o, "status.phase"))));
            cols.push(col("Claim", |o, _| {
                let ns = str_at(o, "spec.claimRef.namespace");
                let name = str_at(o, "spec.claimRef.name");
                json!(if name.is_empty() { String::new() } else { format!("{ns}/{name}") })
            }));
            cols.push(col("StorageClass", |o, _| json!(str_at(o, "spec.storageClassName"))));
            cols.push(col("VolumeAttributesClass", |o, _| {
                json!(or_none(str_at(o, "spec.volumeAttributesClassName")))
            }));
            cols.push(col("Reason", |o, _| json!(str_at(o, "status.reason"))));
        }
        "PersistentVolumeClaim" => {
            cols.push(col("Status", |o, _| json!(str_at(o, "status.phase"))));
            cols.push(col("Volume", |o, _| json!(str_at(o, "spec.volumeName"))));
            cols.push(col("Capacity", |o, _| json!(str_at(o, "status.capacity.storage"))));
            cols.push(col("Access Modes", |o, _| json!(access_modes(o, "status.accessModes"))));
            cols.push(col("StorageClass", |o, _| json!(str_at(o, "spec.storageClassName"))));
            cols.push(col("VolumeAttributesClass", |o, _| {
                json!(or_none(str_at(o, "spec.volumeAttributesClassName")))
            }));
        }
        "StorageClass" => {
            // Upstream marks the default class in the name cell.
            cols[0] = Column {
                format: "name",
                ..col("Name", |o, _| {
                    let name = object::name(o).unwrap_or_default();
                    let default = [
                        "storageclass.kubernetes.io/is-default-class",
                        "storageclass.beta.kubernetes.io/is-default-class",
                    ]
                    .iter()
                    .any(|k| {
                        path(o, "metadata.annotations").and_then(|a| a.get(*k))
                            == Some(&json!("true"))
                    });
                    json!(if default { format!("{name} (default)") } else { name.to_string() })
                })
            };
            cols.push(col("Provisioner", |o, _| json!(str_at(o, "provisioner"))));
            cols.push(col("ReclaimPolicy", |o, _| {
                json!(or_default(str_at(o, "reclaimPolicy"), "Delete"))
            }));
            cols.push(col("VolumeBindingMode", |o, _| {
                json!(or_default(str_at(o, "volumeBindingMode"), "Immediate"))
            }));
            cols.push(col("AllowVolumeExpansion", |o, _| {
                json!(path(o, "allowVolumeExpansion") == Some(&json!(true)))
            }));
        }
        "HorizontalPodAutoscaler" => {
            cols.push(col("Reference", |o, _| {
                json!(format!(
                    "{}/{}",
                    str_at(o, "spec.scaleTargetRef.kind"),
                    str_at(o, "spec.scaleTargetRef.name")
                ))
            }));
            cols.push(col("Targets", |_, _| json!("<unknown>")));
            cols.push(int_col("MinPods", |o, _| {
                json!(path(o, "spec.minReplicas").and_then(Value::as_i64).unwrap_or(1))
            }));
            cols.push(int_col("MaxPods", |o, _| json!(int_at(o, "spec.maxReplicas"))));
            cols.push(int_col("Replicas", |o, _| json!(int_at(o, "status.currentReplicas"))));
        }
        "Lease" => cols.push(col("Holder", |o, _| json!(str_at(o, "spec.holderIdentity")))),
        "PodTemplate" => {
            cols.push(col("Containers", |o, _| {
                json!(containers_field(o, "template.spec.containers", "name"))
            }));
            cols.push(col("Images", |o, _| {
                json!(containers_field(o, "template.spec.containers", "image"))
            }));
            cols.push(col("Pod Labels", |o, _| {
                let parts: Vec<String> = path(o, "template.metadata.labels")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter().filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?))).collect()
                    })
                    .unwrap_or_default();
                json!(parts.join(","))
            }));
            return cols;
        }
        "NetworkPolicy" => cols.push(col("Pod-Selector", |o, _| {
            let text = crate::kind_validation::label_selector_text(
                path(o, "spec.podSelector").unwrap_or(&Value::Null),
            );
            json!(if text.is_empty() { "<none>".to_owned() } else { text })
        })),
        "PodDisruptionBudget" => {
            cols.push(col("Min Available", |o, _| {
                json!(or_default(str_at(o, "spec.minAvailable"), "N/A"))
            }));
            cols.push(col("Max Unavailable", |o, _| {
                json!(or_default(str_at(o, "spec.maxUnavailable"), "N/A"))
            }));
            cols.push(int_col("Allowed Disruptions", |o, _| {
                json!(int_at(o, "status.disruptionsAllowed"))
            }));
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            cols.push(col("Role", |o, _| {
                json!(format!("{}/{}", str_at(o, "roleRef.kind"), str_at(o, "roleRef.name")))
            }));
            cols.push(age_col());
            cols.push(wide("Users", |o, _| json!(subjects(o, "User"))));
            cols.push(wide("Groups", |o, _| json!(subjects(o, "Group"))));
            cols.push(wide("ServiceAccounts", |o, _| json!(subjects(o, "ServiceAccount"))));
            return cols;
        }
        "Role" | "ClusterRole" | "LimitRange" | "CustomResourceDefinition" => {
            cols.push(Column {
                kind: "string",
                format: "date",
                ..col("Created At", |o, _| {
                    json!(object::meta_str(o, "creationTimestamp").unwrap_or_default())
                })
            });
            return cols;
        }
        "ControllerRevision" => {
            cols.push(col("Controller", |o, _| {
                let owner = path(o, "metadata.ownerReferences").and_then(Value::as_array).and_then(
                    |refs| {
                        refs.iter().find(|r| r["controller"] == json!(true)).map(|r| {
                            let kind = r["kind"].as_str().unwrap_or_default().to_lowercase();
                            let group = r["apiVersion"]
                                .as_str()
                                .and_then(|v| v.split_once('/'))
                                .map(|(g, _)| g)
                                .unwrap_or("");
                            let kind =
                                if group.is_empty() { kind } else { format!("{kind}.{group}") };
                            format!("{kind}/{}", r["name"].as_str().unwrap_or_default())
                        })
                    },
                );
                json!(owner.unwrap_or_else(|| "<none>".into()))
            }));
            cols.push(int_col("Revision", |o, _| json!(int_at(o, "revision"))));
        }
        "EndpointSlice" => {
            cols.push(col("AddressType", |o, _| json!(str_at(o, "addressType"))));
            cols.push(col("Ports", |o, _| {
                let ports: Vec<String> = path(o, "ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
                    .collect();
                json!(if ports.is_empty() { "<unset>".to_owned() } else { ports.join(",") })
            }));
            cols.push(col("Endpoints", |o, _| {
                let addrs: Vec<String> = path(o, "endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect();
                json!(match addrs.len() {
                    0 => "<unset>".to_owned(),
                    n if n > 3 => format!("{} + {} more...", addrs[..3].join(","), n - 3),
                    _ => addrs.join(","),
                })
            }));
        }
        "IngressClass" => {
            cols.push(col("Controller", |o, _| json!(str_at(o, "spec.controller"))));
            cols.push(col("Parameters", |o, _| json!(or_none(str_at(o, "spec.parameters.name")))));
        }
        "ResourceQuota" => {
            cols.push(age_col());
            cols.push(col("Request", |o, _| json!(quota_text(o, false))));
            cols.push(col("Limit", |o, _| json!(quota_text(o, true))));
            return cols;
        }
        "PriorityClass" => {
            cols.push(int_col("Value", |o, _| json!(int_at(o, "value"))));
            cols.push(col("Global-Default", |o, _| {
                json!(path(o, "globalDefault") == Some(&json!(true)))
            }));
            cols.push(age_col());
            cols.push(col("PreemptionPolicy", |o, _| {
                json!(or_default(str_at(o, "preemptionPolicy"), "PreemptLowerPriority"))
            }));
            return cols;
        }
        "Event" if info.group.is_empty() => {
            return vec![
                col("Last Seen", |o, now| {
                    let t = ["lastTimestamp", "eventTime", "firstTimestamp"].iter().find_map(|f| {
                        object::path(o, f).and_then(Value::as_str).and_then(parse_rfc3339)
                    });
                    json!(
                        t.map(|t| human_duration(now.duration_since(t).unwrap_or_default()))
                            .unwrap_or_else(|| "<unknown>".into())
                    )
                }),
                col("Type", |o, _| json!(str_at(o, "type"))),
                col("Reason", |o, _| json!(str_at(o, "reason"))),
                col("Object", |o, _| {
                    json!(format!(
                        "{}/{}",
                        str_at(o, "involvedObject.kind").to_lowercase(),
                        str_at(o, "involvedObject.name")
                    ))
                }),
                col("Message", |o, _| json!(str_at(o, "message"))),
            ];
        }
        "Service" => {
            cols.push(col("Type", |o, _| json!(or_none(str_at(o, "spec.type")))));
            cols.push(col("Cluster-IP", |o, _| json!(or_none(str_at(o, "spec.clusterIP")))));
            cols.push(col("External-IP", |o, _| {
                let ips = containers_field(o, "status.loadBalancer.ingress", "ip");
                json!(or_none(ips))
            }));
            cols.push(col("Port(s)", service_ports));
            cols.push(age_col());
            cols.push(wide("Selector", |o, _| json!(selector_text(o, "spec.selector"))));
            return cols;
        }
        "Node" => {
            cols.push(col("Status", |o, _| {
                let ready = path(o, "status.conditions").and_then(Value::as_array).and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("type") == Some(&json!("Ready")))
                        .map(|c| c.get("status") == Some(&json!("True")))
                });
                json!(match ready {
                    Some(true) => "Ready",
                    Some(false) => "NotReady",
                    None => "Unknown",
                })
            }));
            cols.push(col("Roles", |_, _| json!("<none>")));
            cols.push(age_col());
            cols.push(col("Version", |o, _| json!(str_at(o, "status.nodeInfo.kubeletVersion"))));
            cols.push(wide("Internal-IP", |o, _| json!(or_none(node_address(o, "InternalIP")))));
            cols.push(wide("External-IP", |o, _| json!(or_none(node_address(o, "ExternalIP")))));
            cols.push(wide("OS-Image", |o, _| json!(str_at(o, "status.nodeInfo.osImage"))));
            cols.push(wide("Kernel-Version", |o, _| {
                json!(str_at(o, "status.nodeInfo.kernelVersion"))
            }));
            cols.push(wide("Container-Runtime", |o, _| {
                json!(str_at(o, "status.nodeInfo.containerRuntimeVersion"))
            }));
            return cols;
        }
        "ComponentStatus" => {
            cols.push(col("Status", |o, _| {
                json!(if str_at(o, "conditions.0.status") == "True" {
                    "Healthy"
                } else {
                    "Unhealthy"
                })
            }));
            cols.push(col("Message", |o, _| json!(str_at(o, "conditions.0.message"))));
            cols.push(col("Error", |o, _| json!(str_at(o, "conditions.0.error"))));
            return cols;
        }
        _ => {}
    }
    cols.push(age_col());
    cols
}

fn column_definitions(cols: &[Column]) -> Value {
    json!(
        cols.iter()
            .map(|c| json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": "",
                "priority": c.priority,
            }))
            .collect::<Vec<_>>()
    )
}

fn row(cols: &[Column], obj: &Value, now: SystemTime, include_object: Option<&str>) -> Value {
    let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(obj, now)).collect();
    let mut row = json!({ "cells": cells });
    match include_object {
        Some("None") => {}
        Some("Object") => row["object"] = obj.clone(),
        _ => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })
        }
    }
    row
}

/// A Table of `objects`; `list_meta` becomes the table's metadata. Column definitions are
/// left out when `with_columns` is false (watch events after the first).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    now: SystemTime,
    include_object: Option<&str>,
    with_columns: bool,
) -> Value {
    let cols = columns(info);
    let rows: Vec<Value> = objects.iter().map(|o| row(&cols, o, now, include_object)).collect();
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "rows": rows,
    });
    t["columnDefinitions"] = if with_columns { column_definitions(&cols) } else { json!([]) };
    t
}
