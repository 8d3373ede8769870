//! The native runtime with real containers (root, as CI runs): process, exit codes, CRI
//! logs, exec, limits, users, and adoption by a new runtime instance.

mod common;

use std::sync::Arc;

use common::*;
use rudder_runtime::logs::{Stream, parse_line};
use rudder_runtime::{ContainerConfig, ContainerMetadata, ContainerState, Runtime};

fn container(name: &str, command: Vec<String>) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata { name: name.into(), attempt: 0 },
        image: "busybox".into(),
        command,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_container_runs_exits_and_leaves_cri_logs() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("logs", true)).await.unwrap();
    let mut c = container(
        "main",
        sh("echo hello; echo oops >&2; echo \"user=$(id -u) cwd=$(pwd) x=$X\"; exit 3"),
    );
    c.envs.push(("X".into(), "from-pod".into()));
    c.working_dir = Some("/tmp".into());
    c.security.run_as_user = Some(1000);
    let id = rt.create_container(&sb, &c, &pod("logs", true)).await.unwrap();
    assert_eq!(rt.container_status(&id).await.unwrap().state, ContainerState::Created);
    rt.start_container(&id).await.unwrap();
    let st = eventually("exit", 20, || async {
        let st = rt.container_status(&id).await.unwrap();
        (st.state == ContainerState::Exited).then_some(st)
    })
    .await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(st.finished_at_ns >= st.started_at_ns && st.started_at_ns > 0);
    let log = std::fs::read(st.log_path.unwrap()).unwrap();
    let records: Vec<_> = log
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l).unwrap())
        .collect();
    let stdout: Vec<&[u8]> =
        records.iter().filter(|r| r.stream == Stream::Stdout).map(|r| r.content).collect();
    let stderr: Vec<&[u8]> =
        records.iter().filter(|r| r.stream == Stream::Stderr).map(|r| r.content).collect();
    assert_eq!(stdout, vec![&b"hello"[..], b"user=1000 cwd=/tmp x=from-pod"]);
    assert_eq!(stderr, vec![&b"oops"[..]]);
    assert!(rt.start_container(&id).await.is_err(), "an exited container does not start again");
    rt.remove_pod_sandbox(&sb).await.unwrap();
    assert!(rt.list_containers(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn exec_returns_output_and_exit_code() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("exec", true)).await.unwrap();
    let id = rt
        .create_container(
            &sb,
            &container("main", vec!["sleep".into(), "300".into()]),
            &pod("exec", true),
        )
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();
    let r = rt.exec_sync(&id, &sh("echo $((6*7))"), 10).await.unwrap();
    assert_eq!((String::from_utf8_lossy(&r.stdout).trim(), r.exit_code), ("42", 0));
    // The rootfs overlay is mounted in the container's mount namespace only: the node's
    // mount table has nothing of it, and what the container writes lands in its layer.
    let layout = rt.layout();
    assert_eq!(rudder_runtime_native::rootfs::mounts_under(&layout.root), Vec::<String>::new());
    assert_eq!(
        rudder_runtime_native::rootfs::mounts_under(&layout.run),
        vec![layout.run.display().to_string()]
    );
    let r = rt.exec_sync(&id, &sh("echo mine > /written-here"), 10).await.unwrap();
    assert_eq!(r.exit_code, 0, "{r:?}");
    let upper = layout.layer_dir(&id).join("upper/written-here");
    assert_eq!(std::fs::read_to_string(upper).unwrap(), "mine\n");
    let r = rt.exec_sync(&id, &sh("echo bad >&2; exit 7"), 10).await.unwrap();
    assert_eq!((String::from_utf8_lossy(&r.stderr).trim(), r.exit_code), ("bad", 7));
    // exec shares the container's pid namespace: the main process is pid 1 there.
    let r = rt.exec_sync(&id, &sh("cat /proc/1/cmdline | tr '\\0' ' '"), 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "sleep 300");
    let r = rt.exec_sync(&id, &["/no/such/binary".to_string()], 10).await.unwrap();
    assert_ne!(r.exit_code, 0, "a missing binary fails: {r:?}");

    // sleep as pid 1 ignores SIGTERM: stop escalates to SIGKILL after the grace period.
    let started = std::time::Instant::now();
    rt.stop_container(&id, 1).await.unwrap();
    let st = rt.container_status(&id).await.unwrap();
    assert_eq!((st.state, st.exit_code), (ContainerState::Exited, 137));
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let err = rt.exec_sync(&id, &sh("true"), 10).await.unwrap_err();
    assert!(err.to_string().contains("Exited"), "{err}");
}

