use super::*;
use k8s_openapi::api::apps::v1::{ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

const NOW: i64 = 2_000_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn d(replicas: i32, deadline: i32) -> Deployment {
    let mut d = crate::deployment::util::tests::deployment(
        replicas,
        IntOrString::Int(1),
        IntOrString::Int(1),
    );
    d.metadata.generation = Some(2);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(deadline);
    d
}

fn rs(
    name: &str,
    replicas: i32,
    status_replicas: i32,
    ready: i32,
    available: i32,
) -> Arc<ReplicaSet> {
    Arc::new(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
        status: Some(ReplicaSetStatus {
            replicas: status_replicas,
            ready_replicas: Some(ready),
            available_replicas: Some(available),
            ..Default::default()
        }),
    })
}

fn progressing(status: &DeploymentStatus) -> (String, String, String) {
    let c = get_condition(Some(status), PROGRESSING).expect("Progressing");
    (c.status.clone(), c.reason.clone().unwrap(), c.message.clone().unwrap())
}

#[test]
fn counts_and_availability() {
    let old = rs("web-old", 2, 3, 3, 3);
    let new = rs("web-new", 2, 1, 0, 0);
    let s = calculate_status(&[old.clone(), new.clone()], Some(&new), &d(4, 600), now());
    assert_eq!(s.observed_generation, Some(2));
    assert_eq!(s.replicas, Some(4));
    assert_eq!(s.updated_replicas, Some(1));
    assert_eq!(s.ready_replicas, Some(3));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, Some(1));
    let a = get_condition(Some(&s), AVAILABLE).unwrap();
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref()),
        ("True", Some(MINIMUM_REPLICAS_AVAILABLE))
    );
    assert_eq!(a.message.as_deref(), Some("Deployment has minimum availability."));
    let s = calculate_status(std::slice::from_ref(&new), Some(&new), &d(4, 600), now());
    let a = get_condition(Some(&s), AVAILABLE).unwrap();
    assert_eq!(a.reason.as_deref(), Some(MINIMUM_REPLICAS_UNAVAILABLE));
    assert_eq!(a.message.as_deref(), Some("Deployment does not have minimum availability."));
}

#[test]
fn progressing_complete_and_timed_out() {
    let mut dep = d(2, 10);
    let started = Timestamp::from_second(NOW - 5).unwrap();
    let mut initial = DeploymentStatus::default();
    set_condition(
        &mut initial,
        condition(
            PROGRESSING,
            "True",
            NEW_REPLICA_SET,
            "Created new replica set \"web-new\"".into(),
            started,
        ),
    );
    dep.status = Some(initial);

    // One more pod became ready: progress; lastUpdateTime moves, transition time stays.
    let new = rs("web-new", 2, 2, 1, 1);
    let s = rollout_status(std::slice::from_ref(&new), Some(&new), &dep, now());
    assert_eq!(
        progressing(&s),
        (
            "True".into(),
            REPLICA_SET_UPDATED.into(),
            "ReplicaSet \"web-new\" is progressing.".into()
        )
    );
    let c = get_condition(Some(&s), PROGRESSING).unwrap();
    assert_eq!(c.last_update_time, Some(api_time(now())));
    assert_eq!(c.last_transition_time, Some(api_time(started)));
    assert_eq!(progress_check_after(&dep, &s, now()), Some(Duration::from_secs(6)));

    // Nothing new, deadline not yet passed: unchanged.
    dep.status = Some(s.clone());
    let later = Timestamp::from_second(NOW + 10).unwrap();
    assert_eq!(
        progressing(&rollout_status(std::slice::from_ref(&new), Some(&new), &dep, later)).1,
        REPLICA_SET_UPDATED
    );
    // Past it: timed out.
    let too_late = Timestamp::from_second(NOW + 11).unwrap();
    let s = rollout_status(std::slice::from_ref(&new), Some(&new), &dep, too_late);
    assert_eq!(
        progressing(&s),
        (
            "False".into(),
            TIMED_OUT.into(),
            "ReplicaSet \"web-new\" has timed out progressing.".into()
        )
    );
    dep.status = Some(s.clone());
    assert_eq!(progress_check_after(&dep, &s, too_late), None, "already timed out");

    // Everything available: complete (even after a timeout).
    let done = rs("web-new", 2, 2, 2, 2);
    let s = rollout_status(std::slice::from_ref(&done), Some(&done), &dep, too_late);
    assert_eq!(
        progressing(&s),
        (
            "True".into(),
            NEW_RS_AVAILABLE.into(),
            "ReplicaSet \"web-new\" has successfully progressed.".into()
        )
    );
    assert!(deployment_complete(&dep, Some(&s)));
    assert_eq!(progress_check_after(&dep, &s, too_late), None);

    // No deadline: no Progressing condition.
    let mut no_deadline = d(2, i32::MAX);
    no_deadline.status = dep.status.clone();
    let s = rollout_status(std::slice::from_ref(&done), Some(&done), &no_deadline, now());
    assert!(get_condition(Some(&s), PROGRESSING).is_none());
}

