//! The decisions of one sync, without a server.

use std::collections::HashMap;

use serde_json::json;

use super::*;
use crate::testing::set;

const NOW: i64 = 2_000_000_000;

#[derive(Clone, Copy, PartialEq)]
enum State {
    Ready,
    NotReady,
    Pending,
    Failed,
    Terminating,
}

fn pod(name: &str, revision: &str, state: State) -> Arc<Pod> {
    let (phase, ready) = match state {
        State::Ready | State::Terminating => ("Running", "True"),
        State::NotReady => ("Running", "False"),
        State::Pending => ("Pending", "False"),
        State::Failed => ("Failed", "False"),
    };
    let ordinal = name.rsplit_once('-').unwrap().1;
    let mut p: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "labels": {
                "app": "web", "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": ordinal
            }
        },
        "spec": {
            "containers": [{ "name": "c", "image": "i" }],
            "volumes": [{ "name": "www", "persistentVolumeClaim": { "claimName": format!("www-{name}") } }]
        },
        "status": {
            "phase": phase,
            "conditions": [{ "type": "Ready", "status": ready, "lastTransitionTime": "2020-01-01T00:00:00Z" }]
        }
    }))
    .unwrap();
    if state == State::Terminating {
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    }
    Arc::new(p)
}

fn claim(name: &str) -> Arc<PersistentVolumeClaim> {
    Arc::new(
        serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "ns" } })).unwrap(),
    )
}

/// Plans for `set` with `pods` at revision r1 -> r2 and these claims (all of the pods' by default).
fn plan_for(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    claims: Option<Vec<Arc<PersistentVolumeClaim>>>,
) -> Plan {
    let claims: HashMap<String, Arc<PersistentVolumeClaim>> = claims
        .unwrap_or_else(|| (0..10).map(|i| claim(&format!("www-web-{i}"))).collect())
        .into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect();
    let lookup = move |name: &str| claims.get(name).cloned();
    let input = Input {
        set,
        current_set: set,
        update_set: set,
        current_revision: "r1",
        update_revision: "r2",
        collision_count: 0,
        pods,
        claim: &lookup,
        now: Timestamp::from_second(NOW).unwrap(),
        // The gate is on only for the sets that use maxUnavailable.
        max_unavailable: set
            .spec
            .as_ref()
            .and_then(|s| {
                s.update_strategy.as_ref()?.rolling_update.as_ref()?.max_unavailable.as_ref()
            })
            .is_some(),
    };
    plan(&input).unwrap()
}

/// The actions of a plan as short strings.
fn describe(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::CreatePod { pod, claims } => {
                let claims: Vec<&str> =
                    claims.iter().map(|c| c.metadata.name.as_deref().unwrap()).collect();
                format!("create {} {} {claims:?}", name_of(pod), pod_revision(pod))
            }
            Action::CreateClaims { pod, claims } => format!("claims {pod} {}", claims.len()),
            Action::DeletePod { pod, reason } => format!("delete {} {reason:?}", name_of(pod)),
            Action::UpdatePod { pod } => format!("update {}", name_of(pod)),
            Action::UpdateClaim { claim, .. } => {
                let owners: Vec<&str> = claim
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .map(|r| r.kind.as_str())
                    .collect();
                format!("own {} {owners:?}", claim.metadata.name.as_deref().unwrap())
            }
            Action::Wait { message } => format!("wait {message}"),
        })
        .collect()
}

fn replicas_of(p: &Plan) -> Vec<String> {
    describe(&p.replicas.concat())
}

fn parallel() -> serde_json::Value {
    json!({ "spec": { "podManagementPolicy": "Parallel" } })
}