#[tokio::test]
async fn a_graceful_stop_sends_the_images_stop_signal() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("stopsig", true)).await.unwrap();
    let script = "trap 'echo got-term; exit 5' TERM; trap 'echo got-quit; exit 6' QUIT; \
                  echo ready; while true; do sleep 0.1; done";
    let mut ids = Vec::new();
    for image in ["busybox", "busybox:stop-QUIT"] {
        let mut c = container("main", sh(script));
        c.image = image.into();
        let id = rt.create_container(&sb, &c, &pod("stopsig", true)).await.unwrap();
        rt.start_container(&id).await.unwrap();
        ids.push(id);
    }
    for (id, (code, line)) in ids.iter().zip([(5, "got-term"), (6, "got-quit")]) {
        let log = rt.container_status(id).await.unwrap().log_path.unwrap();
        eventually("the trap to be set", 20, || async {
            std::fs::read_to_string(&log).unwrap_or_default().contains("ready").then_some(())
        })
        .await;
        rt.stop_container(id, 20).await.unwrap();
        let st = rt.container_status(id).await.unwrap();
        assert_eq!(st.exit_code, code);
        assert!(std::fs::read_to_string(&log).unwrap().contains(line));
    }
    assert_eq!(rudder_runtime_native::spec::parse_signal("quit"), Some(nix::sys::signal::SIGQUIT));
    assert_eq!(rudder_runtime_native::spec::parse_signal("9"), Some(nix::sys::signal::SIGKILL));
    assert_eq!(rudder_runtime_native::spec::parse_signal("SIGNOPE"), None);
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("oom", true)).await.unwrap();
    // 16 MiB limit; the shell builds a string far beyond it.
    let mut c = container("hog", sh("x=a; while true; do x=\"$x$x\"; done"));
    c.resources.memory_limit_bytes = Some(16 << 20);
    let id = rt.create_container(&sb, &c, &pod("oom", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let st = eventually("OOM kill", 60, || async {
        let st = rt.container_status(&id).await.unwrap();
        (st.state == ContainerState::Exited).then_some(st)
    })
    .await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "OOMKilled"));
    // The shim removed the container's cgroup.
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/memory/rudder/{id}")).exists());
}

#[tokio::test]
async fn a_failing_start_reports_the_reason() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("bad", true)).await.unwrap();
    let id = rt
        .create_container(&sb, &container("main", vec!["/not/there".into()]), &pod("bad", true))
        .await
        .unwrap();
    let result = rt.start_container(&id).await;
    let st = eventually("exit", 20, || async {
        let st = rt.container_status(&id).await.unwrap();
        (st.state == ContainerState::Exited).then_some(st)
    })
    .await;
    // Either libcontainer refuses at start (StartError, exit 128) or the exec fails in the
    // container (exit 127): both are an exited container with a reason, never a hang.
    assert!(result.is_err() || st.exit_code != 0, "{result:?} {st:?}");
    assert_ne!(st.exit_code, 0);
}

#[tokio::test]
async fn streaming_exec_with_stdin_and_with_a_tty() {
    use rudder_runtime::ExecRequest;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("stream", true)).await.unwrap();
    let id = rt
        .create_container(
            &sb,
            &container("main", vec!["sleep".into(), "300".into()]),
            &pod("stream", true),
        )
        .await
        .unwrap();
    rt.start_container(&id).await.unwrap();

    // stdin without a TTY: what we write comes back through cat.
    let req = ExecRequest { command: sh("cat; echo done >&2; exit 5"), tty: false, stdin: true };
    let mut s = rt.exec(&id, &req).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"through stdin\n").await.unwrap();
    drop(stdin);
    let mut out = String::new();
    s.stdout.read_to_string(&mut out).await.unwrap();
    let mut err = String::new();
    s.stderr.take().unwrap().read_to_string(&mut err).await.unwrap();
    assert_eq!(
        (out.as_str(), err.as_str(), s.exit.await.unwrap()),
        ("through stdin\n", "done\n", 5)
    );

    // A TTY: the process sees a terminal on its stdio (line discipline: CRLF). It is a node
    // pty, so `tty` cannot name it inside the container's own /dev/pts.
    let req = ExecRequest {
        command: sh("test -t 0 && test -t 1 && echo is-a-tty"),
        tty: true,
        stdin: false,
    };
    let mut s = rt.exec(&id, &req).await.unwrap();
    let mut out = String::new();
    s.stdout.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "is-a-tty\r\n");
    assert_eq!(s.exit.await.unwrap(), 0);
}

