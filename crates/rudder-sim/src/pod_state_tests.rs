use super::*;
use crate::pod_info::{ContainerSpec, QosClass};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::net::Ipv4Addr;

fn t0() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

fn at(ms: u64) -> Timestamp {
    add(t0(), Duration::from_millis(ms))
}

fn timing() -> Timing {
    Timing {
        succeed_after: Some(Duration::from_secs(1)),
        backoff_base: Duration::from_secs(10),
        backoff_max: Duration::from_secs(300),
    }
}

fn plan(exit_after_ms: Option<u64>, exit_code: Option<i32>) -> ExitPlan {
    ExitPlan {
        exit_after: exit_after_ms.map(Duration::from_millis),
        exit_code,
        ..ExitPlan::default()
    }
}

fn containers() -> Vec<ContainerSpec> {
    vec![
        ContainerSpec { name: "web".into(), image: "nginx".into(), sidecar: false },
        ContainerSpec { name: "app".into(), image: "busybox".into(), sidecar: false },
    ]
}

fn render(sim: &PodSim, c: &[ContainerSpec], init: &[ContainerSpec]) -> PodStatus {
    sim.render(&PodFacts {
        namespace: "ns",
        name: "p",
        uid: "u1",
        containers: c,
        init_containers: init,
        qos: QosClass::BestEffort,
        host_ip: Ipv4Addr::new(198, 18, 0, 1),
        pod_ip: Some(Ipv4Addr::new(10, 42, 0, 2)),
        has_scheduled_condition: true,
        readiness_gates: &[],
    })
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn always_pod_runs_ready_forever() {
    let mut sim = PodSim::new(RestartPolicy::Always, ExitPlan::default(), None);
    assert!(sim.advance(t0(), &timing(), true));
    assert_eq!(sim.stage, Stage::Running { since: t0() });
    assert!(sim.pod_ready);
    assert_eq!(sim.next_wake(&timing()), None);
    assert!(!sim.advance(at(1000), &timing(), true), "nothing changes");
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let names: Vec<_> =
        s.container_statuses.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app", "web"], "sorted by name like upstream");
    let web = &s.container_statuses.as_ref().unwrap()[1];
    assert!(web.ready);
    assert_eq!(web.started, Some(true));
    assert_eq!(web.image_id, "sim://nginx");
    assert_eq!(web.container_id.as_deref(), Some("sim://u1-web"));
    assert_eq!(web.state.as_ref().unwrap().running.as_ref().unwrap().started_at, Some(Time(t0())));
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(cond(&s, "Initialized").status, "True");
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "True");
    assert!(
        s.conditions.as_ref().unwrap().iter().all(|c| c.type_ != "PodScheduled"),
        "binding set it"
    );
    assert_eq!(s.start_time, Some(Time(t0())));
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.2"));
    assert_eq!(s.host_ip.as_deref(), Some("198.18.0.1"));
    // Rendering is deterministic (unchanged writes are skipped by comparing renders).
    assert_eq!(s, render(&sim, &containers(), &[]));
}

#[test]
fn never_pod_succeeds_after_the_default_run_time() {
    let mut sim = PodSim::new(RestartPolicy::Never, ExitPlan::default(), None);
    sim.advance(t0(), &timing(), true);
    assert_eq!(sim.next_wake(&timing()), Some(at(1000)));
    assert!(!sim.advance(at(999), &timing(), true));
    assert!(sim.advance(at(1000), &timing(), true));
    assert_eq!(sim.stage, Stage::Succeeded { at: at(1000) });
    assert_eq!(sim.next_wake(&timing()), None);
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let ready = cond(&s, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("False", Some("PodCompleted")));
    assert_eq!(ready.last_transition_time, Some(Time(at(1000))));
    assert_eq!(cond(&s, "Initialized").reason.as_deref(), Some("PodCompleted"));
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    let term = s.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(term.finished_at, Some(Time(at(1000))));
    // succeed_after None: runs until deleted.
    let mut forever = PodSim::new(RestartPolicy::Never, ExitPlan::default(), None);
    let t = Timing { succeed_after: None, ..timing() };
    forever.advance(t0(), &t, true);
    assert_eq!(forever.next_wake(&t), None);
}

#[test]
fn never_pod_with_exit_code_fails() {
    let mut sim = PodSim::new(RestartPolicy::Never, plan(Some(50), Some(2)), None);
    sim.advance(t0(), &timing(), true);
    sim.advance(at(50), &timing(), true);
    assert_eq!(sim.stage, Stage::Failed { at: at(50), deadline_exceeded: false });
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason, None);
    let term = s.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!((term.exit_code, term.reason.as_deref()), (2, Some("Error")));
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodFailed"));
}

