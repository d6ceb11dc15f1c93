//! What the regions' own processes say, read from their `/metrics` inside their namespace:
//! the web nodes' replica lag gauge and the invalidators' cross-region delay histogram.
//! The parsing is plain functions over Prometheus text, so it is tested without servers.

use serde::Serialize;
use std::collections::BTreeMap;

/// The web nodes' replica lag gauge (label `node`).
pub const REPLICA_LAG: &str = "crescendo_db_replica_lag_seconds";
/// The invalidators' delay from a write's invalidation row to its application in another
/// region (a histogram).
pub const INVALIDATION_DELAY: &str = "crescendo_cache_region_invalidation_delay_seconds";

/// A histogram as Prometheus text gives it: cumulative counts by upper bound (`le`), summed
/// over every label set, with its sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, observations at most that), ascending; `+Inf` last.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

/// The value of a sample line `name{labels} value` (or `name value`) whose metric is
/// exactly `name`, with its labels' text (empty without labels).
fn sample<'a>(line: &'a str, name: &str) -> Option<(&'a str, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, value) = match rest.strip_prefix('{') {
        Some(r) => {
            let (labels, v) = r.split_once('}')?;
            (labels, v)
        }
        None if rest.starts_with(' ') => ("", rest),
        None => return None,
    };
    let value = value.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((labels, v))
}

/// The `le` label of a bucket's labels.
fn le(labels: &str) -> Option<f64> {
    let v = labels
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == "le")?
        .1
        .trim_matches('"');
    match v {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}

