//! Lock-free counters and latency histograms, rendered in the Prometheus text format by the
//! server. Pure in-memory bookkeeping; no IO.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of the latency buckets, in milliseconds.
pub const LATENCY_BUCKETS_MS: [f64; 16] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0,
    10_000.0, 60_000.0,
];

/// A fixed-bucket histogram of millisecond latencies.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    overflow: AtomicU64,
    count: AtomicU64,
    /// Sum in microseconds, to keep integer atomics.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe_ms(&self, value_ms: f64) {
        let value_ms = value_ms.max(0.0);
        match LATENCY_BUCKETS_MS
            .iter()
            .position(|bound| value_ms <= *bound)
        {
            Some(index) => self.buckets[index].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value_ms * 1_000.0) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The bucket upper bound below which `quantile` of observations fall (an upper estimate).
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (quantile.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(LATENCY_BUCKETS_MS[index]);
            }
        }
        Some(f64::INFINITY)
    }

    /// Appends this histogram in Prometheus text format (seconds, as Prometheus prefers).
    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (index, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                LATENCY_BUCKETS_MS[index] / 1_000.0
            );
        }
        cumulative += self.overflow.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1_000_000.0
        );
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, amount: u64) {
        self.0.fetch_add(amount, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            self.get()
        );
    }
}

/// Appends one gauge in Prometheus text format.
pub fn render_gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_bucket_bounds() {
        let histogram = Histogram::default();
        for _ in 0..99 {
            histogram.observe_ms(0.8);
        }
        histogram.observe_ms(150.0);
        assert_eq!(histogram.quantile_ms(0.5), Some(1.0));
        assert_eq!(histogram.quantile_ms(0.99), Some(1.0));
        assert_eq!(histogram.quantile_ms(1.0), Some(200.0));
        let mut text = String::new();
        histogram.render(&mut text, "x_seconds", "test");
        assert!(text.contains("x_seconds_bucket{le=\"+Inf\"} 100"));
        assert!(text.contains("x_seconds_count 100"));
    }
}
