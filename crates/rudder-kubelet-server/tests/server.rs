//! The kubelet server over real TLS on loopback: client certificates from a test CA, the
//! generated serving certificate, and `containerLogs` end to end.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rudder_kubelet_server::{
    BoundServer, LocateError, LogFile, LogLocator, ServerConfig, StreamError, Streams, serve,
};
use rudder_runtime::logs::{LineSplitter, Stream};
use rudder_runtime::{
    AttachRequest, AttachSession, BoxStream, ExecRequest, ExecSession, TerminalSize,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A client certificate (PEM cert, PEM key).
    fn client(&self, cn: &str, groups: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    }
}

/// One pod `default/web` with container `app`, whose log is `log`.
struct Node {
    log: PathBuf,
    running: AtomicBool,
}

#[async_trait]
impl LogLocator for Node {
    async fn locate(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<LogFile, LocateError> {
        if namespace != "default" || pod != "web" {
            return Err(LocateError::PodNotFound { pod: pod.into() });
        }
        if container != "app" {
            return Err(LocateError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            });
        }
        if previous {
            return Err(LocateError::previous_not_found(container, pod));
        }
        Ok(LogFile { path: self.log.clone(), container_id: "abc123".into() })
    }

    async fn is_running(&self, container_id: &str) -> bool {
        container_id == "abc123" && self.running.load(Ordering::SeqCst)
    }
}

/// Exec in `default/web/app` runs a pretend process: `cat` echoes stdin to stdout until
/// stdin ends; `fail` writes `bad` to stderr and exits 3; a TTY reports resizes on stdout.
#[async_trait]
impl Streams for Node {
    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession, StreamError> {
        if (namespace, pod, container) != ("default", "web", "app") {
            return Err(LocateError::PodNotFound { pod: pod.into() }.into());
        }
        let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
        let (mut out_w, out_r) = tokio::io::duplex(1024);
        let (mut err_w, err_r) = tokio::io::duplex(1024);
        let (exit_tx, exit) = tokio::sync::oneshot::channel();
        let (resize, mut resizes) = tokio::sync::mpsc::channel::<TerminalSize>(4);
        let command = request.command.clone();
        tokio::spawn(async move {
            let code = match command.first().map(String::as_str) {
                Some("cat") => {
                    let _ = tokio::io::copy(&mut stdin_r, &mut out_w).await;
                    0
                }
                Some("resize") => {
                    if let Some(s) = resizes.recv().await {
                        let _ =
                            out_w.write_all(format!("{}x{}", s.width, s.height).as_bytes()).await;
                    }
                    0
                }
                _ => {
                    let _ = err_w.write_all(b"bad").await;
                    3
                }
            };
            drop((out_w, err_w));
            let _ = exit_tx.send(code);
        });
        Ok(ExecSession {
            stdin: request.stdin.then(|| Box::pin(stdin_w) as rudder_runtime::BoxWrite),
            stdout: Box::pin(out_r),
            stderr: (!request.tty).then(|| Box::pin(err_r) as rudder_runtime::BoxRead),
            resize: request.tty.then_some(resize),
            exit,
        })
    }

    async fn attach(
        &self,
        _namespace: &str,
        pod: &str,
        container: &str,
        _request: &AttachRequest,
    ) -> Result<AttachSession, StreamError> {
        Err(LocateError::ContainerNotFound { pod: pod.into(), container: container.into() }.into())
    }

    async fn port_forward(
        &self,
        _namespace: &str,
        _pod: &str,
        _port: u16,
    ) -> Result<BoxStream, StreamError> {
        Err(StreamError::Runtime("no port-forward in this test".into()))
    }
}

struct Harness {
    dir: tempfile::TempDir,
    ca: Ca,
    node: Arc<Node>,
    server: BoundServer,
    cancel: CancellationToken,
    /// The kubelet's self-signed CA (the second certificate in kubelet.crt).
    kubelet_ca: CertificateDer<'static>,
}

