//! The real kubectl 1.33 against `serve`, behind a fake API server on loopback: plain SPDY
//! (kubectl's fallback) and the WebSocket tunnel (kubectl's default).

mod support;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use support::fake_apiserver::FakeApiServer;
use support::*;

const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

struct PortForward {
    child: Child,
    local_port: u16,
    _dir: tempfile::TempDir,
}

impl PortForward {
    /// Stops kubectl and returns what it wrote on stderr.
    async fn stop(mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr).await;
        }
        stderr
    }
}

/// Runs `kubectl port-forward pod/web :<remote>` and waits for its "Forwarding from" line.
/// `websocket`: the KUBECTL_PORT_FORWARD_WEBSOCKETS setting (None: kubectl's default).
async fn kubectl_port_forward(
    server: &FakeApiServer,
    remote: u16,
    websocket: Option<bool>,
) -> PortForward {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let mut command = Command::new(KUBECTL);
    command.env_remove("KUBECTL_PORT_FORWARD_WEBSOCKETS");
    if let Some(websocket) = websocket {
        command.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", if websocket { "true" } else { "false" });
    }
    let mut child = command
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["port-forward", "pod/web", &format!(":{remote}"), "--address", "127.0.0.1"])
        .env("HOME", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run kubectl 1.33");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("kubectl did not start forwarding")
        .unwrap()
        .unwrap_or_default();
    let local_port = line
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected kubectl output {line:?}"));
    // keep draining stdout ("Handling connection for ...")
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    PortForward { child, local_port, _dir: dir }
}

async fn echo_round_trip(local_port: u16, payload: Vec<u8>) {
    let conn = TcpStream::connect(("127.0.0.1", local_port)).await.unwrap();
    let (mut r, mut w) = conn.into_split();
    let expected = payload.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(expected.len());
    tokio::time::timeout(WAIT, r.read_to_end(&mut got)).await.expect("echo").unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "echoed bytes differ");
}

async fn forwards_echo(websocket: bool) -> FakeApiServer {
    let echo = echo_server().await;
    let server = FakeApiServer::start(MapDialer::new(&[(8080, echo)]), options(), websocket).await;
    let pf = kubectl_port_forward(&server, 8080, Some(websocket)).await;
    // three connections at once, one of them 8 MiB each way
    tokio::join!(
        echo_round_trip(pf.local_port, pattern(8 << 20, 1)),
        echo_round_trip(pf.local_port, pattern(1000, 2)),
        echo_round_trip(pf.local_port, b"hello".to_vec()),
    );
    // and one more after those finished, on the same session
    echo_round_trip(pf.local_port, b"again".to_vec()).await;
    let stderr = pf.stop().await;
    // kubectl logs any trouble with a stream (resets, error-stream messages) on stderr
    assert!(stderr.trim().is_empty(), "kubectl stderr: {stderr}");
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_forwards_over_spdy() {
    let server = forwards_echo(false).await;
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "POST /api/v1/namespaces/default/pods/web/portforward SPDY/3.1"),
        "{requests:#?}"
    );
    assert!(!requests.iter().any(|r| r.ends_with("websocket")), "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_forwards_over_the_websocket_tunnel() {
    let server = forwards_echo(true).await;
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "GET /api/v1/namespaces/default/pods/web/portforward websocket"),
        "{requests:#?}"
    );
    assert!(!requests.iter().any(|r| r.starts_with("POST")), "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// kubectl 1.33 tries the WebSocket tunnel by default and falls back to plain SPDY.
async fn kubectl_falls_back_to_spdy_when_the_tunnel_is_refused() {
    let echo = echo_server().await;
    let server = FakeApiServer::start(MapDialer::new(&[(8080, echo)]), options(), false).await;
    let pf = kubectl_port_forward(&server, 8080, None).await;
    echo_round_trip(pf.local_port, b"fallback".to_vec()).await;
    let requests = server.requests();
    let ws = requests.iter().position(|r| r.ends_with("portforward websocket"));
    let spdy = requests.iter().position(|r| r.ends_with("portforward SPDY/3.1"));
    assert!(ws.is_some() && spdy.is_some() && ws < spdy, "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_the_error_stream_message() {
    let refused = closed_port().await;
    let server = FakeApiServer::start(MapDialer::new(&[(8080, refused)]), options(), true).await;
    let mut pf = kubectl_port_forward(&server, 8080, None).await;
    let mut conn = TcpStream::connect(("127.0.0.1", pf.local_port)).await.unwrap();
    let mut rest = Vec::new();
    // kubectl closes the local connection
    let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await.expect("local close");
    // and, since the error stream said something, gives up on the whole session
    let status = tokio::time::timeout(WAIT, pf.child.wait()).await.expect("kubectl exit").unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    pf.child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    assert!(
        stderr.contains("error forwarding port 8080 to pod web-0, uid uid-1: "),
        "kubectl stderr: {stderr}"
    );
    assert!(stderr.contains("lost connection to pod"), "kubectl stderr: {stderr}");
}
