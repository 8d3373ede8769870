use super::*;
use crate::endpointslice::compute::{
    ADDRESS_TYPE_IPV4, CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use crate::selection::LABEL_HEADLESS;
use crate::testutil::{pod, service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeSet;

fn web() -> Service {
    service("web", &[("http", 80, IntOrString::Int(8080))])
}

fn pods(n: usize) -> Vec<Arc<Pod>> {
    (0..n)
        .map(|i| {
            Arc::new(pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 200, i % 200), true, &[]))
        })
        .collect()
}

fn no_nodes(_: &str) -> Option<Option<String>> {
    Some(None)
}

fn plan_for(service: &Service, pods: &[Arc<Pod>], existing: &[Arc<EndpointSlice>]) -> Plan {
    let input = Input {
        service,
        pods,
        existing,
        max_endpoints_per_slice: 100,
        trigger_time: None,
        node_zone: &no_nodes,
    };
    let (plan, skipped) = reconcile(&input);
    assert!(skipped.is_empty());
    plan
}

/// The slices after the plan was written (new ones get names `gen-N`).
fn apply(existing: &[Arc<EndpointSlice>], plan: &Plan) -> Vec<Arc<EndpointSlice>> {
    let gone: BTreeSet<_> = plan
        .delete
        .iter()
        .chain(plan.update.iter())
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    let mut out: Vec<Arc<EndpointSlice>> = existing
        .iter()
        .filter(|s| !gone.contains(s.metadata.name.as_ref().unwrap()))
        .cloned()
        .collect();
    out.extend(plan.update.iter().cloned().map(Arc::new));
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        let n = existing.len() + i;
        s.metadata.name = Some(format!("gen-{n}"));
        s.metadata.uid = Some(format!("slice-uid-{n}"));
        s.metadata.resource_version = Some("1".into());
        out.push(Arc::new(s));
    }
    out
}

fn listed(slices: &[Arc<EndpointSlice>]) -> Vec<String> {
    let mut names: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| e.target_ref.as_ref().unwrap().name.clone().unwrap())
        .collect();
    names.sort();
    names
}

fn sizes(slices: &[Arc<EndpointSlice>]) -> Vec<usize> {
    let mut sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    sizes
}

#[test]
fn packs_250_pods_into_three_slices() {
    let mut svc = web();
    svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].app_protocol =
        Some("kubernetes.io/h2c".into());
    let all = pods(250);
    let plan = plan_for(&svc, &all, &[]);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (3, 0, 0));
    let slices = apply(&[], &plan);
    assert_eq!(sizes(&slices), [50, 100, 100]);
    let mut expected: Vec<String> = (0..250).map(|i| format!("p{i}")).collect();
    expected.sort();
    assert_eq!(listed(&slices), expected, "every pod exactly once");
    let s = &plan.create[0];
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(s.address_type, ADDRESS_TYPE_IPV4);
    let labels = s.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_SERVICE_NAME], "web");
    assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
    assert!(!labels.contains_key(LABEL_HEADLESS));
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", "uid-svc-web"));
    assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), Some(true)));
    let port = &s.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port, port.protocol.as_deref()),
        (Some("http"), Some(8080), Some("TCP"))
    );
    assert_eq!(port.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
    let e = &s.endpoints[0];
    let c = e.conditions.as_ref().unwrap();
    assert_eq!((c.ready, c.serving, c.terminating), (Some(true), Some(true), Some(false)));

    // Written and read back: nothing more to do.
    assert!(plan_for(&svc, &all, &slices).is_empty());
}

