//! Event time and processing time are distinct (DESIGN principle 5). Everything that needs "now"
//! takes a [`Clock`], so tests can move time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};

/// A source of processing time, in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; shared between clones.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            now_ms: Arc::new(AtomicI64::new(now_ms)),
        }
    }

    pub fn set(&self, now_ms: i64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, delta_ms: i64) {
        self.now_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// Parses an ISO-8601 timestamp as Segment SDKs send it. Accepts RFC 3339 with any offset and,
/// as a courtesy to hand-written payloads, a timestamp without offset (read as UTC) or a bare date.
pub fn parse_timestamp_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(parsed) = DateTime::parse_from_rfc3339(text) {
        return Some(parsed.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(Utc.from_utc_datetime(&naive).timestamp_millis());
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0)?;
        return Some(Utc.from_utc_datetime(&midnight).timestamp_millis());
    }
    None
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with millisecond precision.
pub fn format_timestamp_ms(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(time) => time.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_formats_sdks_send() {
        let expected = 1_767_225_600_000; // 2026-01-01T00:00:00Z
        assert_eq!(parse_timestamp_ms("2026-01-01T00:00:00Z"), Some(expected));
        assert_eq!(
            parse_timestamp_ms("2026-01-01T00:00:00.000Z"),
            Some(expected)
        );
        assert_eq!(
            parse_timestamp_ms("2026-01-01T01:00:00+01:00"),
            Some(expected)
        );
        assert_eq!(parse_timestamp_ms("2026-01-01T00:00:00"), Some(expected));
        assert_eq!(parse_timestamp_ms("2026-01-01"), Some(expected));
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(
            format_timestamp_ms(expected + 5),
            "2026-01-01T00:00:00.005Z"
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(10);
        let shared = clock.clone();
        clock.advance(5);
        assert_eq!(shared.now_ms(), 15);
        shared.set(100);
        assert_eq!(clock.now_ms(), 100);
    }
}
