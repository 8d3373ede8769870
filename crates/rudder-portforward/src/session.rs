//! One upgraded connection: the frame loop, the streams it knows, and the tasks it starts
//! (one per forwarded connection, one timer per incomplete stream pair, the writer).
//!
//! The reader loop handles frames in order and may wait on a data stream's queue while the
//! pod side is slow: that is the connection's back-pressure (spdystream, upstream's SPDY
//! library, blocks its frame workers the same way). Everything else that takes time runs
//! in tasks that share `State` behind a mutex never held across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, trace, warn};

use crate::error::Error;
use crate::forward::{self, AddOutcome, PairIo, Pairs, StreamKind};
use crate::frame::{ControlFrame, FLAG_FIN, HeaderList, rst};
use crate::reader::{FrameReader, Incoming};
use crate::writer::{self, Outgoing};
use crate::{Dialer, Options};

/// Frames waiting for the writer.
const OUT_QUEUE: usize = 64;
/// Data pieces (up to 32 KiB each) waiting for a pod connection, per data stream.
const INBOUND_QUEUE: usize = 8;
/// How long the goodbye (resets, GOAWAY) and the tasks' ends may take once the session is over.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// When a frame last went either way (for the idle timeout).
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

struct StreamEntry {
    kind: StreamKind,
    /// Where the client's bytes for a data stream go; `None` for error streams and once the
    /// client sent FIN.
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Cancelled when the client resets the stream.
    reset: CancellationToken,
}

#[derive(Default)]
struct State {
    streams: HashMap<u32, StreamEntry>,
    pairs: Pairs,
    /// Receivers of data streams whose pair is not complete yet.
    waiting_inbound: HashMap<u32, mpsc::Receiver<Bytes>>,
    /// The lowest id the next SYN_STREAM may use (ids only grow, as spdystream checks).
    next_stream_id: u32,
    /// The last stream accepted, for GOAWAY.
    last_good_stream_id: u32,
}

