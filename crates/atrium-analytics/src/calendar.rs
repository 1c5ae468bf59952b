//! Local calendar periods (day, Monday week, month) of an IANA time zone as UTC instants, so an
//! event's bucket is a binary search instead of a time-zone conversion per row. Boundaries are
//! local midnights converted with the zone's rules, so days are 23 or 25 hours long across DST
//! changes.

use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::request::Granularity;

/// UTC milliseconds of local midnight starting `date` in `tz`. Where midnight does not exist
/// (a DST gap at midnight), the first valid local time after it.
pub fn local_midnight_ms(tz: Tz, date: NaiveDate) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight is a valid time");
    let mut candidate = midnight;
    for _ in 0..(4 * 60) {
        if let Some(time) = tz.from_local_datetime(&candidate).earliest() {
            return time.timestamp_millis();
        }
        candidate += Duration::minutes(1);
    }
    // No zone has a gap this long; fall back to reading midnight as UTC.
    midnight.and_utc().timestamp_millis()
}

/// The local date of a UTC instant.
pub fn local_date(tz: Tz, ms: i64) -> NaiveDate {
    match tz.timestamp_millis_opt(ms).single() {
        Some(time) => time.date_naive(),
        None => chrono::DateTime::from_timestamp_millis(ms)
            .map(|time| time.date_naive())
            .unwrap_or_default(),
    }
}

/// The first local date of the period holding `date`.
pub fn period_start(date: NaiveDate, granularity: Granularity) -> NaiveDate {
    match granularity {
        Granularity::Total | Granularity::Day => date,
        Granularity::Week => {
            date - Duration::days(i64::from(date.weekday().num_days_from_monday()))
        }
        Granularity::Month => date.with_day(1).expect("day 1 exists"),
    }
}

fn next_period(date: NaiveDate, granularity: Granularity) -> NaiveDate {
    match granularity {
        Granularity::Total | Granularity::Day => date + Duration::days(1),
        Granularity::Week => date + Duration::days(7),
        Granularity::Month => {
            let (year, month) = if date.month() == 12 {
                (date.year() + 1, 1)
            } else {
                (date.year(), date.month() + 1)
            };
            NaiveDate::from_ymd_opt(year, month, 1).expect("first of a month exists")
        }
    }
}

/// The periods covering `[from, to)`: the first starts at or before `from`.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// UTC start of each period, ascending.
    starts: Vec<i64>,
    /// Local first date of each period (its label).
    labels: Vec<NaiveDate>,
    total: bool,
}

impl Calendar {
    pub fn new(tz: Tz, granularity: Granularity, from_ms: i64, to_ms: i64) -> Calendar {
        if granularity == Granularity::Total {
            return Calendar {
                starts: vec![from_ms],
                labels: vec![local_date(tz, from_ms)],
                total: true,
            };
        }
        let mut date = period_start(local_date(tz, from_ms), granularity);
        let mut starts = Vec::new();
        let mut labels = Vec::new();
        loop {
            let start = local_midnight_ms(tz, date);
            if start >= to_ms {
                break;
            }
            starts.push(start);
            labels.push(date);
            date = next_period(date, granularity);
        }
        Calendar {
            starts,
            labels,
            total: false,
        }
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// The period holding `ms` (which must not precede the first period).
    pub fn index(&self, ms: i64) -> usize {
        self.starts
            .partition_point(|&start| start <= ms)
            .saturating_sub(1)
    }

    /// `None` for the single bucket of [`Granularity::Total`], else the period's first date.
    pub fn label(&self, index: usize) -> Option<String> {
        if self.total {
            None
        } else {
            Some(self.labels[index].format("%Y-%m-%d").to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn berlin_days_around_dst_are_23_and_25_hours() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let from = local_midnight_ms(tz, date("2026-03-28"));
        let to = local_midnight_ms(tz, date("2026-03-31"));
        let calendar = Calendar::new(tz, Granularity::Day, from, to);
        assert_eq!(calendar.len(), 3);
        let lengths: Vec<i64> = calendar.starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(lengths, vec![24 * 3_600_000, 23 * 3_600_000]);
        let autumn = local_midnight_ms(tz, date("2026-10-25"));
        let next = local_midnight_ms(tz, date("2026-10-26"));
        assert_eq!(next - autumn, 25 * 3_600_000);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        // 2026-01-01 is a Thursday.
        assert_eq!(
            period_start(date("2026-01-01"), Granularity::Week),
            date("2025-12-29")
        );
        assert_eq!(
            period_start(date("2026-02-17"), Granularity::Month),
            date("2026-02-01")
        );
        let tz = Tz::UTC;
        let calendar = Calendar::new(
            tz,
            Granularity::Month,
            local_midnight_ms(tz, date("2026-01-15")),
            local_midnight_ms(tz, date("2026-03-01")),
        );
        assert_eq!(calendar.len(), 2);
        assert_eq!(calendar.label(0).as_deref(), Some("2026-01-01"));
        assert_eq!(calendar.index(local_midnight_ms(tz, date("2026-02-28"))), 1);
    }

    #[test]
    fn a_midnight_in_a_dst_gap_moves_to_the_first_valid_time() {
        // Santiago springs forward at midnight: that day's midnight does not exist.
        let tz: Tz = "America/Santiago".parse().unwrap();
        let mut gaps = 0;
        let mut day = date("2026-01-01");
        while day < date("2027-01-01") {
            let midnight = day.and_hms_opt(0, 0, 0).unwrap();
            if tz.from_local_datetime(&midnight).earliest().is_none() {
                gaps += 1;
                let start = local_midnight_ms(tz, day);
                // The day starts at 01:00 and is 23 hours long.
                let next = local_midnight_ms(tz, day + Duration::days(1));
                assert_eq!(next - start, 23 * 3_600_000, "{day}");
                assert_eq!(local_date(tz, start), day);
            }
            day += Duration::days(1);
        }
        assert_eq!(gaps, 1);
    }
}
