use super::*;
use crate::actions::tests::{ctr, pod};
use serde_json::json;

fn now() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

fn status_of(p: &Pod, containers: &[ContainerStatus], waiting: &Waiting, ready: bool) -> PodStatus {
    let ready_fn = move |_: &ContainerStatus| ready;
    let started = |_: &ContainerStatus| true;
    generate(&StatusInput {
        pod: p,
        pod_ip: Some("10.42.0.5".into()),
        host_ip: "192.168.1.2".into(),
        sandbox_ready: true,
        containers,
        waiting,
        ready: &ready_fn,
        started: &started,
        terminal_override: None,
        now: now(),
    })
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn running_and_ready() {
    let p = pod(json!({"containers": [{"name": "a", "image": "busybox"}]}));
    let s = status_of(&p, &[ctr("a", 0, ContainerState::Running, 0)], &Waiting::new(), true);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready);
    assert_eq!(cs.container_id.as_deref(), Some("rudder://a-0"));
    let s = status_of(&p, &[ctr("a", 0, ContainerState::Running, 0)], &Waiting::new(), false);
    let r = cond(&s, "Ready");
    assert_eq!((r.status.as_str(), r.reason.as_deref()), ("False", Some("ContainersNotReady")));
    assert_eq!(r.message.as_deref(), Some("containers with unready status: [a]"));
}

#[test]
fn crash_loop_shows_waiting_with_last_state() {
    let p = pod(json!({"containers": [{"name": "a"}]}));
    let waiting: Waiting =
        [("a".to_owned(), ("CrashLoopBackOff".to_owned(), "back-off 10s".to_owned()))].into();
    let s = status_of(
        &p,
        &[ctr("a", 1, ContainerState::Exited, 1), ctr("a", 0, ContainerState::Exited, 1)],
        &waiting,
        false,
    );
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    assert_eq!(
        cs.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
        Some("CrashLoopBackOff")
    );
    assert_eq!(cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(s.phase.as_deref(), Some("Running"), "Always with a stopped container is Running");
}

#[test]
fn phases_of_finished_pods() {
    let never = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
    let s = status_of(&never, &[ctr("a", 0, ContainerState::Exited, 0)], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    let s = status_of(&never, &[ctr("a", 0, ContainerState::Exited, 2)], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let on_failure = pod(json!({"restartPolicy": "OnFailure", "containers": [{"name": "a"}]}));
    let s =
        status_of(&on_failure, &[ctr("a", 0, ContainerState::Exited, 2)], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let fresh = pod(json!({"containers": [{"name": "a"}]}));
    let s = status_of(&fresh, &[], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let w = &s.container_statuses.as_ref().unwrap()[0].state.as_ref().unwrap().waiting;
    assert_eq!(w.as_ref().unwrap().reason.as_deref(), Some("ContainerCreating"));
}

#[test]
fn init_containers_gate_the_pod() {
    let p = pod(json!({"initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}));
    let s = status_of(&p, &[ctr("i", 0, ContainerState::Running, 0)], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let init = cond(&s, "Initialized");
    assert_eq!(init.message.as_deref(), Some("containers with incomplete status: [i]"));
    let app = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(
        app.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
        Some("PodInitializing")
    );
    let never = pod(
        json!({"restartPolicy": "Never", "initContainers": [{"name": "i"}], "containers": [{"name": "a"}]}),
    );
    let s = status_of(&never, &[ctr("i", 0, ContainerState::Exited, 1)], &Waiting::new(), false);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn qos_classes() {
    let guaranteed = pod(
        json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}),
    );
    assert_eq!(qos_class(&guaranteed), "Guaranteed");
    let burstable =
        pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}));
    assert_eq!(qos_class(&burstable), "Burstable");
}

#[test]
fn transition_times_are_kept_when_nothing_changes() {
    let mut p = pod(json!({"containers": [{"name": "a"}]}));
    let earlier: Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
    p.status = Some(PodStatus {
        conditions: Some(vec![
            PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                last_transition_time: Some(Time(earlier)),
                ..Default::default()
            },
            PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(earlier)),
                ..Default::default()
            },
        ]),
        ..Default::default()
    });
    let s = status_of(&p, &[ctr("a", 0, ContainerState::Running, 0)], &Waiting::new(), true);
    assert_eq!(cond(&s, "Ready").last_transition_time.as_ref().unwrap().0, earlier);
    assert_eq!(cond(&s, "PodScheduled").status, "True", "conditions of others are kept");
    assert_eq!(cond(&s, "ContainersReady").last_transition_time.as_ref().unwrap().0, now());
}
