//! `--since`/`--until` values as Docker reads them (docker/cli `timetypes.GetTimestamp`): a
//! Go duration before now (`10m`, `1h30m`), an RFC 3339 date or time with or without a zone
//! (local time without), or a Unix timestamp (`1700000000`, `1700000000.5`).

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units ns, us, µs, ms, s, m,
/// h, optionally signed (`-1.5h`, `2h45m`, `300ms`). Returns seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += v * mult;
    }
    Some(if neg { -total } else { total })
}

/// The instant a `--since`/`--until` value names, relative to `now` for durations.
pub fn parse(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let bad = || format!("failed to parse value as time or duration: {value:?}");
    if value != "0" {
        if let Some(secs) = parse_go_duration(value) {
            return Ok(now - chrono::Duration::nanoseconds((secs * 1e9) as i64));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = |n: NaiveDateTime| {
        Local
            .from_local_datetime(&n)
            .single()
            .map(|t| t.with_timezone(&Utc))
    };
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(value, f) {
            return local(n).ok_or_else(bad);
        }
    }
    if let Ok(n) = NaiveDateTime::parse_from_str(&format!("{value}:00"), "%Y-%m-%dT%H:%M") {
        return local(n).ok_or_else(bad);
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        return local(d.and_hms_opt(0, 0, 0).unwrap_or_default()).ok_or_else(bad);
    }
    if value.contains('-') {
        return Err(bad());
    }
    // A Unix timestamp: seconds[.nanoseconds].
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")[..9].parse().map_err(|_| bad())?
    };
    DateTime::from_timestamp(secs, nanos).ok_or_else(bad)
}

/// A `--since`/`--until` flag's value, if given, with Docker's error for a bad one.
pub fn parse_flag(
    value: Option<&str>,
    flag: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, String> {
    value
        .map(|v| parse(v, now))
        .transpose()
        .map_err(|e| format!("invalid value for \"{flag}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_docker_reads_them() {
        let now = DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = |v| parse(v, now).unwrap().to_rfc3339();
        assert_eq!(p("10m"), "2024-01-02T02:54:05+00:00");
        assert_eq!(p("1h30m"), "2024-01-02T01:34:05+00:00");
        assert_eq!(p("2024-01-01T00:00:00Z"), "2024-01-01T00:00:00+00:00");
        assert_eq!(p("2024-01-01T00:00:00+01:00"), "2023-12-31T23:00:00+00:00");
        assert_eq!(p("1704067200"), "2024-01-01T00:00:00+00:00");
        assert_eq!(p("1704067200.5"), "2024-01-01T00:00:00.500+00:00");
        assert!(parse("soon", now).is_err());
        assert!(parse("2024-13-01", now).is_err());
        assert_eq!(parse_go_duration("300ms"), Some(0.3));
        assert_eq!(parse_go_duration("-1.5h"), Some(-5400.0));
        assert_eq!(parse_go_duration("5"), None);
    }
}