#[tokio::test]
async fn limits_read_only_rootfs_tmpfs_and_capabilities_apply() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("limits", true)).await.unwrap();
    let mut c = container("main", vec!["sleep".into(), "300".into()]);
    c.resources.cpu_shares = Some(512);
    c.resources.cpu_quota = Some(50_000);
    c.resources.cpu_period = Some(100_000);
    c.resources.pids_limit = Some(42);
    c.security.read_only_rootfs = true;
    c.security.capabilities_drop = vec!["ALL".into()];
    c.mounts.push(rudder_runtime::Mount {
        container_path: "/scratch".into(),
        source: rudder_runtime::MountSource::Tmpfs { size_bytes: Some(1 << 20) },
        readonly: false,
    });
    let id = rt.create_container(&sb, &c, &pod("limits", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();

    // cgroup v1 files of the container's cgroup, read from the node.
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/rudder/{id}/{file}"))
            .unwrap_or_else(|e| panic!("{ctrl}/{file}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(read("pids", "pids.max"), "42");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");

    let r = rt.exec_sync(&id, &sh("touch /rootfs-write 2>&1; echo rc=$?"), 10).await.unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert!(out.contains("Read-only file system") && out.contains("rc=1"), "{out}");
    let r = rt
        .exec_sync(
            &id,
            &sh("echo ok > /scratch/f && cat /scratch/f && grep -c ' /scratch tmpfs' /proc/mounts"),
            10,
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout), "ok\n1\n");
    // All capabilities dropped: the bounding set is empty.
    let r = rt.exec_sync(&id, &sh("grep CapBnd /proc/self/status"), 10).await.unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("0000000000000000"), "{r:?}");
}

#[tokio::test]
async fn listing_one_pods_sandboxes_and_one_sandboxs_containers() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let mut ids = Vec::new();
    for name in ["list-a", "list-b"] {
        let mut cfg = pod(name, true);
        cfg.labels.insert("pod-uid".into(), format!("uid-{name}"));
        let sb = rt.run_pod_sandbox(&cfg).await.unwrap();
        let c = rt.create_container(&sb, &container("main", sh("true")), &cfg).await.unwrap();
        ids.push((sb, c));
    }
    let [(sb_a, c_a), (sb_b, c_b)] = &ids[..] else { unreachable!() };
    // Twice: the first pass reads every record, the second answers from what it learnt.
    for _ in 0..2 {
        let own = rt.list_pod_sandboxes_labelled("pod-uid", "uid-list-a").await.unwrap();
        assert_eq!(own.iter().map(|s| &s.id).collect::<Vec<_>>(), vec![sb_a]);
        let own = rt.list_containers(Some(sb_b)).await.unwrap();
        assert_eq!(own.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![c_b]);
        assert_eq!(rt.list_pod_sandboxes().await.unwrap().len(), 2);
        assert_eq!(rt.list_containers(None).await.unwrap().len(), 2);
    }
    assert!(rt.list_pod_sandboxes_labelled("pod-uid", "uid-other").await.unwrap().is_empty());
    rt.remove_pod_sandbox(sb_a).await.unwrap();
    assert!(rt.list_pod_sandboxes_labelled("pod-uid", "uid-list-a").await.unwrap().is_empty());
    assert!(rt.container_status(c_a).await.is_err());
    let own = rt.list_containers(Some(sb_b)).await.unwrap();
    assert_eq!(own.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![c_b]);
    rt.remove_pod_sandbox(sb_b).await.unwrap();
    assert!(rt.list_containers(None).await.unwrap().is_empty());
}
