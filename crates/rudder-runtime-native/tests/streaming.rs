//! Streaming with real containers (root, as CI runs): attach to a container's main process
//! with a terminal and with plain stdin (stdinOnce), terminal resizes for attach and exec,
//! and port-forwarding into a pod's network namespace.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rudder_runtime::{
    AttachRequest, BoxRead, ContainerConfig, ContainerMetadata, ContainerState, ExecRequest,
    Runtime, TerminalSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn container(name: &str, command: Vec<String>) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata { name: name.into(), attempt: 0 },
        image: "busybox".into(),
        command,
        ..Default::default()
    }
}

/// Reads from `r` until the text read so far contains `want` (or fails after 20 s).
async fn read_until(r: &mut BoxRead, seen: &mut String, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 4096];
    while !seen.contains(want) {
        let n = tokio::time::timeout_at(deadline, r.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {want:?}; read so far: {seen:?}"))
            .unwrap();
        assert!(n > 0, "the stream ended before {want:?}; read so far: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn attach_to_a_terminal_types_into_the_shell_and_resizes_it() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("attach-tty", true)).await.unwrap();
    let mut c = container("shell", vec!["sh".into()]);
    (c.tty, c.stdin) = (true, true);
    let id = rt.create_container(&sb, &c, &pod("attach-tty", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();

    let req = AttachRequest { stdin: true, stdout: true, stderr: true };
    let mut s = rt.attach(&id, &req).await.unwrap();
    assert!(s.stderr.is_none(), "a terminal merges stderr into stdout");
    let resize = s.resize.take().expect("a TTY container takes resizes");
    resize.send(TerminalSize { width: 101, height: 31 }).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    let mut out = s.stdout.take().unwrap();
    let mut seen = String::new();
    // The resize and the typing travel separately: ask until the size shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        stdin.write_all(b"stty size; echo mark$((40+2))\n").await.unwrap();
        read_until(&mut out, &mut seen, "mark42").await;
        if seen.contains("31 101") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "size never applied: {seen:?}");
        seen.clear();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The terminal is the container's own, and the shell's controlling terminal.
    seen.clear();
    stdin.write_all(b"tty; echo ctty=$(cut -d' ' -f7 /proc/$$/stat)=\n").await.unwrap();
    read_until(&mut out, &mut seen, "/dev/pts/").await;
    read_until(&mut out, &mut seen, "=\r\n").await;
    assert!(!seen.contains("ctty=0="), "no controlling terminal: {seen:?}");
    stdin.write_all(b"exit 3\n").await.unwrap();
    assert_eq!(s.exit.await.unwrap(), 3);
    let st = eventually("exit", 20, || async {
        let st = rt.container_status(&id).await.unwrap();
        (st.state == ContainerState::Exited).then_some(st)
    })
    .await;
    assert_eq!(st.exit_code, 3);
    // What the terminal showed is in the log, as stdout.
    let log = std::fs::read_to_string(st.log_path.unwrap()).unwrap();
    assert!(log.contains(" stdout ") && log.contains("mark42"), "{log}");
}

#[tokio::test]
async fn stdin_once_closes_stdin_when_the_first_attach_detaches() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("attach-once", true)).await.unwrap();
    let mut c = container("cat", sh("cat; echo eof-seen >&2"));
    (c.stdin, c.stdin_once) = (true, true);
    let id = rt.create_container(&sb, &c, &pod("attach-once", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();

    // An attach without stdin only watches.
    let mut watcher =
        rt.attach(&id, &AttachRequest { stdin: false, stdout: true, stderr: true }).await.unwrap();
    assert!(watcher.stdin.is_none() && watcher.resize.is_none());

    let mut s =
        rt.attach(&id, &AttachRequest { stdin: true, stdout: true, stderr: true }).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"hello through attach\n").await.unwrap();
    let mut seen = String::new();
    read_until(s.stdout.as_mut().unwrap(), &mut seen, "hello through attach\n").await;
    let mut watched = String::new();
    read_until(watcher.stdout.as_mut().unwrap(), &mut watched, "hello through attach\n").await;
    // Closing this session's stdin is the first detach: cat sees EOF and the process ends.
    drop(stdin);
    let mut err = String::new();
    read_until(s.stderr.as_mut().unwrap(), &mut err, "eof-seen").await;
    assert_eq!(s.exit.await.unwrap(), 0);
    assert_eq!(watcher.exit.await.unwrap(), 0);
    // After the exit there is nothing to attach to.
    eventually("the recorded exit", 20, || async {
        (rt.container_status(&id).await.unwrap().state == ContainerState::Exited).then_some(())
    })
    .await;
    let e = rt
        .attach(&id, &AttachRequest { stdin: false, stdout: true, stderr: false })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Exited"), "{e}");
}

#[tokio::test]
async fn attaching_stdin_needs_a_container_created_with_stdin() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("attach-nostdin", true)).await.unwrap();
    let c = container("ticker", sh("while true; do echo tick; sleep 0.1; done"));
    let id = rt.create_container(&sb, &c, &pod("attach-nostdin", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let e = rt
        .attach(&id, &AttachRequest { stdin: true, stdout: true, stderr: false })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("stdin"), "{e}");
    // Output-only attaches see the output from now on; dropping the session detaches.
    for _ in 0..3 {
        let mut s = rt
            .attach(&id, &AttachRequest { stdin: false, stdout: true, stderr: false })
            .await
            .unwrap();
        let mut seen = String::new();
        read_until(s.stdout.as_mut().unwrap(), &mut seen, "tick\n").await;
    }
    assert_eq!(rt.container_status(&id).await.unwrap().state, ContainerState::Running);
}

#[tokio::test]
async fn exec_with_a_terminal_runs_as_the_container_user_and_resizes() {
    let t = runtime_with(Arc::new(HostNetworkOnly));
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("exec-tty", true)).await.unwrap();
    let mut c = container("main", vec!["sleep".into(), "300".into()]);
    c.security.run_as_user = Some(1000);
    c.envs.push(("FROM_POD".into(), "yes".into()));
    let id = rt.create_container(&sb, &c, &pod("exec-tty", true)).await.unwrap();
    rt.start_container(&id).await.unwrap();

    // exec is the container's process with another command: its user and environment.
    let r = rt.exec_sync(&id, &sh("echo $(id -u) $FROM_POD"), 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "1000 yes");
    // SIGPIPE keeps its default disposition in the container and in exec'd processes (the
    // shim and the helper, Rust programs, ignore it): bit 13-1 of SigIgn is clear.
    let r = rt.exec_sync(&id, &sh("grep SigIgn /proc/1/status /proc/self/status"), 10).await;
    let out = String::from_utf8_lossy(&r.unwrap().stdout).into_owned();
    let ignored: Vec<u64> = out
        .lines()
        .map(|l| u64::from_str_radix(l.rsplit(['\t', ':']).next().unwrap().trim(), 16).unwrap())
        .collect();
    assert_eq!(ignored.len(), 2, "{out}");
    assert!(ignored.iter().all(|m| m & (1 << 12) == 0), "SIGPIPE ignored: {out}");

    let req = ExecRequest { command: vec!["sh".into()], tty: true, stdin: true };
    let mut s = rt.exec(&id, &req).await.unwrap();
    let resize = s.resize.take().expect("a TTY exec takes resizes");
    resize.send(TerminalSize { width: 77, height: 22 }).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        stdin.write_all(b"stty size; echo mark$((40+2))\n").await.unwrap();
        read_until(&mut s.stdout, &mut seen, "mark42").await;
        if seen.contains("22 77") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "size never applied: {seen:?}");
        seen.clear();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen.clear();
    stdin.write_all(b"tty; echo ctty=$(cut -d' ' -f7 /proc/$$/stat)=; exit 4\n").await.unwrap();
    read_until(&mut s.stdout, &mut seen, "/dev/pts/").await;
    read_until(&mut s.stdout, &mut seen, "=\r\n").await;
    assert!(!seen.contains("ctty=0="), "no controlling terminal: {seen:?}");
    assert_eq!(s.exit.await.unwrap(), 4);
}

