//! RFC 3339 timestamps as the CRI log format and `sinceTime` carry them: parsed leniently
//! (fractional seconds optional, any UTC offset) and written back like upstream's
//! `RFC3339NanoFixed` (always nine fractional digits, the offset the time was written with,
//! `Z` for UTC).

const NANOS_PER_SECOND: i128 = 1_000_000_000;

/// An instant with the UTC offset it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timestamp {
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    pub unix_nanos: i128,
    /// The offset east of UTC the text carried, in seconds.
    pub offset_seconds: i32,
}

impl Timestamp {
    pub(crate) fn from_system_time(t: std::time::SystemTime) -> Timestamp {
        let unix_nanos = match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(e) => -(e.duration().as_nanos() as i128),
        };
        Timestamp { unix_nanos, offset_seconds: 0 }
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
    pub(crate) fn parse(text: &str) -> Option<Timestamp> {
        let b = text.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if b[10] != b'T' && b[10] != b't' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let mut rest = &b[19..];
        let mut nanos: i64 = 0;
        if let Some(frac) = rest.strip_prefix(b".") {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            for (i, c) in frac[..n].iter().enumerate() {
                if i < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                }
            }
            for _ in n..9 {
                nanos *= 10;
            }
            rest = &frac[n..];
        }
        let offset_seconds = match rest {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let h = digits(&[*h1, *h2])?;
                let m = digits(&[*m1, *m2])?;
                if h > 23 || m > 59 {
                    return None;
                }
                let s = (h * 3600 + m * 60) as i32;
                if *sign == b'-' { -s } else { s }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let local = days * 86_400 + hour * 3600 + minute * 60 + second;
        let utc = local - i64::from(offset_seconds);
        Some(Timestamp {
            unix_nanos: i128::from(utc) * NANOS_PER_SECOND + i128::from(nanos),
            offset_seconds,
        })
    }

    /// `2006-01-02T15:04:05.000000000Z07:00` (Go's layout notation).
    pub(crate) fn format(&self) -> String {
        let local = self.unix_nanos + i128::from(self.offset_seconds) * NANOS_PER_SECOND;
        let secs = local.div_euclid(NANOS_PER_SECOND) as i64;
        let nanos = local.rem_euclid(NANOS_PER_SECOND);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        let mut out = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        );
        if self.offset_seconds == 0 {
            out.push('Z');
        } else {
            let sign = if self.offset_seconds < 0 { '-' } else { '+' };
            let abs = self.offset_seconds.unsigned_abs();
            out.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs / 60) % 60));
        }
        out
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v = 0i64;
    for c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_what_the_shim_writes_and_formats_it_back_unchanged() {
        let t = UNIX_EPOCH + Duration::new(1_795_000_000, 42);
        let text = rudder_runtime::logs::rfc3339_nano(t);
        let parsed = Timestamp::parse(&text).unwrap();
        assert_eq!(parsed, Timestamp::from_system_time(t));
        assert_eq!(parsed.format(), text);
    }

    #[test]
    fn fractions_are_optional_and_padded_to_nine_digits() {
        let t = Timestamp::parse("2024-02-29T23:59:59Z").unwrap();
        assert_eq!(t.format(), "2024-02-29T23:59:59.000000000Z");
        let t = Timestamp::parse("2024-02-29T23:59:59.5Z").unwrap();
        assert_eq!(t.unix_nanos % NANOS_PER_SECOND, 500_000_000);
        assert_eq!(t.format(), "2024-02-29T23:59:59.500000000Z");
        // More than nine digits: the extra precision is dropped.
        let t = Timestamp::parse("2024-02-29T23:59:59.1234567891Z").unwrap();
        assert_eq!(t.format(), "2024-02-29T23:59:59.123456789Z");
    }

    #[test]
    fn offsets_are_applied_and_kept_for_output() {
        let a = Timestamp::parse("2024-01-01T02:00:00+02:00").unwrap();
        let b = Timestamp::parse("2024-01-01T00:00:00Z").unwrap();
        assert_eq!(a.unix_nanos, b.unix_nanos);
        assert_eq!(a.format(), "2024-01-01T02:00:00.000000000+02:00");
        let c = Timestamp::parse("2023-12-31T19:30:00.25-04:30").unwrap();
        assert_eq!(c.unix_nanos, b.unix_nanos + 250_000_000);
        assert_eq!(c.format(), "2023-12-31T19:30:00.250000000-04:30");
        assert_eq!(Timestamp::parse("2024-01-01T00:00:00+00:00").unwrap().format(), b.format());
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01 00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0200",
            "2024-01-01T00:00:00Zjunk",
            "abcd-01-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
