//! SPDY/3 header-block compression: one zlib stream per direction for the whole
//! connection, primed with the SPDY/3 dictionary, each frame's block ending with a sync
//! flush so the peer can decode it on its own (spdystream does the same, at
//! `BestCompression`; the level does not matter to the peer).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::SPDY3_DICTIONARY;
use crate::error::Error;

/// Output grows by this much at a time.
const STEP: usize = 4096;

/// The compressing side (our frames to the client).
pub struct HeaderCompressor {
    inner: Compress,
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, Error> {
        let mut inner = Compress::new(Compression::default(), true);
        inner.set_dictionary(&SPDY3_DICTIONARY).map_err(|e| Error::Compression(e.to_string()))?;
        Ok(HeaderCompressor { inner })
    }

    /// Compresses one header block, sync-flushed.
    pub fn compress(&mut self, block: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(block.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(STEP);
            }
            let (in_before, out_before) = (self.inner.total_in(), out.len());
            self.inner
                .compress_vec(&block[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            pos += (self.inner.total_in() - in_before) as usize;
            let room_left = out.len() < out.capacity();
            // Done when all input is in and the flush did not stop for lack of room.
            if pos == block.len() && room_left {
                return Ok(out);
            }
            if room_left && self.inner.total_in() == in_before && out.len() == out_before {
                return Err(Error::Compression("header compressor made no progress".into()));
            }
        }
    }
}

/// The decompressing side (the client's frames to us).
pub struct HeaderDecompressor {
    inner: Decompress,
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        HeaderDecompressor { inner: Decompress::new(true) }
    }

    /// Decompresses one frame's header block, refusing to produce more than `limit` bytes.
    /// Any failure leaves the stream unusable (the connection must end).
    pub fn decompress(&mut self, input: &[u8], limit: usize) -> Result<Vec<u8>, Error> {
        let mut out: Vec<u8> = Vec::with_capacity((input.len() * 4).clamp(64, limit + 1));
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > limit {
                    return Err(Error::Protocol(format!(
                        "header block larger than {limit} bytes once decompressed"
                    )));
                }
                out.reserve(STEP.min(limit + 1 - out.len()).max(1));
            }
            let (in_before, out_before) = (self.inner.total_in(), out.len());
            let result = self.inner.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inner.total_in() - in_before) as usize;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(Error::Compression("header compression stream ended".into()));
                }
                Ok(Status::Ok | Status::BufError) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inner
                        .set_dictionary(&SPDY3_DICTIONARY)
                        .map_err(|e| Error::Compression(format!("wrong dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(Error::Compression(e.to_string())),
            }
            if out.len() > limit {
                return Err(Error::Protocol(format!(
                    "header block larger than {limit} bytes once decompressed"
                )));
            }
            let room_left = out.len() < out.capacity();
            if pos == input.len() && room_left {
                return Ok(out);
            }
            let progressed = self.inner.total_in() > in_before || out.len() > out_before;
            if !progressed && room_left {
                return Err(Error::Compression("header block does not decompress".into()));
            }
        }
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{HeaderList, decode_header_block, encode_header_block};

    fn headers(pairs: &[(&str, &str)]) -> HeaderList {
        pairs.iter().map(|(n, v)| (n.to_string(), vec![v.to_string()])).collect()
    }

    #[test]
    fn blocks_round_trip_across_frames_in_one_context() {
        let mut c = HeaderCompressor::new().unwrap();
        let mut d = HeaderDecompressor::new();
        let blocks = [
            headers(&[("streamtype", "error"), ("port", "8080"), ("requestid", "0")]),
            headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
            Vec::new(),
            headers(&[("streamtype", "error"), ("port", "9090"), ("requestid", "1")]),
            headers(&[("x", &"y".repeat(20_000))]),
        ];
        let mut sizes = Vec::new();
        for block in &blocks {
            let raw = encode_header_block(block);
            let compressed = c.compress(&raw).unwrap();
            sizes.push(compressed.len());
            let back = d.decompress(&compressed, 64 << 10).unwrap();
            assert_eq!(back, raw);
            assert_eq!(&decode_header_block(&back).unwrap(), block);
        }
        // The second block repeats most of the first: the shared context makes it smaller.
        assert!(sizes[1] < sizes[0], "{sizes:?}");
    }

    #[test]
    fn first_block_announces_the_spdy_dictionary() {
        let mut c = HeaderCompressor::new().unwrap();
        let out = c.compress(&encode_header_block(&Vec::new())).unwrap();
        // zlib header with FDICT set, then the dictionary's Adler-32.
        assert_eq!(out[0] & 0x0f, 8, "deflate");
        assert_ne!(out[1] & 0x20, 0, "FDICT");
        assert_eq!(&out[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // Sync flush: the block ends with an empty stored block.
        assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    }

    #[test]
    fn decompression_is_bounded() {
        let mut c = HeaderCompressor::new().unwrap();
        let raw = encode_header_block(&headers(&[("big", &"a".repeat(1 << 20))]));
        let compressed = c.compress(&raw).unwrap();
        assert!(compressed.len() < 8 << 10);
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(&compressed, 64 << 10).is_err());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut d = HeaderDecompressor::new();
        assert!(d.decompress(&[0x12, 0x34, 0x56, 0x78, 0x9a], 1024).is_err());
        let mut d = HeaderDecompressor::new();
        // a zlib header asking for another dictionary
        let mut c = Compress::new(Compression::default(), true);
        c.set_dictionary(b"not the spdy dictionary").unwrap();
        let mut out = Vec::with_capacity(256);
        c.compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync).unwrap();
        assert!(d.decompress(&out, 1024).is_err());
    }

    #[test]
    fn an_incomplete_block_is_an_error_or_short() {
        let mut c = HeaderCompressor::new().unwrap();
        let raw = encode_header_block(&headers(&[("port", "8080")]));
        let compressed = c.compress(&raw).unwrap();
        let mut d = HeaderDecompressor::new();
        match d.decompress(&compressed[..compressed.len() - 6], 1024) {
            Err(_) => {}
            Ok(partial) => assert_ne!(partial, raw),
        }
    }
}
