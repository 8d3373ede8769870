//! Running a probe or lifecycle-hook action against a container: exec (through the
//! runtime), HTTP GET and TCP connect (to the pod IP from the node), sleep.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use rudder_runtime::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where an action is aimed.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    pub container: &'a Container,
    pub container_id: &'a str,
    /// Pod IP (node IP for host-network pods).
    pub host: &'a str,
}

/// The result of one action: Ok, or why it failed (upstream's wording where it has one).
pub type Outcome = Result<(), String>;

/// A named or numeric port of the container.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

pub async fn exec(
    runtime: &dyn Runtime,
    t: &Target<'_>,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    match runtime.exec_sync(t.container_id, command, timeout.as_secs().max(1)).await {
        Ok(r) if r.exit_code == 0 => Ok(()),
        Ok(r) => {
            let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            let out = out.trim();
            Err(if out.is_empty() {
                format!("command {command:?} exited with {}", r.exit_code)
            } else {
                format!("command {command:?} exited with {}: {out}", r.exit_code)
            })
        }
        Err(e) => Err(e.to_string()),
    }
}

pub async fn tcp(t: &Target<'_>, a: &TCPSocketAction, timeout: Duration) -> Outcome {
    let port = resolve_port(&a.port, t.container)?;
    let host = a.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(t.host);
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {host}:{port}: connect: {e}")),
        Err(_) => Err(format!("dial tcp {host}:{port}: i/o timeout")),
    }
}

/// An HTTP/1.1 GET; 200 <= status < 400 succeeds. Only the status line is read.
pub async fn http_get(t: &Target<'_>, a: &HTTPGetAction, timeout: Duration) -> Outcome {
    let scheme = a.scheme.as_deref().unwrap_or("HTTP");
    if scheme.eq_ignore_ascii_case("HTTPS") {
        return Err("HTTPS probes and hooks are not supported by rudder yet".into());
    }
    let port = resolve_port(&a.port, t.container)?;
    let host = a.host.as_deref().filter(|h| !h.is_empty()).unwrap_or(t.host);
    let path = a.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let url = format!("http://{host}:{port}{path}");
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    let headers = a.http_headers.clone().unwrap_or_default();
    let has = |n: &str| headers.iter().any(|h| h.name.eq_ignore_ascii_case(n));
    if !has("host") {
        request.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !has("user-agent") {
        request.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for h in &headers {
        request.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    request.push_str("Connection: close\r\n\r\n");
    let attempt = async {
        let mut s = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: connect: {e}"))?;
        s.write_all(request.as_bytes()).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s.read(&mut chunk).await.map_err(|e| format!("Get \"{url}\": {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn container() -> Container {
        serde_json::from_value(
            serde_json::json!({"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap()
    }

    #[test]
    fn ports_by_name_or_number() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::Int(81), &c), Ok(81));
        assert!(
            resolve_port(&IntOrString::String("nope".into()), &c)
                .unwrap_err()
                .contains("couldn't find port")
        );
    }

    async fn serve_once(status: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).into_owned();
                let code = if req.starts_with("GET /healthz ") && req.contains("X-Test: 1") {
                    status
                } else {
                    "404 Not Found"
                };
                let _ = s
                    .write_all(format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        port
    }

    #[tokio::test]
    async fn http_and_tcp_actions() {
        let c = container();
        let t = Target { container: &c, container_id: "x", host: "127.0.0.1" };
        let ok = serve_once("200 OK").await;
        let action = |port: u16| -> HTTPGetAction {
            serde_json::from_value(serde_json::json!({"path": "/healthz", "port": port, "httpHeaders": [{"name": "X-Test", "value": "1"}]})).unwrap()
        };
        assert_eq!(http_get(&t, &action(ok), Duration::from_secs(5)).await, Ok(()));
        let bad = serve_once("500 Internal Server Error").await;
        assert_eq!(
            http_get(&t, &action(bad), Duration::from_secs(5)).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        let tcp_ok: TCPSocketAction =
            serde_json::from_value(serde_json::json!({"port": ok})).unwrap();
        assert_eq!(tcp(&t, &tcp_ok, Duration::from_secs(5)).await, Ok(()));
        // A port nothing listens on (bound then dropped).
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let tcp_bad: TCPSocketAction =
            serde_json::from_value(serde_json::json!({"port": closed})).unwrap();
        assert!(tcp(&t, &tcp_bad, Duration::from_secs(5)).await.unwrap_err().contains("connect"));
    }
}
