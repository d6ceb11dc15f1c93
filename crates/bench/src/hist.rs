//! Latency histograms: HDR histograms of microseconds, 3 significant digits, 1 µs to 1 h.

use serde::Serialize;

/// A latency histogram.
#[derive(Clone, Debug)]
pub struct Latency(hdrhistogram::Histogram<u64>);

/// Percentiles of a histogram in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest sample.
    pub max_ms: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(
            hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
        )
    }

    /// Records one latency.
    pub fn record(&mut self, d: std::time::Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        self.0.record(us).expect("value within bounds");
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latency) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.0.len()
    }

    /// The latency at `quantile` (0.0–1.0), in milliseconds.
    pub fn quantile_ms(&self, quantile: f64) -> f64 {
        self.0.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Percentiles and extremes.
    pub fn summary(&self) -> Summary {
        if self.0.is_empty() {
            return Summary::default();
        }
        Summary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
        }
    }

    /// (percentile, milliseconds) pairs from 0 to 99.999, denser towards the tail, for a
    /// latency-distribution chart.
    pub fn distribution(&self) -> Vec<(f64, f64)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in [
            0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0,
            97.5, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999,
        ] {
            out.push((p, self.quantile_ms(p / 100.0)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.002 + 0.001
    }

    #[test]
    fn percentiles_of_a_uniform_spread() {
        let mut h = Latency::new();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        assert!(close(s.p50_ms, 500.0), "{s:?}");
        assert!(close(s.p90_ms, 900.0), "{s:?}");
        assert!(close(s.p99_ms, 990.0), "{s:?}");
        assert!(close(s.p999_ms, 999.0), "{s:?}");
        assert!(close(s.max_ms, 1000.0), "{s:?}");
        assert!(close(s.mean_ms, 500.5), "{s:?}");
    }

    #[test]
    fn one_slow_request_in_a_thousand_shows_at_the_999th_percentile_only() {
        let mut h = Latency::new();
        for _ in 0..999 {
            h.record(Duration::from_micros(800));
        }
        h.record(Duration::from_secs(2));
        let s = h.summary();
        assert!(close(s.p99_ms, 0.8), "{s:?}");
        assert!(close(s.p999_ms, 0.8), "{s:?}");
        assert!(close(s.max_ms, 2000.0), "{s:?}");
    }

    #[test]
    fn merging_adds_samples() {
        let (mut a, mut b) = (Latency::new(), Latency::new());
        a.record(Duration::from_millis(1));
        b.record(Duration::from_millis(3));
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(close(a.summary().max_ms, 3.0));
        assert_eq!(Latency::new().summary(), Summary::default());
    }
}
