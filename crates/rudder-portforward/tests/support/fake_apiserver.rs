//! Just enough of an API server (plain HTTP on loopback) for `kubectl port-forward pod/web`:
//! legacy discovery, one running pod, and the `portforward` subresource, which upgrades
//! either to SPDY/3.1 or to the WebSocket tunnel and then runs `rudder_portforward::serve`.

use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use rudder_portforward::{
    CONNECTION_UPGRADE, Dialer, HEADER_PROTOCOL_VERSION, Options, PROTOCOL_V1, UPGRADE_SPDY_31,
    WEBSOCKET_TUNNEL_PREFIX, WEBSOCKET_TUNNEL_PROTOCOL,
};

pub struct FakeApiServer {
    pub port: u16,
    /// "METHOD path [upgrade]" per request, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Config {
    dialer: Arc<dyn Dialer>,
    options: Options,
    websocket: bool,
    requests: Arc<Mutex<Vec<String>>>,
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default","uid":"0f6c2d9e-4a1b-4c3d-9e8f-7a6b5c4d3e2f","resourceVersion":"1"},"spec":{"containers":[{"name":"web","image":"busybox"}]},"status":{"phase":"Running"}}"#;
const API_VERSIONS: &str = r#"{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"127.0.0.1"}]}"#;
const API_GROUPS: &str = r#"{"kind":"APIGroupList","apiVersion":"v1","groups":[]}"#;
const V1_RESOURCES: &str = r#"{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","singularName":"pod","namespaced":true,"kind":"Pod","verbs":["get","list"],"shortNames":["po"]},{"name":"pods/portforward","singularName":"","namespaced":true,"kind":"PodPortForwardOptions","verbs":["create","get"]}]}"#;
const NOT_FOUND: &str =
    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;

impl FakeApiServer {
    /// `websocket`: accept kubectl's WebSocket tunnel; otherwise refuse it (400, as an API
    /// server without tunneling would), so kubectl falls back to plain SPDY.
    pub async fn start(dialer: Arc<dyn Dialer>, options: Options, websocket: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let config = Config { dialer, options, websocket, requests: requests.clone() };
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve_connection(conn, config.clone()));
            }
        });
        FakeApiServer { port, requests }
    }

    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            self.port
        )
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn header_has(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

async fn read_request(conn: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if conn.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.split('?').next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.ok()?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        let (name, value) = trimmed.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let request = Request { method, path, headers };
    if let Some(len) = request.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0u8; len];
        conn.read_exact(&mut body).await.ok()?;
    }
    Some(request)
}

async fn respond(conn: &mut BufReader<TcpStream>, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    conn.get_mut().write_all(head.as_bytes()).await?;
    conn.get_mut().write_all(body.as_bytes()).await?;
    conn.get_mut().flush().await
}

async fn serve_connection(conn: TcpStream, config: Config) {
    let mut conn = BufReader::new(conn);
    while let Some(request) = read_request(&mut conn).await {
        let portforward = request.path.ends_with("/pods/web/portforward");
        let upgrade = request.header("upgrade").unwrap_or("").to_owned();
        config
            .requests
            .lock()
            .unwrap()
            .push(format!("{} {} {upgrade}", request.method, request.path));
        let result = match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/api") => respond(&mut conn, "200 OK", API_VERSIONS).await,
            ("GET", "/apis") => respond(&mut conn, "200 OK", API_GROUPS).await,
            ("GET", "/api/v1") => respond(&mut conn, "200 OK", V1_RESOURCES).await,
            ("GET", "/api/v1/namespaces/default/pods/web") => {
                respond(&mut conn, "200 OK", POD).await
            }
            ("GET", _) if portforward && request.header_has("upgrade", "websocket") => {
                if config.websocket {
                    return websocket_tunnel(conn, request, config).await;
                }
                respond(&mut conn, "400 Bad Request", "unable to upgrade: websocket refused").await
            }
            ("POST", _) if portforward => return spdy_upgrade(conn, request, config).await,
            _ => respond(&mut conn, "404 Not Found", NOT_FOUND).await,
        };
        if result.is_err() {
            return;
        }
    }
}

/// The plain SPDY upgrade, as the lib.rs documentation tells the HTTP layer to do it.
async fn spdy_upgrade(mut conn: BufReader<TcpStream>, request: Request, config: Config) {
    let offered = request.header(HEADER_PROTOCOL_VERSION).unwrap_or("");
    assert!(offered.split(',').any(|p| p.trim() == PROTOCOL_V1), "offered {offered:?}");
    assert!(request.header_has("connection", "upgrade"));
    assert!(request.header_has("upgrade", UPGRADE_SPDY_31));
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: {CONNECTION_UPGRADE}\r\nUpgrade: {UPGRADE_SPDY_31}\r\n{HEADER_PROTOCOL_VERSION}: {PROTOCOL_V1}\r\n\r\n"
    );
    if conn.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    // The BufReader keeps whatever the client sent after the request head.
    let _ = rudder_portforward::serve(conn, config.dialer, config.options).await;
}

/// The WebSocket tunnel: SPDY bytes in binary messages, adapted into a byte stream.
async fn websocket_tunnel(mut conn: BufReader<TcpStream>, request: Request, config: Config) {
    let protocols: Vec<&str> = request
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    let chosen = protocols
        .iter()
        .filter(|p| p.starts_with(WEBSOCKET_TUNNEL_PREFIX) && p.ends_with(".k8s.io"))
        .find(|p| p.trim_start_matches(WEBSOCKET_TUNNEL_PREFIX) == PROTOCOL_V1);
    assert_eq!(chosen.copied(), Some(WEBSOCKET_TUNNEL_PROTOCOL), "offered {protocols:?}");
    let key = request.header("sec-websocket-key").unwrap_or("").to_owned();
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {WEBSOCKET_TUNNEL_PROTOCOL}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    if conn.get_mut().write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let ws = WebSocketStream::from_raw_socket(conn, Role::Server, None).await;
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (server_io, pipe) = tokio::io::duplex(256 << 10);
    let (mut pipe_read, mut pipe_write) = tokio::io::split(pipe);
    let session = tokio::spawn(rudder_portforward::serve(server_io, config.dialer, config.options));
    let inbound = async move {
        while let Some(Ok(message)) = ws_rx.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => break,
                Message::Text(_) => panic!("text message in the tunnel"),
                _ => continue,
            };
            if pipe_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = pipe_write.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match pipe_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws_tx.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = ws_tx.close().await;
    };
    tokio::join!(inbound, outbound);
    let _ = session.await;
}
