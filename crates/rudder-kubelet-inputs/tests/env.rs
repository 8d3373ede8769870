//! Container environments computed against an in-memory object source.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, Pod, PodSpec, ResourceFieldSelector, ResourceRequirements,
    Secret, SecretEnvSource, SecretKeySelector, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use rudder_kubelet_inputs::{
    EnvContext, EnvError, MemorySource, container_env, expand_command, services_for_namespace,
};

fn pod(containers: Vec<Container>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("web-1".into());
    pod.metadata.namespace = Some("shop".into());
    pod.metadata.uid = Some("uid-1".into());
    pod.metadata.labels = Some([("app".into(), "web".into()), ("tier".into(), "fe".into())].into());
    pod.metadata.annotations = Some([("note".into(), "hi".into())].into());
    pod.spec = Some(PodSpec {
        containers,
        node_name: Some("node-a".into()),
        service_account_name: Some("builder".into()),
        ..Default::default()
    });
    pod
}

fn container(env: Vec<EnvVar>, env_from: Vec<EnvFromSource>) -> Container {
    Container {
        name: "c".into(),
        env: Some(env),
        env_from: Some(env_from),
        resources: Some(ResourceRequirements {
            limits: Some([("memory".into(), Quantity("128Mi".into()))].into()),
            requests: Some([("cpu".into(), Quantity("100m".into()))].into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(v.into()), value_from: None }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar { name: name.into(), value: None, value_from: Some(source) }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            api_version: Some("v1".into()),
            field_path: path.into(),
        }),
        ..Default::default()
    }
}

fn cm_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: name.into(),
            key: key.into(),
            optional,
        }),
        ..Default::default()
    }
}

fn secret_key(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
    EnvVarSource {
        secret_key_ref: Some(SecretKeySelector { name: name.into(), key: key.into(), optional }),
        ..Default::default()
    }
}

fn config_map(ns: &str, name: &str, data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.namespace = Some(ns.into());
    cm.metadata.name = Some(name.into());
    cm.data = Some(data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect());
    cm
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let mut s = Secret::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.data =
        Some(data.iter().map(|(k, v)| ((*k).into(), ByteString(v.as_bytes().to_vec()))).collect());
    s
}

