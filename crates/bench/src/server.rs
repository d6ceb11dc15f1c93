//! The target's own view of a run: counters from its `/metrics` (the names of DESIGN.md's
//! contract) and, for a local server whose PID is known, CPU time and peak memory from `/proc`.

use serde::Serialize;
use std::collections::HashMap;

/// Sums of the counters a report needs, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    /// `crescendo_http_requests_total`, all labels.
    pub http_requests: f64,
    /// `crescendo_db_queries_total`, all roles.
    pub db_queries: f64,
    /// `crescendo_cache_hits_total{layer="local"}`.
    pub cache_hits: f64,
    /// `crescendo_cache_misses_total{layer="local"}`.
    pub cache_misses: f64,
    /// `crescendo_db_queries_total{op="read",role="primary"}`.
    pub primary_reads: f64,
    /// `crescendo_db_queries_total{op="read",role="replica"}`.
    pub replica_reads: f64,
    /// `crescendo_http_requests_total{method="GET"}`.
    pub read_requests: f64,
    /// `crescendo_cache_hits_total{layer="shared"}`.
    pub shared_hits: f64,
    /// `crescendo_http_db_queries_total{method="GET"}`: what read requests cost the database.
    pub read_request_queries: f64,
    /// `crescendo_jobs_total{outcome="ok"}`.
    pub jobs_ok: f64,
}

/// Sums each metric of Prometheus text over its label sets (the `layer="local"` ones only for
/// the cache counters: a local miss may be a shared hit, so local is where reads start).
pub fn parse(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        let local = series.contains("layer=\"local\"");
        match name {
            "crescendo_http_requests_total" => {
                s.http_requests += v;
                if series.contains("method=\"GET\"") {
                    s.read_requests += v;
                }
            }
            "crescendo_db_queries_total" => {
                s.db_queries += v;
                if series.contains("op=\"read\"") {
                    if series.contains("role=\"replica\"") {
                        s.replica_reads += v;
                    } else if series.contains("role=\"primary\"") {
                        s.primary_reads += v;
                    }
                }
            }
            "crescendo_http_db_queries_total" if series.contains("method=\"GET\"") => {
                s.read_request_queries += v
            }
            "crescendo_jobs_total" if series.contains("outcome=\"ok\"") => s.jobs_ok += v,
            "crescendo_cache_hits_total" if local => s.cache_hits += v,
            "crescendo_cache_hits_total" if series.contains("layer=\"shared\"") => {
                s.shared_hits += v
            }
            "crescendo_cache_misses_total" if local => s.cache_misses += v,
            _ => {}
        }
    }
    s
}

/// Reads the target's `/metrics`; `None` if it has none (the report then says so).
pub async fn scrape(url: &str) -> Option<Scrape> {
    let res = reqwest::get(url).await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    Some(parse(&res.text().await.ok()?))
}

/// Reads every endpoint and sums their counters (the web nodes behind one balancer);
/// `None` if any does not answer, so a run is never compared with half its servers, or if
/// there are none.
pub async fn scrape_all(urls: &[String]) -> Option<Scrape> {
    if urls.is_empty() {
        return None;
    }
    let mut total = Scrape::default();
    for url in urls {
        let s = scrape(url).await?;
        total.http_requests += s.http_requests;
        total.db_queries += s.db_queries;
        total.cache_hits += s.cache_hits;
        total.cache_misses += s.cache_misses;
        total.primary_reads += s.primary_reads;
        total.replica_reads += s.replica_reads;
        total.read_requests += s.read_requests;
        total.shared_hits += s.shared_hits;
        total.read_request_queries += s.read_request_queries;
        total.jobs_ok += s.jobs_ok;
    }
    Some(total)
}

