//! The node agent end to end: `rudder server` with its kubelet and the native runtime (real
//! containers from the busybox test image), driven by the real kubectl 1.33, inside a
//! network namespace each test creates (see `common::node`).

mod common;

use common::eventually;
use common::node::{IMAGE, NodeServer};

fn manifest(template: &str) -> String {
    template.replace("IMAGE", IMAGE)
}

fn phase(node: &NodeServer, pod: &str) -> String {
    node.field(&["pod", pod], "{.status.phase}")
}

fn wait_phase(node: &NodeServer, pod: &str, want: &str) {
    eventually(&format!("pod {pod} {want}"), || (phase(node, pod) == want).then_some(()));
}

#[test]
fn pods_run_with_volumes_env_logs_and_restart_policies() {
    let node = NodeServer::start();
    let s = node.server();

    // The seed's volume example, on busybox: one container appends `date` to a shared
    // emptyDir file, the other serves it over HTTP.
    node.apply(&manifest(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: volume-example
spec:
  containers:
  - name: web
    image: IMAGE
    command: ["httpd", "-f", "-p", "8080", "-h", "/usr/share/nginx/html"]
    volumeMounts:
    - name: html
      mountPath: /usr/share/nginx/html
      readOnly: true
  - name: content
    image: IMAGE
    command: ["/bin/sh", "-c"]
    args:
    - while true; do date >> /html/index.html; sleep 1; done
    volumeMounts:
    - name: html
      mountPath: /html
  volumes:
  - name: html
    emptyDir: {}
"#,
    ));
    wait_phase(&node, "volume-example", "Running");
    let ip = node.field(&["pod", "volume-example"], "{.status.podIP}");
    assert!(ip.starts_with("10.42."), "pod IP {ip:?}");
    let mut last = String::new();
    let page = eventually("the page served at the pod IP", || {
        let out = node.http_get(&format!("http://{ip}:8080/index.html"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if last.is_empty() {
            last = format!("{out:?}");
            eprintln!("first try: {last}");
        }
        text.contains("UTC").then_some(text)
    });
    assert!(page.lines().count() >= 1, "{page}");
    let ready =
        node.field(&["pod", "volume-example"], "{.status.conditions[?(@.type==\"Ready\")].status}");
    assert_eq!(ready, "True");

    // ConfigMap and Secret as env, command arguments and volumes; `kubectl logs` shows them.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(include_str!("fixtures/seeds/031-configmap-manifest-example.yaml")),
    );
    s.kubectl(&["create", "secret", "generic", "creds", "--from-literal=user=admin"]);
    node.apply(&manifest(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: cm-env
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: IMAGE
    command: ["/bin/sh", "-c"]
    args: ["echo CITY=$CITY; echo ARG=$(CITY); echo USER=$USER; cat /etc/cm/state; echo; cat /etc/secret/user"]
    env:
    - name: CITY
      valueFrom:
        configMapKeyRef: {name: manifest-example, key: city}
    - name: USER
      valueFrom:
        secretKeyRef: {name: creds, key: user}
    volumeMounts:
    - {name: cm, mountPath: /etc/cm}
    - {name: secret, mountPath: /etc/secret}
  volumes:
  - name: cm
    configMap: {name: manifest-example}
  - name: secret
    secret: {secretName: creds}
"#,
    ));
    wait_phase(&node, "cm-env", "Succeeded");
    let logs = s.kubectl(&["logs", "cm-env"]);
    for want in ["CITY=Ann Arbor", "ARG=Ann Arbor", "USER=admin", "Michigan", "admin"] {
        assert!(logs.contains(want), "{want:?} missing from logs:\n{logs}");
    }
    let reason =
        node.field(&["pod", "cm-env"], "{.status.containerStatuses[0].state.terminated.reason}");
    assert_eq!(reason, "Completed");

    // A failing Never pod ends Failed with its exit code.
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: fails}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: main, image: IMAGE, command: [sh, -c, 'echo bye; exit 3']}\n",
    ));
    wait_phase(&node, "fails", "Failed");
    assert_eq!(
        node.field(&["pod", "fails"], "{.status.containerStatuses[0].state.terminated.exitCode}"),
        "3"
    );
    assert_eq!(
        node.field(&["pod", "fails"], "{.status.containerStatuses[0].state.terminated.reason}"),
        "Error"
    );

    // A crash-looping container is restarted with back-off; the previous run's logs stay.
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: crasher}\nspec:\n  containers:\n  - {name: main, image: IMAGE, command: [sh, -c, 'echo run at $(date +%s); exit 1']}\n",
    ));
    eventually("crasher restarted", || {
        let n: u32 = node
            .field(&["pod", "crasher"], "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(())
    });
    eventually("CrashLoopBackOff", || {
        let r =
            node.field(&["pod", "crasher"], "{.status.containerStatuses[0].state.waiting.reason}");
        (r == "CrashLoopBackOff").then_some(())
    });
    let previous = s.kubectl(&["logs", "crasher", "--previous"]);
    assert!(previous.contains("run at"), "{previous}");
    let table = s.kubectl(&["get", "pod", "crasher"]);
    assert!(table.contains("CrashLoopBackOff"), "{table}");

    // Killing a container's process from the host gets it restarted.
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sleeper}\nspec:\n  terminationGracePeriodSeconds: 3\n  containers:\n  - {name: main, image: IMAGE, command: [sleep, '3607']}\n",
    ));
    wait_phase(&node, "sleeper", "Running");
    let pid = eventually("the container's process", || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            (cmd == b"sleep\x003607\x00").then_some(pid)
        })
    });
    assert!(
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    eventually("sleeper restarted and Running", || {
        let n = node.field(&["pod", "sleeper"], "{.status.containerStatuses[0].restartCount}");
        let running = node
            .field(&["pod", "sleeper"], "{.status.containerStatuses[0].state.running.startedAt}");
        (n == "1" && !running.is_empty()).then_some(())
    });
    let last = node
        .field(&["pod", "sleeper"], "{.status.containerStatuses[0].lastState.terminated.exitCode}");
    assert_eq!(last, "137");

    // Deleting a pod stops it within its grace period, then it is gone.
    let started = std::time::Instant::now();
    s.kubectl(&["delete", "pod", "sleeper", "--wait=true", "--timeout=30s"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "took {:?}", started.elapsed());
    let gone = s.kubectl_raw(&["get", "pod", "sleeper"], None);
    assert!(!gone.status.success());
}

#[test]
fn probes_restart_and_gate_readiness() {
    let node = NodeServer::start();
    let s = node.server();
    node.apply(&manifest(
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    image: IMAGE
    command: [sh, -c, 'mkdir -p /w; (sleep 4; echo ok > /w/ready) & exec httpd -f -p 8080 -h /w']
    readinessProbe:
      httpGet: {path: /ready, port: 8080}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: dies}
spec:
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, 'touch /tmp/alive; (sleep 3; rm /tmp/alive) & exec sleep 3600']
    livenessProbe:
      exec: {command: [cat, /tmp/alive]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    ));
    wait_phase(&node, "web", "Running");
    // Running but not ready: not in the service's endpoints.
    let ready = node.field(&["pod", "web"], "{.status.containerStatuses[0].ready}");
    let endpoints = node.field(&["endpoints", "web"], "{.subsets[*].addresses[*].ip}");
    if ready == "false" {
        assert!(endpoints.is_empty(), "not-ready pod in endpoints: {endpoints}");
    }
    let ip = node.field(&["pod", "web"], "{.status.podIP}");
    eventually("the ready pod in the endpoints", || {
        (node.field(&["endpoints", "web"], "{.subsets[*].addresses[*].ip}") == ip).then_some(())
    });
    assert_eq!(
        node.field(&["pod", "web"], "{.status.conditions[?(@.type==\"Ready\")].status}"),
        "True"
    );

    eventually("the liveness probe restarting the container", || {
        let n: u32 = node
            .field(&["pod", "dies"], "{.status.containerStatuses[0].restartCount}")
            .parse()
            .ok()?;
        (n >= 1).then_some(())
    });
    let events = s.kubectl(&["get", "events", "--field-selector", "involvedObject.name=dies"]);
    assert!(events.contains("Liveness probe failed"), "{events}");
}

