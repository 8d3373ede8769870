//! The SPDY/3 header-compression dictionary.
//!
//! Source: the SPDY Protocol Draft 3 specification, section 2.6.10.1 "Compression"
//! (<http://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3>), which defines the
//! zlib dictionary both endpoints preset before compressing or decompressing header blocks.
//! It is a protocol constant: 1423 bytes, zlib dictionary id (Adler-32) `0xe3c6a7c2`; a
//! single differing byte makes every header block undecodable for the peer.
//!
//! The spec lists it as a byte array. Its first part is a sequence of words, each preceded
//! by its length as a 32-bit big-endian integer (the same shape as a header block's
//! names and values); the rest is plain text. It is written down here in that structure
//! and assembled at compile time.

/// The words of the first part, each preceded by a 4-byte big-endian length.
const LENGTH_PREFIXED: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The plain-text second part, in order, without separators.
const TEXT: [&str; 16] = [
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
];

const fn dictionary_len() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < LENGTH_PREFIXED.len() {
        n += 4 + LENGTH_PREFIXED[i].len();
        i += 1;
    }
    let mut j = 0;
    while j < TEXT.len() {
        n += TEXT[j].len();
        j += 1;
    }
    n
}

const fn build() -> [u8; DICTIONARY_LEN] {
    let mut out = [0u8; DICTIONARY_LEN];
    let mut at = 0;
    let mut i = 0;
    while i < LENGTH_PREFIXED.len() {
        let word = LENGTH_PREFIXED[i].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut k = 0;
        while k < 4 {
            out[at] = len[k];
            at += 1;
            k += 1;
        }
        let mut k = 0;
        while k < word.len() {
            out[at] = word[k];
            at += 1;
            k += 1;
        }
        i += 1;
    }
    let mut j = 0;
    while j < TEXT.len() {
        let text = TEXT[j].as_bytes();
        let mut k = 0;
        while k < text.len() {
            out[at] = text[k];
            at += 1;
            k += 1;
        }
        j += 1;
    }
    out
}

const DICTIONARY_LEN: usize = dictionary_len();

/// The SPDY/3 zlib dictionary (see the module documentation for its source).
pub const SPDY3_DICTIONARY: [u8; DICTIONARY_LEN] = build();

#[cfg(test)]
mod tests {
    use super::*;

    /// Adler-32 as zlib computes it, written out so the check does not depend on the
    /// compression backend.
    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn has_the_spec_length_and_dictionary_id() {
        assert_eq!(SPDY3_DICTIONARY.len(), 1423);
        assert_eq!(adler32(&SPDY3_DICTIONARY), 0xe3c6_a7c2);
    }

    #[test]
    fn starts_and_ends_as_the_spec_array() {
        assert_eq!(&SPDY3_DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(SPDY3_DICTIONARY.ends_with(b",*,enq=0."));
    }
}
