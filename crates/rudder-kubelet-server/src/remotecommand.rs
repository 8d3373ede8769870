//! `exec` and `attach` over a WebSocket with the Kubernetes channel protocol
//! (`v5.channel.k8s.io`, and `v4.channel.k8s.io` for older clients): every binary message
//! starts with its channel, 0 stdin, 1 stdout, 2 stderr, 3 error (the final `Status`), 4
//! terminal resize (`{"Width":80,"Height":24}`); v5 adds 255, a client's "this channel is
//! closed" (`[255, 0]` ends stdin).
//!
//! The server first writes an empty message on the lowest channel it will write to (so the
//! client knows the session is up), copies output as it comes, and when the process ended
//! and its output drained, writes the `Status` (Success, or Failure `NonZeroExitCode` with
//! the code as an `ExitCode` cause: what makes `kubectl exec` exit with the same code) and
//! closes. A client that goes away ends the session (its stdin closes).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use rudder_runtime::{AttachSession, BoxRead, BoxWrite, ExecSession, ResizeSender, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::upgrade::WebSocket;

pub(crate) const V5: &str = "v5.channel.k8s.io";
pub(crate) const V4: &str = "v4.channel.k8s.io";
pub(crate) const PROTOCOLS: [&str; 2] = [V5, V4];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// A session with no traffic either way for this long is closed (upstream's default
/// streaming idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(4 * 3600);
/// Output messages queued for the socket.
const OUTPUT_QUEUE: usize = 16;

/// What an exec or attach request asks for (query `stdin`, `stdout`, `stderr`, `tty`, and
/// for exec the repeated `command`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    pub command: Vec<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True" | "TRUE")
}

impl StreamOptions {
    /// Parses the query; the errors are upstream's 400 messages.
    pub(crate) fn from_query(query: &str, exec: bool) -> Result<Self, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| format!("invalid query: {e}"))?;
        let mut o = StreamOptions::default();
        for (k, v) in pairs {
            match k.as_str() {
                "stdin" | "input" => o.stdin = truthy(&v),
                "stdout" | "output" => o.stdout = truthy(&v),
                "stderr" | "error" => o.stderr = truthy(&v),
                "tty" => o.tty = truthy(&v),
                "command" => o.command.push(v),
                _ => {}
            }
        }
        if o.tty {
            // A terminal has one output: stderr goes to it.
            o.stderr = false;
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".to_owned());
        }
        if exec && o.command.is_empty() {
            return Err("you must specify at least one command for the container".to_owned());
        }
        Ok(o)
    }
}

/// The streams of an exec or an attach, as the session pumps them.
pub(crate) struct Session {
    pub stdin: Option<BoxWrite>,
    pub stdout: Option<BoxRead>,
    pub stderr: Option<BoxRead>,
    pub resize: Option<ResizeSender>,
    pub exit: oneshot::Receiver<i32>,
}

impl From<ExecSession> for Session {
    fn from(s: ExecSession) -> Self {
        Session {
            stdin: s.stdin,
            stdout: Some(s.stdout),
            stderr: s.stderr,
            resize: s.resize,
            exit: s.exit,
        }
    }
}

impl From<AttachSession> for Session {
    fn from(s: AttachSession) -> Self {
        Session {
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
            resize: s.resize,
            exit: s.exit,
        }
    }
}