#[test]
fn a_pod_in_its_post_start_hook_gives_its_start_slot_to_the_next_pod() {
    // One start slot: `plain` can only start while `hooked` waits in its postStart hook
    // (which lasts until the test lets it end, two minutes at most) if the hook does not
    // hold the slot.
    let node = NodeServer::start_with(|_| vec!["--parallel-pod-starts".into(), "1".into()]);
    let s = node.server();
    node.apply(&manifest(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 300
  containers:
  - name: main
    image: IMAGE
    command: [sleep, "3600"]
    lifecycle:
      postStart:
        exec: {command: [sh, -c, 'i=0; until [ -f /tmp/go ] || [ $i -ge 600 ]; do sleep 0.2; i=$((i+1)); done']}
"#,
    ));
    eventually("hooked's container started (its hook runs)", || {
        let events =
            s.kubectl(&["get", "events", "--field-selector", "involvedObject.name=hooked"]);
        events.contains("Started container main").then_some(())
    });
    node.apply(&manifest(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers:
  - name: main
    image: IMAGE
    command: [sleep, "3600"]
"#,
    ));
    wait_phase(&node, "plain", "Running");
    assert_eq!(phase(&node, "hooked"), "Pending", "hooked is still in its postStart hook");
    s.kubectl(&["exec", "hooked", "--", "touch", "/tmp/go"]);
    wait_phase(&node, "hooked", "Running");
}

