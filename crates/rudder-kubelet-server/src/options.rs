//! `containerLogs` query parameters: upstream's `v1.PodLogOptions` as the kubelet decodes
//! them from a query string (the legacy `tail` parameter included), its validation, and the
//! options the log reader works with (upstream's `kuberuntime/logs.LogOptions`).

use crate::timestamp::Timestamp;

/// Which of the container's streams to return (`stream=`, upstream's
/// `PodLogsQuerySplitStreams`; `All` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamSelection {
    All,
    Stdout,
    Stderr,
}

/// What to read from a container's log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// `previous`: the previous (terminated) instance of the container.
    pub previous: bool,
    /// `follow`: keep streaming new lines while the container runs.
    pub follow: bool,
    /// `timestamps`: prefix each line with its RFC3339Nano timestamp and a space.
    pub timestamps: bool,
    /// `tailLines`: start this many log file lines before the end.
    pub tail_lines: Option<u64>,
    /// `limitBytes`: stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
    /// From `sinceSeconds` (relative to the request's time) or `sinceTime`: skip lines
    /// written before, in nanoseconds since the Unix epoch.
    pub since_unix_nanos: Option<i128>,
    /// `stream`.
    pub stream: StreamSelection,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            previous: false,
            follow: false,
            timestamps: false,
            tail_lines: None,
            limit_bytes: None,
            since_unix_nanos: None,
            stream: StreamSelection::All,
        }
    }
}

/// Why a query was refused; the HTTP status and body follow upstream's kubelet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// A value of the wrong type (400, `{"message": "Unable to decode query."}`).
    #[error("unable to decode query: {0}")]
    Decode(String),
    /// Well-typed but not valid `PodLogOptions` (422, `{"message": "Invalid request."}`).
    #[error("invalid request: {}", .0.join(", "))]
    Invalid(Vec<String>),
}

impl OptionsError {
    pub fn status(&self) -> u16 {
        match self {
            OptionsError::Decode(_) => 400,
            OptionsError::Invalid(_) => 422,
        }
    }

    /// The response body, as upstream writes it.
    pub fn body(&self) -> &'static str {
        match self {
            OptionsError::Decode(_) => r#"{"message": "Unable to decode query."}"#,
            OptionsError::Invalid(_) => r#"{"message": "Invalid request."}"#,
        }
    }
}

