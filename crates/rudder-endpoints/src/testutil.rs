//! Builders for the unit tests: pods labelled `app=web` in `default`, and a Service
//! selecting them.

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service, ServicePort,
    ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A Running pod with `ip` (none when empty), Ready as given, and named container ports.
pub fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Pod {
    let mut p = Pod::default();
    p.metadata.namespace = Some("default".into());
    p.metadata.name = Some(name.into());
    p.metadata.uid = Some(format!("uid-{name}"));
    p.metadata.resource_version = Some("1".into());
    p.metadata.labels = Some([("app".into(), "web".into())].into());
    p.spec = Some(PodSpec {
        containers: vec![Container {
            name: "c".into(),
            image: Some("busybox".into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, port)| ContainerPort {
                        name: Some((*n).into()),
                        container_port: *port,
                        protocol: Some("TCP".into()),
                        ..ContainerPort::default()
                    })
                    .collect(),
            ),
            ..Container::default()
        }],
        ..PodSpec::default()
    });
    p.status = Some(PodStatus {
        phase: Some("Running".into()),
        pod_ip: (!ip.is_empty()).then(|| ip.into()),
        pod_ips: (!ip.is_empty()).then(|| vec![PodIP { ip: ip.into() }]),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if ready { "True" } else { "False" }.into(),
            ..PodCondition::default()
        }]),
        ..PodStatus::default()
    });
    p
}

/// A ClusterIP Service selecting `app=web` with `(name, port, targetPort)` ports.
pub fn service(name: &str, ports: &[(&str, i32, IntOrString)]) -> Service {
    let mut s = Service::default();
    s.metadata.namespace = Some("default".into());
    s.metadata.name = Some(name.into());
    s.metadata.uid = Some(format!("uid-svc-{name}"));
    s.spec = Some(ServiceSpec {
        selector: Some([("app".into(), "web".into())].into()),
        cluster_ip: Some("10.43.0.10".into()),
        ip_families: Some(vec!["IPv4".into()]),
        ports: Some(
            ports
                .iter()
                .map(|(n, port, target)| ServicePort {
                    name: (!n.is_empty()).then(|| (*n).into()),
                    port: *port,
                    protocol: Some("TCP".into()),
                    target_port: Some(target.clone()),
                    ..ServicePort::default()
                })
                .collect(),
        ),
        ..ServiceSpec::default()
    });
    s
}