struct Shared {
    state: Mutex<State>,
    out: mpsc::Sender<Outgoing>,
    activity: Activity,
    options: Options,
    dialer: Arc<dyn Dialer>,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-updated in a way that
        // matters more than losing the session, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a frame from a task; false once the session is over.
    async fn send(&self, item: Outgoing) -> bool {
        tokio::select! {
            sent = self.out.send(item) => sent.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }
}

pub async fn serve<S>(io: S, dialer: Arc<dyn Dialer>, options: Options) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let (out, out_queue) = mpsc::channel(OUT_QUEUE);
    let shared = Arc::new(Shared {
        state: Mutex::new(State { next_stream_id: 1, ..Default::default() }),
        out,
        activity: Activity::new(),
        options,
        dialer,
        cancel: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let writer_shared = shared.clone();
    let mut writer = tokio::spawn(
        async move { writer::run(write_half, out_queue, &writer_shared.activity).await }
            .in_current_span(),
    );
    let mut reader = FrameReader::new(read_half);

    let mut writer_done = false;
    let result = tokio::select! {
        read = read_loop(&shared, &mut reader) => read,
        () = idle(&shared) => Err(Error::IdleTimeout(shared.options.idle_timeout)),
        written = &mut writer => {
            writer_done = true;
            match written {
                Ok(Ok(())) => Err(Error::Io(std::io::ErrorKind::BrokenPipe.into())),
                Ok(Err(e)) => Err(e),
                Err(join) => Err(Error::Io(std::io::Error::other(join.to_string()))),
            }
        }
    };
    match &result {
        Ok(()) => debug!("port-forward connection closed by the client"),
        Err(e) => debug!(error = %e, "port-forward connection ends"),
    }

    // Stop every forward and timer; their pod connections close as they are dropped.
    shared.cancel.cancel();
    shared.tasks.close();
    if !writer_done {
        // Upstream's goodbye: reset the streams still open, then GOAWAY.
        let (open, last_good_stream_id) = {
            let state = shared.state();
            let mut open: Vec<u32> = state.streams.keys().copied().collect();
            open.sort_unstable();
            (open, state.last_good_stream_id)
        };
        let goodbye = async {
            for stream_id in open {
                let reset = Outgoing::Reset { stream_id, status: rst::CANCEL };
                if shared.out.send(reset).await.is_err() {
                    return;
                }
            }
            let _ = shared.out.send(Outgoing::GoAway { last_good_stream_id }).await;
        };
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, async {
            goodbye.await;
            let _ = (&mut writer).await;
        })
        .await;
        if finished.is_err() {
            writer.abort();
        }
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, shared.tasks.wait()).await.is_err() {
        warn!("port-forward tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    result
}

async fn idle(shared: &Shared) {
    let limit = shared.options.idle_timeout;
    loop {
        let Some(deadline) = shared.activity.last().checked_add(limit) else {
            // an idle timeout too large to represent: never
            return std::future::pending().await;
        };
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader<R>,
) -> Result<(), Error> {
    let queue_closed = || Error::Io(std::io::ErrorKind::BrokenPipe.into());
    while let Some(incoming) = reader.next().await? {
        shared.activity.touch();
        match incoming {
            Incoming::Data { stream_id, fin, length } => {
                on_data(shared, reader, stream_id, fin, length).await?;
            }
            Incoming::Control { frame, headers } => match frame {
                ControlFrame::SynStream { stream_id, flags, .. } => {
                    let headers = headers.unwrap_or_default();
                    let (frames, start) = on_syn_stream(shared, stream_id, flags, &headers);
                    for item in frames {
                        shared.out.send(item).await.map_err(|_| queue_closed())?;
                    }
                    // Only now: the SYN_REPLY must be queued before any data on the stream
                    // (spdystream drops data that comes before the reply).
                    if let Some(start) = start {
                        spawn(shared, start);
                    }
                }
                ControlFrame::RstStream { stream_id, status } => {
                    trace!(stream_id, status, "client reset a stream");
                    let mut state = shared.state();
                    if let Some(entry) = state.streams.remove(&stream_id) {
                        entry.reset.cancel();
                    }
                    state.waiting_inbound.remove(&stream_id);
                }
                ControlFrame::Ping { id } => {
                    // Odd ids are the client's pings; even ones would answer ours (we send none).
                    if id % 2 == 1 {
                        shared.out.send(Outgoing::Ping { id }).await.map_err(|_| queue_closed())?;
                    }
                }
                ControlFrame::GoAway { last_good_stream_id, status } => {
                    debug!(last_good_stream_id, status, "client sent GOAWAY");
                    return Ok(());
                }
                // spdystream neither enforces nor sends flow control, and a port-forward
                // server opens no streams, so the rest needs no action.
                other => trace!(frame = ?other, "ignored frame"),
            },
        }
    }
    Ok(())
}

/// Client bytes for a data stream go to its pod connection; for an unknown, error or
/// finished stream they are dropped (as spdystream does).
async fn on_data<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut FrameReader<R>,
    stream_id: u32,
    fin: bool,
    length: usize,
) -> Result<(), Error> {
    let inbound = shared.state().streams.get(&stream_id).and_then(|e| e.inbound.clone());
    let mut remaining = length;
    if let Some(inbound) = inbound {
        while remaining > 0 {
            let chunk = reader.read_chunk(remaining).await?;
            remaining -= chunk.len();
            if inbound.send(chunk).await.is_err() {
                break;
            }
        }
    }
    reader.discard(remaining).await?;
    if fin && let Some(entry) = shared.state().streams.get_mut(&stream_id) {
        entry.inbound = None;
    }
    Ok(())
}

/// What a new stream sets going once its reply is queued.
enum Start {
    /// The pair's first stream: its creation timer.
    Timer { request_id: String, generation: u64 },
    /// The pair's second stream: the forwarding.
    Forward(ReadyPair),
}

/// Accepts or refuses a new stream; returns the frames to send, in order, and what to
/// start after them.
fn on_syn_stream(
    shared: &Arc<Shared>,
    stream_id: u32,
    flags: u8,
    headers: &HeaderList,
) -> (Vec<Outgoing>, Option<Start>) {
    let refuse = |status| (vec![Outgoing::Reset { stream_id, status }], None);
    let mut state = shared.state();
    if stream_id < state.next_stream_id {
        debug!(stream_id, "SYN_STREAM with a stream id lower than a previous one");
        return refuse(rst::PROTOCOL_ERROR);
    }
    state.next_stream_id = stream_id.saturating_add(2);
    state.last_good_stream_id = stream_id;

    let request = match forward::parse_stream_headers(headers, stream_id) {
        Ok(request) => request,
        Err(reason) => {
            debug!(stream_id, %reason, "stream rejected");
            return refuse(rst::CANCEL);
        }
    };
    if state.streams.len() >= shared.options.max_streams {
        debug!(stream_id, limit = shared.options.max_streams, "too many streams");
        return refuse(rst::REFUSED_STREAM);
    }
    let outcome = state.pairs.add(&request.request_id, request.kind, stream_id);
    if let AddOutcome::Duplicate { message, error_stream } = outcome {
        warn!(stream_id, %message, "port-forward stream rejected");
        let mut frames = Vec::new();
        if let Some(error_stream) = error_stream {
            frames.push(Outgoing::Data {
                stream_id: error_stream,
                data: message.into(),
                fin: false,
            });
        }
        frames.push(Outgoing::Reset { stream_id, status: rst::CANCEL });
        return (frames, None);
    }

    let mut inbound = None;
    if request.kind == StreamKind::Data {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        if flags & FLAG_FIN == 0 {
            inbound = Some(tx);
        }
        state.waiting_inbound.insert(stream_id, rx);
    }
    state.streams.insert(
        stream_id,
        StreamEntry { kind: request.kind, inbound, reset: CancellationToken::new() },
    );
    trace!(stream_id, request_id = %request.request_id, kind = ?request.kind, port = request.port, "stream accepted");

    let start = match outcome {
        AddOutcome::Incomplete { new_generation: Some(generation) } => {
            Some(Start::Timer { request_id: request.request_id, generation })
        }
        AddOutcome::Complete { data, error } => Some(Start::Forward(ReadyPair {
            port: request.port,
            data,
            error,
            inbound: state.waiting_inbound.remove(&data),
            data_reset: reset_token(&state, data),
            error_reset: reset_token(&state, error),
        })),
        _ => None,
    };
    (vec![Outgoing::Reply { stream_id }], start)
}

fn spawn(shared: &Arc<Shared>, start: Start) {
    let task_shared = shared.clone();
    let task = async move {
        let shared = task_shared;
        match start {
            Start::Timer { request_id, generation } => {
                tokio::select! {
                    () = tokio::time::sleep(shared.options.stream_creation_timeout) => {}
                    () = shared.cancel.cancelled() => return,
                }
                expire_pair(&shared, &request_id, generation).await;
            }
            Start::Forward(ready) => {
                tokio::select! {
                    () = forward_pair(&shared, ready) => {}
                    () = shared.cancel.cancelled() => {}
                }
            }
        }
    };
    shared.tasks.spawn(task.in_current_span());
}

/// The stream's reset token; an already-cancelled one if the client reset it already.
fn reset_token(state: &State, stream_id: u32) -> CancellationToken {
    match state.streams.get(&stream_id) {
        Some(entry) => entry.reset.clone(),
        None => {
            let token = CancellationToken::new();
            token.cancel();
            token
        }
    }
}

struct ReadyPair {
    port: u16,
    data: u32,
    error: u32,
    inbound: Option<mpsc::Receiver<Bytes>>,
    data_reset: CancellationToken,
    error_reset: CancellationToken,
}

/// Runs one forwarded connection, then closes its streams as upstream does: the failure
/// message (if any) on the error stream, FIN on the error stream, FIN on the data stream.
async fn forward_pair(shared: &Shared, pair: ReadyPair) {
    let ReadyPair { port, data, error, inbound, data_reset, error_reset } = pair;
    // A data stream the client had already finished (FIN with its SYN_STREAM) gets a
    // closed queue: the pod connection is half-closed at once.
    let inbound = inbound.unwrap_or_else(|| mpsc::channel(1).1);
    let io = PairIo { data_stream: data, inbound, data_reset: &data_reset, out: &shared.out };
    let options = &shared.options;
    let outcome = forward::copy_pair(
        shared.dialer.as_ref(),
        port,
        io,
        options.dial_timeout,
        options.half_close_linger,
    )
    .await;
    if let Some(cause) = outcome.error {
        let message =
            forward::forward_error_message(port, &options.pod_name, &options.pod_uid, &cause);
        warn!(%message, "port-forward failed");
        if !error_reset.is_cancelled() {
            shared
                .send(Outgoing::Data { stream_id: error, data: message.into(), fin: false })
                .await;
        }
    }
    if !error_reset.is_cancelled() {
        shared.send(Outgoing::Data { stream_id: error, data: Bytes::new(), fin: true }).await;
    }
    if !data_reset.is_cancelled() && !outcome.data_fin_sent {
        shared.send(Outgoing::Data { stream_id: data, data: Bytes::new(), fin: true }).await;
    }
    let mut state = shared.state();
    state.streams.remove(&data);
    state.streams.remove(&error);
}

/// The pair's other stream did not come in time: report it on the error stream (if that
/// is the one that came), close what came, forget the pair.
async fn expire_pair(shared: &Shared, request_id: &str, generation: u64) {
    let Some(pair) = shared.state().pairs.expire(request_id, generation) else {
        return;
    };
    let message = forward::creation_timeout_message(request_id);
    warn!(%message, "port-forward stream pair incomplete");
    let (error_open, data_open) = {
        let mut state = shared.state();
        let mut open = |id: Option<u32>, kind: StreamKind| {
            let id = id?;
            state.waiting_inbound.remove(&id);
            let entry = state.streams.remove(&id)?;
            (entry.kind == kind && !entry.reset.is_cancelled()).then_some(id)
        };
        (open(pair.error, StreamKind::Error), open(pair.data, StreamKind::Data))
    };
    if let Some(error) = error_open {
        shared.send(Outgoing::Data { stream_id: error, data: message.into(), fin: false }).await;
        shared.send(Outgoing::Data { stream_id: error, data: Bytes::new(), fin: true }).await;
    }
    if let Some(data) = data_open {
        shared.send(Outgoing::Reset { stream_id: data, status: rst::CANCEL }).await;
    }
}
