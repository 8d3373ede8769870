use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentSpec, DeploymentStrategy, ReplicaSetSpec, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

fn pod_template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

pub(crate) fn deployment(
    replicas: i32,
    surge: IntOrString,
    unavailable: IntOrString,
) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            template: pod_template("nginx:1"),
            strategy: Some(DeploymentStrategy {
                type_: Some(ROLLING_UPDATE.into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn rs(name: &str, created: i64, replicas: i32, revision: Option<&str>) -> Arc<ReplicaSet> {
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(
                Timestamp::from_second(1_700_000_000 + created).unwrap(),
            )),
            annotations: revision
                .map(|r| BTreeMap::from([(REVISION_ANNOTATION.to_owned(), r.to_owned())])),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            template: Some(pod_template(name)),
            ..Default::default()
        }),
        status: None,
    })
}

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

#[test]
fn fnv_and_safe_encoding() {
    assert_eq!(fnv32a(b""), 0x811c_9dc5);
    assert_eq!(fnv32a(b"a"), 0xe40c_292c);
    assert_eq!(fnv32a(b"foobar"), 0xbf9c_f968);
    // Every digit maps to a fixed character of the alphabet ('0' is 48: 48 % 27 = 21 -> '4').
    assert_eq!(safe_encode("0123456789"), "456789bcdf");
}

#[test]
fn template_hash_and_names() {
    let t = pod_template("nginx:1");
    let h = compute_hash(&t, None);
    assert!(!h.is_empty() && h.len() <= 10, "{h}");
    assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
    assert_eq!(h, compute_hash(&t.clone(), None), "stable");
    assert_ne!(h, compute_hash(&pod_template("nginx:2"), None), "template changes the hash");
    assert_ne!(h, compute_hash(&t, Some(1)), "collisionCount changes the hash");
    assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
}

#[test]
fn templates_compare_without_the_hash_label_and_empty_values() {
    let a = pod_template("nginx:1");
    let mut b = a.clone();
    b.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH_LABEL.into(), "x".into());
    b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
    b.spec.as_mut().unwrap().volumes = Some(vec![]);
    assert!(equal_ignore_hash(&a, &b));
    assert!(!equal_ignore_hash(&a, &pod_template("nginx:2")));
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let cases = [
        // (desired, surge, unavailable) -> (surge, unavailable)
        (10, pct("25%"), pct("25%"), (3, 2)),
        (4, pct("25%"), pct("25%"), (1, 1)),
        (3, pct("25%"), pct("25%"), (1, 0)),
        (1, pct("25%"), pct("25%"), (1, 0)),
        (1, pct("0%"), pct("1%"), (0, 1)),
        (2, pct("1%"), pct("25%"), (1, 0)),
        (5, IntOrString::Int(0), IntOrString::Int(0), (0, 1)),
        (5, IntOrString::Int(2), pct("30%"), (2, 1)),
        (0, pct("25%"), pct("25%"), (0, 1)),
        (100, pct("100%"), pct("100%"), (100, 100)),
    ];
    for (desired, surge, unavailable, want) in cases {
        assert_eq!(
            resolve_fenceposts(Some(&surge), Some(&unavailable), desired).unwrap(),
            want,
            "{desired} {surge:?} {unavailable:?}"
        );
    }
    assert!(resolve_fenceposts(Some(&pct("x")), None, 3).is_err());
    let d = deployment(3, pct("25%"), pct("25%"));
    assert_eq!((max_surge(&d), max_unavailable(&d)), (1, 0));
    let d = deployment(2, IntOrString::Int(0), IntOrString::Int(5));
    assert_eq!(max_unavailable(&d), 2, "capped at replicas");
    let mut recreate = deployment(3, pct("25%"), pct("25%"));
    recreate.spec.as_mut().unwrap().strategy.as_mut().unwrap().type_ = Some(RECREATE.into());
    assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
}

