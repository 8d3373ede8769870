//! A small SPDY/3 client for the tests, written from the SPDY/3 draft independently of the
//! crate's internals (only the dictionary constant is shared). It behaves like client-go's
//! port-forwarder: odd stream ids, zlib header blocks with a sync flush per frame.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;

use rudder_portforward::SPDY3_DICTIONARY;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Reply(Vec<(String, String)>),
    Data(Vec<u8>),
    Fin,
    Reset(u32),
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// The server closed the connection.
    Closed,
    /// Something the client could not parse.
    Error(String),
    /// A frame for a stream the client never opened.
    Stray(u32),
}

type Routes = Arc<Mutex<HashMap<u32, UnboundedSender<StreamEvent>>>>;

struct Writer {
    io: Box<dyn AsyncWrite + Send + Unpin>,
    compress: Compress,
}

impl Writer {
    fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 1024);
        let before = self.compress.total_in();
        self.compress.compress_vec(block, &mut out, FlushCompress::Sync).expect("compress");
        assert_eq!(self.compress.total_in() - before, block.len() as u64, "compress all input");
        assert!(out.len() < out.capacity(), "compress output buffer too small");
        out
    }
}

pub struct Client {
    writer: Arc<tokio::sync::Mutex<Writer>>,
    routes: Routes,
    conn: UnboundedReceiver<ConnEvent>,
    next_stream_id: u32,
    reader: JoinHandle<()>,
}

