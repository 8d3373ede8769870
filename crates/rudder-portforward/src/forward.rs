//! The portforward.k8s.io protocol on top of SPDY streams (upstream: kubelet
//! `cri/streaming/portforward/httpstream.go`, client-go `tools/portforward/portforward.go`).
//!
//! Per forwarded TCP connection the client opens two streams with the same `requestid`:
//! `streamtype: error` (the server writes a failure message there) and `streamtype: data`
//! (the bytes). Both carry `port`. This module holds the pure parts (header checks,
//! pairing) and the copy loop of one pair.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Dialer;
use crate::frame::{HeaderList, header_value};
use crate::writer::Outgoing;

/// Stream header naming the stream's role (`v1.StreamType`).
pub const HEADER_STREAM_TYPE: &str = "streamtype";
/// Stream header carrying the pod port (`v1.PortHeader`).
pub const HEADER_PORT: &str = "port";
/// Stream header pairing a data and an error stream (`v1.PortForwardRequestIDHeader`).
pub const HEADER_REQUEST_ID: &str = "requestid";
pub const STREAM_TYPE_DATA: &str = "data";
pub const STREAM_TYPE_ERROR: &str = "error";

/// Bytes read from the pod per data frame (Go's `io.Copy` buffer, as upstream).
const POD_READ_BYTES: usize = 32 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    Data,
    Error,
}

/// A stream the client opened, once its headers passed the checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRequest {
    pub kind: StreamKind,
    pub port: u16,
    pub request_id: String,
}

/// Go's `%q` for the strings in these messages (close enough for ASCII input).
fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Checks a new stream's headers as upstream's `httpStreamReceived` does (port first, then
/// stream type), and works out its request id. `Err` carries upstream's message; the stream
/// is then refused with RST_STREAM (CANCEL), as spdystream's `Reset` does.
pub fn parse_stream_headers(headers: &HeaderList, stream_id: u32) -> Result<StreamRequest, String> {
    let port_string = header_value(headers, HEADER_PORT).unwrap_or("");
    if port_string.is_empty() {
        return Err(format!("{} header is required", quoted(HEADER_PORT)));
    }
    let port = parse_port(port_string)?;
    let stream_type = header_value(headers, HEADER_STREAM_TYPE).unwrap_or("");
    if stream_type.is_empty() {
        return Err(format!("{} header is required", quoted(HEADER_STREAM_TYPE)));
    }
    let kind = match stream_type {
        STREAM_TYPE_ERROR => StreamKind::Error,
        STREAM_TYPE_DATA => StreamKind::Data,
        other => return Err(format!("invalid stream type {}", quoted(other))),
    };
    let request_id = match header_value(headers, HEADER_REQUEST_ID) {
        Some(id) if !id.is_empty() => id.to_owned(),
        // Clients from before request ids (upstream keeps this best-effort fallback):
        // their error and data streams have consecutive odd ids, error first, so the pair
        // is keyed by the error stream's id.
        _ => match kind {
            StreamKind::Error => stream_id.to_string(),
            StreamKind::Data => (i64::from(stream_id) - 2).to_string(),
        },
    };
    Ok(StreamRequest { kind, port, request_id })
}

/// `strconv.ParseUint(s, 10, 16)` plus the `> 0` check, with upstream's messages.
fn parse_port(s: &str) -> Result<u16, String> {
    let syntax = || {
        format!(
            "unable to parse {} as a port: strconv.ParseUint: parsing {}: invalid syntax",
            quoted(s),
            quoted(s)
        )
    };
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    // all digits, so the only failure left is overflow
    let value: u64 = s.parse().unwrap_or(u64::MAX);
    let port = u16::try_from(value).map_err(|_| {
        format!(
            "unable to parse {} as a port: strconv.ParseUint: parsing {}: value out of range",
            quoted(s),
            quoted(s)
        )
    })?;
    if port < 1 {
        return Err(format!("port {} must be > 0", quoted(s)));
    }
    Ok(port)
}

/// A request id's streams while the other one has not arrived.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PendingPair {
    pub data: Option<u32>,
    pub error: Option<u32>,
    /// Tells this pair apart from a later one reusing the request id (for its timer).
    pub generation: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// Waiting for the other stream; `new_generation` is set when this was the pair's
    /// first stream (start the creation timer for it).
    Incomplete { new_generation: Option<u64> },
    /// Both streams are here.
    Complete { data: u32, error: u32 },
    /// The request id already has a stream of this type. `message` is upstream's, to be
    /// written on `error_stream` (if the pair has one).
    Duplicate { message: String, error_stream: Option<u32> },
}

/// Pairs data and error streams by request id (upstream's `streamPairs`).
#[derive(Debug, Default)]
pub struct Pairs {
    pending: HashMap<String, PendingPair>,
    next_generation: u64,
}