#[test]
fn changes_touch_as_few_slices_as_possible() {
    let svc = web();
    let all = pods(250);
    let slices = apply(&[], &plan_for(&svc, &all, &[]));

    // One pod gone: only its slice is written.
    let fewer: Vec<_> =
        all.iter().filter(|p| p.metadata.name.as_deref() != Some("p7")).cloned().collect();
    let plan = plan_for(&svc, &fewer, &slices);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    let after = apply(&slices, &plan);
    assert!(!listed(&after).contains(&"p7".to_owned()));
    assert_eq!(listed(&after).len(), 249);

    // 30 new pods go into the slice with room, not into a new slice.
    let more = pods(280);
    let plan = plan_for(&svc, &more, &slices);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    assert_eq!(plan.update[0].endpoints.len(), 80);

    // A readiness flip updates the endpoint in place.
    let mut flipped = all.clone();
    let mut p = (*flipped[3]).clone();
    p.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
    flipped[3] = Arc::new(p);
    let plan = plan_for(&svc, &flipped, &slices);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
    let e = plan.update[0]
        .endpoints
        .iter()
        .find(|e| e.target_ref.as_ref().unwrap().name.as_deref() == Some("p3"))
        .unwrap();
    let c = e.conditions.as_ref().unwrap();
    assert_eq!((c.ready, c.serving), (Some(false), Some(false)));

    // All pods gone: slices deleted but one, which is kept as the empty placeholder.
    let plan = plan_for(&svc, &[], &slices);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 2));
    assert!(plan.update[0].endpoints.is_empty());
    assert_eq!(plan.update[0].ports.as_deref(), Some(&[][..]));
    let placeholder = apply(&slices, &plan);
    assert_eq!(placeholder.len(), 1);
    assert!(plan_for(&svc, &[], &placeholder).is_empty(), "placeholder is kept as is");
    // Pods again: the placeholder is reused.
    let plan = plan_for(&svc, &pods(10), &placeholder);
    assert_eq!((plan.create.len(), plan.update.len(), plan.delete.len()), (0, 1, 0));
}

#[test]
fn duplicates_foreign_owners_and_empty_slices_are_cleaned_up() {
    let svc = web();
    let all = pods(3);
    let mut slices = apply(&[], &plan_for(&svc, &all, &[]));
    // A second slice listing p0 again, and a slice of an older Service with the same name.
    let mut dup = (*slices[0]).clone();
    dup.metadata.name = Some("dup".into());
    dup.metadata.uid = Some("dup-uid".into());
    dup.endpoints.truncate(1);
    let mut foreign = (*slices[0]).clone();
    foreign.metadata.name = Some("foreign".into());
    foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "old-service".into();
    slices.push(Arc::new(dup));
    slices.push(Arc::new(foreign));
    let plan = plan_for(&svc, &all, &slices);
    let deleted: BTreeSet<_> =
        plan.delete.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(deleted, ["dup".to_owned(), "foreign".to_owned()].into());
    assert!(plan.create.is_empty() && plan.update.is_empty());
    let after = apply(&slices, &plan);
    assert_eq!(listed(&after), ["p0", "p1", "p2"]);
}

#[test]
fn named_target_ports_group_pods_by_resolved_ports() {
    let svc = service("web", &[("http", 80, IntOrString::String("http".into()))]);
    let pods = vec![
        Arc::new(pod("a", "10.0.0.1", true, &[("http", 8080)])),
        Arc::new(pod("b", "10.0.0.2", true, &[("http", 9090)])),
        Arc::new(pod("c", "10.0.0.3", true, &[("http", 8080)])),
        Arc::new(pod("d", "10.0.0.4", true, &[("other", 7070)])),
    ];
    let plan = plan_for(&svc, &pods, &[]);
    let mut groups: Vec<(Vec<i32>, Vec<String>)> = plan
        .create
        .iter()
        .map(|s| {
            let ports = s.ports.iter().flatten().map(|p| p.port.unwrap()).collect();
            (ports, listed(&[Arc::new(s.clone())]))
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            (vec![], vec!["d".to_owned()]),
            (vec![8080], vec!["a".to_owned(), "c".to_owned()]),
            (vec![9090], vec!["b".to_owned()]),
        ]
    );
}

