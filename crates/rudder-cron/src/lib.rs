//! Cron schedules as upstream's CronJob controller reads them (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week) of lists (`,`),
//! ranges (`-`), steps (`/`), `*` and `?`, month names `JAN`..`DEC` and day names
//! `SUN`..`SAT` (any case); the macros `@yearly` `@annually` `@monthly` `@weekly` `@daily`
//! `@midnight` `@hourly` and `@every <duration>`; an optional `TZ=<zone>` / `CRON_TZ=<zone>`
//! prefix. Day of month and day of week: when both are restricted a day matching either runs
//! (classic cron), otherwise both must match. Times are computed in the schedule's time zone
//! (UTC unless given), read from the system tz database (`/usr/share/zoneinfo`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

/// Where zone files are read from (Go's first system location).
const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";

/// How far ahead a schedule is searched before it is declared to never fire (robfig: 5 years).
const SEARCH_YEARS: i16 = 5;

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    time_zone: TimeZone,
}

#[derive(Clone, Debug)]
enum Kind {
    Fields(Fields),
    /// `@every <duration>` (whole seconds, at least one).
    Every(Duration),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// The field was `*` or `?` (no step): it does not restrict.
    dom_star: bool,
    dow_star: bool,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Bounds = Bounds { min: 0, max: 59, names: &[] };
const HOUR: Bounds = Bounds { min: 0, max: 23, names: &[] };
const DOM: Bounds = Bounds { min: 1, max: 31, names: &[] };
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
};
const DOW: Bounds =
    Bounds { min: 0, max: 6, names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"] };

impl Schedule {
    /// Parses `spec` (robfig's ParseStandard), UTC unless it carries a `TZ=` prefix.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        let mut time_zone = TimeZone::UTC;
        let mut rest = spec;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let end = spec.find(char::is_whitespace).unwrap_or(spec.len());
            let name = &spec[spec.find('=').map_or(0, |i| i + 1)..end];
            time_zone =
                load_time_zone(name).map_err(|e| format!("provided bad location {name}: {e}"))?;
            rest = spec[end..].trim();
        }
        let kind =
            if rest.starts_with('@') { descriptor(rest)? } else { Kind::Fields(fields(rest)?) };
        Ok(Schedule { kind, time_zone })
    }

    /// The first activation strictly after `t`, if any within five years.
    pub fn next(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Every(every) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(SignedDuration::try_from(*every).ok()?).ok()
            }
            Kind::Fields(f) => next_in_zone(f, &self.time_zone, t),
        }
    }

    pub fn time_zone(&self) -> &TimeZone {
        &self.time_zone
    }
}

fn descriptor(spec: &str) -> Result<Kind, String> {
    let expanded = match spec {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            if let Some(d) = spec.strip_prefix("@every ") {
                let every = parse_go_duration(d.trim())
                    .ok_or_else(|| format!("failed to parse duration {spec}: invalid duration"))?;
                let secs = every.as_secs().max(1);
                return Ok(Kind::Every(Duration::from_secs(secs)));
            }
            return Err(format!("unrecognized descriptor: {spec}"));
        }
    };
    Ok(Kind::Fields(fields(expanded)?))
}

fn fields(spec: &str) -> Result<Fields, String> {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("expected exactly 5 fields, found {}: {spec}", parts.len()));
    }
    let (minutes, _) = field(parts[0], &MINUTE)?;
    let (hours, _) = field(parts[1], &HOUR)?;
    let (days_of_month, dom_star) = field(parts[2], &DOM)?;
    let (months, _) = field(parts[3], &MONTH)?;
    let (days_of_week, dow_star) = field(parts[4], &DOW)?;
    Ok(Fields { minutes, hours, days_of_month, months, days_of_week, dom_star, dow_star })
}

/// One field: the bits it sets and whether it was an unrestricted `*`/`?`.
fn field(text: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for range in text.split(',') {
        let (b, s) = range_bits(range, bounds)?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

fn range_bits(expr: &str, bounds: &Bounds) -> Result<(u64, bool), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let mut star = false;
    let (start, mut end) = if range == "*" || range == "?" {
        star = true;
        (bounds.min, bounds.max)
    } else if let Some((lo, hi)) = range.split_once('-') {
        (value(lo, bounds)?, value(hi, bounds)?)
    } else {
        let v = value(range, bounds)?;
        (v, v)
    };
    let mut step_by = 1;
    if let Some(step) = step {
        step_by = step.parse::<u32>().map_err(|_| format!("failed to parse int from {step}"))?;
        if step_by == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        // `N/step` means `N-max/step`.
        if !range.contains('-') && !star {
            end = bounds.max;
        }
        if step_by > 1 {
            star = false;
        }
    }
    if start < bounds.min {
        return Err(format!("beginning of range ({start}) below minimum ({}): {expr}", bounds.min));
    }
    if end > bounds.max {
        return Err(format!("end of range ({end}) above maximum ({}): {expr}", bounds.max));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    let mut bits = 0u64;
    let mut v = start;
    while v <= end {
        bits |= 1 << v;
        v += step_by;
    }
    Ok((bits, star))
}

fn value(text: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = bounds.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + bounds.min);
    }
    text.parse::<u32>().map_err(|_| format!("failed to parse int from {text}"))
}

