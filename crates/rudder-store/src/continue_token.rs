//! Continue tokens for paginated lists, shaped like upstream's: base64url of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>"}`. The start key is
//! relative to the listed prefix, so a token cannot be used to read outside of it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::types::Revision;

const VERSION: &str = "meta.k8s.io/v1";

#[derive(Serialize, Deserialize)]
struct Token {
    v: String,
    rv: Revision,
    start: String,
}

/// Where the next page starts: `start` is the first key (inclusive) of the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continue {
    pub revision: Revision,
    pub start: String,
}

/// Encodes the continuation after `last_key` (the last key of this page).
pub fn encode(prefix: &str, last_key: &str, revision: Revision) -> String {
    let relative = last_key.strip_prefix(prefix).unwrap_or(last_key);
    // The next page starts just after the last key: append the smallest byte we accept.
    let token = Token { v: VERSION.into(), rv: revision, start: format!("{relative}\u{21}") };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).expect("token serializes"))
}

pub fn decode(prefix: &str, token: &str) -> Result<Continue> {
    let invalid = |reason: &str| StoreError::InvalidContinue { reason: reason.to_owned() };
    let bytes = URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| invalid("not base64url"))?;
    let token: Token =
        serde_json::from_slice(&bytes).map_err(|_| invalid("not a continue token"))?;
    if token.v != VERSION {
        return Err(invalid("unknown token version"));
    }
    if token.rv <= 0 {
        return Err(invalid("revision must be positive"));
    }
    if token.start.is_empty() || token.start.contains("..") || token.start.starts_with('/') {
        return Err(invalid("start key is not inside the listed prefix"));
    }
    Ok(Continue { revision: token.rv, start: format!("{prefix}{}", token.start) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_starts_after_the_last_key() {
        let t = encode("/registry/pods/", "/registry/pods/default/a", 42);
        let c = decode("/registry/pods/", &t).unwrap();
        assert_eq!(c.revision, 42);
        assert!(c.start.as_str() > "/registry/pods/default/a");
        assert!(c.start.as_str() < "/registry/pods/default/a0");
        assert!(c.start.as_str() < "/registry/pods/default/aa");
    }

    #[test]
    fn rejects_garbage_and_escapes() {
        assert!(decode("/p/", "!!!").is_err());
        assert!(decode("/p/", &URL_SAFE_NO_PAD.encode(b"{}")).is_err());
        let escape = URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":3,"start":"../x"}"#);
        assert!(decode("/p/", &escape).is_err());
        let zero = URL_SAFE_NO_PAD.encode(br#"{"v":"meta.k8s.io/v1","rv":0,"start":"x"}"#);
        assert!(decode("/p/", &zero).is_err());
    }
}
