//! `pods/exec`, `pods/attach` and `pods/portforward` (upstream's `ExecREST`, `AttachREST`,
//! `PortForwardREST` with the upgrade-aware proxy): the options and the container are
//! checked here, then the request goes to the pod's kubelet with its upgrade headers, and
//! once the kubelet switched protocols (101) the two connections are spliced, whatever the
//! protocol above (WebSocket channels for exec and attach, SPDY/3.1 or SPDY tunnelled in a
//! WebSocket for port-forward). Errors before the switch are ordinary API errors.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, Method, Request, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::kubelet_client::{KubeletClient, error_from};
use crate::object;
use crate::pod_log::{boolean, choose_container, escape, pod_kubelet};
use crate::registry::Registry;
use crate::request::Target;
use crate::status::ApiError;

/// The request headers a protocol switch needs, passed on to the kubelet.
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// The response headers of the kubelet's 101 passed back to the client.
const SWITCH_HEADERS: [&str; 5] = [
    "connection",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// `PodExecOptions` / `PodAttachOptions` from the query string.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub container: Option<String>,
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub ports: Vec<String>,
}

impl StreamOptions {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
        let mut o = StreamOptions::default();
        for (k, v) in pairs {
            match k.as_str() {
                "container" => o.container = Some(v).filter(|c| !c.is_empty()),
                "command" => o.command.push(v),
                "stdin" => o.stdin = boolean(&k, &v)?,
                "stdout" => o.stdout = boolean(&k, &v)?,
                "stderr" => o.stderr = boolean(&k, &v)?,
                "tty" => o.tty = boolean(&k, &v)?,
                "ports" => o.ports.push(v),
                _ => {}
            }
        }
        Ok(o)
    }

    /// The kubelet's query: streams as `1`, the command in order.
    fn kubelet_query(&self) -> String {
        let mut q: Vec<(&str, &str)> =
            self.command.iter().map(|c| ("command", c.as_str())).collect();
        for (name, on) in [
            ("stdin", self.stdin),
            ("stdout", self.stdout),
            ("stderr", self.stderr),
            ("tty", self.tty),
        ] {
            if on {
                q.push((name, "1"));
            }
        }
        q.extend(self.ports.iter().map(|p| ("port", p.as_str())));
        serde_urlencoded::to_string(&q).unwrap_or_default()
    }
}

