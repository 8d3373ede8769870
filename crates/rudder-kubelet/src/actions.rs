//! What a pod needs next, from its spec and what the runtime has (upstream's
//! computePodActions): pure, so every restart-policy and init-container rule is a unit test.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};
use rudder_runtime::{ContainerState, ContainerStatus, PodSandboxState, PodSandboxStatus};

use crate::labels;

/// One container to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub name: String,
    pub init: bool,
    /// The attempt number (= restart count) the new container gets.
    pub attempt: u32,
    /// Whether an earlier attempt exists (a restart, subject to back-off).
    pub restart: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Create a new sandbox (and, when `kill_sandbox` names one, kill that first).
    pub create_sandbox: bool,
    pub kill_sandbox: Option<String>,
    /// The sandbox attempt for a new sandbox.
    pub sandbox_attempt: u32,
    /// Containers to start, in order (at most one init container).
    pub start: Vec<Start>,
    /// Running containers to stop: (container id, name, why).
    pub kill: Vec<(String, String, String)>,
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

pub fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_deref()).unwrap_or(&[])
}

pub fn app_containers(pod: &Pod) -> &[Container] {
    pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[])
}

pub fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

/// The pod's sandboxes, newest first.
pub fn sandboxes_of<'a>(pod_uid: &str, all: &'a [PodSandboxStatus]) -> Vec<&'a PodSandboxStatus> {
    let mut v: Vec<&PodSandboxStatus> = all
        .iter()
        .filter(|s| s.labels.get(labels::POD_UID).map(String::as_str) == Some(pod_uid))
        .collect();
    v.sort_by(|a, b| {
        b.created_at_ns.cmp(&a.created_at_ns).then(b.metadata.attempt.cmp(&a.metadata.attempt))
    });
    v
}

/// Containers by name, each list newest attempt first.
pub fn by_name(containers: &[ContainerStatus]) -> BTreeMap<&str, Vec<&ContainerStatus>> {
    let mut m: BTreeMap<&str, Vec<&ContainerStatus>> = BTreeMap::new();
    for c in containers {
        m.entry(c.metadata.name.as_str()).or_default().push(c);
    }
    for v in m.values_mut() {
        v.sort_by(|a, b| {
            b.metadata.attempt.cmp(&a.metadata.attempt).then(b.created_at_ns.cmp(&a.created_at_ns))
        });
    }
    m
}

fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// Whether the pod has run to its end and must not be started again: an init container
/// failed under `Never`, or every app container exited and the policy restarts none.
pub fn pod_is_finished(pod: &Pod, containers: &[ContainerStatus]) -> bool {
    let policy = restart_policy(pod);
    if policy == "Always" {
        return false;
    }
    let named = by_name(containers);
    let latest = |name: &str| named.get(name).and_then(|v| v.first().copied());
    if policy == "Never" {
        let init_failed = init_containers(pod).iter().any(|c| {
            latest(&c.name).is_some_and(|s| s.state == ContainerState::Exited && s.exit_code != 0)
        });
        if init_failed {
            return true;
        }
    }
    let apps = app_containers(pod);
    !apps.is_empty()
        && apps.iter().all(|c| {
            latest(&c.name).is_some_and(|s| {
                s.state == ContainerState::Exited && !should_restart(policy, s.exit_code)
            })
        })
}

/// The spec hash a container runs with (what a change of restarts it): its image.
pub fn container_hash(c: &Container) -> String {
    c.image.clone().unwrap_or_default()
}

