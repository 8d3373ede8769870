//! The HTTP side of the streaming endpoints: WebSocket handshakes (RFC 6455, with the
//! Kubernetes subprotocols) and handing the upgraded connection to a session task.

use std::future::Future;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::server::text;

/// The upgraded connection a session runs on.
pub(crate) type Upgraded = TokioIo<hyper::upgrade::Upgraded>;
pub(crate) type WebSocket = WebSocketStream<Upgraded>;

/// Largest message accepted from a client (kubectl sends stdin in 32 KiB pieces).
const MAX_MESSAGE_BYTES: usize = 4 << 20;

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the request asks for an upgrade to `protocol` (`websocket`, `SPDY/3.1`).
pub(crate) fn wants_upgrade(headers: &HeaderMap, protocol: &str) -> bool {
    has_token(headers, header::CONNECTION, "upgrade")
        && has_token(headers, header::UPGRADE, protocol)
}

/// The client's offered subprotocols, in its order of preference.
pub(crate) fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The first protocol the client offers that we support (upstream's negotiation).
pub(crate) fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    offered.iter().find_map(|o| supported.iter().copied().find(|s| s == o))
}

/// Completes a WebSocket handshake choosing one of `supported` subprotocols, and runs
/// `session` on the connection once the 101 response went out. Refusals are the responses
/// upstream gives (400 with the reason).
pub(crate) fn accept_websocket<F, Fut>(
    mut req: Request<Body>,
    supported: &[&'static str],
    session: F,
) -> Response
where
    F: FnOnce(WebSocket, &'static str) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let headers = req.headers();
    if !wants_upgrade(headers, "websocket") {
        return text(
            400,
            "this endpoint needs a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).and_then(|v| v.to_str().ok()) != Some("13") {
        return text(400, "unsupported WebSocket version (Sec-WebSocket-Version must be 13)");
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
        return text(400, "missing Sec-WebSocket-Key");
    };
    let offered = offered_protocols(headers);
    let Some(protocol) = negotiate(&offered, supported) else {
        return text(
            400,
            format!("requested protocol(s) are not supported: {offered:?}; supports {supported:?}"),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_MESSAGE_BYTES))
                    .max_frame_size(Some(MAX_MESSAGE_BYTES));
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                session(ws, protocol).await;
            }
            Err(e) => tracing::debug!(error = %e, "the WebSocket upgrade did not complete"),
        }
    });
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_clients_first_supported_protocol() {
        let mut h = HeaderMap::new();
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v6.x, v5.channel.k8s.io"),
        );
        h.append(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v4.channel.k8s.io"));
        let offered = offered_protocols(&h);
        assert_eq!(offered, ["v6.x", "v5.channel.k8s.io", "v4.channel.k8s.io"]);
        let supported = ["v4.channel.k8s.io", "v5.channel.k8s.io"];
        assert_eq!(negotiate(&offered, &supported), Some("v5.channel.k8s.io"));
        assert_eq!(negotiate(&["channel.k8s.io".into()], &supported), None);
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(wants_upgrade(&h, "websocket"));
        assert!(!wants_upgrade(&h, "SPDY/3.1"));
    }
}