#[test]
fn on_failure_restarts_failures_and_completes_on_zero() {
    let mut sim = PodSim::new(RestartPolicy::OnFailure, plan(Some(100), Some(0)), None);
    sim.advance(t0(), &timing(), true);
    sim.advance(at(100), &timing(), true);
    assert!(matches!(sim.stage, Stage::Succeeded { .. }));

    let mut sim = PodSim::new(RestartPolicy::OnFailure, plan(Some(100), Some(1)), None);
    sim.advance(t0(), &timing(), true);
    sim.advance(at(100), &timing(), true);
    assert_eq!(sim.stage, Stage::Running { since: at(100) }, "first restart is immediate");
    assert_eq!(sim.restart_count, 1);
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let c = &s.container_statuses.as_ref().unwrap()[0];
    let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(last.container_id.as_deref(), Some("sim://u1-app"));
    assert_eq!(c.container_id.as_deref(), Some("sim://u1-app-1"));
}

#[test]
fn always_pod_crash_loops_with_upstream_back_off() {
    let mut sim = PodSim::new(RestartPolicy::Always, plan(Some(100), Some(1)), None);
    let t = timing();
    sim.advance(t0(), &t, true);
    sim.advance(at(100), &t, true); // exit 1, immediate restart
    assert_eq!((sim.restart_count, sim.stage), (1, Stage::Running { since: at(100) }));
    sim.advance(at(200), &t, true); // exit 2: back-off 10 s
    let delay = Duration::from_secs(10);
    assert_eq!(sim.stage, Stage::BackOff { until: at(10_200), delay });
    assert!(!sim.pod_ready);
    let s = render(&sim, &containers(), &[]);
    let c = &s.container_statuses.as_ref().unwrap()[0];
    let waiting = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("back-off 10s restarting failed container=app pod=p_ns(u1)")
    );
    assert_eq!(c.restart_count, 1);
    assert!(!c.ready);
    assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [web app]")
    );
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(sim.next_wake(&t), Some(at(10_200)));
    sim.advance(at(10_200), &t, true);
    assert_eq!((sim.restart_count, sim.stage), (2, Stage::Running { since: at(10_200) }));
    sim.advance(at(10_300), &t, true);
    assert_eq!(
        sim.stage,
        Stage::BackOff { until: at(30_300), delay: Duration::from_secs(20) },
        "doubles"
    );
    // Exit 0 with Always also restarts (reason Completed).
    let mut ok = PodSim::new(RestartPolicy::Always, plan(Some(100), None), None);
    ok.advance(t0(), &t, true);
    ok.advance(at(100), &t, true);
    assert_eq!(ok.restart_count, 1);
    assert_eq!(ok.last_exit.unwrap().reason(), "Completed");
}

#[test]
fn back_off_caps_and_resets_after_a_long_run() {
    let t = Timing { backoff_base: Duration::from_secs(100), ..timing() };
    let mut sim = PodSim::new(RestartPolicy::Always, plan(Some(1), Some(1)), None);
    let mut now = t0();
    sim.advance(now, &t, true);
    let mut delays = Vec::new();
    for _ in 0..6 {
        now = sim.next_wake(&t).unwrap();
        sim.advance(now, &t, true);
        if let Stage::BackOff { delay, .. } = sim.stage {
            delays.push(delay.as_secs());
        }
    }
    assert_eq!(delays, [100, 200, 300]);
    assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
    assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    assert_eq!(go_duration(Duration::from_millis(40)), "40ms");
    assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");

    // A container that ran longer than twice the cap restarts at once, from the base again.
    let mut long = PodSim::new(RestartPolicy::Always, plan(Some(700_000), Some(1)), None);
    long.advance(t0(), &t, true);
    long.advance(at(700_000), &t, true);
    long.advance(at(1_400_000), &t, true);
    assert_eq!((long.restart_count, long.stage), (2, Stage::Running { since: at(1_400_000) }));
}

