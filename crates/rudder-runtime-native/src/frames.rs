//! The framing on a shim's attach socket (agent <-> shim) and on an exec helper's control
//! pipe (agent -> helper): `[kind: u8][length: u32, big-endian][payload]`.
//!
//! The agent opens an attach with [`Frame::Hello`] saying which streams it wants, then sends
//! stdin data, a stdin close and terminal resizes; the shim sends output and, when the
//! process ended while attached, its exit code.

use thiserror::Error;

/// The largest payload either side sends or accepts.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// First frame of an attach: the streams the agent wants.
    Hello {
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
    Stdin(Vec<u8>),
    /// The attacher's stdin ended.
    CloseStdin,
    Resize {
        width: u16,
        height: u16,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The process ended with this exit code (128 + signal when killed).
    Exit(i32),
}

const HELLO: u8 = 1;
const STDIN: u8 = 2;
const CLOSE_STDIN: u8 = 3;
const RESIZE: u8 = 4;
pub(crate) const STDOUT: u8 = 5;
pub(crate) const STDERR: u8 = 6;
const EXIT: u8 = 7;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")]
    TooLarge(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame kind {kind} needs {needed} payload bytes, got {got}")]
    BadLength { kind: u8, needed: usize, got: usize },
}

/// Appends one frame with a raw payload (output is sent without copying it into a Frame).
pub fn encode_raw(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

pub fn encode(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Hello { stdin, stdout, stderr } => {
            let flags = u8::from(*stdin) | (u8::from(*stdout) << 1) | (u8::from(*stderr) << 2);
            encode_raw(HELLO, &[flags], out)
        }
        Frame::Stdin(d) => encode_raw(STDIN, d, out),
        Frame::CloseStdin => encode_raw(CLOSE_STDIN, &[], out),
        Frame::Resize { width, height } => {
            let mut p = [0u8; 4];
            p[..2].copy_from_slice(&width.to_be_bytes());
            p[2..].copy_from_slice(&height.to_be_bytes());
            encode_raw(RESIZE, &p, out)
        }
        Frame::Stdout(d) => encode_raw(STDOUT, d, out),
        Frame::Stderr(d) => encode_raw(STDERR, d, out),
        Frame::Exit(code) => encode_raw(EXIT, &code.to_be_bytes(), out),
    }
}

pub fn to_bytes(frame: &Frame) -> Vec<u8> {
    let mut v = Vec::new();
    encode(frame, &mut v);
    v
}

/// Incremental decoder: feed bytes as they arrive, take whole frames out.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, None until one is complete.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD_BYTES {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        let exact = |needed: usize| {
            if payload.len() == needed {
                Ok(())
            } else {
                Err(FrameError::BadLength { kind, needed, got: payload.len() })
            }
        };
        let frame = match kind {
            HELLO => {
                exact(1)?;
                let f = payload[0];
                Frame::Hello { stdin: f & 1 != 0, stdout: f & 2 != 0, stderr: f & 4 != 0 }
            }
            STDIN => Frame::Stdin(payload),
            CLOSE_STDIN => Frame::CloseStdin,
            RESIZE => {
                exact(4)?;
                Frame::Resize {
                    width: u16::from_be_bytes([payload[0], payload[1]]),
                    height: u16::from_be_bytes([payload[2], payload[3]]),
                }
            }
            STDOUT => Frame::Stdout(payload),
            STDERR => Frame::Stderr(payload),
            EXIT => {
                exact(4)?;
                Frame::Exit(i32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]))
            }
            other => return Err(FrameError::UnknownKind(other)),
        };
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips_even_when_split_byte_by_byte() {
        let frames = vec![
            Frame::Hello { stdin: true, stdout: false, stderr: true },
            Frame::Stdin(b"ls\n".to_vec()),
            Frame::CloseStdin,
            Frame::Resize { width: 132, height: 43 },
            Frame::Stdout(vec![0, 1, 2, 255]),
            Frame::Stderr(Vec::new()),
            Frame::Exit(-3),
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            encode(f, &mut bytes);
        }
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in bytes {
            d.feed(&[b]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn oversized_unknown_and_malformed_frames_are_errors() {
        let mut d = Decoder::default();
        d.feed(&[STDIN, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
        let mut d = Decoder::default();
        d.feed(&[99, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(99)));
        let mut d = Decoder::default();
        d.feed(&[RESIZE, 0, 0, 0, 1, 7]);
        assert_eq!(d.next_frame(), Err(FrameError::BadLength { kind: RESIZE, needed: 4, got: 1 }));
    }
}
