//! SPDY/3 frames: their in-memory form and the byte layout, without I/O and without header
//! compression (header blocks travel here as the compressed bytes; `compress` turns them
//! into name/value lists and back).
//!
//! Every frame starts with 8 bytes. Control frames: control bit + 15-bit version (3),
//! 16-bit type, 8-bit flags, 24-bit length. Data frames: control bit clear + 31-bit stream
//! id, 8-bit flags, 24-bit length. The length counts the bytes after those 8.

use crate::error::Error;

/// The protocol version carried in every control frame.
pub const VERSION: u16 = 3;
/// Largest length the 24-bit length field can carry.
pub const MAX_FRAME_LENGTH: usize = (1 << 24) - 1;

pub const TYPE_SYN_STREAM: u16 = 1;
pub const TYPE_SYN_REPLY: u16 = 2;
pub const TYPE_RST_STREAM: u16 = 3;
pub const TYPE_SETTINGS: u16 = 4;
pub const TYPE_PING: u16 = 6;
pub const TYPE_GOAWAY: u16 = 7;
pub const TYPE_HEADERS: u16 = 8;
pub const TYPE_WINDOW_UPDATE: u16 = 9;

/// FIN on control frames (SYN_STREAM, SYN_REPLY, HEADERS) and on data frames.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes (SPDY/3 section 2.4.2).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
}

/// GOAWAY status: normal termination.
pub const GOAWAY_OK: u32 = 0;

/// The first 8 bytes of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameHead {
    Control { version: u16, frame_type: u16, flags: u8, length: usize },
    Data { stream_id: u32, flags: u8, length: usize },
}

impl FrameHead {
    pub fn parse(bytes: [u8; 8]) -> FrameHead {
        let first = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let second = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        let flags = (second >> 24) as u8;
        let length = (second & 0x00ff_ffff) as usize;
        if first & 0x8000_0000 != 0 {
            FrameHead::Control {
                version: ((first >> 16) & 0x7fff) as u16,
                frame_type: (first & 0xffff) as u16,
                flags,
                length,
            }
        } else {
            FrameHead::Data { stream_id: first, flags, length }
        }
    }
}

/// A decoded control frame. Header blocks are still compressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlFrame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        flags: u8,
        header_block: Vec<u8>,
    },
    SynReply {
        stream_id: u32,
        flags: u8,
        header_block: Vec<u8>,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        /// (flags, id, value) per entry.
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        flags: u8,
        header_block: Vec<u8>,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A type this implementation does not know; the spec says to ignore it.
    Unknown {
        frame_type: u16,
    },
}

fn be32(body: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]])
}

fn malformed(what: &str) -> Error {
    Error::Protocol(format!("malformed {what} frame"))
}

/// Decodes a control frame's body (exactly `length` bytes after the 8-byte head).
/// Checks follow spdystream's reader: zero stream ids, zero RST status, zero PING id and
/// flags on PING/GOAWAY/WINDOW_UPDATE are errors.
pub fn decode_control(
    version: u16,
    frame_type: u16,
    flags: u8,
    body: &[u8],
) -> Result<ControlFrame, Error> {
    if version != VERSION {
        return Err(Error::Protocol(format!("unsupported SPDY version {version}")));
    }
    let frame = match frame_type {
        TYPE_SYN_STREAM => {
            if body.len() < 10 {
                return Err(malformed("SYN_STREAM"));
            }
            let stream_id = be32(body, 0) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(Error::Protocol("SYN_STREAM with stream id 0".into()));
            }
            ControlFrame::SynStream {
                stream_id,
                associated_to: be32(body, 4) & 0x7fff_ffff,
                priority: body[8] >> 5,
                flags,
                header_block: body[10..].to_vec(),
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            if body.len() < 4 {
                return Err(malformed(if frame_type == TYPE_HEADERS {
                    "HEADERS"
                } else {
                    "SYN_REPLY"
                }));
            }
            let stream_id = be32(body, 0) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(Error::Protocol("header frame with stream id 0".into()));
            }
            let header_block = body[4..].to_vec();
            if frame_type == TYPE_HEADERS {
                ControlFrame::Headers { stream_id, flags, header_block }
            } else {
                ControlFrame::SynReply { stream_id, flags, header_block }
            }
        }
        TYPE_RST_STREAM => {
            if body.len() != 8 {
                return Err(malformed("RST_STREAM"));
            }
            let stream_id = be32(body, 0) & 0x7fff_ffff;
            let status = be32(body, 4);
            if stream_id == 0 || status == 0 {
                return Err(malformed("RST_STREAM"));
            }
            ControlFrame::RstStream { stream_id, status }
        }
        TYPE_SETTINGS => {
            if body.len() < 4 {
                return Err(malformed("SETTINGS"));
            }
            let count = be32(body, 0) as usize;
            if body.len() != 4 + count.saturating_mul(8) {
                return Err(malformed("SETTINGS"));
            }
            let entries = (0..count)
                .map(|i| {
                    let at = 4 + i * 8;
                    let flag_id = be32(body, at);
                    ((flag_id >> 24) as u8, flag_id & 0x00ff_ffff, be32(body, at + 4))
                })
                .collect();
            ControlFrame::Settings { flags, entries }
        }
        TYPE_PING => {
            if body.len() != 4 || flags != 0 {
                return Err(malformed("PING"));
            }
            let id = be32(body, 0);
            if id == 0 {
                return Err(malformed("PING"));
            }
            ControlFrame::Ping { id }
        }
        TYPE_GOAWAY => {
            if body.len() != 8 || flags != 0 {
                return Err(malformed("GOAWAY"));
            }
            ControlFrame::GoAway {
                last_good_stream_id: be32(body, 0) & 0x7fff_ffff,
                status: be32(body, 4),
            }
        }
        TYPE_WINDOW_UPDATE => {
            if body.len() != 8 || flags != 0 {
                return Err(malformed("WINDOW_UPDATE"));
            }
            ControlFrame::WindowUpdate {
                stream_id: be32(body, 0) & 0x7fff_ffff,
                delta: be32(body, 4) & 0x7fff_ffff,
            }
        }
        other => ControlFrame::Unknown { frame_type: other },
    };
    Ok(frame)
}