impl Histogram {
    /// Histogram `name` in Prometheus text `text`, every label set summed; `None` when the
    /// text has none of its samples.
    pub fn parse(text: &str, name: &str) -> Option<Self> {
        let (bucket, sum, count) = (
            format!("{name}_bucket"),
            format!("{name}_sum"),
            format!("{name}_count"),
        );
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let mut h = Histogram::default();
        let mut seen = false;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((labels, v)) = sample(line, &bucket) {
                let Some(le) = le(labels) else { continue };
                // ordered by the bound's bits: bounds are non-negative, so the order holds
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += v;
                seen = true;
            } else if let Some((_, v)) = sample(line, &sum) {
                h.sum += v;
                seen = true;
            } else if let Some((_, v)) = sample(line, &count) {
                h.count += v;
                seen = true;
            }
        }
        h.buckets = buckets.into_values().collect();
        seen.then_some(h)
    }

    /// Several processes' histograms added up (every process has the same bounds).
    pub fn add(&mut self, other: &Histogram) {
        self.sum += other.sum;
        self.count += other.count;
        for &(le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += n,
                None => self.buckets.push((le, n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What was observed after `before` (counters only grow).
    pub fn since(&self, before: &Histogram) -> Histogram {
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| {
                    // cumulative: a bound `before` lacks had what its next lower one had
                    let b = before
                        .buckets
                        .iter()
                        .rev()
                        .find(|(x, _)| *x <= le)
                        .map_or(0.0, |x| x.1);
                    (le, (n - b).max(0.0))
                })
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// The value at `q` (0–1) in seconds, interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does (the bucket's upper bound is the most it can
    /// be; in the `+Inf` bucket, the last finite bound); `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map_or(0.0, |b| b.1);
        if total <= 0.0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = n - below;
                let frac = if inside > 0.0 {
                    (rank - below) / inside
                } else {
                    1.0
                };
                return Some(lower + (le - lower) * frac);
            }
            (lower, below) = (le, n);
        }
        Some(lower)
    }

    /// Mean in seconds; `None` without observations.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// The largest value of gauge `name` in `text` over its label sets.
pub fn gauge_max(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| sample(l, name))
        .map(|(_, v)| v)
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

/// A delay distribution read from a histogram, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq)]
pub struct Delay {
    /// Observations.
    pub count: u64,
    /// Mean (exact: the histogram's sum over its count).
    pub mean_ms: Option<f64>,
    /// Median, interpolated inside its bucket.
    pub p50_ms: Option<f64>,
    /// 99th percentile, interpolated inside its bucket.
    pub p99_ms: Option<f64>,
}

impl From<&Histogram> for Delay {
    fn from(h: &Histogram) -> Self {
        let ms = |s: Option<f64>| s.map(|s| s * 1000.0);
        Delay {
            count: h.count as u64,
            mean_ms: ms(h.mean()),
            p50_ms: ms(h.quantile(0.5)),
            p99_ms: ms(h.quantile(0.99)),
        }
    }
}

/// `GET url` as text, within two seconds; `None` on any failure. Call it inside the
/// namespace whose address `url` names.
pub async fn fetch(client: &reqwest::Client, url: &str) -> Option<String> {
    let r = client
        .get(url)
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE crescendo_cache_region_invalidation_delay_seconds histogram
crescendo_cache_region_invalidation_delay_seconds_bucket{region="b",le="0.01"} 2
crescendo_cache_region_invalidation_delay_seconds_bucket{region="b",le="0.025"} 6
crescendo_cache_region_invalidation_delay_seconds_bucket{region="b",le="0.05"} 10
crescendo_cache_region_invalidation_delay_seconds_bucket{region="b",le="+Inf"} 10
crescendo_cache_region_invalidation_delay_seconds_sum{region="b"} 0.25
crescendo_cache_region_invalidation_delay_seconds_count{region="b"} 10
crescendo_cache_region_invalidations_total{region="b"} 10
crescendo_db_replica_lag_seconds{node="10.250.1.2:5432"} 0.04
crescendo_db_replica_lag_seconds{node="127.0.0.5:5432"} 0.012
crescendo_db_replica_lag_seconds_other 9
"#;

    #[test]
    fn a_histogram_is_read_by_bound_with_its_sum_and_count() {
        let h = Histogram::parse(TEXT, INVALIDATION_DELAY).unwrap();
        assert_eq!(
            h.buckets,
            vec![
                (0.01, 2.0),
                (0.025, 6.0),
                (0.05, 10.0),
                (f64::INFINITY, 10.0)
            ]
        );
        assert_eq!((h.sum, h.count), (0.25, 10.0));
        assert_eq!(h.mean(), Some(0.025));
        assert!(Histogram::parse(TEXT, "crescendo_absent_seconds").is_none());
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let h = Histogram::parse(TEXT, INVALIDATION_DELAY).unwrap();
        // rank 5 of 10: the bucket (0.01, 0.025] holds ranks 3..6, 5 is 3/4 into it
        let p50 = h.quantile(0.5).unwrap();
        assert!((p50 - 0.02125).abs() < 1e-9, "{p50}");
        // rank 9.9: in (0.025, 0.05], 3.9/4 into it
        let p99 = h.quantile(0.99).unwrap();
        assert!((p99 - (0.025 + 0.025 * 3.9 / 4.0)).abs() < 1e-9, "{p99}");
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn a_run_counts_only_what_was_observed_after_it_began() {
        let after = Histogram::parse(TEXT, INVALIDATION_DELAY).unwrap();
        let before = Histogram {
            buckets: vec![(0.01, 2.0), (0.025, 2.0), (f64::INFINITY, 2.0)],
            sum: 0.01,
            count: 2.0,
        };
        let d = after.since(&before);
        assert_eq!(
            d.buckets,
            vec![(0.01, 0.0), (0.025, 4.0), (0.05, 8.0), (f64::INFINITY, 8.0)]
        );
        assert_eq!(d.count, 8.0);
        let delay = Delay::from(&d);
        assert_eq!(delay.count, 8);
        assert!((delay.mean_ms.unwrap() - 30.0).abs() < 1e-9);
    }

    #[test]
    fn histograms_of_several_processes_add_up() {
        let one = Histogram::parse(TEXT, INVALIDATION_DELAY).unwrap();
        let mut sum = one.clone();
        sum.add(&one);
        assert_eq!(sum.count, 20.0);
        assert_eq!(sum.buckets[2], (0.05, 20.0));
    }

    #[test]
    fn the_lag_gauge_is_the_largest_of_its_series_and_no_other_metric() {
        assert_eq!(gauge_max(TEXT, REPLICA_LAG), Some(0.04));
        assert_eq!(gauge_max("", REPLICA_LAG), None);
    }
}