#[test]
fn a_restarted_agent_adopts_running_containers() {
    let mut node = NodeServer::start();
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: keep}\nspec:\n  containers:\n  - {name: main, image: IMAGE, command: [sleep, '3600']}\n",
    ));
    wait_phase(&node, "keep", "Running");
    let id = node.field(&["pod", "keep"], "{.status.containerStatuses[0].containerID}");
    // kill -9 the whole server (API server, controllers, kubelet): the container lives on.
    let mut server = node.server.take().unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let data_dir = server.data_dir.clone();
    std::mem::forget(server._dir.take());
    drop(server);
    let again = common::Server::spawn(
        Some(&node.netns),
        &data_dir,
        &["--node-name", &node.node_name, "--node-ip", "127.0.0.1"],
    );
    node.server = Some(again);
    eventually("the pod Running again", || (phase(&node, "keep") == "Running").then_some(()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(node.field(&["pod", "keep"], "{.status.containerStatuses[0].containerID}"), id);
    assert_eq!(node.field(&["pod", "keep"], "{.status.containerStatuses[0].restartCount}"), "0");
}

#[test]
fn rudder_up_shows_why_the_server_exited() {
    let home = tempfile::tempdir().unwrap();
    let rudder = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rudder"))
            .arg(args[0])
            .arg("--data-dir")
            .arg(home.path().join("state"))
            .args(&args[1..])
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    // Should the server start after all, it does not outlive the test.
    struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "--purge"]);
        }
    }
    let _down = Down(&rudder);
    let out = rudder(&["up", "--timeout", "30s", "--", "--no-such-flag"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rudder server exited"), "{err}");
    // The server's own complaint, from its log, is in the error.
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn rudder_up_status_and_down() {
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let netns = format!("rdr-up-{tag}");
    let run =
        |cmd: &mut std::process::Command| cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(run(std::process::Command::new("ip").args(["netns", "add", &netns])).status.success());
    struct Netns(String);
    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _ns = Netns(netns.clone());
    assert!(
        run(std::process::Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]))
            .status
            .success()
    );
    let home = tempfile::tempdir().unwrap();
    let data = home.path().join("state");
    let rudder = |args: &[&str]| {
        run(common::command_in(Some(&netns), env!("CARGO_BIN_EXE_rudder"))
            .arg(args[0])
            .arg("--data-dir")
            .arg(&data)
            .args(&args[1..])
            .env("HOME", home.path())
            .env_remove("KUBECONFIG"))
    };
    let node = format!("up-{tag}");
    // The test image, for a pod that `rudder down` must stop.
    std::fs::create_dir_all(&data).unwrap();
    let tar = home.path().join("busybox.tar");
    let image = rudder_images::testing::busybox().unwrap();
    std::fs::write(&tar, rudder_images::testing::oci_layout_tar(&image, &[IMAGE]).unwrap())
        .unwrap();
    let import = rudder(&["image", "import", tar.to_str().unwrap()]);
    assert!(import.status.success(), "{import:?}");
    let up = rudder(&[
        "up",
        "--timeout",
        "60s",
        "--",
        "--bind-address",
        "127.0.0.1",
        "--node-name",
        &node,
        "--node-ip",
        "127.0.0.1",
    ]);
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    // Whatever happens next, the server goes.
    struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down", "--purge"]);
        }
    }
    let _down = Down(&rudder);
    assert!(
        up.status.success(),
        "rudder up failed:\n{text}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(text.contains("✓ API server ready"), "{text}");
    assert!(text.contains(&format!("✓ node {node} Ready")), "{text}");
    assert!(text.contains("next: kubectl get nodes"), "{text}");
    let kubeconfig = std::fs::read_to_string(home.path().join(".kube/config")).unwrap();
    assert!(kubeconfig.contains("current-context: rudder"), "{kubeconfig}");
    // kubectl with the merged context reaches the cluster.
    let out = run(common::command_in(Some(&netns), common::KUBECTL)
        .args(["get", "nodes"])
        .env("HOME", home.path())
        .env_remove("KUBECONFIG"));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&node), "{out:?}");
    let status = rudder(&["status"]);
    assert!(status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains(&format!("node {node}: Ready")),
        "{status:?}"
    );
    let kubectl = |args: &[&str], stdin: Option<&str>| {
        let mut c = common::command_in(Some(&netns), common::KUBECTL);
        c.args(args).env("HOME", home.path()).env_remove("KUBECONFIG");
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    kubectl(
        &["apply", "-f", "-"],
        Some(&manifest(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: up}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - {name: main, image: IMAGE, command: [sleep, '3609']}\n",
        )),
    );
    eventually("the pod running", || {
        (kubectl(&["get", "pod", "up", "-o", "jsonpath={.status.phase}"], None) == "Running")
            .then_some(())
    });
    let sleeping = || {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x003609\x00")
        })
    };
    assert!(sleeping());
    // Up again is a no-op that says so.
    let again = rudder(&["up"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"), "{again:?}");

    let down = rudder(&["down", "--purge"]);
    assert!(down.status.success(), "{down:?}");
    assert!(!sleeping(), "rudder down stopped the pod's container");
    assert!(String::from_utf8_lossy(&down.stdout).contains("rudder stopped"));
    assert!(!data.exists(), "state purged");
    // The node's tmpfs run dirs (runtime records, namespace files) are unmounted and gone.
    for dir in rudder_runtime_native::layout::node_run_dirs(&data) {
        assert!(!dir.exists(), "{dir:?} left after down --purge");
        assert!(rudder_runtime_native::rootfs::mounts_under(&dir).is_empty(), "{dir:?} mounted");
    }
    let status = rudder(&["status"]);
    assert!(!status.status.success(), "status after down reports not running");
    let kubeconfig = std::fs::read_to_string(home.path().join(".kube/config")).unwrap();
    assert!(!kubeconfig.contains("name: rudder"), "context removed: {kubeconfig}");
}

#[test]
fn images_are_pulled_per_policy_with_pull_secrets() {
    use rudder_images::testing;
    let mut registry = None;
    let mut host = String::new();
    let node = NodeServer::start_with(|netns| {
        let (reg, h) = common::node::in_netns(netns, || {
            let reg = testing::Registry::start(Some(("bob", "pw"))).expect("registry");
            let rt = tokio::runtime::Runtime::new().unwrap();
            let image = testing::busybox().unwrap();
            rt.block_on(testing::push(&reg, "library/app:1.0", &image)).expect("push");
            let h = reg.host().to_owned();
            (reg, h)
        });
        registry = Some(reg);
        host = h.clone();
        vec!["--insecure-registry".into(), h]
    });
    let s = node.server();
    s.kubectl(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={host}"),
        "--docker-username=bob",
        "--docker-password=pw",
    ]);
    let pod = |name: &str, image: &str, policy: &str, secret: bool| {
        let secrets = if secret { "  imagePullSecrets: [{name: regcred}]\n" } else { "" };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{secrets}  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: \"{image}\", imagePullPolicy: {policy}, command: [sleep, '3600']}}\n"
        )
    };
    let app = format!("{host}/library/app:1.0");
    node.apply(&pod("pulled", &app, "IfNotPresent", true));
    wait_phase(&node, "pulled", "Running");
    let events = s.kubectl(&["get", "events", "--field-selector", "involvedObject.name=pulled"]);
    assert!(events.contains("Successfully pulled image"), "{events}");
    let image_id = node.field(&["pod", "pulled"], "{.status.containerStatuses[0].imageID}");
    assert!(image_id.contains("sha256:"), "{image_id}");

    // Without the secret the registry refuses: ErrImagePull, then ImagePullBackOff.
    node.apply(&pod("denied", &app, "Always", false));
    eventually("ImagePullBackOff", || {
        let r =
            node.field(&["pod", "denied"], "{.status.containerStatuses[0].state.waiting.reason}");
        (r == "ImagePullBackOff").then_some(())
    });
    let events = s.kubectl(&["get", "events", "--field-selector", "involvedObject.name=denied"]);
    assert!(events.contains("Failed to pull image"), "{events}");
    // Never with an image that is not on the node.
    node.apply(&pod("never", &format!("{host}/library/other:1.0"), "Never", true));
    eventually("ErrImageNeverPull", || {
        let r =
            node.field(&["pod", "never"], "{.status.containerStatuses[0].state.waiting.reason}");
        (r == "ErrImageNeverPull").then_some(())
    });
    drop(node);
    drop(registry);
}

