use super::*;
use crate::testutil::{pod, service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    list.iter().flatten().map(|a| a.ip.as_str()).collect()
}

fn port_numbers(subset: &EndpointSubset) -> Vec<i32> {
    subset.ports.iter().flatten().map(|p| p.port).collect()
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

#[test]
fn ready_and_not_ready_pods_share_a_subset() {
    let mut svc = service("web", &[("http", 80, IntOrString::Int(8080))]);
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].app_protocol =
        Some("kubernetes.io/h2c".into());
    let pods = arcs(vec![
        pod("c", "10.0.0.3", true, &[]),
        pod("a", "10.0.0.1", true, &[]),
        pod("b", "10.0.0.2", false, &[]),
        pod("no-ip", "", true, &[]),
    ]);
    let subsets = desired_subsets(&svc, &pods);
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.3"], "sorted by IP");
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.2"]);
    let port = &subsets[0].ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), 8080, Some("TCP"))
    );
    assert_eq!(port.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
    let a = &subsets[0].addresses.as_ref().unwrap()[0];
    let target = a.target_ref.as_ref().unwrap();
    assert_eq!(target.kind.as_deref(), Some("Pod"));
    assert_eq!(target.name.as_deref(), Some("a"));
    assert_eq!(target.uid.as_deref(), Some("uid-a"));
    assert_eq!(target.resource_version, None, "upstream leaves the pod's resourceVersion out");
}

#[test]
fn named_target_ports_split_pods_by_resolved_port() {
    let svc = service(
        "web",
        &[("http", 80, IntOrString::String("http".into())), ("admin", 81, IntOrString::Int(9000))],
    );
    let pods = arcs(vec![
        pod("a", "10.0.0.1", true, &[("http", 8080)]),
        pod("b", "10.0.0.2", true, &[("http", 9090)]),
        pod("c", "10.0.0.3", false, &[("http", 8080)]),
        pod("d", "10.0.0.4", true, &[("metrics", 8080)]),
    ]);
    let subsets = desired_subsets(&svc, &pods);
    let mut seen: Vec<(Vec<&str>, Vec<&str>, Vec<i32>)> = subsets
        .iter()
        .map(|s| (ips(&s.addresses), ips(&s.not_ready_addresses), port_numbers(s)))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            // Ports offered by the same addresses share a subset; here no two do.
            (vec!["10.0.0.1"], vec!["10.0.0.3"], vec![8080]),
            (vec!["10.0.0.1", "10.0.0.2", "10.0.0.4"], vec!["10.0.0.3"], vec![9000]),
            (vec!["10.0.0.2"], vec![], vec![9090]),
        ]
    );
}

#[test]
fn headless_services_list_hostnames_and_may_have_no_ports() {
    let mut svc = service("db", &[]);
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    let mut a = pod("db-0", "10.0.0.1", true, &[]);
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("db".into());
    let mut b = pod("other", "10.0.0.2", true, &[]);
    b.spec.as_mut().unwrap().hostname = Some("other".into());
    b.spec.as_mut().unwrap().subdomain = Some("elsewhere".into());
    let subsets = desired_subsets(&svc, &arcs(vec![a, b]));
    assert_eq!(subsets.len(), 1);
    assert_eq!(subsets[0].ports, None);
    let addresses = subsets[0].addresses.as_ref().unwrap();
    assert_eq!(addresses[0].hostname.as_deref(), Some("db-0"));
    assert_eq!(addresses[1].hostname, None, "subdomain names another Service");
    let labels = desired_labels(&svc);
    assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(CONTROLLER_NAME));

    let ported = service("web", &[]);
    assert!(desired_subsets(&ported, &arcs(vec![pod("a", "10.0.0.1", true, &[])])).is_empty());
    assert!(!desired_labels(&ported).contains_key(LABEL_HEADLESS));
}

#[test]
fn publish_not_ready_addresses_and_terminating_pods() {
    let mut svc = service("web", &[("", 80, IntOrString::Int(80))]);
    let mut leaving = pod("leaving", "10.0.0.9", true, &[]);
    leaving.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    let pods = arcs(vec![pod("a", "10.0.0.1", false, &[]), leaving]);
    let subsets = desired_subsets(&svc, &pods);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.1"]);
    assert_eq!(ips(&subsets[0].addresses), Vec::<&str>::new(), "terminating pods are left out");
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let subsets = desired_subsets(&svc, &pods);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.9"]);
    assert_eq!(subsets[0].ports.as_ref().unwrap()[0].name, None, "unnamed port");
}

