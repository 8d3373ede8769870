//! `/portForward/{namespace}/{pod}[/{uid}]`: `kubectl port-forward`'s SPDY/3.1 session
//! (`rudder-portforward`), reached either by a plain `Upgrade: SPDY/3.1` or through a
//! WebSocket whose binary messages carry the SPDY bytes (subprotocol
//! `SPDY/3.1+portforward.k8s.io`, what kubectl 1.33 tries first). Every forwarded
//! connection dials the pod through the kubelet's [`Streams::port_forward`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use rudder_portforward::{
    CONNECTION_UPGRADE, Dialer, HEADER_ACCEPTED_PROTOCOL_VERSIONS, HEADER_PROTOCOL_VERSION,
    Options, PROTOCOL_V1, UPGRADE_SPDY_31, WEBSOCKET_TUNNEL_PROTOCOL,
};
use rudder_runtime::BoxStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::server::text;
use crate::streams::Streams;
use crate::upgrade::{WebSocket, accept_websocket, wants_upgrade};

/// Bytes buffered between a WebSocket tunnel and the SPDY session.
const TUNNEL_BUFFER_BYTES: usize = 256 * 1024;

struct PodDialer {
    streams: Arc<dyn Streams>,
    namespace: String,
    pod: String,
}

#[async_trait]
impl Dialer for PodDialer {
    async fn dial(&self, port: u16) -> Result<BoxStream, String> {
        self.streams.port_forward(&self.namespace, &self.pod, port).await.map_err(|e| e.to_string())
    }
}

/// The protocol versions the client offers (`X-Stream-Protocol-Version`, repeated or
/// comma-separated).
fn offered_versions(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(HEADER_PROTOCOL_VERSION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

pub(crate) async fn serve_port_forward(
    streams: Arc<dyn Streams>,
    Path(params): Path<HashMap<String, String>>,
    mut req: Request<Body>,
) -> Response {
    let (Some(namespace), Some(pod)) = (params.get("namespace"), params.get("pod")) else {
        return text(404, "404 page not found");
    };
    let dialer: Arc<dyn Dialer> =
        Arc::new(PodDialer { streams, namespace: namespace.clone(), pod: pod.clone() });
    let options = Options { pod_name: pod.clone(), ..Options::default() };
    let headers = req.headers();
    if wants_upgrade(headers, "websocket") {
        tracing::debug!(%namespace, %pod, "port-forward through a WebSocket tunnel");
        return accept_websocket(req, &[WEBSOCKET_TUNNEL_PROTOCOL], move |ws, _| async move {
            let io = tunnel(ws);
            if let Err(e) = rudder_portforward::serve(io, dialer, options).await {
                tracing::debug!(error = %e, "port-forward session ended");
            }
        });
    }
    if !wants_upgrade(headers, "spdy/3.1") {
        return text(
            400,
            "unable to upgrade: missing upgrade headers in request: Connection: Upgrade and \
             Upgrade: SPDY/3.1 (or a WebSocket) are required",
        );
    }
    let offered = offered_versions(headers);
    if offered.is_empty() {
        return text(400, format!("unable to upgrade: {HEADER_PROTOCOL_VERSION} is required"));
    }
    if !offered.iter().any(|v| v == PROTOCOL_V1) {
        let mut r = text(
            403,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, \
                 server accepts [{PROTOCOL_V1}]"
            ),
        );
        r.headers_mut()
            .insert(HEADER_ACCEPTED_PROTOCOL_VERSIONS, HeaderValue::from_static(PROTOCOL_V1));
        return r;
    }
    tracing::debug!(%namespace, %pod, "port-forward over SPDY/3.1");
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                if let Err(e) =
                    rudder_portforward::serve(TokioIo::new(upgraded), dialer, options).await
                {
                    tracing::debug!(error = %e, "port-forward session ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "the SPDY upgrade did not complete"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static(CONNECTION_UPGRADE));
    h.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_SPDY_31));
    h.insert(HEADER_PROTOCOL_VERSION, HeaderValue::from_static(PROTOCOL_V1));
    r
}

/// The byte stream a WebSocket tunnel carries: binary message payloads in order, each way
/// (message boundaries mean nothing); a text message or a close ends it.
fn tunnel(ws: WebSocket) -> tokio::io::DuplexStream {
    let (session_side, mut tunnel_side) = tokio::io::duplex(TUNNEL_BUFFER_BYTES);
    tokio::spawn(async move {
        let (mut sink, mut incoming) = ws.split();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Binary(data))) => {
                        if tunnel_side.write_all(&data).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    _ => break,
                },
                n = tunnel_side.read(&mut buf) => match n {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        let _ = sink.close().await;
    });
    session_side
}