fn cri(text: &str, stream: Stream, secs: u64) -> Vec<u8> {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
    let mut out = Vec::new();
    let mut s = LineSplitter::new(stream);
    s.feed(text.as_bytes(), time, &mut out).unwrap();
    out
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app").join("0.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let mut data = cri("hello\n", Stream::Stdout, 0);
    data.extend(cri("oops\n", Stream::Stderr, 1));
    data.extend(cri("bye\n", Stream::Stdout, 2));
    std::fs::write(&log, data).unwrap();
    let ca = Ca::new("test-cluster-ca");
    let node = Arc::new(Node { log, running: AtomicBool::new(true) });
    let cancel = CancellationToken::new();
    let cert_dir = dir.path().join("pki");
    let config = ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        cert_dir: cert_dir.clone(),
        node_name: "node-1".into(),
        hostnames: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        client_ca_pem: ca.pem.clone().into_bytes(),
    };
    let server = serve(config, node.clone(), node.clone(), cancel.clone()).await.unwrap();
    let chain = std::fs::read(cert_dir.join("kubelet.crt")).unwrap();
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&chain).collect::<Result<_, _>>().unwrap();
    assert_eq!(certs.len(), 2, "serving certificate and its CA");
    Harness { dir, ca, node, server, cancel, kubelet_ca: certs[1].clone() }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

impl Harness {
    /// A TLS connection that verifies the kubelet's certificate against its own CA and
    /// presents `client` (if any).
    async fn connect(&self, client: Option<(String, String)>) -> std::io::Result<Sender> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.kubelet_ca.clone()).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .collect::<Result<_, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.server.address()).await?;
        let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
        let tls = connector.connect(name, tcp).await?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn apiserver(&self) -> (String, String) {
        self.ca.client("kube-apiserver-kubelet-client", &["system:masters"])
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.server.stopped()).await.unwrap();
    }
}