#[test]
fn replica_failures_are_surfaced() {
    let mut new = (*rs("web-new", 2, 0, 0, 0)).clone();
    new.status.as_mut().unwrap().conditions =
        Some(vec![k8s_openapi::api::apps::v1::ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some("FailedCreate".into()),
            message: Some("quota".into()),
            last_transition_time: Some(Time(now())),
        }]);
    let new = Arc::new(new);
    let s = rollout_status(std::slice::from_ref(&new), Some(&new), &d(2, 600), now());
    let f = get_condition(Some(&s), REPLICA_FAILURE).unwrap();
    assert_eq!((f.reason.as_deref(), f.message.as_deref()), (Some("FailedCreate"), Some("quota")));
    let mut dep = d(2, 600);
    dep.status = Some(s);
    let ok = rs("web-new", 2, 2, 0, 0);
    assert!(
        get_condition(
            Some(&rollout_status(std::slice::from_ref(&ok), Some(&ok), &dep, now())),
            REPLICA_FAILURE
        )
        .is_none()
    );
}

#[test]
fn pause_and_resume_conditions() {
    let mut dep = d(2, 600);
    dep.spec.as_mut().unwrap().paused = Some(true);
    let c = paused_condition(&dep, now()).unwrap();
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("Unknown", Some(PAUSED)));
    assert_eq!(c.message.as_deref(), Some("Deployment is paused"));
    let mut s = DeploymentStatus::default();
    set_condition(&mut s, c);
    dep.status = Some(s.clone());
    assert!(paused_condition(&dep, now()).is_none(), "already paused");
    dep.spec.as_mut().unwrap().paused = Some(false);
    let c = paused_condition(&dep, now()).unwrap();
    assert_eq!(c.reason.as_deref(), Some(RESUMED));
    assert_eq!(c.message.as_deref(), Some("Deployment is resumed"));
    // A timeout is never overwritten.
    set_condition(&mut s, condition(PROGRESSING, "False", TIMED_OUT, "x".into(), now()));
    dep.status = Some(s);
    dep.spec.as_mut().unwrap().paused = Some(true);
    assert!(paused_condition(&dep, now()).is_none());
}

#[test]
fn set_condition_keeps_transition_time_for_the_same_status() {
    let mut s = DeploymentStatus::default();
    let t0 = Timestamp::from_second(NOW - 100).unwrap();
    set_condition(&mut s, condition(PROGRESSING, "True", NEW_REPLICA_SET, "a".into(), t0));
    set_condition(&mut s, condition(PROGRESSING, "True", NEW_REPLICA_SET, "b".into(), now()));
    assert_eq!(
        get_condition(Some(&s), PROGRESSING).unwrap().message.as_deref(),
        Some("a"),
        "same reason: kept"
    );
    set_condition(&mut s, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "c".into(), now()));
    let c = get_condition(Some(&s), PROGRESSING).unwrap();
    assert_eq!(c.last_transition_time, Some(api_time(t0)));
    assert_eq!(c.last_update_time, Some(api_time(now())));
    assert_eq!(s.conditions.as_ref().unwrap().len(), 1);
}