fn put_control_head(out: &mut Vec<u8>, frame_type: u16, flags: u8, length: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    out.extend_from_slice(&((u32::from(flags) << 24) | length as u32).to_be_bytes());
}

/// Appends the wire form of `frame` to `out`. Header blocks must already be compressed.
/// Fails only when a header block is longer than a frame can carry.
pub fn encode_control(frame: &ControlFrame, out: &mut Vec<u8>) -> Result<(), Error> {
    let too_long = || Error::Protocol("control frame longer than 2^24-1 bytes".into());
    match frame {
        ControlFrame::SynStream { stream_id, associated_to, priority, flags, header_block } => {
            let length = 10 + header_block.len();
            if length > MAX_FRAME_LENGTH {
                return Err(too_long());
            }
            put_control_head(out, TYPE_SYN_STREAM, *flags, length);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
            out.push((priority & 0x07) << 5);
            out.push(0);
            out.extend_from_slice(header_block);
        }
        ControlFrame::SynReply { stream_id, flags, header_block }
        | ControlFrame::Headers { stream_id, flags, header_block } => {
            let length = 4 + header_block.len();
            if length > MAX_FRAME_LENGTH {
                return Err(too_long());
            }
            let frame_type = if matches!(frame, ControlFrame::Headers { .. }) {
                TYPE_HEADERS
            } else {
                TYPE_SYN_REPLY
            };
            put_control_head(out, frame_type, *flags, length);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(header_block);
        }
        ControlFrame::RstStream { stream_id, status } => {
            put_control_head(out, TYPE_RST_STREAM, 0, 8);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        ControlFrame::Settings { flags, entries } => {
            let length = 4 + entries.len() * 8;
            if length > MAX_FRAME_LENGTH {
                return Err(too_long());
            }
            put_control_head(out, TYPE_SETTINGS, *flags, length);
            out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
            for (flag, id, value) in entries {
                out.extend_from_slice(
                    &((u32::from(*flag) << 24) | (id & 0x00ff_ffff)).to_be_bytes(),
                );
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
        ControlFrame::Ping { id } => {
            put_control_head(out, TYPE_PING, 0, 4);
            out.extend_from_slice(&id.to_be_bytes());
        }
        ControlFrame::GoAway { last_good_stream_id, status } => {
            put_control_head(out, TYPE_GOAWAY, 0, 8);
            out.extend_from_slice(&(last_good_stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        ControlFrame::WindowUpdate { stream_id, delta } => {
            put_control_head(out, TYPE_WINDOW_UPDATE, 0, 8);
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
        }
        ControlFrame::Unknown { frame_type } => {
            put_control_head(out, *frame_type, 0, 0);
        }
    }
    Ok(())
}

/// Appends the 8-byte head of a data frame carrying `length` bytes.
pub fn encode_data_head(stream_id: u32, fin: bool, length: usize, out: &mut Vec<u8>) {
    debug_assert!(length <= MAX_FRAME_LENGTH);
    out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    out.extend_from_slice(
        &((u32::from(flags) << 24) | (length as u32 & 0x00ff_ffff)).to_be_bytes(),
    );
}

/// A header block's decoded contents: lowercase names, each with its values (a value on
/// the wire is several values joined by NUL).
pub type HeaderList = Vec<(String, Vec<String>)>;

/// Serializes a name/value list into an (uncompressed) header block: a 32-bit count, then
/// for each pair a 32-bit length + name and a 32-bit length + NUL-joined values.
pub fn encode_header_block(headers: &HeaderList) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, values) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        let value = values.join("\0");
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Parses an uncompressed header block. Like spdystream, names must be lowercase, a name
/// may appear once, and the block must be consumed exactly.
pub fn decode_header_block(block: &[u8]) -> Result<HeaderList, Error> {
    let bad = |what: &str| Error::Protocol(format!("malformed header block: {what}"));
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], Error> {
        let end =
            at.checked_add(n).filter(|end| *end <= block.len()).ok_or_else(|| bad("truncated"))?;
        let slice = &block[at..end];
        at = end;
        Ok(slice)
    };
    let read_len = |bytes: &[u8]| u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let count = read_len(take(4)?) as usize;
    // Every pair takes at least 8 bytes, so a count larger than that is a lie; checking
    // it first keeps the allocation below bounded by the block's size.
    if count > block.len() / 8 {
        return Err(bad("too many headers for its size"));
    }
    let mut headers: HeaderList = Vec::with_capacity(count);
    for _ in 0..count {
        let name_len = read_len(take(4)?) as usize;
        let name = std::str::from_utf8(take(name_len)?).map_err(|_| bad("name is not UTF-8"))?;
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("header name is not lowercase"));
        }
        if headers.iter().any(|(existing, _)| existing == name) {
            return Err(bad("duplicate header name"));
        }
        let name = name.to_owned();
        let value_len = read_len(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(value_len)?).into_owned();
        headers.push((name, value.split('\0').map(str::to_owned).collect()));
    }
    if at != block.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(headers)
}

/// The first value of header `name` (case-insensitive), as Go's `http.Header.Get`.
pub fn header_value<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(String::as_str)
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