/// GET `path`; (status, body). The TLS handshake may also fail on the first request
/// (TLS 1.3 reports a refused client certificate after the handshake).
async fn get(sender: &mut Sender, method: &str, path: &str) -> Result<(u16, String), String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    // The connection takes the next request only once it has finished the last one.
    sender.ready().await.map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .map_err(|_| "body did not end within 10 s".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_client_gets_logs() {
    let h = start().await;
    let mut c = h.connect(Some(h.apiserver())).await.unwrap();
    let logs = "/containerLogs/default/web/app";
    assert_eq!(get(&mut c, "GET", logs).await.unwrap(), (200, "hello\noops\nbye\n".into()));
    assert_eq!(
        get(&mut c, "GET", &format!("{logs}?tailLines=2&timestamps=true")).await.unwrap(),
        (200, "2023-11-14T22:13:21.000000000Z oops\n2023-11-14T22:13:22.000000000Z bye\n".into())
    );
    assert_eq!(
        get(&mut c, "GET", &format!("{logs}?sinceTime=2023-11-14T22:13:22Z&limitBytes=2"))
            .await
            .unwrap(),
        (200, "by".into())
    );
    assert_eq!(
        get(&mut c, "GET", "/containerLogs/default/nope/app").await.unwrap(),
        (404, "pod \"nope\" does not exist".into())
    );
    assert_eq!(
        get(&mut c, "GET", "/containerLogs/default/web/db").await.unwrap(),
        (404, "container \"db\" not found in pod \"web\"".into())
    );
    assert_eq!(
        get(&mut c, "GET", &format!("{logs}?previous=true")).await.unwrap(),
        (400, "previous terminated container \"app\" in pod \"web\" not found".into())
    );
    assert_eq!(get(&mut c, "GET", &format!("{logs}?tailLines=-1")).await.unwrap().0, 422);
    assert_eq!(get(&mut c, "GET", &format!("{logs}?tailLines=x")).await.unwrap().0, 400);
    let (status, body) = get(&mut c, "POST", "/exec/default/web/app?command=ls").await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (400, "you must specify at least 1 of stdin, stdout, stderr")
    );
    assert_eq!(get(&mut c, "GET", "/healthz").await.unwrap(), (200, "ok".into()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_until_the_container_exits() {
    let h = start().await;
    let mut c = h.connect(Some(h.apiserver())).await.unwrap();
    let req = hyper::Request::builder()
        .uri("/containerLogs/default/web/app?follow=true&tailLines=1")
        .header("host", "127.0.0.1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = c.send_request(req).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    let mut body = response.into_body();
    let mut seen = String::new();
    let mut next = async |seen: &mut String| {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a chunk within 10 s");
        match frame {
            Some(frame) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    seen.push_str(std::str::from_utf8(&data).unwrap());
                }
                true
            }
            None => false,
        }
    };
    while !seen.ends_with("bye\n") {
        assert!(next(&mut seen).await, "ended early: {seen:?}");
    }
    let log = h.node.log.clone();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &cri("more\n", Stream::Stdout, 3)).unwrap();
    while !seen.ends_with("more\n") {
        assert!(next(&mut seen).await, "ended early: {seen:?}");
    }
    h.node.running.store(false, Ordering::SeqCst);
    while next(&mut seen).await {}
    assert_eq!(seen, "bye\nmore\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_a_valid_authorized_certificate_are_refused() {
    let h = start().await;
    let logs = "/containerLogs/default/web/app";

    // No certificate: only /healthz.
    let mut anonymous = h.connect(None).await.unwrap();
    assert_eq!(get(&mut anonymous, "GET", "/healthz").await.unwrap(), (200, "ok".into()));
    assert_eq!(get(&mut anonymous, "GET", logs).await.unwrap(), (401, "Unauthorized".into()));

    // A certificate from another CA, even with the right name: no connection.
    let other =
        Ca::new("someone-else").client("kube-apiserver-kubelet-client", &["system:masters"]);
    let refused = match h.connect(Some(other)).await {
        Err(_) => true,
        Ok(mut sender) => get(&mut sender, "GET", "/healthz").await.is_err(),
    };
    assert!(refused, "a foreign client certificate must end the connection");

    // Our CA, but neither the API server's user nor system:masters.
    let mut bob = h.connect(Some(h.ca.client("bob", &["developers"]))).await.unwrap();
    assert_eq!(
        get(&mut bob, "GET", logs).await.unwrap(),
        (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=proxy)".into())
    );

    // system:masters by group is enough.
    let mut admin = h.connect(Some(h.ca.client("admin", &["system:masters"]))).await.unwrap();
    assert_eq!(get(&mut admin, "GET", logs).await.unwrap().0, 200);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serving_certificate_is_kept_across_restarts() {
    let h = start().await;
    let dir = h.dir.path().join("pki");
    let before = std::fs::read(dir.join("kubelet.crt")).unwrap();
    let ca_pem = h.ca.pem.clone();
    let node = h.node.clone();
    h.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), h.server.stopped()).await.unwrap();
    let cancel = CancellationToken::new();
    let config = ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        cert_dir: dir.clone(),
        node_name: "node-1".into(),
        hostnames: vec![],
        ips: vec![],
        client_ca_pem: ca_pem.into_bytes(),
    };
    let server = serve(config, node.clone(), node, cancel.clone()).await.unwrap();
    assert_eq!(std::fs::read(dir.join("kubelet.crt")).unwrap(), before);
    cancel.cancel();
    server.stopped().await;
    // A server without a usable client CA does not start.
    let config = ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        cert_dir: dir,
        node_name: "node-1".into(),
        hostnames: vec![],
        ips: vec![],
        client_ca_pem: Vec::new(),
    };
    let node = Arc::new(Node { log: PathBuf::new(), running: AtomicBool::new(false) });
    let err = serve(config, node.clone(), node, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(err, rudder_kubelet_server::Error::NoClientCa), "{err}");
}