pub struct Stream {
    pub id: u32,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    events: UnboundedReceiver<StreamEvent>,
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub fn header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn parse_header_block(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut at = 0;
    let mut next = |n: usize| -> Result<&[u8], String> {
        let s = block.get(at..at + n).ok_or("short header block")?;
        at += n;
        Ok(s)
    };
    let count = be32(next(4)?);
    let mut out = Vec::new();
    for _ in 0..count {
        let n = be32(next(4)?) as usize;
        let name = String::from_utf8_lossy(next(n)?).into_owned();
        let n = be32(next(4)?) as usize;
        let value = String::from_utf8_lossy(next(n)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

fn control_head(frame_type: u16, flags: u8, length: usize) -> Vec<u8> {
    let mut out = vec![0x80, 0x03];
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | length as u32).to_be_bytes());
    out
}

pub fn ping_frame(id: u32) -> Vec<u8> {
    let mut out = control_head(6, 0, 4);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

pub fn data_frame(stream_id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = stream_id.to_be_bytes().to_vec();
    out.extend_from_slice(&(((fin as u32) << 24) | data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

pub fn rst_frame(stream_id: u32, status: u32) -> Vec<u8> {
    let mut out = control_head(3, 0, 8);
    out.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&status.to_be_bytes());
    out
}

pub fn goaway_frame(last_good_stream_id: u32) -> Vec<u8> {
    let mut out = control_head(7, 0, 8);
    out.extend_from_slice(&last_good_stream_id.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

impl Client {
    pub fn new<R, W>(read: R, write: W) -> Client
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let mut compress = Compress::new(Compression::best(), true);
        compress.set_dictionary(&SPDY3_DICTIONARY).expect("dictionary");
        let writer = Arc::new(tokio::sync::Mutex::new(Writer { io: Box::new(write), compress }));
        let routes: Routes = Arc::default();
        let (conn_tx, conn) = unbounded_channel();
        let reader = tokio::spawn(read_frames(Box::new(read), routes.clone(), conn_tx));
        Client { writer, routes, conn, next_stream_id: 1, reader }
    }

    /// Sends a SYN_STREAM with `headers` (names as given: tests may send bad ones).
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> Stream {
        self.open_with(headers, 0).await
    }

    pub async fn open_with(&mut self, headers: &[(&str, &str)], flags: u8) -> Stream {
        let id = self.next_stream_id;
        self.next_stream_id += 2;
        self.open_id(id, headers, flags).await
    }

    /// Opens a stream with a chosen id (for out-of-order id tests).
    pub async fn open_id(&mut self, id: u32, headers: &[(&str, &str)], flags: u8) -> Stream {
        let (tx, events) = unbounded_channel();
        self.routes.lock().unwrap().insert(id, tx);
        let mut w = self.writer.lock().await;
        let block = w.compress(&header_block(headers));
        let mut frame = control_head(1, flags, 10 + block.len());
        frame.extend_from_slice(&id.to_be_bytes());
        frame.extend_from_slice(&0u32.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend_from_slice(&block);
        w.io.write_all(&frame).await.expect("write SYN_STREAM");
        w.io.flush().await.expect("flush");
        drop(w);
        Stream { id, writer: self.writer.clone(), events }
    }

    /// Opens a kubectl-style pair: error stream, wait for its reply, data stream, wait.
    pub async fn open_pair(&mut self, port: u16, request_id: &str) -> (Stream, Stream) {
        let port = port.to_string();
        let mut error =
            self.open(&[("streamtype", "error"), ("port", &port), ("requestid", request_id)]).await;
        error.expect_reply().await;
        // kubectl closes its side of the error stream at once
        error.fin().await;
        let mut data =
            self.open(&[("streamtype", "data"), ("port", &port), ("requestid", request_id)]).await;
        data.expect_reply().await;
        (error, data)
    }

    pub async fn write_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut w = self.writer.lock().await;
        w.io.write_all(bytes).await?;
        w.io.flush().await
    }

    /// Compresses a header block with the connection's context (for hand-built frames).
    pub async fn compress(&self, headers: &[(&str, &str)]) -> Vec<u8> {
        self.writer.lock().await.compress(&header_block(headers))
    }

    pub async fn next_conn_event(&mut self) -> ConnEvent {
        tokio::time::timeout(WAIT, self.conn.recv())
            .await
            .expect("timed out waiting for a connection event")
            .unwrap_or(ConnEvent::Closed)
    }

    /// Closes the client's write side (the server sees EOF).
    pub async fn shutdown(&self) {
        let _ = self.writer.lock().await.io.shutdown().await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A handle that writes on a stream from another task.
#[derive(Clone)]
pub struct StreamWriter {
    pub id: u32,
    writer: Arc<tokio::sync::Mutex<Writer>>,
}

impl StreamWriter {
    pub async fn write(&self, data: &[u8]) {
        let mut w = self.writer.lock().await;
        w.io.write_all(&data_frame(self.id, false, data)).await.expect("write data");
        w.io.flush().await.expect("flush");
    }

    pub async fn fin(&self) {
        let mut w = self.writer.lock().await;
        w.io.write_all(&data_frame(self.id, true, &[])).await.expect("write FIN");
        w.io.flush().await.expect("flush");
    }
}

impl Stream {
    pub fn writer(&self) -> StreamWriter {
        StreamWriter { id: self.id, writer: self.writer.clone() }
    }

    pub async fn next(&mut self) -> StreamEvent {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .unwrap_or_else(|_| panic!("stream {}: timed out waiting for a frame", self.id))
            .unwrap_or_else(|| panic!("stream {}: connection gone", self.id))
    }

    pub async fn expect_reply(&mut self) {
        match self.next().await {
            StreamEvent::Reply(headers) => assert!(headers.is_empty(), "{headers:?}"),
            other => panic!("stream {}: expected SYN_REPLY, got {other:?}", self.id),
        }
    }

    pub async fn write(&self, data: &[u8]) {
        let mut w = self.writer.lock().await;
        w.io.write_all(&data_frame(self.id, false, data)).await.expect("write data");
        w.io.flush().await.expect("flush");
    }

    pub async fn fin(&self) {
        let mut w = self.writer.lock().await;
        w.io.write_all(&data_frame(self.id, true, &[])).await.expect("write FIN");
        w.io.flush().await.expect("flush");
    }

    pub async fn reset(&self) {
        let mut w = self.writer.lock().await;
        w.io.write_all(&rst_frame(self.id, 5)).await.expect("write RST");
        w.io.flush().await.expect("flush");
    }

    /// Reads data until FIN; panics on a reset.
    pub async fn read_to_fin(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                StreamEvent::Data(d) => out.extend_from_slice(&d),
                StreamEvent::Fin => return out,
                other => panic!("stream {}: expected data, got {other:?}", self.id),
            }
        }
    }

    /// Reads exactly `n` bytes of data.
    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next().await {
                StreamEvent::Data(d) => out.extend_from_slice(&d),
                other => panic!("stream {}: expected data, got {other:?}", self.id),
            }
        }
        out
    }
}

async fn read_frames(
    mut io: Box<dyn AsyncRead + Send + Unpin>,
    routes: Routes,
    conn: UnboundedSender<ConnEvent>,
) {
    let mut inflate = Decompress::new(true);
    let result: Result<(), String> = async {
        loop {
            let mut head = [0u8; 8];
            match io.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
            let first = be32(&head[0..4]);
            let flags = head[4];
            let length = (be32(&head[4..8]) & 0x00ff_ffff) as usize;
            let mut body = vec![0u8; length];
            io.read_exact(&mut body).await.map_err(|e| e.to_string())?;
            let route = |id: u32, event: StreamEvent| {
                let routes = routes.lock().unwrap();
                match routes.get(&id) {
                    Some(tx) => {
                        let _ = tx.send(event);
                    }
                    None => {
                        let _ = conn.send(ConnEvent::Stray(id));
                    }
                }
            };
            if first & 0x8000_0000 == 0 {
                let id = first & 0x7fff_ffff;
                if !body.is_empty() {
                    route(id, StreamEvent::Data(body));
                }
                if flags & 1 != 0 {
                    route(id, StreamEvent::Fin);
                }
                continue;
            }
            if first >> 16 != 0x8003 {
                return Err(format!("bad control frame version word {first:#x}"));
            }
            match first & 0xffff {
                2 => {
                    let id = be32(&body[0..4]) & 0x7fff_ffff;
                    let raw = inflate_block(&mut inflate, &body[4..])?;
                    route(id, StreamEvent::Reply(parse_header_block(&raw)?));
                    if flags & 1 != 0 {
                        route(id, StreamEvent::Fin);
                    }
                }
                3 => route(be32(&body[0..4]), StreamEvent::Reset(be32(&body[4..8]))),
                6 => {
                    let _ = conn.send(ConnEvent::Ping(be32(&body[0..4])));
                }
                7 => {
                    let _ = conn.send(ConnEvent::GoAway {
                        last_good_stream_id: be32(&body[0..4]),
                        status: be32(&body[4..8]),
                    });
                }
                other => return Err(format!("unexpected control frame type {other}")),
            }
        }
    }
    .await;
    let _ = conn.send(match result {
        Ok(()) => ConnEvent::Closed,
        Err(e) => ConnEvent::Error(e),
    });
    routes.lock().unwrap().clear();
}

fn inflate_block(inflate: &mut Decompress, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(64 << 10);
    let mut consumed = 0usize;
    loop {
        let before = inflate.total_in();
        let status = inflate.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
        consumed += (inflate.total_in() - before) as usize;
        match status {
            Ok(_) if consumed == input.len() => return Ok(out),
            Ok(_) => return Err("header block not fully consumed".into()),
            Err(e) if e.needs_dictionary().is_some() => {
                inflate.set_dictionary(&SPDY3_DICTIONARY).map_err(|e| e.to_string())?;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
