use super::*;
use serde_json::json;

pub(crate) fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": spec,
    }))
    .unwrap()
}

pub(crate) fn sandbox(id: &str, ready: bool) -> PodSandboxStatus {
    PodSandboxStatus {
        id: id.into(),
        metadata: Default::default(),
        state: if ready { PodSandboxState::Ready } else { PodSandboxState::NotReady },
        created_at_ns: 1,
        ip: Some("10.42.0.5".into()),
        labels: [(labels::POD_UID.to_owned(), "u1".to_owned())].into(),
        annotations: Default::default(),
    }
}

pub(crate) fn ctr(
    name: &str,
    attempt: u32,
    state: ContainerState,
    exit_code: i32,
) -> ContainerStatus {
    ContainerStatus {
        id: format!("{name}-{attempt}"),
        sandbox_id: "s1".into(),
        metadata: rudder_runtime::ContainerMetadata { name: name.into(), attempt },
        state,
        created_at_ns: 10 + i64::from(attempt),
        started_at_ns: 20,
        finished_at_ns: if state == ContainerState::Exited { 30 } else { 0 },
        exit_code,
        reason: String::new(),
        message: String::new(),
        image: "busybox".into(),
        image_ref: "sha256:x".into(),
        log_path: None,
        labels: Default::default(),
        annotations: Default::default(),
    }
}

fn names(a: &PodActions) -> Vec<(String, u32)> {
    a.start.iter().map(|s| (s.name.clone(), s.attempt)).collect()
}

#[test]
fn new_pod_gets_a_sandbox_and_its_first_init_container() {
    let p = pod(
        json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
    );
    let a = compute(&p, &[], &[], &HashSet::new());
    assert!(a.create_sandbox);
    assert_eq!(names(&a), vec![("i1".to_owned(), 0)]);
    let plain = pod(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
    let a = compute(&plain, &[], &[], &HashSet::new());
    assert_eq!(names(&a), vec![("a".to_owned(), 0), ("b".to_owned(), 0)]);
}

#[test]
fn init_containers_run_one_at_a_time_in_order() {
    let p = pod(
        json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
    );
    let sb = [sandbox("s1", true)];
    let running = [ctr("i1", 0, ContainerState::Running, 0)];
    assert!(compute(&p, &sb, &running, &HashSet::new()).start.is_empty());
    let done = [ctr("i1", 0, ContainerState::Exited, 0)];
    assert_eq!(names(&compute(&p, &sb, &done, &HashSet::new())), vec![("i2".to_owned(), 0)]);
    let both = [ctr("i1", 0, ContainerState::Exited, 0), ctr("i2", 0, ContainerState::Exited, 0)];
    assert_eq!(names(&compute(&p, &sb, &both, &HashSet::new())), vec![("a".to_owned(), 0)]);
    // A failed init container is retried unless the policy is Never.
    let failed = [ctr("i1", 0, ContainerState::Exited, 1)];
    assert_eq!(names(&compute(&p, &sb, &failed, &HashSet::new())), vec![("i1".to_owned(), 1)]);
    let never = pod(
        json!({"restartPolicy": "Never", "initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
    );
    assert!(compute(&never, &sb, &failed, &HashSet::new()).start.is_empty());
    assert!(pod_is_finished(&never, &failed));
}

#[test]
fn restart_policies() {
    let sb = [sandbox("s1", true)];
    let ok = [ctr("a", 2, ContainerState::Exited, 0)];
    let bad = [ctr("a", 2, ContainerState::Exited, 3)];
    for (policy, ok_restarts, bad_restarts) in
        [("Always", true, true), ("OnFailure", false, true), ("Never", false, false)]
    {
        let p = pod(json!({"restartPolicy": policy, "containers": [{"name": "a"}]}));
        let a = compute(&p, &sb, &ok, &HashSet::new());
        assert_eq!(!a.start.is_empty(), ok_restarts, "{policy} after success");
        let a = compute(&p, &sb, &bad, &HashSet::new());
        assert_eq!(!a.start.is_empty(), bad_restarts, "{policy} after failure");
        if bad_restarts {
            assert_eq!(
                a.start[0],
                Start { name: "a".into(), init: false, attempt: 3, restart: true }
            );
        }
    }
}

#[test]
fn finished_pods_get_no_new_sandbox() {
    let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a"}]}));
    let exited = [ctr("a", 0, ContainerState::Exited, 0)];
    let a = compute(&p, &[sandbox("s1", false)], &exited, &HashSet::new());
    assert_eq!(a, PodActions::default());
    let always = pod(json!({"containers": [{"name": "a"}]}));
    let a = compute(&always, &[sandbox("s1", false)], &exited, &HashSet::new());
    assert!(a.create_sandbox);
    assert_eq!(a.sandbox_attempt, 1);
}

#[test]
fn liveness_failure_and_image_change_kill_the_container() {
    let sb = [sandbox("s1", true)];
    let p = pod(json!({"containers": [{"name": "a", "image": "busybox:2"}]}));
    let mut running = ctr("a", 0, ContainerState::Running, 0);
    running.annotations.insert(labels::CONTAINER_HASH.into(), "busybox:2".into());
    let r = [running.clone()];
    assert_eq!(compute(&p, &sb, &r, &HashSet::new()), PodActions::default());
    let a = compute(&p, &sb, &r, &HashSet::from(["a-0".to_owned()]));
    assert_eq!(a.kill, vec![("a-0".into(), "a".into(), "liveness".into())]);
    running.annotations.insert(labels::CONTAINER_HASH.into(), "busybox:1".into());
    let a = compute(&p, &sb, &[running], &HashSet::new());
    assert_eq!(a.kill[0].2, "spec changed");
}