/// The kubelet path (and query) for `verb` on `pod`.
fn kubelet_path(verb: &str, pod: &Value, options: &StreamOptions) -> Result<String, ApiError> {
    let name = object::name(pod).unwrap_or_default();
    let namespace = object::path(pod, "metadata.namespace").and_then(Value::as_str).unwrap_or("");
    let path = match verb {
        "portforward" => {
            for p in &options.ports {
                if !p.parse::<u16>().is_ok_and(|p| p > 0) {
                    return Err(ApiError::bad_request(format!(
                        "invalid port {p:?}: ports must be in the range 1 to 65535"
                    )));
                }
            }
            format!("/portForward/{}/{}", escape(namespace), escape(name))
        }
        _ => {
            if !(options.stdin || options.stdout || options.stderr) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            if verb == "exec" && options.command.is_empty() {
                return Err(ApiError::bad_request(
                    "you must specify at least one command for the container",
                ));
            }
            let container = choose_container(pod, options.container.as_deref())?;
            let kubelet_verb = if verb == "exec" { "exec" } else { "attach" };
            format!("/{kubelet_verb}/{}/{}/{}", escape(namespace), escape(name), escape(&container))
        }
    };
    let query = options.kubelet_query();
    Ok(if query.is_empty() { path } else { format!("{path}?{query}") })
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, names: &[&str]) {
    for name in names {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else { continue };
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// GET or POST pods/<name>/{exec,attach,portforward}.
pub async fn connect(
    reg: &Registry,
    kubelet: &KubeletClient,
    t: &Target,
    verb: &str,
    mut req: Request<Body>,
) -> Result<Response, ApiError> {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        let action = if req.method() == Method::DELETE { "delete" } else { "update" };
        return Err(ApiError::method_not_allowed(action, t.info));
    }
    let options = StreamOptions::parse(req.uri().query())?;
    let pod = reg.get(&Target { subresource: None, ..t.clone() }).await?;
    let phase = object::path(&pod, "status.phase").and_then(Value::as_str).unwrap_or("");
    if verb != "portforward" && matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {verb} into a container in a completed pod; current phase is {phase}"
        )));
    }
    let path = kubelet_path(verb, &pod, &options)?;
    let (host, port) = pod_kubelet(reg, &pod).await?;
    let mut upstream = hyper::Request::builder()
        .method(req.method().clone())
        .uri(path.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the kubelet request: {e}")))?;
    copy_headers(req.headers(), upstream.headers_mut(), &UPGRADE_HEADERS);
    tracing::debug!(%host, port, %path, "pods/{verb}: proxying to the kubelet");
    let response = kubelet.send(&host, port, upstream).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(error_from(response).await);
    }
    let mut switched = Response::new(Body::empty());
    *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    copy_headers(response.headers(), switched.headers_mut(), &SWITCH_HEADERS);
    if !switched.headers().contains_key(header::UPGRADE) {
        return Err(ApiError::new(
            502,
            "BadGateway",
            "the kubelet switched protocols without saying to which",
        ));
    }
    let client_side = hyper::upgrade::on(&mut req);
    let kubelet_side = hyper::upgrade::on(response);
    tokio::spawn(async move {
        let (client, node) = match tokio::join!(client_side, kubelet_side) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!(client = ?c.err(), kubelet = ?k.err(), "a streaming upgrade did not complete");
                return;
            }
        };
        let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
        match tokio::io::copy_bidirectional(&mut client, &mut node).await {
            Ok((up, down)) => tracing::debug!(up, down, "streaming session ended"),
            Err(e) => tracing::debug!(error = %e, "streaming session ended with an error"),
        }
    });
    Ok(switched)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": { "name": "p", "namespace": "ns" },
            "spec": { "containers": [{ "name": "a" }, { "name": "b" }] },
        })
    }

    #[test]
    fn exec_options_become_the_kubelets_query() {
        let o = StreamOptions::parse(Some(
            "command=sh&command=-c&command=echo+%24HOME&container=b&stdin=true&stdout=true&tty=true",
        ))
        .unwrap();
        assert_eq!(
            kubelet_path("exec", &pod(), &o).unwrap(),
            "/exec/ns/p/b?command=sh&command=-c&command=echo+%24HOME&stdin=1&stdout=1&tty=1"
        );
        let e = kubelet_path("exec", &pod(), &StreamOptions { stdout: true, ..o.clone() }.clone());
        assert!(e.is_ok());
        let none = StreamOptions::parse(Some("command=ls&container=a")).unwrap();
        assert_eq!(
            kubelet_path("exec", &pod(), &none).unwrap_err().message,
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        let no_container = StreamOptions::parse(Some("command=ls&stdout=1")).unwrap();
        assert!(
            kubelet_path("exec", &pod(), &no_container)
                .unwrap_err()
                .message
                .contains("choose one of: [a b]")
        );
        let attach = StreamOptions::parse(Some("container=a&stdin=1&stdout=1")).unwrap();
        assert_eq!(
            kubelet_path("attach", &pod(), &attach).unwrap(),
            "/attach/ns/p/a?stdin=1&stdout=1"
        );
        assert!(StreamOptions::parse(Some("tty=maybe")).is_err());
    }

    #[test]
    fn port_forward_checks_its_ports() {
        let o = StreamOptions::parse(Some("ports=8080&ports=80")).unwrap();
        assert_eq!(
            kubelet_path("portforward", &pod(), &o).unwrap(),
            "/portForward/ns/p?port=8080&port=80"
        );
        let bad = StreamOptions::parse(Some("ports=0")).unwrap();
        assert!(kubelet_path("portforward", &pod(), &bad).is_err());
        assert_eq!(
            kubelet_path("portforward", &pod(), &StreamOptions::default()).unwrap(),
            "/portForward/ns/p"
        );
    }
}