/// The `Status` written on the error channel at the end.
pub(crate) fn exit_status(code: Option<i32>) -> serde_json::Value {
    match code {
        None | Some(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Some(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
    }
}

/// Terminal sizes in a resize message (one or more JSON objects back to back).
fn parse_resizes(data: &[u8]) -> Vec<TerminalSize> {
    #[derive(serde::Deserialize)]
    struct Size {
        #[serde(rename = "Width")]
        width: u16,
        #[serde(rename = "Height")]
        height: u16,
    }
    serde_json::Deserializer::from_slice(data)
        .into_iter::<Size>()
        .map_while(Result::ok)
        .map(|s| TerminalSize { width: s.width, height: s.height })
        .collect()
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// Runs an exec or attach session on an upgraded WebSocket until the process ended (and
/// its status went out) or the client went away.
pub(crate) async fn serve(ws: WebSocket, protocol: &'static str, mut session: Session) {
    let v5 = protocol == V5;
    let (mut sink, mut incoming) = ws.split();
    let activity = Arc::new(AtomicU64::new(now_s()));
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(OUTPUT_QUEUE);

    let first = if session.stdout.is_some() {
        STDOUT
    } else if session.stderr.is_some() {
        STDERR
    } else {
        ERROR
    };
    let _ = out_tx.send(Message::binary(vec![first])).await;

    let mut pumps = Vec::new();
    for (channel, reader) in [(STDOUT, session.stdout.take()), (STDERR, session.stderr.take())] {
        let Some(mut reader) = reader else { continue };
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            buf[0] = channel;
            loop {
                match reader.read(&mut buf[1..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(Message::binary(buf[..=n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let writer_activity = activity.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let close = matches!(msg, Message::Close(_));
            if sink.send(msg).await.is_err() || close {
                break;
            }
            writer_activity.store(now_s(), Ordering::Relaxed);
        }
        let _ = sink.close().await;
    });

    let aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let mut exit = session.exit;
    let done = async move {
        for p in pumps {
            let _ = p.await;
        }
        (&mut exit).await.ok()
    };
    tokio::pin!(done);
    let mut stdin = session.stdin.take();
    let resize = session.resize.take();
    let mut idle = tokio::time::interval(Duration::from_secs(60));
    let finished = loop {
        tokio::select! {
            code = &mut done => break Some(code),
            msg = incoming.next() => {
                let Some(Ok(msg)) = msg else { break None };
                activity.store(now_s(), Ordering::Relaxed);
                // Text frames count too (the Python client sends stdin as text), as
                // upstream's server reads every message as bytes.
                let data = match msg {
                    Message::Binary(d) => d,
                    Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_bytes()),
                    Message::Close(_) => break None,
                    _ => continue,
                };
                let Some((&channel, payload)) = data.split_first() else { continue };
                match channel {
                    STDIN => {
                        if let Some(w) = stdin.as_mut()
                            && (w.write_all(payload).await.is_err() || w.flush().await.is_err())
                        {
                            stdin = None;
                        }
                    }
                    RESIZE => {
                        if let Some(r) = &resize {
                            for size in parse_resizes(payload) {
                                let _ = r.try_send(size);
                            }
                        }
                    }
                    CLOSE if v5 && payload.first() == Some(&STDIN) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    _ => {}
                }
            }
            _ = idle.tick() => {
                if now_s().saturating_sub(activity.load(Ordering::Relaxed)) > IDLE_TIMEOUT.as_secs() {
                    tracing::debug!("closing an idle streaming session");
                    break None;
                }
            }
        }
    };
    drop(stdin);
    if finished.is_none() {
        // The client went away: stop reading the process's output (its next write fails).
        for a in &aborts {
            a.abort();
        }
    }
    if let Some(code) = finished {
        let mut status = vec![ERROR];
        status.extend_from_slice(exit_status(code).to_string().as_bytes());
        let _ = out_tx.send(Message::binary(status)).await;
        let _ = out_tx
            .send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() })))
            .await;
    }
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_follow_upstream() {
        let o = StreamOptions::from_query(
            "command=sh&command=-c&command=echo+hi&stdout=1&tty=1&stderr=true",
            true,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert!(o.stdout && o.tty && !o.stderr && !o.stdin, "a TTY merges stderr: {o:?}");
        assert_eq!(
            StreamOptions::from_query("command=ls", true).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(StreamOptions::from_query("stdout=1", true).unwrap_err().contains("command"));
        assert!(StreamOptions::from_query("stdin=true", false).unwrap().stdin);
    }

    #[test]
    fn status_carries_the_exit_code_as_kubectl_reads_it() {
        assert_eq!(exit_status(Some(0))["status"], "Success");
        assert_eq!(exit_status(None)["status"], "Success");
        let s = exit_status(Some(3));
        assert_eq!(
            (s["status"].as_str(), s["reason"].as_str()),
            (Some("Failure"), Some("NonZeroExitCode"))
        );
        assert_eq!(
            s["details"]["causes"][0],
            serde_json::json!({"reason": "ExitCode", "message": "3"})
        );
    }

    #[test]
    fn resize_messages_may_hold_several_sizes() {
        assert_eq!(
            parse_resizes(br#"{"Width":80,"Height":24}{"Width":100,"Height":30}"#),
            vec![TerminalSize { width: 80, height: 24 }, TerminalSize { width: 100, height: 30 }]
        );
        assert!(parse_resizes(b"garbage").is_empty());
    }
}