impl Harness {
    /// A WebSocket to `path` as the API server, offering `protocols`.
    async fn websocket(
        &self,
        path: &str,
        protocols: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
        tokio_tungstenite::tungstenite::Error,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.kubelet_ca.clone()).unwrap();
        let (cert, key) = self.apiserver();
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<_, _>>().unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.server.address()).await.unwrap();
        let name = ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into());
        let tls = connector.connect(name, tcp).await.unwrap();
        let mut req = format!("wss://127.0.0.1{path}").into_client_request().unwrap();
        req.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
        let (ws, response) = tokio_tungstenite::client_async(req, tls).await?;
        assert_eq!(response.status().as_u16(), 101);
        Ok(ws)
    }
}

/// Reads messages until the connection closes; (channel, bytes) per message.
async fn drain<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Vec<(u8, Vec<u8>)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap();
        match msg {
            Some(Ok(Message::Binary(d))) => out.push((d[0], d[1..].to_vec())),
            Some(Ok(Message::Close(_))) | None => return out,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn exec_speaks_the_channel_protocol_over_a_websocket() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let h = start().await;

    // stdin echoed on stdout; v5 closes stdin with [255, 0]; exit 0 is a Success status.
    let mut ws = h
        .websocket(
            "/exec/default/web/app?command=cat&stdin=1&stdout=1&stderr=1",
            "v5.channel.k8s.io",
        )
        .await
        .unwrap();
    ws.send(Message::binary(b"\0hel".to_vec())).await.unwrap();
    // Text frames carry stdin too (the Python client sends them).
    ws.send(Message::text("\u{0}lo")).await.unwrap();
    ws.send(Message::binary(vec![255, 0])).await.unwrap();
    let got = drain(&mut ws).await;
    assert_eq!(got[0], (1, vec![]), "an empty message on stdout first: {got:?}");
    let stdout: Vec<u8> =
        got.iter().filter(|(c, _)| *c == 1).flat_map(|(_, d)| d.clone()).collect();
    assert_eq!(stdout, b"hello");
    let status: serde_json::Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
    assert_eq!((got.last().unwrap().0, status["status"].as_str()), (3, Some("Success")));

    // A failing command: stderr, then the exit code as kubectl reads it.
    let mut ws = h
        .websocket("/exec/default/web/app?command=fail&stdout=1&stderr=1", "v4.channel.k8s.io")
        .await
        .unwrap();
    let got = drain(&mut ws).await;
    assert!(got.contains(&(2, b"bad".to_vec())), "{got:?}");
    let status: serde_json::Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // A terminal takes resizes on channel 4.
    let mut ws = h
        .websocket("/exec/default/web/app?command=resize&stdout=1&tty=1", "v5.channel.k8s.io")
        .await
        .unwrap();
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":120,"Height":40}"#);
    ws.send(Message::binary(resize)).await.unwrap();
    let got = drain(&mut ws).await;
    assert!(got.contains(&(1, b"120x40".to_vec())), "{got:?}");

    // Refusals are plain HTTP errors before any upgrade.
    let e = h.websocket("/exec/default/web/app?command=cat&stdout=1", "channel.k8s.io").await;
    assert!(e.unwrap_err().to_string().contains("400"));
    let e = h.websocket("/exec/default/web/app?command=cat", "v5.channel.k8s.io").await;
    assert!(e.unwrap_err().to_string().contains("400"));
    let e = h.websocket("/exec/default/nope/app?command=cat&stdout=1", "v5.channel.k8s.io").await;
    assert!(e.unwrap_err().to_string().contains("404"));
    let mut s = h.connect(Some(h.apiserver())).await.unwrap();
    let (status, body) =
        get(&mut s, "GET", "/exec/default/web/app?command=cat&stdout=1").await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    h.stop().await;
}