#[test]
fn zones_hostnames_headless_and_unknown_nodes() {
    let mut svc = service("db", &[]);
    svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
    svc.metadata.labels = Some([("team".into(), "data".into())].into());
    let mut a = pod("db-0", "10.0.0.1", true, &[]);
    a.metadata.labels = Some([("app".into(), "web".into())].into());
    let spec = a.spec.as_mut().unwrap();
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("db".into());
    spec.node_name = Some("n1".into());
    let mut b = pod("db-1", "10.0.0.2", false, &[]);
    b.spec.as_mut().unwrap().node_name = Some("gone".into());
    let pods = vec![Arc::new(a), Arc::new(b)];
    let zones = |node: &str| (node == "n1").then(|| Some("zone-a".to_owned()));
    let input = Input {
        service: &svc,
        pods: &pods,
        existing: &[],
        max_endpoints_per_slice: 100,
        trigger_time: Some("2025-01-01T00:00:00Z".parse().unwrap()),
        node_zone: &zones,
    };
    let (plan, skipped) = reconcile(&input);
    assert_eq!(skipped, [("db-1".to_owned(), "gone".to_owned())]);
    assert_eq!(plan.create.len(), 1);
    let slice = &plan.create[0];
    let labels = slice.metadata.labels.as_ref().unwrap();
    assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
    assert_eq!(labels.get("team").map(String::as_str), Some("data"));
    assert_eq!(slice.ports.as_deref(), Some(&[][..]));
    assert_eq!(slice.endpoints.len(), 1);
    let e = &slice.endpoints[0];
    assert_eq!(e.addresses, ["10.0.0.1"]);
    assert_eq!(e.zone.as_deref(), Some("zone-a"));
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    assert_eq!(e.hostname.as_deref(), Some("db-0"));
    let annotations = slice.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[ANNOTATION_LAST_CHANGE_TRIGGER_TIME], "2025-01-01T00:00:00Z");

    // With publishNotReadyAddresses the pod on the unknown node is listed anyway, ready.
    let mut publishing = svc.clone();
    publishing.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let input = Input { service: &publishing, ..input };
    let (plan, skipped) = reconcile(&input);
    assert!(skipped.is_empty());
    let e = plan.create[0].endpoints.iter().find(|e| e.addresses == ["10.0.0.2"]).unwrap();
    assert_eq!(e.conditions.as_ref().unwrap().ready, Some(true));
    assert_eq!(e.zone, None);
}

#[test]
fn terminating_pods_stay_listed_as_not_ready() {
    let svc = web();
    let mut p = pod("p", "10.0.0.1", true, &[]);
    p.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    let plan = plan_for(&svc, &[Arc::new(p)], &[]);
    let c = plan.create[0].endpoints[0].conditions.clone().unwrap();
    assert_eq!((c.ready, c.serving, c.terminating), (Some(false), Some(true), Some(true)));
}

#[test]
fn address_types_follow_ip_families() {
    let mut svc = web();
    svc.spec.as_mut().unwrap().ip_families = Some(vec!["IPv6".into()]);
    svc.spec.as_mut().unwrap().cluster_ip = Some("fd00::10".into());
    let pods =
        vec![Arc::new(pod("a", "fd00::1:2", true, &[])), Arc::new(pod("b", "10.0.0.2", true, &[]))];
    let mut old = (*apply(&[], &plan_for(&web(), &pods, &[]))[0]).clone();
    old.metadata.name = Some("v4".into());
    let plan = plan_for(&svc, &pods, &[Arc::new(old)]);
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].address_type, "IPv6");
    assert_eq!(plan.create[0].endpoints.len(), 1, "only the IPv6 pod");
    assert_eq!(plan.create[0].endpoints[0].addresses, ["fd00::1:2"]);
    assert_eq!(plan.delete.len(), 1, "the IPv4 slice goes");
}