/// Go's `time.ParseDuration` for the units a schedule would use (h, m, s, ms).
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += Duration::from_secs_f64(number * scale);
    }
    Some(total)
}

fn bit(set: u64, v: i64) -> bool {
    (0..64).contains(&v) && set & (1 << v) != 0
}

fn day_matches(f: &Fields, date: Date) -> bool {
    let dom = bit(f.days_of_month, date.day().into());
    let dow = bit(f.days_of_week, date.weekday().to_sunday_zero_offset().into());
    if f.dom_star || f.dow_star { dom && dow } else { dom || dow }
}

fn next_in_zone(f: &Fields, tz: &TimeZone, t: Timestamp) -> Option<Timestamp> {
    let local = tz.to_datetime(t);
    let mut dt = local.with().second(0).subsec_nanosecond(0).build().ok()?;
    dt = dt.checked_add(1.minute()).ok()?;
    let limit = dt.year().saturating_add(SEARCH_YEARS);
    loop {
        if dt.year() > limit {
            return None;
        }
        if !bit(f.months, dt.month().into()) {
            let first = dt.date().first_of_month().checked_add(1.month()).ok()?;
            dt = first.to_datetime(jiff_midnight());
            continue;
        }
        if !day_matches(f, dt.date()) {
            dt = dt.date().checked_add(1.day()).ok()?.to_datetime(jiff_midnight());
            continue;
        }
        if !bit(f.hours, dt.hour().into()) {
            dt = dt.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
            continue;
        }
        if !bit(f.minutes, dt.minute().into()) {
            dt = dt.checked_add(1.minute()).ok()?;
            continue;
        }
        // Civil times in a DST gap resolve to the later offset; a time that resolves to `t`
        // or earlier (a repeated hour) is skipped.
        match tz.to_ambiguous_timestamp(dt).compatible() {
            Ok(ts) if ts > t => return Some(ts),
            _ => dt = dt.checked_add(1.minute()).ok()?,
        }
    }
}

fn jiff_midnight() -> jiff::civil::Time {
    jiff::civil::Time::midnight()
}

fn zone_cache() -> &'static Mutex<HashMap<String, TimeZone>> {
    static CACHE: OnceLock<Mutex<HashMap<String, TimeZone>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Go's `time.LoadLocation`: "" and "UTC" are UTC, "Local" the system zone, anything else a
/// file of the tz database.
pub fn load_time_zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if let Some(tz) = zone_cache().lock().expect("zone cache").get(name) {
        return Ok(tz.clone());
    }
    let path = if name == "Local" {
        "/etc/localtime".to_owned()
    } else {
        if name.contains("..") || name.starts_with('/') || name.starts_with('\\') {
            return Err("time: invalid location name".into());
        }
        format!("{ZONEINFO_DIR}/{name}")
    };
    let tz = match std::fs::read(&path) {
        Ok(data) => TimeZone::tzif(name, &data).map_err(|_| format!("unknown time zone {name}"))?,
        Err(_) if name == "Local" => TimeZone::UTC,
        Err(_) => return Err(format!("unknown time zone {name}")),
    };
    let mut cache = zone_cache().lock().expect("zone cache");
    if cache.len() > 1000 {
        cache.clear();
    }
    cache.insert(name.to_owned(), tz.clone());
    Ok(tz)
}

