//! Reading frames off the upgraded connection, with limits: a control frame's body is
//! buffered only up to `MAX_CONTROL_FRAME_BYTES`, a header block only up to
//! `MAX_HEADER_BLOCK_BYTES` once decompressed, and data payloads are handed out in
//! pieces so a frame's declared length never turns into one allocation.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use crate::compress::HeaderDecompressor;
use crate::error::Error;
use crate::frame::{
    ControlFrame, FrameHead, HeaderList, TYPE_HEADERS, TYPE_SYN_REPLY, TYPE_SYN_STREAM,
    decode_control, decode_header_block,
};

/// Largest control frame body accepted (compressed header blocks included). Port-forward
/// header blocks are a few dozen bytes.
pub const MAX_CONTROL_FRAME_BYTES: usize = 64 << 10;
/// Largest header block accepted once decompressed.
pub const MAX_HEADER_BLOCK_BYTES: usize = 256 << 10;
/// Largest piece of a data frame handed out at once.
pub const DATA_CHUNK_BYTES: usize = 32 << 10;

/// Headers a client may not put in a SYN_STREAM (spdystream's reader rejects them).
const FORBIDDEN_REQUEST_HEADERS: [&str; 5] =
    ["connection", "host", "keep-alive", "proxy-connection", "transfer-encoding"];

/// One frame as the session sees it.
#[derive(Debug)]
pub enum Incoming {
    /// A control frame; for SYN_STREAM, SYN_REPLY and HEADERS, `headers` holds the
    /// decompressed header block (and the frame's `header_block` is emptied).
    Control { frame: ControlFrame, headers: Option<HeaderList> },
    /// A data frame's head; its `length` payload bytes must be consumed next with
    /// `read_chunk` or `discard`.
    Data { stream_id: u32, fin: bool, length: usize },
}

pub struct FrameReader<R> {
    inner: BufReader<R>,
    headers: HeaderDecompressor,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader {
            inner: BufReader::with_capacity(64 << 10, io),
            headers: HeaderDecompressor::new(),
        }
    }

    /// The next frame, or `None` when the connection ended cleanly between frames.
    pub async fn next(&mut self) -> Result<Option<Incoming>, Error> {
        let mut head = [0u8; 8];
        let mut filled = 0;
        while filled < head.len() {
            let n = self.inner.read(&mut head[filled..]).await?;
            if n == 0 {
                if filled == 0 {
                    return Ok(None);
                }
                return Err(Error::Protocol("connection ended inside a frame header".into()));
            }
            filled += n;
        }
        match FrameHead::parse(head) {
            FrameHead::Data { stream_id, flags, length } => {
                if stream_id == 0 {
                    return Err(Error::Protocol("data frame with stream id 0".into()));
                }
                Ok(Some(Incoming::Data {
                    stream_id,
                    fin: flags & crate::frame::FLAG_FIN != 0,
                    length,
                }))
            }
            FrameHead::Control { version, frame_type, flags, length } => {
                if length > MAX_CONTROL_FRAME_BYTES {
                    return Err(Error::Protocol(format!(
                        "control frame of {length} bytes exceeds the {MAX_CONTROL_FRAME_BYTES}-byte limit"
                    )));
                }
                let mut body = vec![0u8; length];
                self.read_exact(&mut body).await?;
                let mut frame = decode_control(version, frame_type, flags, &body)?;
                let headers = match frame_type {
                    TYPE_SYN_STREAM | TYPE_SYN_REPLY | TYPE_HEADERS => {
                        Some(self.decode_headers(&mut frame)?)
                    }
                    _ => None,
                };
                Ok(Some(Incoming::Control { frame, headers }))
            }
        }
    }

    fn decode_headers(&mut self, frame: &mut ControlFrame) -> Result<HeaderList, Error> {
        let (block, is_syn_stream) = match frame {
            ControlFrame::SynStream { header_block, .. } => (std::mem::take(header_block), true),
            ControlFrame::SynReply { header_block, .. }
            | ControlFrame::Headers { header_block, .. } => (std::mem::take(header_block), false),
            _ => return Ok(Vec::new()),
        };
        let raw = self.headers.decompress(&block, MAX_HEADER_BLOCK_BYTES)?;
        let headers = decode_header_block(&raw)?;
        let forbidden =
            headers.iter().find(|(n, _)| FORBIDDEN_REQUEST_HEADERS.contains(&n.as_str()));
        if let (true, Some((name, _))) = (is_syn_stream, forbidden) {
            return Err(Error::Protocol(format!("SYN_STREAM carries header {name:?}")));
        }
        Ok(headers)
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        match self.inner.read_exact(buf).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(Error::Protocol("connection ended inside a frame".into()))
            }
            Err(e) => Err(Error::Io(e)),
        }
    }

    /// Reads the next piece (at most `DATA_CHUNK_BYTES`, at most `remaining`) of a data
    /// frame's payload.
    pub async fn read_chunk(&mut self, remaining: usize) -> Result<Bytes, Error> {
        let n = remaining.min(DATA_CHUNK_BYTES);
        let mut buf = BytesMut::zeroed(n);
        self.read_exact(&mut buf).await?;
        Ok(buf.freeze())
    }

    /// Skips `length` payload bytes.
    pub async fn discard(&mut self, mut length: usize) -> Result<(), Error> {
        let mut scratch = [0u8; 4096];
        while length > 0 {
            let n = length.min(scratch.len());
            self.read_exact(&mut scratch[..n]).await?;
            length -= n;
        }
        Ok(())
    }
}