#[test]
fn ordered_ready_makes_one_pod_at_a_time_claims_first() {
    let s = set(json!({}));
    let p = plan_for(&s, &[], Some(vec![]));
    assert!(p.monotonic);
    assert_eq!(replicas_of(&p), vec![r#"create web-0 r2 ["www-web-0"]"#]);
    assert!(p.scale_down.is_empty() && p.update.is_empty());

    // web-0 exists but is not ready yet: nothing more.
    let p = plan_for(&s, &[pod("web-0", "r2", State::NotReady)], None);
    assert!(replicas_of(&p).is_empty());
    // Pending and its claim missing: the claim is made, nothing else.
    let p = plan_for(&s, &[pod("web-0", "r2", State::Pending)], Some(vec![]));
    assert_eq!(replicas_of(&p), vec!["claims web-0 1"]);

    // web-0 ready: web-1 comes next, with an existing claim reused.
    let p = plan_for(&s, &[pod("web-0", "r2", State::Ready)], None);
    assert_eq!(replicas_of(&p), vec!["create web-1 r2 []"]);

    // minReadySeconds: web-0 is ready but not available for long enough.
    let mut recent = (*pod("web-0", "r2", State::Ready)).clone();
    let since = k8s_openapi::jiff::Timestamp::from_second(NOW - 5).unwrap();
    recent.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].last_transition_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(since));
    let slow = set(json!({ "spec": { "minReadySeconds": 10 } }));
    let p = plan_for(&slow, &[Arc::new(recent)], None);
    assert!(replicas_of(&p).is_empty());
    let after = p.requeue_after.unwrap();
    assert!(after > Duration::from_secs(4) && after < Duration::from_secs(6), "{after:?}");
}

#[test]
fn parallel_makes_every_pod_at_once() {
    let s = set(parallel());
    let p = plan_for(&s, &[pod("web-1", "r2", State::NotReady)], Some(vec![]));
    assert!(!p.monotonic);
    assert_eq!(
        replicas_of(&p),
        vec![r#"create web-0 r2 ["www-web-0"]"#, r#"create web-2 r2 ["www-web-2"]"#,]
    );
}

#[test]
fn ordinals_start_where_the_spec_says() {
    let s = set(json!({ "spec": { "ordinals": { "start": 3 }, "replicas": 2 } }));
    let p = plan_for(&s, &[pod("web-0", "r2", State::Ready)], None);
    assert_eq!(replicas_of(&p), vec!["create web-3 r2 []"]);
    // web-0 is outside [3, 4]; it goes once the replicas are healthy.
    let pods = [
        pod("web-0", "r2", State::Ready),
        pod("web-3", "r2", State::Ready),
        pod("web-4", "r2", State::Ready),
    ];
    assert_eq!(describe(&plan_for(&s, &pods, None).scale_down), vec!["delete web-0 ScaleDown"]);
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
    let one = set(json!({ "spec": { "replicas": 1 } }));
    let all_ready = [
        pod("web-0", "r2", State::Ready),
        pod("web-1", "r2", State::Ready),
        pod("web-2", "r2", State::Ready),
    ];
    assert_eq!(
        describe(&plan_for(&one, &all_ready, None).scale_down),
        vec!["delete web-2 ScaleDown"]
    );

    // web-1 and web-2 unhealthy: web-2 must wait (web-1 is the first unhealthy pod).
    let pods = [
        pod("web-0", "r2", State::Ready),
        pod("web-1", "r2", State::NotReady),
        pod("web-2", "r2", State::NotReady),
    ];
    assert!(plan_for(&one, &pods, None).scale_down.is_empty());
    // web-2 itself unhealthy: it may go.
    let pods = [
        pod("web-0", "r2", State::Ready),
        pod("web-1", "r2", State::Ready),
        pod("web-2", "r2", State::NotReady),
    ];
    assert_eq!(describe(&plan_for(&one, &pods, None).scale_down), vec!["delete web-2 ScaleDown"]);
    // A terminating condemned pod holds the next one back.
    let pods = [
        pod("web-0", "r2", State::Ready),
        pod("web-1", "r2", State::Ready),
        pod("web-2", "r2", State::Terminating),
    ];
    assert!(plan_for(&one, &pods, None).scale_down.is_empty());
    // A replica not ready blocks scale down altogether.
    let pods = [pod("web-0", "r2", State::NotReady), pod("web-1", "r2", State::Ready)];
    assert!(plan_for(&one, &pods, None).scale_down.is_empty());

    // Parallel: all of them.
    let mut par = set(parallel());
    par.spec.as_mut().unwrap().replicas = Some(1);
    assert_eq!(
        describe(&plan_for(&par, &all_ready, None).scale_down),
        vec!["delete web-2 ScaleDown", "delete web-1 ScaleDown"]
    );
}

#[test]
fn rolling_update_respects_the_partition() {
    let part = |p: i32| {
        set(json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": p } } } }))
    };
    let mut cfg = part(1);
    let mut pods = vec![
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r1", State::Ready),
        pod("web-2", "r1", State::Ready),
    ];
    let update = |s: &StatefulSet, pods: &[Arc<Pod>]| {
        let mut s = s.clone();
        let strategy = s.spec.as_mut().unwrap().update_strategy.as_mut().unwrap();
        if let Some(r) = strategy.rolling_update.as_mut() {
            r.max_unavailable = None;
        }
        describe(&plan_for(&s, pods, None).update)
    };
    assert_eq!(update(&cfg, &pods), vec!["delete web-2 Update"]);
    pods[2] = pod("web-2", "r2", State::Ready);
    assert_eq!(update(&cfg, &pods), vec!["delete web-1 Update"]);
    pods[1] = pod("web-1", "r2", State::Ready);
    assert!(update(&cfg, &pods).is_empty(), "web-0 is below the partition");
    cfg = part(0);
    assert_eq!(update(&cfg, &pods), vec!["delete web-0 Update"]);

    // An unhealthy updated pod above holds the update (parallel, so phase 1 goes on).
    let mut par = part(0);
    par.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
    let pods = [
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r1", State::Ready),
        pod("web-2", "r2", State::NotReady),
    ];
    assert!(update(&par, &pods).is_empty());

    // OnDelete: never.
    let on_delete =
        set(json!({ "spec": { "updateStrategy": { "type": "OnDelete", "rollingUpdate": null } } }));
    let old = [
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r1", State::Ready),
        pod("web-2", "r1", State::Ready),
    ];
    assert!(update(&on_delete, &old).is_empty());
}

#[test]
fn max_unavailable_deletes_several_at_once() {
    let s = set(
        json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 0, "maxUnavailable": 2 } } } }),
    );
    let pods = [
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r1", State::Ready),
        pod("web-2", "r1", State::Ready),
    ];
    assert_eq!(
        describe(&plan_for(&s, &pods, None).update),
        vec!["delete web-2 Update", "delete web-1 Update"]
    );
    let pct = set(
        json!({ "spec": { "podManagementPolicy": "Parallel", "updateStrategy": { "rollingUpdate": { "partition": 0, "maxUnavailable": "50%" } } } }),
    );
    let pods = [
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r1", State::Ready),
        pod("web-2", "r2", State::NotReady),
    ];
    assert!(
        describe(&plan_for(&pct, &pods, None).update).is_empty(),
        "50% of 3 is 1, already unavailable"
    );
    assert_eq!(max_unavailable(&pct, 3), 1);
    assert_eq!(max_unavailable(&pct, 10), 5);
    assert_eq!(max_unavailable(&set(json!({})), 10), 1);
}

