//! Time zones, instants and calendar helpers.
//!
//! Durations are fixed lengths of milliseconds. Calendars (and so time zones) matter only for
//! `anniversary` and for date-only operands such as `"2026-03-01"`, which mean local midnight.

use chrono::{DateTime, Datelike, NaiveDate, Offset, TimeZone};
use serde_json::Value;

pub(crate) const DAY_MS: i64 = 86_400_000;

/// A resolved time zone: an IANA zone or a fixed offset from UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Iana(chrono_tz::Tz),
    Fixed(chrono::FixedOffset),
}

impl Zone {
    pub const UTC: Zone = Zone::Fixed(match chrono::FixedOffset::east_opt(0) {
        Some(offset) => offset,
        None => unreachable!(),
    });

    /// `UTC`, `Z`, `+HH:MM`, `-HH:MM`, or an IANA name such as `Europe/Paris`.
    pub fn parse(text: &str) -> Option<Zone> {
        if text.eq_ignore_ascii_case("utc") || text == "Z" {
            return Some(Zone::UTC);
        }
        if let Some(offset) = parse_fixed_offset(text) {
            return Some(Zone::Fixed(offset));
        }
        text.parse::<chrono_tz::Tz>().ok().map(Zone::Iana)
    }

    fn offset_seconds_at(self, ms: i64) -> i32 {
        let utc = DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .naive_utc();
        match self {
            Zone::Iana(tz) => tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
            Zone::Fixed(offset) => offset.local_minus_utc(),
        }
    }

    /// The local calendar date at instant `ms`.
    pub fn local_date(self, ms: i64) -> NaiveDate {
        let local_ms = ms.saturating_add(i64::from(self.offset_seconds_at(ms)) * 1000);
        DateTime::from_timestamp_millis(local_ms)
            .unwrap_or_default()
            .date_naive()
    }

    /// The first instant of local day `date` (after a DST gap at midnight, the first valid time).
    pub fn start_of_day(self, date: NaiveDate) -> i64 {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        match self {
            Zone::Fixed(offset) => {
                midnight.and_utc().timestamp_millis() - i64::from(offset.local_minus_utc()) * 1000
            }
            Zone::Iana(tz) => {
                for hour_shift in 0..4 {
                    let candidate = midnight + chrono::Duration::hours(hour_shift);
                    if let Some(instant) = tz.from_local_datetime(&candidate).earliest() {
                        return instant.timestamp_millis();
                    }
                }
                midnight.and_utc().timestamp_millis()
            }
        }
    }
}

fn parse_fixed_offset(text: &str) -> Option<chrono::FixedOffset> {
    let bytes = text.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours: i32 = text.get(1..3)?.parse().ok()?;
    let minutes: i32 = text.get(4..6)?.parse().ok()?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// A time operand: an instant, or a calendar date resolved in the evaluation zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeValue {
    Millis(i64),
    Date(NaiveDate),
}

impl TimeValue {
    pub fn resolve(self, zone: Zone) -> i64 {
        match self {
            TimeValue::Millis(ms) => ms,
            TimeValue::Date(date) => zone.start_of_day(date),
        }
    }
}

/// Epoch ms (integer or float number), RFC 3339 text, or `YYYY-MM-DD`.
pub fn parse_time_value(value: &Value) -> Option<TimeValue> {
    match value {
        Value::Number(number) => {
            if let Some(ms) = number.as_i64() {
                Some(TimeValue::Millis(ms))
            } else {
                let float = number.as_f64()?;
                if float.is_finite() && float.abs() < 1e15 {
                    Some(TimeValue::Millis(float.floor() as i64))
                } else {
                    None
                }
            }
        }
        Value::String(text) => parse_time_text(text),
        _ => None,
    }
}

pub fn parse_time_text(text: &str) -> Option<TimeValue> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(TimeValue::Millis(instant.timestamp_millis()));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(TimeValue::Date)
}

/// The anniversary date of `(month, day)` in `year`; 29 February falls on 28 February in
/// common years.
fn anniversary_in_year(month: u32, day: u32, year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day)
        .or_else(|| NaiveDate::from_ymd_opt(year, month, day - 1))
        .unwrap_or_default()
}

/// Whether local day of `now` is the anniversary of local day of `instant`.
pub fn is_anniversary(zone: Zone, instant: i64, now: i64) -> bool {
    let origin = zone.local_date(instant);
    let today = zone.local_date(now);
    anniversary_in_year(origin.month(), origin.day(), today.year()) == today
}

/// The next instant after `now` at which `is_anniversary(zone, instant, ·)` can change.
pub fn next_anniversary_change(zone: Zone, instant: i64, now: i64) -> i64 {
    let origin = zone.local_date(instant);
    let today = zone.local_date(now);
    let tomorrow = today.succ_opt().unwrap_or(today);
    if is_anniversary(zone, instant, now) {
        return zone.start_of_day(tomorrow);
    }
    let this_year = anniversary_in_year(origin.month(), origin.day(), today.year());
    let next = if this_year > today {
        this_year
    } else {
        anniversary_in_year(origin.month(), origin.day(), today.year() + 1)
    };
    zone.start_of_day(next).max(now + 1)
}

/// Formats epoch ms as RFC 3339 (UTC), for explanations.
pub fn format_ms(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(instant) => instant.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => ms.to_string(),
    }
}
