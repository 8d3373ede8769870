//! Turns CRI log file lines into `kubectl logs` output (upstream's `logWriter`): the
//! content without the timestamp/stream/tag prefix, partial (`P`) records joined with what
//! follows them (their content is written without a newline), lines before `since`
//! skipped, the other stream skipped when one stream was asked for, an optional timestamp
//! prefix, and a byte limit (which counts the prefixes too). Unlike upstream, which stamps
//! every record (so a joined line carries a second timestamp in its middle), only the start
//! of each output line gets a timestamp: the first record's.

use rudder_runtime::logs::{Stream, parse_line};

use crate::options::{LogOptions, StreamSelection};
use crate::timestamp::Timestamp;

/// What the reader does after a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// The line counted (written, or skipped by `since` or the stream selection).
    Counted,
    /// The line was malformed and ignored (not counted for `tailLines`).
    Ignored,
    /// The byte limit is reached: stop.
    LimitReached,
}

#[derive(Debug)]
pub(crate) struct LogWriter {
    since_unix_nanos: Option<i128>,
    timestamps: bool,
    stream: StreamSelection,
    /// Bytes still allowed (`u64::MAX` without a limit).
    remaining: u64,
    /// Whether the last written record ended a line (so the next one starts a new line).
    at_line_start: bool,
}

impl LogWriter {
    pub(crate) fn new(opts: &LogOptions) -> Self {
        LogWriter {
            since_unix_nanos: opts.since_unix_nanos,
            timestamps: opts.timestamps,
            stream: opts.stream,
            remaining: opts.limit_bytes.unwrap_or(u64::MAX),
            at_line_start: true,
        }
    }

    /// Handles one complete line of the log file (without its newline), appending the
    /// output to `out`.
    pub(crate) fn write(&mut self, line: &[u8], out: &mut Vec<u8>) -> Flow {
        let Some(record) = parse_line(line) else {
            tracing::debug!(line = %String::from_utf8_lossy(line), "malformed CRI log line");
            return Flow::Ignored;
        };
        let Some(timestamp) = Timestamp::parse(record.timestamp) else {
            tracing::debug!(timestamp = record.timestamp, "malformed CRI log timestamp");
            return Flow::Ignored;
        };
        if self.since_unix_nanos.is_some_and(|since| timestamp.unix_nanos < since) {
            return Flow::Counted;
        }
        let wanted = match (self.stream, record.stream) {
            (StreamSelection::All, _) => true,
            (StreamSelection::Stdout, s) => s == Stream::Stdout,
            (StreamSelection::Stderr, s) => s == Stream::Stderr,
        };
        if !wanted {
            return Flow::Counted;
        }
        let start = out.len();
        // Upstream stamps every record, so a joined line carries a second timestamp in its
        // middle; we stamp the start of each output line only.
        if self.timestamps && self.at_line_start {
            out.extend_from_slice(timestamp.format().as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(record.content);
        if !record.partial {
            out.push(b'\n');
        }
        self.at_line_start = !record.partial;
        let written = (out.len() - start) as u64;
        if written >= self.remaining {
            out.truncate(start + self.remaining as usize);
            self.remaining = 0;
            return Flow::LimitReached;
        }
        self.remaining -= written;
        Flow::Counted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: &str = "2024-05-01T10:00:00.000000001Z";
    const T2: &str = "2024-05-01T10:00:01.500000000Z";
    const T3: &str = "2024-05-01T10:00:02.000000000Z";

    fn run(opts: &LogOptions, lines: &[&str]) -> (String, Vec<Flow>) {
        let mut w = LogWriter::new(opts);
        let mut out = Vec::new();
        let flows = lines.iter().map(|l| w.write(l.as_bytes(), &mut out)).collect();
        (String::from_utf8(out).unwrap(), flows)
    }

    #[test]
    fn content_without_the_prefix_both_streams_in_file_order() {
        let lines = [
            format!("{T1} stdout F out one"),
            format!("{T2} stderr F err one"),
            format!("{T3} stdout F "),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (out, flows) = run(&LogOptions::default(), &lines);
        assert_eq!(out, "out one\nerr one\n\n");
        assert!(flows.iter().all(|f| *f == Flow::Counted));
    }

    #[test]
    fn partial_records_join_the_following_line_and_get_one_timestamp() {
        let lines = [
            format!("{T1} stdout P hel"),
            format!("{T2} stdout P lo "),
            format!("{T3} stdout F world"),
            format!("{T3} stdout F next"),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_eq!(run(&LogOptions::default(), &lines).0, "hello world\nnext\n");
        let opts = LogOptions { timestamps: true, ..LogOptions::default() };
        assert_eq!(run(&opts, &lines).0, format!("{T1} hello world\n{T3} next\n"));
    }

    #[test]
    fn since_skips_older_lines_but_counts_them() {
        let lines = [format!("{T1} stdout F old"), format!("{T2} stderr F new")];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let since = Timestamp::parse("2024-05-01T10:00:01.5Z").unwrap().unix_nanos;
        let opts = LogOptions { since_unix_nanos: Some(since), ..LogOptions::default() };
        let (out, flows) = run(&opts, &lines);
        assert_eq!(out, "new\n", "a line at exactly `since` is kept");
        assert_eq!(flows, vec![Flow::Counted, Flow::Counted]);
    }

    #[test]
    fn timestamps_are_rfc3339_nano_with_nine_digits() {
        let lines = ["2024-05-01T10:00:00.5Z stdout F x", "2024-05-01T12:00:00+02:00 stdout F y"];
        let opts = LogOptions { timestamps: true, ..LogOptions::default() };
        assert_eq!(
            run(&opts, &lines).0,
            "2024-05-01T10:00:00.500000000Z x\n2024-05-01T12:00:00.000000000+02:00 y\n"
        );
    }

    #[test]
    fn limit_bytes_truncates_and_counts_the_timestamp_prefix() {
        let lines = [format!("{T1} stdout F abcdef"), format!("{T2} stdout F ghi")];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let opts = LogOptions { limit_bytes: Some(9), ..LogOptions::default() };
        let (out, flows) = run(&opts, &lines);
        assert_eq!(out, "abcdef\ngh");
        assert_eq!(flows, vec![Flow::Counted, Flow::LimitReached]);
        // Exactly at the limit: stop at once.
        let opts = LogOptions { limit_bytes: Some(7), ..LogOptions::default() };
        assert_eq!(run(&opts, &lines[..1]).1, vec![Flow::LimitReached]);
        let opts = LogOptions { limit_bytes: Some(40), timestamps: true, ..LogOptions::default() };
        assert_eq!(run(&opts, &lines).0, format!("{T1} abcdef\n{}", &T2[..2]));
    }

    #[test]
    fn one_stream_only() {
        let lines = [format!("{T1} stdout F out"), format!("{T2} stderr F err")];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let opts = LogOptions { stream: StreamSelection::Stderr, ..LogOptions::default() };
        assert_eq!(run(&opts, &lines).0, "err\n");
        let opts = LogOptions { stream: StreamSelection::Stdout, ..LogOptions::default() };
        assert_eq!(run(&opts, &lines).0, "out\n");
    }

    #[test]
    fn malformed_lines_are_ignored() {
        let lines = ["garbage", "notatime stdout F x", "2024-05-01T10:00:00Z stdin F x"];
        let (out, flows) = run(&LogOptions::default(), &lines);
        assert_eq!(out, "");
        assert!(flows.iter().all(|f| *f == Flow::Ignored));
    }
}