#[test]
fn failed_pods_are_deleted_and_made_again() {
    let s = set(json!({}));
    let pods = [pod("web-0", "r2", State::Ready), pod("web-1", "r2", State::Failed)];
    assert_eq!(
        replicas_of(&plan_for(&s, &pods, None)),
        vec!["delete web-1 Failed", "create web-1 r2 []"]
    );
}

#[test]
fn identity_labels_are_fixed() {
    let s = set(json!({}));
    let mut p = (*pod("web-0", "r2", State::Ready)).clone();
    p.metadata.labels.as_mut().unwrap().remove("apps.kubernetes.io/pod-index");
    assert_eq!(replicas_of(&plan_for(&s, &[Arc::new(p)], None))[0], "update web-0");
}

#[test]
fn new_pods_below_the_partition_get_the_current_revision() {
    let s = set(json!({ "spec": { "updateStrategy": { "rollingUpdate": { "partition": 2 } } } }));
    let p = plan_for(&s, &[pod("web-0", "r1", State::Ready)], None);
    assert_eq!(replicas_of(&p), vec!["create web-1 r1 []"]);
    let p =
        plan_for(&s, &[pod("web-0", "r1", State::Ready), pod("web-1", "r1", State::Ready)], None);
    assert_eq!(replicas_of(&p), vec!["create web-2 r2 []"]);
}