#[tokio::test]
async fn port_forward_reaches_the_pods_loopback() {
    let node = NodeNet::new();
    let t = runtime_with(node.adapter.clone());
    let rt = &t.runtime;
    let sb = rt.run_pod_sandbox(&pod("pf", false)).await.unwrap();
    // httpd listens on the pod's loopback only: nothing outside the pod reaches it.
    let c = container(
        "web",
        sh("mkdir -p /www && echo served-inside > /www/index.html && \
            httpd -f -p 127.0.0.1:8080 -h /www"),
    );
    let id = rt.create_container(&sb, &c, &pod("pf", false)).await.unwrap();
    rt.start_container(&id).await.unwrap();
    let body = eventually("the forwarded port", 20, || async {
        let mut conn = rt.port_forward(&sb, 8080).await.ok()?;
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await.ok()?;
        let mut body = String::new();
        conn.read_to_string(&mut body).await.ok()?;
        body.contains("served-inside").then_some(body)
    })
    .await;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    let e = match rt.port_forward(&sb, 8081).await {
        Ok(_) => panic!("nothing listens on 8081"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("localhost:8081") && e.contains("refused"), "{e}");
    let e = match rt.port_forward("no-such-sandbox", 80).await {
        Ok(_) => panic!("no such sandbox"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("not found"), "{e}");
}