fn service(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, Option<&str>)]) -> Service {
    let mut s = Service::default();
    s.metadata.namespace = Some(ns.into());
    s.metadata.name = Some(name.into());
    s.spec = Some(ServiceSpec {
        cluster_ip: Some(ip.into()),
        ports: Some(
            ports
                .iter()
                .map(|(n, p, proto)| ServicePort {
                    name: n.map(str::to_owned),
                    port: *p,
                    protocol: proto.map(str::to_owned),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    });
    s
}

fn ctx() -> EnvContext {
    EnvContext {
        node_name: "node-a".into(),
        host_ips: vec!["192.168.1.10".into(), "fd00::10".into()],
        pod_ips: vec!["10.42.0.5".into(), "fd42::5".into()],
        services: vec![
            service("default", "kubernetes", "10.43.0.1", &[(Some("https"), 443, Some("TCP"))]),
            service("shop", "redis-main", "10.43.0.20", &[(None, 6379, None)]),
            service(
                "shop",
                "dns",
                "10.43.0.10",
                &[(Some("dns"), 53, Some("UDP")), (Some("dns-tcp"), 53, Some("TCP"))],
            ),
            service("shop", "headless", "None", &[(None, 80, None)]),
            service("other", "elsewhere", "10.43.0.99", &[(None, 80, None)]),
        ],
        allocatable: [
            ("cpu".into(), Quantity("4".into())),
            ("memory".into(), Quantity("8Gi".into())),
        ]
        .into(),
    }
}

fn as_map(vars: &[(String, String)]) -> BTreeMap<String, String> {
    let map: BTreeMap<String, String> = vars.iter().cloned().collect();
    assert_eq!(map.len(), vars.len(), "each name once: {vars:?}");
    map
}

#[tokio::test]
async fn service_links_follow_upstream_names() {
    let p = pod(vec![container(vec![], vec![])]);
    let env =
        container_env(&p, &p.spec.as_ref().unwrap().containers[0], &MemorySource::new(), &ctx())
            .await
            .unwrap();
    let m = as_map(&env.vars);
    let expected: BTreeMap<String, String> = [
        ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
        ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
        ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
        ("KUBERNETES_PORT_443_TCP_PORT", "443"),
        ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
        ("REDIS_MAIN_SERVICE_HOST", "10.43.0.20"),
        ("REDIS_MAIN_SERVICE_PORT", "6379"),
        ("REDIS_MAIN_PORT", "tcp://10.43.0.20:6379"),
        ("REDIS_MAIN_PORT_6379_TCP", "tcp://10.43.0.20:6379"),
        ("REDIS_MAIN_PORT_6379_TCP_PROTO", "tcp"),
        ("REDIS_MAIN_PORT_6379_TCP_PORT", "6379"),
        ("REDIS_MAIN_PORT_6379_TCP_ADDR", "10.43.0.20"),
        ("DNS_SERVICE_HOST", "10.43.0.10"),
        ("DNS_SERVICE_PORT", "53"),
        ("DNS_SERVICE_PORT_DNS", "53"),
        ("DNS_SERVICE_PORT_DNS_TCP", "53"),
        ("DNS_PORT", "udp://10.43.0.10:53"),
        ("DNS_PORT_53_UDP", "udp://10.43.0.10:53"),
        ("DNS_PORT_53_UDP_PROTO", "udp"),
        ("DNS_PORT_53_UDP_PORT", "53"),
        ("DNS_PORT_53_UDP_ADDR", "10.43.0.10"),
        ("DNS_PORT_53_TCP", "tcp://10.43.0.10:53"),
        ("DNS_PORT_53_TCP_PROTO", "tcp"),
        ("DNS_PORT_53_TCP_PORT", "53"),
        ("DNS_PORT_53_TCP_ADDR", "10.43.0.10"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(m, expected);

    // enableServiceLinks: false keeps only the master service.
    let mut p2 = p.clone();
    p2.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env =
        container_env(&p2, &p2.spec.as_ref().unwrap().containers[0], &MemorySource::new(), &ctx())
            .await
            .unwrap();
    assert!(env.vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")), "{:?}", env.vars);
    assert_eq!(env.vars.len(), 8);
}

#[tokio::test]
async fn env_from_env_and_expansion() {
    let source = MemorySource::new();
    source.put_config_map(config_map(
        "shop",
        "cfg",
        &[("MODE", "fast"), ("LEVEL", "3"), ("bad=key", "x")],
    ));
    source.put_secret(secret("shop", "creds", &[("PASSWORD", "s3cret"), ("USER", "bob")]));
    let c = container(
        vec![
            value("LEVEL", "override-$(MODE)"),
            value("URL", "redis://$(REDIS_MAIN_SERVICE_HOST):$(REDIS_MAIN_SERVICE_PORT)/$(LATER)"),
            value("ESCAPED", "$$(MODE) $(MODE)"),
            value("LATER", "late"),
            value("EMPTY", ""),
            from("NODE", field("spec.nodeName")),
            from("FROM_CM", cm_key("cfg", "MODE", None)),
            from("OPT_KEY", cm_key("cfg", "nope", Some(true))),
            from("OPT_CM", cm_key("missing", "k", Some(true))),
            from("PW", secret_key("creds", "PASSWORD", None)),
            value("USES_PW", "pw=$(PW)"),
        ],
        vec![
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource { name: "cfg".into(), optional: None }),
                prefix: None,
                secret_ref: None,
            },
            EnvFromSource {
                config_map_ref: None,
                prefix: Some("DB_".into()),
                secret_ref: Some(SecretEnvSource { name: "creds".into(), optional: None }),
            },
            EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "absent".into(),
                    optional: Some(true),
                }),
                prefix: None,
                secret_ref: None,
            },
        ],
    );
    let p = pod(vec![c.clone()]);
    let env = container_env(&p, &c, &source, &ctx()).await.unwrap();
    let m = as_map(&env.vars);
    assert_eq!(m["MODE"], "fast");
    assert_eq!(m["LEVEL"], "override-fast");
    assert_eq!(m["DB_PASSWORD"], "s3cret");
    assert_eq!(m["DB_USER"], "bob");
    assert_eq!(m["URL"], "redis://10.43.0.20:6379/$(LATER)");
    assert_eq!(m["ESCAPED"], "$(MODE) fast");
    assert_eq!(m["LATER"], "late");
    assert_eq!(m["EMPTY"], "");
    assert_eq!(m["NODE"], "node-a");
    assert_eq!(m["FROM_CM"], "fast");
    assert_eq!(m["PW"], "s3cret");
    assert_eq!(m["USES_PW"], "pw=s3cret");
    assert!(!m.contains_key("OPT_KEY") && !m.contains_key("OPT_CM"));
    assert!(!m.contains_key("bad=key"));
    // envFrom first, then env in order (an override keeps its place), then services.
    let names: Vec<&str> = env.vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(&names[..5], &["LEVEL", "MODE", "DB_PASSWORD", "DB_USER", "URL"]);
    assert!(
        names.iter().position(|n| *n == "USES_PW")
            < names.iter().position(|n| n.starts_with("KUBERNETES"))
    );
    assert_eq!(env.skipped.len(), 1);
    assert_eq!(
        env.skipped[0].event_message(),
        "Keys [bad=key] from the EnvFrom configMap shop/cfg were skipped since they are considered \
         invalid environment variable names."
    );
}

#[tokio::test]
async fn missing_required_inputs_are_upstream_errors() {
    let source = MemorySource::new();
    source.put_config_map(config_map("shop", "cm", &[("A", "1")]));
    source.put_secret(secret("shop", "s", &[("A", "1")]));
    let cases: Vec<(Container, &str)> = vec![
        (
            container(vec![from("X", cm_key("cm", "FOO", None))], vec![]),
            "couldn't find key FOO in ConfigMap shop/cm",
        ),
        (
            container(vec![from("X", cm_key("nope", "FOO", None))], vec![]),
            "configmap \"nope\" not found",
        ),
        (
            container(vec![from("X", secret_key("s", "FOO", Some(false)))], vec![]),
            "couldn't find key FOO in Secret shop/s",
        ),
        (
            container(vec![from("X", secret_key("nope", "FOO", None))], vec![]),
            "secret \"nope\" not found",
        ),
        (
            container(
                vec![],
                vec![EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "gone".into(),
                        optional: None,
                    }),
                    prefix: None,
                    secret_ref: None,
                }],
            ),
            "configmap \"gone\" not found",
        ),
        (
            container(vec![from("X", field("spec.hostname"))], vec![]),
            "field label not supported: spec.hostname",
        ),
    ];
    for (c, message) in cases {
        let p = pod(vec![c.clone()]);
        let e = container_env(&p, &c, &source, &ctx()).await.unwrap_err();
        assert_eq!(e.to_string(), message);
    }
    // A failing read is not "not found".
    source.fail_with(Some("connection refused"));
    let c = container(vec![from("X", cm_key("cm", "A", Some(true)))], vec![]);
    let p = pod(vec![c.clone()]);
    assert!(matches!(container_env(&p, &c, &source, &ctx()).await, Err(EnvError::Source(_))));
}