/// CPU seconds used so far and peak resident memory of a local process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU seconds.
    pub cpu_secs: f64,
    /// Peak resident set (VmHWM), MiB.
    pub peak_rss_mib: f64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` if the process is not there.
pub fn sample_process(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the command name, which is in parentheses and may hold spaces
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    // clock ticks per second: 100 on Linux for every architecture this project runs on
    Some(ProcessSample {
        cpu_secs: (utime + stime) / 100.0,
        peak_rss_mib: hwm_kib / 1024.0,
    })
}

/// What the server says about a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ServerView {
    /// Requests the server counted during the run.
    pub requests: Option<f64>,
    /// Database queries per request the server counted.
    pub db_queries_per_request: Option<f64>,
    /// Share of cache reads served by the local tier.
    pub cache_hit_ratio: Option<f64>,
    /// Share of cache reads served by either tier (local, or a shared tier such as Redis):
    /// the rest were loaded from the store.
    #[serde(default)]
    pub cache_served_ratio: Option<f64>,
    /// Database queries per read (GET) request, as the server counted them per request.
    #[serde(default)]
    pub db_reads_per_read_request: Option<f64>,
    /// With PostgreSQL: the share of database reads the primary served (the rest went to
    /// replicas).
    #[serde(default)]
    pub primary_read_share: Option<f64>,
    /// Server CPU milliseconds per request (local server with known PID).
    pub cpu_ms_per_request: Option<f64>,
    /// Server peak resident memory, MiB (local server with known PID).
    pub peak_rss_mib: Option<f64>,
}

impl ServerView {
    /// The difference between two scrapes and two process samples.
    pub fn between(
        before: Option<&Scrape>,
        after: Option<&Scrape>,
        p_before: Option<ProcessSample>,
        p_after: Option<ProcessSample>,
    ) -> Self {
        let mut v = ServerView::default();
        if let (Some(b), Some(a)) = (before, after) {
            let requests = a.http_requests - b.http_requests;
            v.requests = Some(requests);
            if requests > 0.0 {
                v.db_queries_per_request = Some((a.db_queries - b.db_queries) / requests);
            }
            let (hits, misses) = (a.cache_hits - b.cache_hits, a.cache_misses - b.cache_misses);
            if hits + misses > 0.0 {
                v.cache_hit_ratio = Some(hits / (hits + misses));
                v.cache_served_ratio =
                    Some((hits + a.shared_hits - b.shared_hits) / (hits + misses));
            }
            let (reads, read_requests) = (
                a.read_request_queries - b.read_request_queries,
                a.read_requests - b.read_requests,
            );
            if read_requests > 0.0 {
                v.db_reads_per_read_request = Some(reads / read_requests);
            }
            let (primary, replica) = (
                a.primary_reads - b.primary_reads,
                a.replica_reads - b.replica_reads,
            );
            if primary + replica > 0.0 {
                v.primary_read_share = Some(primary / (primary + replica));
            }
        }
        if let (Some(b), Some(a)) = (p_before, p_after) {
            v.peak_rss_mib = Some(a.peak_rss_mib);
            if let Some(r) = v.requests.filter(|r| *r > 0.0) {
                v.cpu_ms_per_request = Some((a.cpu_secs - b.cpu_secs) * 1000.0 / r);
            }
        }
        v
    }
}

/// Labels of a series, for tests and debugging.
pub fn labels(series: &str) -> HashMap<String, String> {
    let Some(inner) = series
        .split_once('{')
        .and_then(|(_, r)| r.strip_suffix('}'))
    else {
        return HashMap::new();
    };
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# TYPE crescendo_http_requests_total counter
crescendo_http_requests_total{method="GET",route="/api/articles",status="200"} 90
crescendo_http_requests_total{method="POST",route="/api/articles",status="201"} 10
crescendo_db_queries_total{role="sqlite"} 25
crescendo_db_queries_total{node="a:1",op="read",role="primary"} 10
crescendo_db_queries_total{node="a:1",op="write",role="primary"} 5
crescendo_db_queries_total{node="b:2",op="read",role="replica"} 30
crescendo_cache_hits_total{layer="local"} 950
crescendo_cache_hits_total{layer="shared"} 30
crescendo_cache_misses_total{layer="local"} 50
crescendo_http_db_queries_total{method="GET"} 9
crescendo_http_db_queries_total{method="other"} 30
crescendo_jobs_total{outcome="ok",queue="images.variants"} 4
crescendo_jobs_total{outcome="retry",queue="images.variants"} 1
crescendo_http_request_duration_seconds_bucket{le="0.1"} 7
"#;

    #[test]
    fn scrapes_sum_over_labels() {
        let s = parse(TEXT);
        assert_eq!(
            s,
            Scrape {
                http_requests: 100.0,
                db_queries: 70.0,
                cache_hits: 950.0,
                cache_misses: 50.0,
                primary_reads: 10.0,
                replica_reads: 30.0,
                read_requests: 90.0,
                shared_hits: 30.0,
                read_request_queries: 9.0,
                jobs_ok: 4.0,
            }
        );
        assert_eq!(labels(r#"x{layer="local",a="b"}"#)["layer"], "local");
    }

    #[test]
    fn the_server_view_is_the_difference_of_two_scrapes() {
        let before = parse(TEXT);
        let mut after = before.clone();
        after.http_requests += 1000.0;
        after.db_queries += 50.0;
        after.cache_hits += 900.0;
        after.cache_misses += 100.0;
        after.primary_reads += 5.0;
        after.replica_reads += 95.0;
        after.read_requests += 800.0;
        after.shared_hits += 60.0;
        after.read_request_queries += 100.0;
        let v = ServerView::between(
            Some(&before),
            Some(&after),
            Some(ProcessSample {
                cpu_secs: 1.0,
                peak_rss_mib: 50.0,
            }),
            Some(ProcessSample {
                cpu_secs: 2.0,
                peak_rss_mib: 60.0,
            }),
        );
        assert_eq!(v.requests, Some(1000.0));
        assert_eq!(v.db_queries_per_request, Some(0.05));
        assert_eq!(v.cache_hit_ratio, Some(0.9));
        assert_eq!(v.cache_served_ratio, Some(0.96));
        assert_eq!(v.db_reads_per_read_request, Some(0.125));
        assert_eq!(v.primary_read_share, Some(0.05));
        assert_eq!(v.cpu_ms_per_request, Some(1.0));
        assert_eq!(v.peak_rss_mib, Some(60.0));
        assert_eq!(
            ServerView::between(None, None, None, None),
            ServerView::default()
        );
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample_process(std::process::id()).expect("own /proc entry");
        assert!(s.peak_rss_mib > 0.0);
        assert!(sample_process(u32::MAX).is_none());
    }
}