#[test]
fn retention_delete_on_scale_down_hands_the_claim_to_the_pod() {
    let s = set(json!({ "spec": { "replicas": 1, "persistentVolumeClaimRetentionPolicy": {
        "whenScaled": "Delete", "whenDeleted": "Retain" } } }));
    let pods = [pod("web-0", "r2", State::Ready), pod("web-1", "r2", State::Ready)];
    let p = plan_for(&s, &pods, None);
    assert_eq!(describe(&p.condemned_claims), vec![r#"own www-web-1 ["Pod"]"#]);
    assert_eq!(describe(&p.scale_down), vec!["delete web-1 ScaleDown"]);

    // The claim still owned by the old web-1: a new web-1 waits for it to go.
    let mut stale = (*claim("www-web-1")).clone();
    stale.metadata.owner_references = p.condemned_claims.iter().find_map(|a| match a {
        Action::UpdateClaim { claim, .. } => claim.metadata.owner_references.clone(),
        _ => None,
    });
    let mut two = s.clone();
    two.spec.as_mut().unwrap().replicas = Some(2);
    let p = plan_for(&two, &[pods[0].clone()], Some(vec![claim("www-web-0"), Arc::new(stale)]));
    assert!(replicas_of(&p).is_empty(), "{:?}", replicas_of(&p));
    // Once it is gone, web-1 is made with a fresh claim.
    let p = plan_for(&two, &[pods[0].clone()], Some(vec![claim("www-web-0")]));
    assert_eq!(replicas_of(&p), vec![r#"create web-1 r2 ["www-web-1"]"#]);

    // whenDeleted Delete: claims made for pods in range are owned by the set.
    let owned = set(json!({ "spec": { "persistentVolumeClaimRetentionPolicy": {
        "whenScaled": "Retain", "whenDeleted": "Delete" } } }));
    let p = plan_for(&owned, &[], Some(vec![]));
    let Action::CreatePod { claims, .. } = &p.replicas[0][0] else { panic!() };
    assert_eq!(claims[0].metadata.owner_references.as_ref().unwrap()[0].kind, "StatefulSet");
    // ... and existing claims without the owner get it.
    let p = plan_for(&owned, &[pod("web-0", "r2", State::Ready)], None);
    assert_eq!(replicas_of(&p)[0], r#"own www-web-0 ["StatefulSet"]"#);
}

#[test]
fn a_claim_being_deleted_makes_the_sync_wait() {
    let s = set(json!({}));
    let mut going = (*claim("www-web-0")).clone();
    going.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    let p = plan_for(&s, &[], Some(vec![Arc::new(going)]));
    assert_eq!(replicas_of(&p), vec!["wait pvc www-web-0 is being deleted"]);
}

#[test]
fn status_counts_and_rolling_update_completion() {
    let s = set(json!({ "metadata": { "generation": 4 } }));
    let pods = [
        pod("web-0", "r1", State::Ready),
        pod("web-1", "r2", State::Ready),
        pod("web-2", "r2", State::NotReady),
    ];
    let p = plan_for(&s, &pods, None);
    let st = &p.status;
    assert_eq!(st.replicas, 3);
    assert_eq!(
        (st.ready_replicas, st.available_replicas, st.current_replicas, st.updated_replicas),
        (Some(2), Some(2), Some(1), Some(2))
    );
    assert_eq!(
        (st.current_revision.as_deref(), st.update_revision.as_deref()),
        (Some("r1"), Some("r2"))
    );
    assert_eq!(st.observed_generation, Some(4));
    assert!(status_changed(&s, st));

    let mut done = StatefulSetStatus {
        replicas: 3,
        ready_replicas: Some(3),
        updated_replicas: Some(3),
        current_replicas: Some(0),
        current_revision: Some("r1".into()),
        update_revision: Some("r2".into()),
        ..Default::default()
    };
    complete_rolling_update(&s, &mut done);
    assert_eq!((done.current_replicas, done.current_revision.as_deref()), (Some(3), Some("r2")));
    let mut s2 = s.clone();
    s2.status = Some(done.clone());
    assert!(!status_changed(&s2, &done));
}

#[test]
fn a_set_being_deleted_only_reports() {
    let mut s = set(json!({}));
    s.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH));
    let p = plan_for(&s, &[pod("web-0", "r2", State::Ready)], None);
    assert!(p.replicas.is_empty() && p.scale_down.is_empty() && p.update.is_empty());
    assert_eq!(p.status.replicas, 1);
}