/// Decides the next steps for `pod`. `containers` are the runtime's containers of the pod
/// (any sandbox); `liveness_failed` holds ids of running containers whose liveness (or
/// startup) probe failed.
pub fn compute(
    pod: &Pod,
    sandboxes: &[PodSandboxStatus],
    containers: &[ContainerStatus],
    liveness_failed: &HashSet<String>,
) -> PodActions {
    let uid = pod_uid(pod);
    let mine = sandboxes_of(uid, sandboxes);
    let mut actions = PodActions::default();
    let ready = mine.iter().find(|s| s.state == PodSandboxState::Ready);
    let Some(sandbox) = ready else {
        if pod_is_finished(pod, containers) {
            return actions;
        }
        actions.create_sandbox = true;
        actions.sandbox_attempt = mine.first().map(|s| s.metadata.attempt + 1).unwrap_or(0);
        // Everything restarts in the new sandbox, after the old one's containers stop.
        for c in containers.iter().filter(|c| c.state == ContainerState::Running) {
            actions.kill.push((c.id.clone(), c.metadata.name.clone(), "sandbox changed".into()));
        }
        actions.start = first_starts(pod, &[]);
        return actions;
    };
    // Only containers of the current sandbox count from here on.
    let current: Vec<ContainerStatus> =
        containers.iter().filter(|c| c.sandbox_id == sandbox.id).cloned().collect();
    let named = by_name(&current);
    let policy = restart_policy(pod);

    // Init containers, one at a time, in order.
    let apps_started = app_containers(pod).iter().any(|c| named.contains_key(c.name.as_str()));
    if !apps_started {
        for c in init_containers(pod) {
            match named.get(c.name.as_str()).and_then(|v| v.first()) {
                None => {
                    actions.start.push(Start {
                        name: c.name.clone(),
                        init: true,
                        attempt: 0,
                        restart: false,
                    });
                    return actions;
                }
                Some(s) => match s.state {
                    ContainerState::Running | ContainerState::Unknown => return actions,
                    ContainerState::Created => {
                        actions.start.push(Start {
                            name: c.name.clone(),
                            init: true,
                            attempt: s.metadata.attempt + 1,
                            restart: true,
                        });
                        return actions;
                    }
                    ContainerState::Exited if s.exit_code == 0 => continue,
                    ContainerState::Exited => {
                        if policy != "Never" {
                            actions.start.push(Start {
                                name: c.name.clone(),
                                init: true,
                                attempt: s.metadata.attempt + 1,
                                restart: true,
                            });
                        }
                        return actions;
                    }
                },
            }
        }
    }

    for c in app_containers(pod) {
        match named.get(c.name.as_str()).and_then(|v| v.first()) {
            None => actions.start.push(Start {
                name: c.name.clone(),
                init: false,
                attempt: 0,
                restart: false,
            }),
            Some(s) => match s.state {
                ContainerState::Running => {
                    if liveness_failed.contains(&s.id) {
                        actions.kill.push((s.id.clone(), c.name.clone(), "liveness".into()));
                    } else if s
                        .annotations
                        .get(labels::CONTAINER_HASH)
                        .is_some_and(|h| *h != container_hash(c))
                    {
                        actions.kill.push((s.id.clone(), c.name.clone(), "spec changed".into()));
                    }
                }
                ContainerState::Created | ContainerState::Unknown => actions.start.push(Start {
                    name: c.name.clone(),
                    init: false,
                    attempt: s.metadata.attempt + 1,
                    restart: true,
                }),
                ContainerState::Exited => {
                    if should_restart(policy, s.exit_code) {
                        actions.start.push(Start {
                            name: c.name.clone(),
                            init: false,
                            attempt: s.metadata.attempt + 1,
                            restart: true,
                        });
                    }
                }
            },
        }
    }
    actions
}

/// What a fresh sandbox starts with: the first init container, or every app container.
fn first_starts(pod: &Pod, _: &[ContainerStatus]) -> Vec<Start> {
    match init_containers(pod).first() {
        Some(c) => vec![Start { name: c.name.clone(), init: true, attempt: 0, restart: false }],
        None => app_containers(pod)
            .iter()
            .map(|c| Start { name: c.name.clone(), init: false, attempt: 0, restart: false })
            .collect(),
    }
}

#[cfg(test)]
#[path = "actions_tests.rs"]
pub(crate) mod tests;