/// A query parameter as upstream's parameter codec reads it: the first value wins.
fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Only an absent value, `0` and `false` (any case) are false; anything else, the empty
/// string included, is true (upstream's `Convert_Slice_string_To_bool`).
fn boolean(value: Option<&str>) -> bool {
    match value {
        None => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

fn integer(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, OptionsError> {
    match first(pairs, name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| OptionsError::Decode(format!("{name}: {v:?} is not an integer"))),
    }
}

impl LogOptions {
    /// Decodes and validates a raw (URL-encoded) query string. `now` is the request's time,
    /// which `sinceSeconds` counts back from.
    pub fn from_query(query: &str, now: std::time::SystemTime) -> Result<LogOptions, OptionsError> {
        let mut pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| OptionsError::Decode(format!("query string: {e}")))?;
        // The legacy `tail` parameter stands for tailLines; `tail=all` means no limit.
        if let Some(tail) = first(&pairs, "tail").map(str::to_owned)
            && !tail.is_empty()
        {
            pairs.retain(|(k, _)| k != "tailLines");
            if tail != "all" {
                pairs.push(("tailLines".to_owned(), tail));
            }
        }
        let tail_lines = integer(&pairs, "tailLines")?;
        let limit_bytes = integer(&pairs, "limitBytes")?;
        let since_seconds = integer(&pairs, "sinceSeconds")?;
        let since_time = match first(&pairs, "sinceTime") {
            None | Some("") | Some("null") => None,
            Some(v) => Some(Timestamp::parse(v).ok_or_else(|| {
                OptionsError::Decode(format!("sinceTime: {v:?} is not an RFC 3339 time"))
            })?),
        };
        let stream = match first(&pairs, "stream") {
            None | Some("All") => Ok(StreamSelection::All),
            Some("Stdout") => Ok(StreamSelection::Stdout),
            Some("Stderr") => Ok(StreamSelection::Stderr),
            Some(other) => Err(other.to_owned()),
        };

        // Upstream's ValidatePodLogOptions: every error, in its words.
        let mut errors = Vec::new();
        if let Some(n) = tail_lines
            && n < 0
        {
            errors
                .push(format!("tailLines: Invalid value: {n}: must be greater than or equal to 0"));
        }
        if let Some(n) = limit_bytes
            && n < 1
        {
            errors.push(format!("limitBytes: Invalid value: {n}: must be greater than 0"));
        }
        match (since_seconds, since_time) {
            (Some(_), Some(_)) => errors
                .push("sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".to_owned()),
            (Some(n), None) if n < 1 => {
                errors.push(format!("sinceSeconds: Invalid value: {n}: must be greater than 0"))
            }
            _ => {}
        }
        match &stream {
            Err(other) => errors.push(format!(
                "stream: Unsupported value: {other:?}: supported values: \"All\", \"Stderr\", \"Stdout\""
            )),
            Ok(StreamSelection::All) => {}
            Ok(_) if tail_lines.is_some() => errors.push(
                "tailLines: Forbidden: `tailLines` and specific `stream` are mutually exclusive for now"
                    .to_owned(),
            ),
            Ok(_) => {}
        }
        if !errors.is_empty() {
            return Err(OptionsError::Invalid(errors));
        }

        let now = Timestamp::from_system_time(now).unix_nanos;
        let since_unix_nanos = match (since_seconds, since_time) {
            (Some(s), _) => Some(now - i128::from(s) * 1_000_000_000),
            (None, Some(t)) => Some(t.unix_nanos),
            (None, None) => None,
        };
        Ok(LogOptions {
            previous: boolean(first(&pairs, "previous")),
            follow: boolean(first(&pairs, "follow")),
            timestamps: boolean(first(&pairs, "timestamps")),
            tail_lines: tail_lines.map(|n| n as u64),
            limit_bytes: limit_bytes.map(|n| n as u64),
            since_unix_nanos,
            stream: stream.unwrap_or(StreamSelection::All),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn parse(q: &str) -> Result<LogOptions, OptionsError> {
        LogOptions::from_query(q, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn empty_query_reads_everything_once() {
        assert_eq!(parse("").unwrap(), LogOptions::default());
    }

    #[test]
    fn booleans_follow_upstreams_parameter_codec() {
        let o = parse("follow=true&previous=1&timestamps=").unwrap();
        assert!(o.follow && o.previous && o.timestamps, "empty string is true upstream");
        let o = parse("follow=FALSE&previous=0&timestamps=false").unwrap();
        assert!(!o.follow && !o.previous && !o.timestamps);
        assert!(parse("follow=yes").unwrap().follow);
        // The first value of a repeated parameter wins.
        assert!(!parse("follow=false&follow=true").unwrap().follow);
    }

    #[test]
    fn numbers_and_times() {
        let o = parse("tailLines=10&limitBytes=500&sinceSeconds=60").unwrap();
        assert_eq!(o.tail_lines, Some(10));
        assert_eq!(o.limit_bytes, Some(500));
        assert_eq!(o.since_unix_nanos, Some((1_700_000_000 - 60) * 1_000_000_000));
        let o = parse("sinceTime=2023-11-14T22%3A13%3A20Z").unwrap();
        assert_eq!(o.since_unix_nanos, Some(1_700_000_000 * 1_000_000_000));
        let o = parse("sinceTime=2023-11-14T23:13:20%2B01:00").unwrap();
        assert_eq!(o.since_unix_nanos, Some(1_700_000_000 * 1_000_000_000));
    }

    #[test]
    fn legacy_tail_parameter() {
        assert_eq!(parse("tail=5").unwrap().tail_lines, Some(5));
        assert_eq!(parse("tail=5&tailLines=7").unwrap().tail_lines, Some(5));
        assert_eq!(parse("tail=all&tailLines=7").unwrap().tail_lines, None);
    }

    #[test]
    fn wrong_types_are_400() {
        for q in ["tailLines=x", "limitBytes=", "sinceSeconds=1.5", "sinceTime=yesterday"] {
            let e = parse(q).unwrap_err();
            assert!(matches!(e, OptionsError::Decode(_)), "{q}: {e:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn invalid_options_are_422_with_every_error() {
        let e = parse("tailLines=-1&limitBytes=0&sinceSeconds=0").unwrap_err();
        assert_eq!(e.status(), 422);
        let OptionsError::Invalid(errors) = e else { panic!() };
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("tailLines: Invalid value: -1"));
        let e = parse("sinceSeconds=5&sinceTime=2023-11-14T22:13:20Z").unwrap_err();
        assert!(e.to_string().contains("at most one of"), "{e}");
        assert_eq!(parse("stream=Both").unwrap_err().status(), 422);
        assert_eq!(parse("stream=Stdout&tailLines=3").unwrap_err().status(), 422);
    }

    #[test]
    fn stream_selection() {
        assert_eq!(parse("stream=Stderr").unwrap().stream, StreamSelection::Stderr);
        assert_eq!(parse("stream=Stdout").unwrap().stream, StreamSelection::Stdout);
        assert_eq!(parse("stream=All&tailLines=2").unwrap().stream, StreamSelection::All);
    }
}