/// Formats `t` in `tz` as Go's RFC 3339 (`Z` for a zero offset).
pub fn rfc3339_in(t: Timestamp, tz: &TimeZone) -> String {
    let zoned = t.to_zoned(tz.clone());
    if zoned.offset().seconds() == 0 {
        zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Upstream's API validation of a CronJob's schedule and time zone (on create, or when they
/// change): `(field, message)` for every problem.
pub fn validate_schedule(schedule: &str, time_zone: Option<&str>) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if let Err(e) = Schedule::parse(schedule) {
        errors.push(("spec.schedule".into(), e));
    }
    if schedule.contains("TZ") {
        errors.push((
            "spec.schedule".into(),
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into(),
        ));
    }
    if let Some(tz) = time_zone {
        if tz.eq_ignore_ascii_case("local") {
            errors.push((
                "spec.timeZone".into(),
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                    .into(),
            ));
        } else if let Err(e) = load_time_zone(tz) {
            errors.push(("spec.timeZone".into(), e));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec).unwrap().next(ts(after)).unwrap().to_string()
    }

    #[test]
    fn standard_fields() {
        assert_eq!(next("*/1 * * * *", "2024-01-01T10:00:00Z"), "2024-01-01T10:01:00Z");
        assert_eq!(next("* * * * *", "2024-01-01T10:00:30.5Z"), "2024-01-01T10:01:00Z");
        assert_eq!(next("*/15 * * * *", "2024-01-01T10:14:59Z"), "2024-01-01T10:15:00Z");
        assert_eq!(next("5 4 * * *", "2024-01-01T10:00:00Z"), "2024-01-02T04:05:00Z");
        assert_eq!(next("0 0 29 2 *", "2023-03-01T00:00:00Z"), "2024-02-29T00:00:00Z");
        assert_eq!(next("0 22 * * 1-5", "2024-01-05T23:00:00Z"), "2024-01-08T22:00:00Z");
        assert_eq!(next("0 0 * JAN,jul SUN", "2024-02-01T00:00:00Z"), "2024-07-07T00:00:00Z");
        assert_eq!(next("30 6-16/4 * * *", "2024-01-01T10:31:00Z"), "2024-01-01T14:30:00Z");
        assert_eq!(next("10/20 * * * *", "2024-01-01T10:31:00Z"), "2024-01-01T10:50:00Z");
        assert_eq!(next("0 0 1,15 * *", "2024-01-02T00:00:00Z"), "2024-01-15T00:00:00Z");
        // Both day fields restricted: either matches (the 13th or any Friday).
        assert_eq!(next("0 0 13 * 5", "2024-01-01T00:00:00Z"), "2024-01-05T00:00:00Z");
        // One of them `*`: both must match.
        assert_eq!(next("0 0 13 * *", "2024-01-01T00:00:00Z"), "2024-01-13T00:00:00Z");
        assert_eq!(next("0 0 ? * 5", "2024-01-01T00:00:00Z"), "2024-01-05T00:00:00Z");
        // A schedule that never fires.
        assert_eq!(Schedule::parse("0 0 31 2 *").unwrap().next(ts("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn macros() {
        assert_eq!(next("@hourly", "2024-01-01T10:00:00Z"), "2024-01-01T11:00:00Z");
        assert_eq!(next("@daily", "2024-01-01T10:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@midnight", "2024-01-01T10:00:00Z"), "2024-01-02T00:00:00Z");
        assert_eq!(next("@weekly", "2024-01-01T10:00:00Z"), "2024-01-07T00:00:00Z");
        assert_eq!(next("@monthly", "2024-01-01T10:00:00Z"), "2024-02-01T00:00:00Z");
        assert_eq!(next("@yearly", "2024-01-01T10:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("@annually", "2024-01-01T10:00:00Z"), "2025-01-01T00:00:00Z");
        assert_eq!(next("@every 90s", "2024-01-01T10:00:00.7Z"), "2024-01-01T10:01:30Z");
        assert_eq!(next("@every 1h30m", "2024-01-01T10:00:00Z"), "2024-01-01T11:30:00Z");
    }

    #[test]
    fn errors_in_robfig_wording() {
        let err = |s: &str| Schedule::parse(s).unwrap_err();
        assert_eq!(err(""), "empty spec string");
        assert!(err("* * * *").starts_with("expected exactly 5 fields, found 4"));
        assert!(err("60 * * * *").starts_with("end of range (60) above maximum (59)"));
        assert!(err("* * 0 * *").starts_with("beginning of range (0) below minimum (1)"));
        assert!(err("* * * * 7").starts_with("end of range (7) above maximum (6)"));
        assert!(err("5-1 * * * *").starts_with("beginning of range (5) beyond end of range (1)"));
        assert!(err("*/0 * * * *").starts_with("step of range should be a positive number"));
        assert!(err("x * * * *").starts_with("failed to parse int from x"));
        assert_eq!(err("@often"), "unrecognized descriptor: @often");
        assert!(err("TZ=Nowhere/Special * * * * *").starts_with("provided bad location"));
    }

    #[test]
    fn time_zones() {
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            next("TZ=Europe/Berlin 0 9 * * *", "2024-01-01T00:00:00Z"),
            "2024-01-01T08:00:00Z"
        );
        assert_eq!(
            next("CRON_TZ=Europe/Berlin 0 9 * * *", "2024-07-01T00:00:00Z"),
            "2024-07-01T07:00:00Z"
        );
        // 02:30 does not exist on 2024-03-31 in Berlin: the run moves to 03:30 local.
        assert_eq!(
            next("TZ=Europe/Berlin 30 2 * * *", "2024-03-30T12:00:00Z"),
            "2024-03-31T01:30:00Z"
        );
        let tz = load_time_zone("America/New_York").unwrap();
        assert_eq!(rfc3339_in(ts("2024-01-01T15:00:00Z"), &tz), "2024-01-01T10:00:00-05:00");
        assert_eq!(rfc3339_in(ts("2024-01-01T15:00:00Z"), &TimeZone::UTC), "2024-01-01T15:00:00Z");
        assert!(load_time_zone("../etc/passwd").is_err());
        assert_eq!(load_time_zone("Mars/Olympus").unwrap_err(), "unknown time zone Mars/Olympus");
    }

    #[test]
    fn api_validation() {
        assert!(validate_schedule("*/5 * * * *", Some("Europe/Berlin")).is_empty());
        let errs = validate_schedule("TZ=UTC * * * * *", None);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].1, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead");
        assert_eq!(validate_schedule("* * * * *", Some("Local")).len(), 1);
        assert_eq!(validate_schedule("* * * * *", Some("No/Where")).len(), 1);
        assert_eq!(validate_schedule("bad", None).len(), 1);
    }
}
