//! CRI-format container log files: one line per record,
//! `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <content>`, where `P` marks a partial
//! line (split because it exceeded the line limit) and `F` the end of a line. The shim
//! writes them; the kubelet reads them back for `kubectl logs`.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest line content in one record; longer lines are split into `P` records.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Formats a time as RFC 3339 in UTC with nanoseconds (`2026-11-22T10:11:12.123456789Z`).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Splits one stream's bytes into CRI records. Keeps the unfinished tail of a line until
/// its newline arrives (or the line limit or [`LineSplitter::finish`] forces it out).
#[derive(Debug)]
pub struct LineSplitter {
    stream: Stream,
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new(stream: Stream) -> Self {
        LineSplitter { stream, pending: Vec::new() }
    }

    /// Feeds bytes; writes every complete record to `out`.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        out: &mut impl Write,
    ) -> io::Result<()> {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_bounded(&data[..i], now, out)?;
                    self.emit(b'F', now, out)?;
                    data = &data[i + 1..];
                }
                None => {
                    self.push_bounded(data, now, out)?;
                    data = &[];
                }
            }
        }
        Ok(())
    }

    fn push_bounded(
        &mut self,
        mut data: &[u8],
        now: SystemTime,
        out: &mut impl Write,
    ) -> io::Result<()> {
        while self.pending.len() + data.len() > MAX_LINE_BYTES {
            let take = MAX_LINE_BYTES - self.pending.len();
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.emit(b'P', now, out)?;
        }
        self.pending.extend_from_slice(data);
        Ok(())
    }

    /// Flushes an unterminated last line (as a full line: the stream ended).
    pub fn finish(&mut self, now: SystemTime, out: &mut impl Write) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.emit(b'F', now, out)?;
        }
        Ok(())
    }

    fn emit(&mut self, tag: u8, now: SystemTime, out: &mut impl Write) -> io::Result<()> {
        let mut line = Vec::with_capacity(self.pending.len() + 48);
        line.extend_from_slice(rfc3339_nano(now).as_bytes());
        line.push(b' ');
        line.extend_from_slice(self.stream.as_str().as_bytes());
        line.push(b' ');
        line.push(tag);
        line.push(b' ');
        line.append(&mut self.pending);
        line.push(b'\n');
        out.write_all(&line)
    }
}

/// One parsed record of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord<'a> {
    pub timestamp: &'a str,
    pub stream: Stream,
    pub partial: bool,
    pub content: &'a [u8],
}

/// Parses one line (without its trailing newline). None for a malformed line.
pub fn parse_line(line: &[u8]) -> Option<LogRecord<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let timestamp = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(LogRecord { timestamp, stream, partial, content: parts.next().unwrap_or(b"") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        assert_eq!(rfc3339_nano(t), "2026-11-18T11:06:40.000000042Z"); // date -u -d @1795000000
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29 (date -u -d @951782400)
        assert!(rfc3339_nano(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn lines_split_into_full_and_partial_records() {
        let now = UNIX_EPOCH;
        let mut out = Vec::new();
        let mut s = LineSplitter::new(Stream::Stderr);
        s.feed(b"hel", now, &mut out).unwrap();
        assert!(out.is_empty(), "no record before the newline");
        s.feed(b"lo\nwor", now, &mut out).unwrap();
        s.feed(&vec![b'x'; MAX_LINE_BYTES], now, &mut out).unwrap();
        s.feed(b"\n", now, &mut out).unwrap();
        s.feed(b"tail", now, &mut out).unwrap();
        s.finish(now, &mut out).unwrap();
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
        let recs: Vec<LogRecord> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].content, b"hello");
        assert!(!recs[0].partial);
        assert_eq!(recs[0].stream, Stream::Stderr);
        assert!(recs[1].partial);
        assert_eq!(recs[1].content.len(), MAX_LINE_BYTES);
        assert!(recs[1].content.starts_with(b"wor"));
        assert_eq!(recs[2].content, b"xxx");
        assert!(!recs[2].partial);
        assert_eq!(recs[3].content, b"tail");
        assert!(parse_line(b"garbage").is_none());
    }
}
