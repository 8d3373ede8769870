//! An agent restart: the process that started a container exits; a new runtime instance over
//! the same state finds the container still running (same process, still logging), can exec
//! into it and stop it. And create/remove cycles leave nothing behind.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use rudder_runtime::{ContainerConfig, ContainerMetadata, ContainerState, Runtime};

const CHILD_DIR_ENV: &str = "RUDDER_TEST_ADOPTION_DIR";

/// Not a test of its own: the "first agent" process run by
/// `a_restarted_agent_adopts_running_containers`.
#[tokio::test]
#[ignore = "helper process for a_restarted_agent_adopts_running_containers"]
async fn adoption_first_agent() {
    let dir = std::env::var(CHILD_DIR_ENV).expect("run by the adoption test");
    let rt = reopen(Path::new(&dir), Arc::new(HostNetworkOnly));
    let sb = rt.run_pod_sandbox(&pod("adopt", true)).await.unwrap();
    let c = ContainerConfig {
        metadata: ContainerMetadata { name: "ticker".into(), attempt: 0 },
        image: "busybox".into(),
        command: sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"),
        ..Default::default()
    };
    let id = rt.create_container(&sb, &c, &pod("adopt", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();
    println!("CONTAINER {id}");
    // Exit without any cleanup, as a crashed agent would.
    std::process::exit(0);
}

#[tokio::test]
async fn a_restarted_agent_adopts_running_containers() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let out = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["adoption_first_agent", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_DIR_ENV, t.dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("CONTAINER "))
        .unwrap_or_else(|| {
            panic!("first agent failed: {stdout} {}", String::from_utf8_lossy(&out.stderr))
        })
        .trim()
        .to_owned();

    // The first agent is gone; a new runtime over the same directories takes over.
    let rt = reopen(t.dir.path(), Arc::new(HostNetworkOnly));
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::Running, "{st:?}");
    let log = st.log_path.clone().unwrap();
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    eventually("the log to keep growing", 20, || async {
        (std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) > before).then_some(())
    })
    .await;
    let r = rt.exec_sync(&id, &sh("echo $((6*7))"), 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "42");
    // Same process as before the restart: pid 1 in the container is still the ticker.
    let r = rt.exec_sync(&id, &sh("cat /proc/1/cmdline | tr '\\0' ' '"), 10).await.unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("tick"), "{r:?}");
    rt.stop_container(&id, 1).await.unwrap();
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::Exited);
    assert!(st.exit_code == 137 || st.exit_code == 143, "{st:?}");
}

#[tokio::test]
async fn create_remove_cycles_leave_nothing_behind() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let mut ids = Vec::new();
    for i in 0..20 {
        let sb = rt.run_pod_sandbox(&pod(&format!("cycle-{i}"), true)).await.unwrap();
        let mut c = ContainerConfig {
            metadata: ContainerMetadata { name: "c".into(), attempt: 0 },
            image: "busybox".into(),
            command: vec!["sleep".into(), "300".into()],
            ..Default::default()
        };
        c.resources.memory_limit_bytes = Some(32 << 20);
        c.resources.pids_limit = Some(50);
        let id = rt.create_container(&sb, &c, &pod("cycle", true)).await.unwrap();
        if i % 2 == 0 {
            rt.start_container(&id).await.unwrap();
        }
        ids.push(id);
        rt.remove_pod_sandbox(&sb).await.unwrap();
    }
    let root = t.dir.path();
    assert!(rt.list_containers(None).await.unwrap().is_empty());
    assert!(rt.list_pod_sandboxes().await.unwrap().is_empty());
    assert_eq!(std::fs::read_dir(root.join("run/libcontainer")).unwrap().count(), 0);
    // Only the run dir's own tmpfs is left mounted, and it goes once the run dir is empty.
    let run = rt.layout().run.clone();
    assert_eq!(rudder_runtime_native::rootfs::mounts_under(root), vec![run.display().to_string()]);
    rudder_runtime_native::layout::remove_run_dir_if_empty(&run);
    assert!(rudder_runtime_native::rootfs::mounts_under(root).is_empty());
    assert!(!run.exists());
    for id in &ids {
        for ctrl in ["memory", "pids", "cpu", "cpuacct", "devices", "freezer"] {
            let p = format!("/sys/fs/cgroup/{ctrl}/rudder/{id}");
            assert!(!Path::new(&p).exists(), "cgroup left behind: {p}");
        }
        // No shim of ours is left running.
        for proc_entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmd) = std::fs::read(proc_entry.path().join("cmdline")) {
                assert!(
                    !String::from_utf8_lossy(&cmd).contains(id.as_str()),
                    "process left: {:?}",
                    proc_entry.path()
                );
            }
        }
    }
}

/// After a reboot the run dir (a tmpfs) is empty but the writable layers on disk remain: a
/// runtime starting over them removes those no container owns, and keeps the others.
#[tokio::test]
async fn writable_layers_without_a_container_are_removed_at_start() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let sb = t.runtime.run_pod_sandbox(&pod("layers", true)).await.unwrap();
    let c = ContainerConfig {
        metadata: ContainerMetadata { name: "c".into(), attempt: 0 },
        image: "busybox".into(),
        command: sh("echo hi > /written; sleep 60"),
        ..Default::default()
    };
    let live = t.runtime.create_container(&sb, &c, &pod("layers", true)).await.unwrap();
    let layout = t.runtime.layout().clone();
    assert!(layout.layer_dir(&live).join("upper").is_dir(), "the writable layer is under root");
    assert!(layout.container_dir(&live).starts_with(&layout.run), "records are under run");
    let orphan = "0123456789abcdef0123456789abcdef";
    std::fs::create_dir_all(layout.layer_dir(orphan).join("upper")).unwrap();

    let _again = reopen(t.dir.path(), Arc::new(HostNetworkOnly));
    assert!(!layout.layer_dir(orphan).exists(), "an orphaned layer stays");
    assert!(layout.layer_dir(&live).join("upper").is_dir(), "a live container's layer went");

    t.runtime.remove_container(&live).await.unwrap();
    assert!(!layout.layer_dir(&live).exists(), "removing the container keeps its layer");
}

/// The run dir is a tmpfs of the runtime's own even where the directory above it is on a
/// disk; a runtime reopened over it (an agent restart) keeps that mount and its records,
/// and removing the run dir leaves it alone while a sandbox is recorded in it.
#[tokio::test]
async fn the_run_dir_is_a_tmpfs_that_outlives_the_agent() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let run = t.runtime.layout().run.clone();
    let tmpfs = |p: &Path| {
        nix::sys::statfs::statfs(p).unwrap().filesystem_type() == nix::sys::statfs::TMPFS_MAGIC
    };
    assert!(tmpfs(&run), "{run:?} is not on a tmpfs");
    let sb = t.runtime.run_pod_sandbox(&pod("tmpfs", true)).await.unwrap();

    let again = reopen(t.dir.path(), Arc::new(HostNetworkOnly));
    assert_eq!(rudder_runtime_native::rootfs::mounts_under(&run), vec![run.display().to_string()]);
    assert_eq!(again.pod_sandbox_status(&sb).await.unwrap().id, sb);

    rudder_runtime_native::layout::remove_run_dir_if_empty(&run);
    assert!(tmpfs(&run), "the run dir went with a sandbox in it");
    again.remove_pod_sandbox(&sb).await.unwrap();
    rudder_runtime_native::layout::remove_run_dir_if_empty(&run);
    assert!(!run.exists(), "an empty run dir stays");
}