#[tokio::test]
async fn field_and_resource_refs() {
    let resource = |r: &str, d: Option<&str>| EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector {
            container_name: None,
            divisor: d.map(|d| Quantity(d.into())),
            resource: r.into(),
        }),
        ..Default::default()
    };
    let c = container(
        vec![
            from("NAME", field("metadata.name")),
            from("NS", field("metadata.namespace")),
            from("UID", field("metadata.uid")),
            from("LABELS", field("metadata.labels")),
            from("APP", field("metadata.labels['app']")),
            from("NOTE", field("metadata.annotations['note']")),
            from("SA", field("spec.serviceAccountName")),
            from("HOST_IP", field("status.hostIP")),
            from("HOST_IPS", field("status.hostIPs")),
            from("POD_IP", field("status.podIP")),
            from("POD_IPS", field("status.podIPs")),
            from("MEM_LIMIT_MI", resource("limits.memory", Some("1Mi"))),
            from("CPU_LIMIT", resource("limits.cpu", None)),
            from("CPU_REQ_M", resource("requests.cpu", Some("1m"))),
            from("MEM_REQ", resource("requests.memory", None)),
        ],
        vec![],
    );
    let p = pod(vec![c.clone()]);
    let env = container_env(&p, &c, &MemorySource::new(), &ctx()).await.unwrap();
    let m = as_map(&env.vars);
    assert_eq!(m["NAME"], "web-1");
    assert_eq!(m["NS"], "shop");
    assert_eq!(m["UID"], "uid-1");
    assert_eq!(m["LABELS"], "app=\"web\"\ntier=\"fe\"");
    assert_eq!(m["APP"], "web");
    assert_eq!(m["NOTE"], "hi");
    assert_eq!(m["SA"], "builder");
    assert_eq!(m["HOST_IP"], "192.168.1.10");
    assert_eq!(m["HOST_IPS"], "192.168.1.10,fd00::10");
    assert_eq!(m["POD_IP"], "10.42.0.5");
    assert_eq!(m["POD_IPS"], "10.42.0.5,fd42::5");
    assert_eq!(m["MEM_LIMIT_MI"], "128");
    assert_eq!(m["CPU_LIMIT"], "4", "unset limit: node allocatable");
    assert_eq!(m["CPU_REQ_M"], "100");
    assert_eq!(m["MEM_REQ"], "0");
}

#[test]
fn command_expansion_uses_final_env() {
    let env =
        vec![("GREETING".to_owned(), "hello".to_owned()), ("WHO".to_owned(), "world".to_owned())];
    let args: Vec<String> = ["echo", "$(GREETING) $(WHO)", "$$(WHO)", "$(NOPE)"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(expand_command(&args, &env), vec!["echo", "hello world", "$(WHO)", "$(NOPE)"]);
}

#[tokio::test]
async fn services_for_namespace_adds_only_the_master_service_from_default() {
    let source = MemorySource::new();
    for s in ctx().services {
        source.put_service(s);
    }
    source.put_service(service("default", "other", "10.43.0.50", &[(None, 80, None)]));
    let mut names: Vec<String> = services_for_namespace(&source, "shop")
        .await
        .unwrap()
        .into_iter()
        .map(|s| format!("{}/{}", s.metadata.namespace.unwrap(), s.metadata.name.unwrap()))
        .collect();
    names.sort();
    assert_eq!(names, ["default/kubernetes", "shop/dns", "shop/headless", "shop/redis-main"]);
}
