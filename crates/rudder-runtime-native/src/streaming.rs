//! The agent's side of streaming: attaching to a container's shim (its attach socket),
//! sending terminal resizes to an exec helper, and connecting into a pod's network namespace
//! for port-forwarding.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc, oneshot};

use rudder_runtime::{
    AttachRequest, AttachSession, BoxStream, ResizeSender, Result, RuntimeError, TerminalSize,
};

use crate::frames::{self, Decoder, Frame};
use crate::sockets::{ATTACH_SOCKET, ShortDir};

/// Buffered output between the socket and the session's readers.
const PIPE_BYTES: usize = 64 * 1024;
/// How long connecting into a pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an exec helper may take to connect to its control socket.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// Resizes queued for a session (kubectl sends one per terminal size change).
const RESIZE_QUEUE: usize = 8;

fn internal(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Internal(what.to_string())
}

/// Attaches to the shim of a running container whose directory is `dir`.
pub(crate) async fn attach(
    dir: &Path,
    tty: bool,
    request: &AttachRequest,
) -> Result<AttachSession> {
    let short = ShortDir::open(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
    let sock = UnixStream::connect(short.path(ATTACH_SOCKET))
        .await
        .map_err(|e| internal(format!("connecting to the container's shim: {e}")))?;
    let (mut rd, mut wr) = sock.into_split();
    let hello = Frame::Hello {
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr && !tty,
    };
    wr.write_all(&frames::to_bytes(&hello))
        .await
        .map_err(|e| internal(format!("attaching: {e}")))?;

    let (stdout_w, stdout_r) = tokio::io::duplex(PIPE_BYTES);
    let (stderr_w, stderr_r) = tokio::io::duplex(PIPE_BYTES);
    let (stdin_w, stdin_r) = tokio::io::duplex(PIPE_BYTES);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (resize_tx, resize_rx) = mpsc::channel(RESIZE_QUEUE);
    let done = Arc::new(Notify::new());

    let reader_done = done.clone();
    tokio::spawn(async move {
        read_output(&mut rd, stdout_w, stderr_w, exit_tx).await;
        reader_done.notify_one();
    });
    let stdin = request.stdin.then_some(stdin_r);
    tokio::spawn(async move {
        write_input(&mut wr, stdin, resize_rx, done).await;
        let _ = wr.shutdown().await;
    });

    Ok(AttachSession {
        stdin: request.stdin.then(|| Box::pin(stdin_w) as rudder_runtime::BoxWrite),
        stdout: request.stdout.then(|| Box::pin(stdout_r) as rudder_runtime::BoxRead),
        stderr: (request.stderr && !tty).then(|| Box::pin(stderr_r) as rudder_runtime::BoxRead),
        resize: tty.then_some(resize_tx),
        exit: exit_rx,
    })
}

/// Shim -> session: output frames into the pipes, the exit code into `exit`. Ends at the
/// socket's end or when the session dropped its `exit` receiver (a detach).
async fn read_output(
    rd: &mut (impl AsyncRead + Unpin),
    mut stdout: DuplexStream,
    mut stderr: DuplexStream,
    mut exit: oneshot::Sender<i32>,
) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = tokio::select! {
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = exit.closed() => return,
        };
        decoder.feed(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some(Frame::Stdout(d))) => {
                    let _ = stdout.write_all(&d).await;
                }
                Ok(Some(Frame::Stderr(d))) => {
                    let _ = stderr.write_all(&d).await;
                }
                Ok(Some(Frame::Exit(code))) => {
                    let _ = exit.send(code);
                    return;
                }
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => break,
            }
        }
    }
}

/// Session -> shim: stdin data (then a close), resizes; until the reader ended.
async fn write_input(
    wr: &mut (impl tokio::io::AsyncWrite + Unpin),
    mut stdin: Option<DuplexStream>,
    mut resize: mpsc::Receiver<TerminalSize>,
    done: Arc<Notify>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut resize_open = true;
    loop {
        let frame = tokio::select! {
            r = async { stdin.as_mut().expect("guarded").read(&mut buf).await }, if stdin.is_some() => {
                match r {
                    Ok(0) | Err(_) => {
                        stdin = None;
                        Frame::CloseStdin
                    }
                    Ok(n) => Frame::Stdin(buf[..n].to_vec()),
                }
            }
            size = resize.recv(), if resize_open => match size {
                Some(s) => Frame::Resize { width: s.width, height: s.height },
                None => {
                    resize_open = false;
                    continue;
                }
            },
            _ = done.notified() => return,
        };
        if wr.write_all(&frames::to_bytes(&frame)).await.is_err() {
            return;
        }
    }
}

/// Listens on a fresh control socket in `dir` for an exec helper started with `--control
/// <name>`, and forwards resizes to it once it connected. Returns the name and the sender.
pub(crate) fn exec_control(dir: &Path) -> Result<(String, ResizeSender)> {
    let short = ShortDir::open(dir).map_err(|e| internal(format!("{}: {e}", dir.display())))?;
    let name = format!("exec-{:016x}.ctl", rand::random::<u64>());
    let listener = short.listen(&name).map_err(|e| internal(format!("control socket: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| internal(format!("control socket: {e}")))?;
    let listener = tokio::net::UnixListener::from_std(listener)
        .map_err(|e| internal(format!("control socket: {e}")))?;
    let path: PathBuf = dir.join(&name);
    let (tx, mut rx) = mpsc::channel::<TerminalSize>(RESIZE_QUEUE);
    tokio::spawn(async move {
        let accepted = tokio::time::timeout(CONTROL_TIMEOUT, listener.accept()).await;
        let _ = std::fs::remove_file(&path);
        drop(short);
        let Ok(Ok((mut sock, _))) = accepted else { return };
        while let Some(s) = rx.recv().await {
            let frame = Frame::Resize { width: s.width, height: s.height };
            if sock.write_all(&frames::to_bytes(&frame)).await.is_err() {
                return;
            }
        }
    });
    Ok((name, tx))
}

/// A TCP connection to `port` on the loopback of the network namespace `netns` (None: this
/// process's): IPv4 first, then IPv6, as upstream runtimes dial `localhost`.
pub(crate) async fn port_forward(netns: Option<PathBuf>, port: u16) -> Result<BoxStream> {
    let ns = netns.clone();
    let connected = tokio::task::spawn_blocking(move || {
        rudder_net::run_in_netns(ns.as_deref(), || {
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT).or_else(|e4| {
                std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT)
                    .map_err(|e6| format!("IPv4: {v4}: {e4}; IPv6: {v6}: {e6}"))
            })
        })
    })
    .await
    .map_err(|e| internal(format!("port-forward task: {e}")))?
    .map_err(|e| internal(format!("entering the pod's network namespace: {e}")))?;
    let where_ = netns.as_deref().map(|p| p.display().to_string()).unwrap_or("the node".into());
    let stream = connected.map_err(|e| {
        internal(format!("failed to connect to localhost:{port} inside namespace {where_:?}, {e}"))
    })?;
    stream.set_nonblocking(true).map_err(|e| internal(format!("port-forward: {e}")))?;
    let stream = tokio::net::TcpStream::from_std(stream)
        .map_err(|e| internal(format!("port-forward: {e}")))?;
    Ok(Box::pin(stream))
}
