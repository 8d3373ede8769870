//! `kubectl exec`, `attach` and `port-forward` end to end: the real kubectl 1.33 through the
//! API server's proxy to the kubelet and the native runtime, on real containers (root, in a
//! network namespace the test creates; see `common::node`).

mod common;

use common::eventually;
use common::node::{IMAGE, NodeServer};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: shell
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: IMAGE
    command: ["sleep", "3600"]
  - name: reader
    image: IMAGE
    command: ["sh", "-c", "cat; echo reader-done"]
    stdin: true
    stdinOnce: true
"#;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn kubectl_exec_and_attach_reach_the_containers() {
    let node = NodeServer::start();
    let s = node.server();
    node.apply(&POD.replace("IMAGE", IMAGE));
    eventually("pod shell Running", || {
        (node.field(&["pod", "shell"], "{.status.phase}") == "Running").then_some(())
    });

    // Output on both streams, and the exit code becomes kubectl's.
    let out = s.kubectl_raw(
        &["exec", "shell", "-c", "main", "--", "sh", "-c", "echo $((6*7)); echo oops >&2"],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "42\n");
    assert!(text(&out.stderr).contains("oops"), "{}", text(&out.stderr));
    let out = s.kubectl_raw(&["exec", "shell", "-c", "main", "--", "sh", "-c", "exit 3"], None);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));

    // stdin through, and its end reaches the process.
    let out = s.kubectl_raw(
        &["exec", "-i", "shell", "-c", "main", "--", "sh", "-c", "cat; echo eof"],
        Some("piped in\n"),
    );
    assert_eq!(text(&out.stdout), "piped in\neof\n", "{}", text(&out.stderr));
    // Without -c kubectl picks the first container (and says so).
    let out = s.kubectl_raw(&["exec", "shell", "--", "hostname"], None);
    assert_eq!(text(&out.stdout), "shell\n", "{}", text(&out.stderr));

    // Errors come back as API errors.
    let e = s.kubectl_fails(&["exec", "nope", "--", "true"], None);
    assert!(e.contains("\"nope\" not found"), "{e}");
    let e = s.kubectl_fails(&["exec", "shell", "-c", "other", "--", "true"], None);
    assert!(e.contains("container other is not valid for pod shell"), "{e}");
    let e = s.kubectl_fails(&["exec", "shell", "-c", "main", "--", "/no/such"], None);
    assert!(e.contains("'/no/such' not found"), "{e}");

    // Attach to a process waiting on stdin (stdinOnce): what kubectl sends arrives, and its
    // end closes the process's stdin, so it finishes.
    let out = s.kubectl_raw(&["attach", "-i", "shell", "-c", "reader"], Some("via attach\n"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("via attach"), "{stdout} {}", text(&out.stderr));
    eventually("reader to finish", || {
        let logs = s.kubectl(&["logs", "shell", "-c", "reader"]);
        logs.contains("reader-done").then_some(())
    });
    eventually("reader's exit code in the pod status", || {
        let code = node.field(
            &["pod", "shell"],
            "{.status.containerStatuses[?(@.name==\"reader\")].state.terminated.exitCode}",
        );
        (code == "0").then_some(())
    });
    // The other container keeps running and still takes execs.
    assert_eq!(s.kubectl(&["exec", "shell", "-c", "main", "--", "echo", "still"]), "still\n");

    // The official Python client speaks v4.channel.k8s.io.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/exec_client.py");
    let out = common::command_in(Some(&node.netns), "timeout")
        .args(["60", "python3", "-u", script])
        .arg(s.kubeconfig())
        .args(["shell", "main"])
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "py-42\ngot-hello\nexit 5\n", "{}", text(&out.stderr));
}