#[test]
fn new_replica_set_annotations_and_revision_history() {
    let mut d = deployment(3, pct("25%"), pct("25%"));
    d.metadata.annotations = Some(labels(&[
        ("kubernetes.io/change-cause", "v2"),
        (LAST_APPLIED_ANNOTATION, "{}"),
        (REVISION_ANNOTATION, "7"),
    ]));
    // A new ReplicaSet: revision, change-cause, replicas annotations; skipped ones left out.
    let mut new = (*rs("web-new", 0, 0, None)).clone();
    assert!(set_new_replica_set_annotations(&d, &mut new, 4, false, MAX_REVISION_HISTORY_CHARS));
    let a = new.metadata.annotations.clone().unwrap();
    assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("4"));
    assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
    assert_eq!(a.get(DESIRED_REPLICAS_ANNOTATION).map(String::as_str), Some("3"));
    assert_eq!(a.get(MAX_REPLICAS_ANNOTATION).map(String::as_str), Some("4"));
    assert!(!a.contains_key(LAST_APPLIED_ANNOTATION));
    assert!(!a.contains_key(REVISION_HISTORY_ANNOTATION));
    // Nothing more to change.
    assert!(!set_new_replica_set_annotations(&d, &mut new, 4, true, MAX_REVISION_HISTORY_CHARS));
    // A lower new revision never lowers it.
    assert!(!set_new_replica_set_annotations(&d, &mut new, 2, true, MAX_REVISION_HISTORY_CHARS));

    // An old ReplicaSet brought back (rollback) gets the next revision and keeps its history.
    let mut old = (*rs("web-old", 0, 0, Some("1"))).clone();
    assert!(set_new_replica_set_annotations(&d, &mut old, 5, true, MAX_REVISION_HISTORY_CHARS));
    let a = old.metadata.annotations.clone().unwrap();
    assert_eq!(a.get(REVISION_ANNOTATION).map(String::as_str), Some("5"));
    assert_eq!(a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str), Some("1"));
    assert!(set_new_replica_set_annotations(&d, &mut old, 8, true, MAX_REVISION_HISTORY_CHARS));
    let a = old.metadata.annotations.clone().unwrap();
    assert_eq!(a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str), Some("1,5"));
    // The history is bounded: the oldest entries go first.
    assert!(set_new_replica_set_annotations(&d, &mut old, 9, true, 4));
    let a = old.metadata.annotations.clone().unwrap();
    assert_eq!(a.get(REVISION_HISTORY_ANNOTATION).map(String::as_str), Some("5,8"));
}

#[test]
fn revisions_orderings_and_new_old_sets() {
    let a = rs("a", 0, 0, Some("1"));
    let b = rs("b", 10, 2, Some("3"));
    let c = rs("c", 20, 2, Some("x"));
    let all = vec![c.clone(), a.clone(), b.clone()];
    assert_eq!(max_revision(&all), 3);
    assert_eq!(revision(&c.metadata), None);
    assert_eq!(revision(&ObjectMeta::default()), Some(0));

    let mut v = all.clone();
    v.sort_by(|x, y| by_size_newer(x, y));
    assert_eq!(
        v.iter().map(|r| r.metadata.name.clone().unwrap()).collect::<Vec<_>>(),
        ["c", "b", "a"]
    );
    v.sort_by(|x, y| by_size_older(x, y));
    assert_eq!(
        v.iter().map(|r| r.metadata.name.clone().unwrap()).collect::<Vec<_>>(),
        ["b", "c", "a"]
    );
    v.sort_by(|x, y| by_revision(x, y));
    assert_eq!(v[2].metadata.name.as_deref(), Some("b"));
    assert_eq!(active(&all).len(), 2);

    let mut d = deployment(3, pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().template = pod_template("b");
    assert_eq!(find_new_replica_set(&d, &all).unwrap().metadata.name.as_deref(), Some("b"));
    let old = find_old_replica_sets(&d, &all);
    assert_eq!(old.len(), 2);
    d.spec.as_mut().unwrap().template = pod_template("zzz");
    assert!(find_new_replica_set(&d, &all).is_none());
    assert_eq!(find_old_replica_sets(&d, &all).len(), 3);
}