#[test]
fn repack_merges_ports_and_not_ready_wins() {
    let address = |ip: &str| EndpointAddress { ip: ip.into(), ..EndpointAddress::default() };
    let port =
        |n: i32| EndpointPort { port: n, protocol: Some("TCP".into()), ..EndpointPort::default() };
    let subsets = vec![
        EndpointSubset {
            addresses: Some(vec![address("10.0.0.1")]),
            ports: Some(vec![port(80)]),
            ..Default::default()
        },
        EndpointSubset {
            addresses: Some(vec![address("10.0.0.1")]),
            ports: Some(vec![port(81)]),
            ..Default::default()
        },
        EndpointSubset {
            not_ready_addresses: Some(vec![address("10.0.0.1")]),
            ports: Some(vec![port(82)]),
            ..Default::default()
        },
        EndpointSubset {
            addresses: Some(vec![address("10.0.0.1")]),
            ports: Some(vec![port(82)]),
            ..Default::default()
        },
    ];
    let packed = repack(&subsets);
    assert_eq!(packed.len(), 2);
    let both = packed.iter().find(|s| s.addresses.is_some()).unwrap();
    assert_eq!(port_numbers(both), [80, 81]);
    let not_ready = packed.iter().find(|s| s.not_ready_addresses.is_some()).unwrap();
    assert_eq!(port_numbers(not_ready), [82]);
    assert_eq!(repack(&packed), packed, "canonical form is stable");
}

#[test]
fn truncation_keeps_ready_addresses_first() {
    let svc = service("web", &[("", 80, IntOrString::Int(80))]);
    let many = |n: usize, ready: usize| -> Vec<Arc<Pod>> {
        (0..n)
            .map(|i| {
                let ip = format!("10.1.{}.{}", i / 250, i % 250);
                Arc::new(pod(&format!("p{i}"), &ip, i < ready, &[]))
            })
            .collect()
    };
    let mut subsets = desired_subsets(&svc, &many(1200, 1200));
    assert!(truncate(&mut subsets, MAX_CAPACITY));
    assert_eq!(count(&subsets), (1000, 0));
    let mut subsets = desired_subsets(&svc, &many(1200, 900));
    assert!(truncate(&mut subsets, MAX_CAPACITY));
    assert_eq!(count(&subsets), (900, 100));
    let mut subsets = desired_subsets(&svc, &many(1000, 500));
    assert!(!truncate(&mut subsets, MAX_CAPACITY));

    let endpoints = plan(&svc, &many(1001, 1001), None, None).unwrap();
    let annotations = endpoints.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations.get(ANNOTATION_OVER_CAPACITY).map(String::as_str), Some("truncated"));
    assert_eq!(plan(&svc, &many(1001, 1001), Some(&endpoints), None), None, "no rewrite loop");
}

#[test]
fn plan_writes_only_what_changed() {
    let mut svc = service("web", &[("", 80, IntOrString::Int(80))]);
    svc.metadata.labels = Some([("team".into(), "a".into())].into());
    let pods = arcs(vec![pod("a", "10.0.0.1", true, &[]), pod("b", "10.0.0.2", true, &[])]);
    let t: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
    let created = plan(&svc, &pods, None, Some(t)).expect("created");
    assert_eq!(created.metadata.name.as_deref(), Some("web"));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        created.metadata.labels.as_ref().unwrap().get("team").map(String::as_str),
        Some("a")
    );
    assert_eq!(
        created.metadata.annotations.as_ref().unwrap()[ANNOTATION_LAST_CHANGE_TRIGGER_TIME],
        "2025-01-01T00:00:00Z"
    );
    // Stored with the pods' resourceVersions and in another order: still equal.
    let mut stored = created.clone();
    stored.metadata.resource_version = Some("7".into());
    let subset = &mut stored.subsets.as_mut().unwrap()[0];
    let addresses = subset.addresses.as_mut().unwrap();
    addresses.reverse();
    addresses[0].target_ref.as_mut().unwrap().resource_version = Some("3".into());
    assert_eq!(plan(&svc, &pods, Some(&stored), Some(t)), None);
    // A readiness flip is written, as an update of the stored object.
    let flipped = arcs(vec![pod("a", "10.0.0.1", true, &[]), pod("b", "10.0.0.2", false, &[])]);
    let update = plan(&svc, &flipped, Some(&stored), None).expect("update");
    assert_eq!(update.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(ips(&update.subsets.as_ref().unwrap()[0].not_ready_addresses), ["10.0.0.2"]);
    assert!(update.metadata.annotations.is_none(), "no trigger time: annotation removed");
    // A label change on the Service is written too.
    svc.metadata.labels = Some([("team".into(), "b".into())].into());
    assert!(plan(&svc, &pods, Some(&stored), None).is_some());
    // No pods: no subsets at all.
    let empty = plan(&svc, &[], None, None).unwrap();
    assert_eq!(empty.subsets, None);
}