#[test]
fn readiness_delay_not_ready_and_gates() {
    let t = timing();
    let p = ExitPlan { ready_after: Duration::from_millis(500), ..ExitPlan::default() };
    let mut sim = PodSim::new(RestartPolicy::Always, p, None);
    sim.advance(t0(), &t, true);
    assert!(!sim.containers_ready);
    assert_eq!(sim.next_wake(&t), Some(at(500)));
    assert!(sim.advance(at(500), &t, true));
    assert!(sim.pod_ready);
    let s = render(&sim, &containers(), &[]);
    assert_eq!(cond(&s, "Ready").last_transition_time, Some(Time(at(500))));

    let p = ExitPlan { not_ready: true, ..ExitPlan::default() };
    let mut sim = PodSim::new(RestartPolicy::Always, p, None);
    sim.advance(t0(), &t, true);
    assert!(!sim.pod_ready);
    assert_eq!(sim.next_wake(&t), None);
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond(&s, "Ready").status, "False");
    // The annotation goes away: ready.
    sim.plan.not_ready = false;
    assert!(sim.advance(at(10), &t, true));
    assert!(sim.pod_ready);

    let mut gated = PodSim::new(RestartPolicy::Always, ExitPlan::default(), None);
    gated.advance(t0(), &t, false);
    assert!(gated.containers_ready && !gated.pod_ready);
    let gates = [("example.com/lb".to_owned(), None)];
    let s = gated.render(&PodFacts {
        namespace: "ns",
        name: "p",
        uid: "u",
        containers: &containers(),
        init_containers: &[],
        qos: QosClass::Burstable,
        host_ip: Ipv4Addr::LOCALHOST,
        pod_ip: None,
        has_scheduled_condition: false,
        readiness_gates: &gates,
    });
    assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("ReadinessGatesNotReady"));
    assert_eq!(cond(&s, "ContainersReady").status, "True");
    assert_eq!(
        cond(&s, "PodScheduled").status,
        "True",
        "created with nodeName: the kubelet adds it"
    );
    assert_eq!(s.qos_class.as_deref(), Some("Burstable"));
    assert!(gated.advance(at(5), &t, true));
    assert!(gated.pod_ready);
}

#[test]
fn init_containers_and_sidecars() {
    let init = vec![
        ContainerSpec { name: "setup".into(), image: "busybox".into(), sidecar: false },
        ContainerSpec { name: "proxy".into(), image: "envoy".into(), sidecar: true },
    ];
    let mut sim = PodSim::new(RestartPolicy::Never, ExitPlan::default(), None);
    let t = timing();
    sim.advance(t0(), &t, true);
    let s = render(&sim, &containers(), &init);
    let statuses = s.init_container_statuses.unwrap();
    assert_eq!(statuses[0].name, "setup", "spec order");
    let setup = statuses[0].state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((setup.exit_code, setup.reason.as_deref()), (0, Some("Completed")));
    assert!(statuses[0].ready);
    assert!(statuses[1].state.as_ref().unwrap().running.is_some());
    assert_eq!(statuses[1].started, Some(true));
    sim.advance(at(1000), &t, true);
    let s = render(&sim, &containers(), &init);
    let proxy = &s.init_container_statuses.unwrap()[1];
    assert!(proxy.state.as_ref().unwrap().terminated.is_some(), "sidecar stops with the pod");
}

#[test]
fn active_deadline_fails_the_pod() {
    let mut sim =
        PodSim::new(RestartPolicy::Always, ExitPlan::default(), Some(Duration::from_secs(2)));
    let t = timing();
    sim.advance(t0(), &t, true);
    assert_eq!(sim.next_wake(&t), Some(at(2000)));
    sim.advance(at(2000), &t, true);
    assert_eq!(sim.stage, Stage::Failed { at: at(2000), deadline_exceeded: true });
    let s = render(&sim, &containers(), &[]);
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    let term = s.container_statuses.as_ref().unwrap()[0].state.clone().unwrap().terminated.unwrap();
    assert_eq!(term.exit_code, 137);
}

#[test]
fn adopts_running_pods() {
    let t = timing();
    let observed = ObservedPodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(Ipv4Addr::new(10, 42, 0, 7)),
        start_time: Some(t0()),
        restart_count: 3,
        running_since: Some(at(5000)),
        ready: true,
        ready_since: Some(at(5000)),
        last_exit: Some((1, Some(at(1000)), Some(at(2000)))),
    };
    let sim = PodSim::adopt(
        RestartPolicy::Always,
        plan(Some(10_000), Some(1)),
        None,
        &observed,
        &t,
        at(6000),
    )
    .unwrap();
    assert_eq!(sim.stage, Stage::Running { since: at(5000) });
    assert_eq!(sim.restart_count, 3);
    assert_eq!(sim.next_wake(&t), Some(at(15_000)), "the exit keeps its schedule");
    assert!(sim.pod_ready);
    let pending =
        ObservedPodStatus { phase: Some("Pending".into()), ..ObservedPodStatus::default() };
    assert!(
        PodSim::adopt(RestartPolicy::Always, ExitPlan::default(), None, &pending, &t, t0())
            .is_none()
    );
}