impl Pairs {
    pub fn add(&mut self, request_id: &str, kind: StreamKind, stream_id: u32) -> AddOutcome {
        let mut new_generation = None;
        let pair = match self.pending.entry(request_id.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.next_generation += 1;
                new_generation = Some(self.next_generation);
                entry.insert(PendingPair { generation: self.next_generation, ..Default::default() })
            }
        };
        let slot = match kind {
            StreamKind::Data => &mut pair.data,
            StreamKind::Error => &mut pair.error,
        };
        if slot.is_some() {
            let which = if kind == StreamKind::Data { "data" } else { "error" };
            return AddOutcome::Duplicate {
                message: format!(
                    "error processing stream for request {request_id}: {which} stream already assigned"
                ),
                error_stream: pair.error,
            };
        }
        *slot = Some(stream_id);
        if let (Some(data), Some(error)) = (pair.data, pair.error) {
            self.pending.remove(request_id);
            return AddOutcome::Complete { data, error };
        }
        AddOutcome::Incomplete { new_generation }
    }

    /// Removes the pair if it is still the incomplete one its timer was started for.
    pub fn expire(&mut self, request_id: &str, generation: u64) -> Option<PendingPair> {
        match self.pending.get(request_id) {
            Some(pair) if pair.generation == generation => self.pending.remove(request_id),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }
}

/// Upstream's message when the pair's second stream did not come in time. (Upstream also
/// prints its connection object, which has no stable form.)
pub fn creation_timeout_message(request_id: &str) -> String {
    format!("(request={request_id}) timed out waiting for streams")
}

/// Upstream's message on the error stream when forwarding fails.
pub fn forward_error_message(port: u16, pod_name: &str, pod_uid: &str, cause: &str) -> String {
    format!("error forwarding port {port} to pod {pod_name}, uid {pod_uid}: {cause}")
}

/// How forwarding one pair ended.
#[derive(Debug, Default)]
pub struct Outcome {
    /// FIN already went out on the data stream.
    pub data_fin_sent: bool,
    /// The failure to report on the error stream (the cause, without upstream's prefix).
    pub error: Option<String>,
}

/// What `copy_pair` needs besides the pod connection's port.
pub struct PairIo<'a> {
    pub data_stream: u32,
    /// The client's bytes for the data stream; closed when the client sends FIN.
    pub inbound: mpsc::Receiver<Bytes>,
    /// Cancelled when the client resets the data stream.
    pub data_reset: &'a CancellationToken,
    pub out: &'a mpsc::Sender<Outgoing>,
}

/// Dials the pod port and copies both ways until both directions are done (or one failed,
/// or, once one direction finished cleanly, until `linger` has passed: what containerd and
/// CRI-O do, 1 s). The client's FIN half-closes the pod connection; the pod's EOF sends FIN.
pub async fn copy_pair(
    dialer: &dyn Dialer,
    port: u16,
    io: PairIo<'_>,
    dial_timeout: Duration,
    linger: Option<Duration>,
) -> Outcome {
    let PairIo { data_stream, mut inbound, data_reset, out } = io;
    if data_reset.is_cancelled() {
        return Outcome::default();
    }
    let conn = tokio::select! {
        _ = data_reset.cancelled() => return Outcome::default(),
        dialed = tokio::time::timeout(dial_timeout, dialer.dial(port)) => match dialed {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Outcome { data_fin_sent: false, error: Some(e) },
            Err(_) => {
                return Outcome {
                    data_fin_sent: false,
                    error: Some(format!("timed out after {dial_timeout:?} connecting to port {port}")),
                };
            }
        },
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(conn);

    // client -> pod; Ok when the client finished (FIN or reset) and the write side is shut.
    let upstream = async {
        loop {
            let chunk = tokio::select! {
                chunk = inbound.recv() => chunk,
                _ = data_reset.cancelled() => None,
            };
            match chunk {
                Some(bytes) => tokio::select! {
                    written = pod_write.write_all(&bytes) => {
                        written.map_err(|e| format!("writing to the pod: {e}"))?
                    }
                    _ = data_reset.cancelled() => break,
                },
                None => break,
            }
        }
        // The pod may already have closed; a failed half-close is not worth a report.
        let _ = pod_write.shutdown().await;
        Ok::<bool, String>(false)
    };
    // pod -> client; Ok(true) when FIN went out.
    let downstream = async {
        let mut buf = vec![0u8; POD_READ_BYTES];
        loop {
            let read = tokio::select! {
                read = pod_read.read(&mut buf) => read.map_err(|e| format!("reading from the pod: {e}"))?,
                _ = data_reset.cancelled() => return Ok(false),
            };
            let fin = read == 0;
            let data = Bytes::copy_from_slice(&buf[..read]);
            let frame = Outgoing::Data { stream_id: data_stream, data, fin };
            tokio::select! {
                sent = out.send(frame) => if sent.is_err() { return Ok(false) },
                _ = data_reset.cancelled() => return Ok(false),
            }
            if fin {
                return Ok(true);
            }
        }
    };

    tokio::pin!(upstream, downstream);
    let mut outcome = Outcome::default();
    let first_was_downstream;
    tokio::select! {
        up = &mut upstream => {
            first_was_downstream = false;
            if let Err(e) = up {
                outcome.error = Some(e);
                return outcome;
            }
        }
        down = &mut downstream => {
            first_was_downstream = true;
            match down {
                Ok(fin) => outcome.data_fin_sent = fin,
                Err(e) => {
                    outcome.error = Some(e);
                    return outcome;
                }
            }
        }
    }
    let rest = async {
        if first_was_downstream { (&mut upstream).await } else { (&mut downstream).await }
    };
    let second = match linger {
        Some(linger) => tokio::time::timeout(linger, rest).await.ok(),
        None => Some(rest.await),
    };
    match second {
        Some(Ok(fin)) => outcome.data_fin_sent |= fin,
        Some(Err(e)) => outcome.error = Some(e),
        None => {}
    }
    outcome
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