/// Runs `shell_command` (kubectl with `-t`) under `script`, which gives it a terminal of
/// 29 rows and 91 columns with `input` typed into it; returns (exit code, what it showed).
fn in_terminal(node: &NodeServer, shell_command: &str, input: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let kubeconfig = node.server().kubeconfig();
    let script = format!(
        "stty cols 91 rows 29; KUBECONFIG={} {} {shell_command}",
        kubeconfig.display(),
        common::KUBECTL
    );
    let mut child = common::command_in(Some(&node.netns), "script")
        .args(["-qec", &script, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

#[test]
fn kubectl_with_a_terminal_exec_and_run() {
    let node = NodeServer::start();
    let s = node.server();
    node.apply(&POD.replace("IMAGE", IMAGE));
    eventually("pod shell Running", || {
        (node.field(&["pod", "shell"], "{.status.phase}") == "Running").then_some(())
    });

    // kubectl sends its terminal's size; the process sees it (resizes race the first
    // command, as upstream: poll a moment) on a terminal of its own.
    let probe = "for i in $(seq 50); do s=$(stty size); [ \"$s\" = \"29 91\" ] && break; \
                 sleep 0.1; done; echo size=$s; tty; exit 4";
    let (code, shown) =
        in_terminal(&node, &format!("exec -it shell -c main -- sh -c '{probe}'"), "");
    assert!(shown.contains("size=29 91"), "{shown}");
    assert!(shown.contains("/dev/pts/"), "{shown}");
    assert_eq!(code, Some(4), "{shown}");

    // An interactive shell: what is typed runs.
    let (code, shown) =
        in_terminal(&node, "exec -it shell -c main -- sh", "echo typed-$((2+3))\nexit\n");
    assert!(shown.contains("typed-5"), "{shown}");
    assert_eq!(code, Some(0), "{shown}");

    // kubectl run -it --rm: a pod with a terminal, attached to, then deleted.
    let image = format!("--image={IMAGE}");
    let (_, shown) = in_terminal(
        &node,
        &format!("run -it --rm --restart=Never t {image} -- sh"),
        "echo from-run-$((6*7))\nexit\n",
    );
    assert!(shown.contains("from-run-42"), "{shown}");
    assert!(shown.contains("pod \"t\" deleted") || shown.contains("deleted"), "{shown}");
    eventually("pod t gone", || {
        let out = s.kubectl_raw(&["get", "pod", "t"], None);
        (!out.status.success()).then_some(())
    });
}

/// A `kubectl port-forward` running in the node's namespace; killed on drop.
struct Forward(std::process::Child);

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port_forward(node: &NodeServer, args: &[&str], websockets: bool) -> Forward {
    let child = common::command_in(Some(&node.netns), common::KUBECTL)
        .arg("port-forward")
        .args(args)
        .env("KUBECONFIG", node.server().kubeconfig())
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if websockets { "true" } else { "false" })
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Forward(child)
}

#[test]
fn kubectl_port_forward_reaches_a_port_only_the_pod_sees() {
    let node = NodeServer::start();
    node.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {{app: web}}
spec:
  containers:
  - name: httpd
    image: {IMAGE}
    command: ["sh", "-c", "mkdir -p /www && echo through-the-tunnel > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 8080
"#
    ));
    eventually("pod web Running", || {
        (node.field(&["pod", "web"], "{.status.phase}") == "Running").then_some(())
    });
    // The pod listens on its loopback only: nothing outside reaches it but port-forward.
    // Over the WebSocket tunnel (kubectl's default), plain SPDY, and by Service.
    for (local, target, websockets) in
        [("18080", "pod/web", true), ("18081", "pod/web", false), ("18082", "svc/web", true)]
    {
        let remote = if target.starts_with("svc") { "80" } else { "8080" };
        let mapping = format!("{local}:{remote}");
        let _forward = port_forward(&node, &[target, &mapping], websockets);
        let url = format!("http://127.0.0.1:{local}/index.html");
        let body = eventually(&format!("{target} forwarded on {local}"), || {
            let out = node.http_get(&url);
            let body = text(&out.stdout);
            body.contains("through-the-tunnel").then_some(body)
        });
        assert_eq!(body, "through-the-tunnel\n");
        // Several connections over one session.
        for _ in 0..3 {
            assert_eq!(text(&node.http_get(&url).stdout), "through-the-tunnel\n");
        }
    }
    // Nothing listens on 9999 in the pod: the connection fails, kubectl reports it.
    let out = common::command_in(Some(&node.netns), "timeout")
        .args(["20", common::KUBECTL, "port-forward", "pod/web", "18083:9999"])
        .env("KUBECONFIG", node.server().kubeconfig())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let fetched = eventually("a refused forwarded connection", || {
        let out = node.http_get("http://127.0.0.1:18083/");
        (!out.status.success() && !text(&out.stderr).contains("Failed to connect")).then_some(out)
    });
    let kubectl = out.wait_with_output().unwrap();
    let stderr = text(&kubectl.stderr);
    assert!(
        stderr.contains("error forwarding port 9999") && stderr.contains("refused"),
        "curl: {}\nkubectl: {stderr}",
        text(&fetched.stderr)
    );
}
