//! The streaming routes: `/exec/{namespace}/{pod}[/{uid}]/{container}` and
//! `/attach/{namespace}/{pod}[/{uid}]/{container}` over a WebSocket (see
//! [`crate::remotecommand`]). The API server's `pods/exec` and `pods/attach` proxy here.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery};
use axum::http::Request;
use axum::response::Response;
use rudder_runtime::{AttachRequest, ExecRequest};

use crate::remotecommand::{self, Session, StreamOptions};
use crate::server::text;
use crate::streams::Streams;
use crate::upgrade::accept_websocket;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verb {
    Exec,
    Attach,
}

/// The pod and container a streaming path names (the optional uid segment is ignored: the
/// kubelet's pod of that name is the one).
fn target(params: &HashMap<String, String>) -> Option<(&str, &str, &str)> {
    Some((
        params.get("namespace")?.as_str(),
        params.get("pod")?.as_str(),
        params.get("container")?.as_str(),
    ))
}

pub(crate) async fn serve_stream(
    verb: Verb,
    streams: Arc<dyn Streams>,
    Path(params): Path<HashMap<String, String>>,
    RawQuery(query): RawQuery,
    req: Request<Body>,
) -> Response {
    let Some((namespace, pod, container)) = target(&params) else {
        return text(404, "404 page not found");
    };
    let opts = match StreamOptions::from_query(query.as_deref().unwrap_or(""), verb == Verb::Exec) {
        Ok(o) => o,
        Err(e) => return text(400, e),
    };
    // The session is opened before the upgrade, so a missing pod or a stopped container is
    // a plain HTTP error the client shows, not a dropped connection.
    let mut session: Session = match verb {
        Verb::Exec => {
            let request =
                ExecRequest { command: opts.command.clone(), tty: opts.tty, stdin: opts.stdin };
            match streams.exec(namespace, pod, container, &request).await {
                Ok(s) => s.into(),
                Err(e) => return text(e.status(), e.to_string()),
            }
        }
        Verb::Attach => {
            let request =
                AttachRequest { stdin: opts.stdin, stdout: opts.stdout, stderr: opts.stderr };
            match streams.attach(namespace, pod, container, &request).await {
                Ok(s) => s.into(),
                Err(e) => return text(e.status(), e.to_string()),
            }
        }
    };
    if !opts.stdout {
        session.stdout = None;
    }
    if !opts.stderr {
        session.stderr = None;
    }
    tracing::debug!(?verb, %namespace, %pod, %container, tty = opts.tty, "streaming session");
    accept_websocket(req, &remotecommand::PROTOCOLS, move |ws, protocol| {
        remotecommand::serve(ws, protocol, session)
    })
}