#[test]
fn controllers_jobs_logs_oom_and_live_config_on_a_real_node() {
    let node = NodeServer::start();
    let s = node.server();

    // A Deployment's deleted pod is replaced by a Running one; `logs deploy/x` reads one.
    node.apply(&manifest(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - {name: main, image: IMAGE, command: [sh, -c, 'echo hello from $HOSTNAME; exec sleep 3600']}\n",
    ));
    s.kubectl(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let logs = s.kubectl(&["logs", "deploy/web"]);
    assert!(logs.contains("hello from web-"), "{logs}");
    let before =
        s.kubectl(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"]);
    let victim = before.split_whitespace().next().unwrap().to_owned();
    s.kubectl(&["delete", "pod", &victim, "--wait=false"]);
    eventually("a replacement Running", || {
        let out = s.kubectl(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ]);
        let running: Vec<&str> = out
            .split_whitespace()
            .filter(|p| p.ends_with("=Running") && !p.starts_with(&format!("{victim}=")))
            .collect();
        (running.len() == 2).then_some(())
    });

    // The seed's cm-env Job on this node: `kubectl logs job/...` shows the ConfigMap value.
    s.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(include_str!("fixtures/seeds/031-configmap-manifest-example.yaml")),
    );
    let job =
        include_str!("fixtures/seeds/035-job-cm-env-example.yaml").replace("alpine:latest", IMAGE);
    s.kubectl_stdin(&["apply", "-f", "-"], Some(&job));
    // A Job that fails stops at its backoffLimit.
    node.apply(&manifest(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: fails}\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: main, image: IMAGE, command: [sh, -c, 'exit 2']}\n",
    ));
    s.kubectl(&["wait", "--for=condition=complete", "job/cm-env-example", "--timeout=60s"]);
    let logs = s.kubectl(&["logs", "job/cm-env-example"]);
    assert_eq!(logs.trim(), "Ann Arbor");

    // Several containers: -c picks one; -f on a finished pod prints and returns.
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: a, image: IMAGE, command: [sh, -c, 'echo from-a']}\n  - {name: b, image: IMAGE, command: [sh, -c, 'echo from-b; echo line2']}\n",
    ));
    wait_phase(&node, "two", "Succeeded");
    assert_eq!(s.kubectl(&["logs", "two", "-c", "b", "-f"]), "from-b\nline2\n");
    assert_eq!(s.kubectl(&["logs", "two", "-c", "a", "--tail=1"]), "from-a\n");
    // kubectl 1.33 picks the first container itself and says so.
    let out = s.kubectl_raw(&["logs", "two"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-a\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Defaulted container \"a\""), "{out:?}");

    // Over its memory limit a container is OOMKilled.
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hog}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: IMAGE\n    command: [sh, -c, 'a=$(head -c 200000000 /dev/zero | tr \"\\\\0\" x); echo ${#a}']\n    resources: {limits: {memory: 32Mi}}\n",
    ));
    wait_phase(&node, "hog", "Failed");
    assert_eq!(
        node.field(&["pod", "hog"], "{.status.containerStatuses[0].state.terminated.reason}"),
        "OOMKilled"
    );

    // A mounted ConfigMap follows its object.
    s.kubectl(&["create", "configmap", "live", "--from-literal=v=one"]);
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: reader}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: IMAGE\n    command: [sh, -c, 'while true; do cat /etc/live/v; echo; sleep 0.5; done']\n    volumeMounts: [{name: live, mountPath: /etc/live}]\n  volumes:\n  - {name: live, configMap: {name: live}}\n",
    ));
    wait_phase(&node, "reader", "Running");
    eventually("the first value", || {
        s.kubectl(&["logs", "reader", "--tail=1"]).contains("one").then_some(())
    });
    s.kubectl(&["patch", "configmap", "live", "-p", r#"{"data":{"v":"two"}}"#]);
    eventually("the mounted file to change", || {
        s.kubectl(&["logs", "reader", "--tail=1"]).contains("two").then_some(())
    });

    let reason = eventually("the failing job to fail", || {
        let r = s.kubectl(&[
            "get",
            "job",
            "fails",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
        ]);
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(reason, "BackoffLimitExceeded");
    assert_eq!(s.kubectl(&["get", "job", "fails", "-o", "jsonpath={.status.failed}"]), "2");
}

#[test]
fn a_separate_agent_joins_a_control_plane_only_server() {
    // A control-plane-only server and `rudder agent --kubeconfig` as its node.
    let node = NodeServer::start_with(|_| vec!["--disable-agent".into()]);
    assert!(node.agent.is_some());
    let s = node.server();
    node.apply(&manifest(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: hi}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: main, image: IMAGE, command: [sh, -c, 'echo hi from $(hostname)']}\n",
    ));
    wait_phase(&node, "hi", "Succeeded");
    assert_eq!(s.kubectl(&["logs", "hi"]), "hi from hi\n");
    assert_eq!(node.field(&["pod", "hi"], "{.spec.nodeName}"), node.node_name);
}
