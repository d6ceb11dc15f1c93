//! When a log line was written, read from the line itself: Crescendo's JSON lines
//! (`timestamp`), logfmt (`ts=` or `time=`, as Prometheus, Alertmanager and the exporters
//! write), PostgreSQL (`2026-12-01 03:02:06.123 UTC [pid] …`), Redis (`pid:M 01 Dec 2026
//! 03:02:06.123 …`) and NATS (`[pid] 2026/12/01 03:02:06.123456 …`). Redis and NATS print
//! local time; it is taken as UTC, which is what the machines `up` runs on use.
//! Lines in no known form (HAProxy, Varnish) have no time of their own.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Nanoseconds since the Unix epoch.
pub type Nanos = i128;

/// When `line` was written, if it says.
pub fn parse(line: &str) -> Option<Nanos> {
    let line = line.trim_start();
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let stamp = ["timestamp", "ts", "time"]
            .iter()
            .find_map(|k| v.get(k).and_then(serde_json::Value::as_str))?;
        return rfc3339(stamp);
    }
    logfmt(line)
        .or_else(|| postgres(line))
        .or_else(|| nats(line))
        .or_else(|| redis(line))
}

/// `value` as RFC 3339.
pub fn rfc3339(value: &str) -> Option<Nanos> {
    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp_nanos)
}

/// `nanos` as RFC 3339 in UTC with microseconds, as Crescendo's own lines give it.
pub fn format(nanos: Nanos) -> String {
    const FORMAT: &[BorrowedFormatItem<'_>] =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_default()
}

/// Now, formatted as [`format`] does.
pub fn now() -> String {
    format(time::OffsetDateTime::now_utc().unix_timestamp_nanos())
}

/// A time without a zone, taken as UTC.
fn naive(text: &str, format: &[BorrowedFormatItem<'_>]) -> Option<Nanos> {
    PrimitiveDateTime::parse(text, format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp_nanos())
}

/// `ts=…` or `time=…` as the first or a later key of a logfmt line.
fn logfmt(line: &str) -> Option<Nanos> {
    line.split(' ').find_map(|pair| {
        let value = pair
            .strip_prefix("ts=")
            .or_else(|| pair.strip_prefix("time="))?;
        rfc3339(value.trim_matches('"'))
    })
}

/// PostgreSQL's default `log_line_prefix` (`%m [%p] `) in UTC.
fn postgres(line: &str) -> Option<Nanos> {
    let mut parts = line.splitn(3, ' ');
    let (date, clock, rest) = (parts.next()?, parts.next()?, parts.next()?);
    if !(rest.starts_with("UTC") || rest.starts_with("GMT")) {
        return None;
    }
    naive(
        &format!("{date} {clock}"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
    )
}

/// NATS: `[pid] 2026/12/01 03:02:06.123456 [INF] …`.
fn nats(line: &str) -> Option<Nanos> {
    let (_, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let mut parts = rest.splitn(3, ' ');
    let (date, clock) = (parts.next()?, parts.next()?);
    naive(
        &format!("{date} {clock}"),
        format_description!("[year]/[month]/[day] [hour]:[minute]:[second].[subsecond]"),
    )
}

/// Redis: `pid:R 01 Dec 2026 03:02:06.123 * …`.
fn redis(line: &str) -> Option<Nanos> {
    let (_, rest) = line.split_once(' ')?;
    let stamp: Vec<&str> = rest.splitn(5, ' ').take(4).collect();
    naive(
        &stamp.join(" "),
        format_description!("[day] [month repr:short] [year] [hour]:[minute]:[second].[subsecond]"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-01T03:02:06.123Z, in nanoseconds.
    const AT: Nanos = 1_796_094_126_123_000_000;

    #[test]
    fn the_servers_own_timestamps_are_read_and_other_lines_have_none() {
        let lines = [
            r#"{"timestamp":"2026-12-01T03:02:06.123000Z","level":"INFO","message":"serving"}"#,
            "ts=2026-12-01T03:02:06.123Z caller=main.go:585 level=info msg=\"Starting Prometheus\"",
            "time=2026-12-01T03:02:06.123Z level=INFO source=main.go:1 msg=Starting",
            "2026-12-01 03:02:06.123 UTC [4242] LOG:  database system is ready to accept connections",
            "[4242] 2026/12/01 03:02:06.123000 [INF] Server is ready",
            "4242:M 01 Dec 2026 03:02:06.123 * Ready to accept connections tcp",
        ];
        for line in lines {
            assert_eq!(parse(line), Some(AT), "{line}");
        }
        for line in [
            "[NOTICE]   (4242) : haproxy version is 2.6.12",
            "Child launched OK",
            "listening on http://127.0.1.1:40000",
            "",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
        assert_eq!(format(AT), "2026-12-01T03:02:06.123000Z");
    }
}
