//! Reports: `report.json` for machines, a self-contained `report.html` for people (charts
//! drawn here as SVG, nothing fetched), and a summary table for the terminal.

mod html;

pub use html::{Bar, Series, esc, line_chart, page_head, stacked_bars};

use crate::hist::Summary;
use crate::load::{Model, Stats};
use crate::scenario::Scenario;
use crate::server::ServerView;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One request kind's figures.
#[derive(Clone, Debug, Serialize)]
pub struct KindReport {
    /// Requests of this kind.
    pub requests: u64,
    /// Their latency.
    pub latency: Summary,
    /// Of those an edge cache passed on, the share it answered from its store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_hit_ratio: Option<f64>,
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    /// Seconds since the load started.
    pub second: usize,
    /// Requests started in that second.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The target's origin.
    pub target: String,
    /// The scenario.
    pub scenario: Scenario,
    /// How load was generated.
    pub model: Model,
    /// Seconds of load.
    pub duration_secs: f64,
    /// Requests sent.
    pub requests: u64,
    /// Answered 2xx/3xx.
    pub ok: u64,
    /// Failed: HTTP ≥ 400, or no answer.
    pub errors: u64,
    /// Requests per second over the run.
    pub throughput: f64,
    /// Latency of all requests.
    pub latency: Summary,
    /// Every answer by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Failures without an answer, by kind (`timeout`, `connect`, `other`).
    pub transport_errors: BTreeMap<String, u64>,
    /// Figures per request kind.
    pub per_kind: BTreeMap<String, KindReport>,
    /// Throughput and latency second by second.
    pub timeline: Vec<Point>,
    /// (percentile, ms) pairs of the latency distribution.
    pub distribution: Vec<(f64, f64)>,
    /// Of the answers an edge cache passed on (they carry `X-Cache`), the share it answered
    /// from its store; `None` when no edge was in front of the target.
    #[serde(default)]
    pub edge_hit_ratio: Option<f64>,
    /// Behind edges (given the topology's run directory): what every edge counted over the
    /// run, summed (its lookups, hits and requests to the origin).
    #[serde(default)]
    pub edges: Option<crescendo_topology::varnish::EdgeCounters>,
    /// What the server itself counted.
    pub server: ServerView,
    /// Upload scenario: how long probe uploads took from the answer to `ready`.
    #[serde(default)]
    pub upload_ready: Option<Summary>,
    /// Upload scenario: jobs the workers finished per second (summed over every metrics
    /// endpoint given, workers included).
    #[serde(default)]
    pub jobs_per_second: Option<f64>,
    /// Where the CPU went: every process of the topology (given its run directory) or the
    /// local target (given its PID), per request and per role, and the load generator's own.
    #[serde(default)]
    pub cpu: Option<crate::cpu::CpuView>,
    /// With `--ceiling`: the same load against the target's answers served from memory by
    /// the stack of `serve`, and the fraction of that ceiling the target reached.
    #[serde(default)]
    pub ceiling: Option<crate::ceiling::CeilingReport>,
}

impl Report {
    /// A report from a run's statistics.
    pub fn new(
        target: &str,
        scenario: Scenario,
        model: Model,
        elapsed_secs: f64,
        stats: &Stats,
        server: ServerView,
    ) -> Self {
        let requests = stats.ok + stats.errors;
        Report {
            target: target.to_string(),
            scenario,
            model,
            duration_secs: elapsed_secs,
            requests,
            ok: stats.ok,
            errors: stats.errors,
            throughput: if elapsed_secs > 0.0 {
                requests as f64 / elapsed_secs
            } else {
                0.0
            },
            latency: stats.overall.summary(),
            statuses: stats.by_status.clone(),
            transport_errors: stats
                .by_error
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            per_kind: stats
                .per_kind
                .iter()
                .map(|(k, h)| {
                    (
                        k.to_string(),
                        KindReport {
                            requests: h.count(),
                            latency: h.summary(),
                            edge_hit_ratio: stats.edge.get(k).and_then(|e| e.hit_ratio()),
                        },
                    )
                })
                .collect(),
            timeline: stats
                .seconds
                .iter()
                .enumerate()
                .map(|(i, s)| Point {
                    second: i,
                    requests: s.requests,
                    errors: s.errors,
                    p50_ms: s.latency.quantile_ms(0.5),
                    p99_ms: s.latency.quantile_ms(0.99),
                })
                .collect(),
            distribution: stats.overall.distribution(),
            edge_hit_ratio: stats.edge_total().hit_ratio(),
            edges: None,
            server,
            upload_ready: None,
            jobs_per_second: None,
            cpu: None,
            ceiling: None,
        }
    }

    /// The model in words: "closed loop, 32 connections".
    pub fn model_text(&self) -> String {
        match self.model {
            Model::Closed { connections } => format!("closed loop, {connections} connections"),
            Model::Open { rate, .. } => format!("open loop, {rate} requests/s"),
        }
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let l = &self.latency;
        let _ = writeln!(
            t,
            "{} against {} ({}, {:.0} s)",
            scenario_name(self.scenario),
            self.target,
            self.model_text(),
            self.duration_secs
        );
        let _ = writeln!(
            t,
            "  requests   {:>10}   ok {}   errors {}",
            self.requests, self.ok, self.errors
        );
        let _ = writeln!(t, "  throughput {:>10.1} req/s", self.throughput);
        let _ = writeln!(
            t,
            "  latency ms   p50 {:.2}   p90 {:.2}   p99 {:.2}   p99.9 {:.2}   max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
        if self.errors > 0 {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .filter(|(s, _)| **s >= 400)
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            let kinds: Vec<String> = self
                .transport_errors
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(t, "  errors     {}", [statuses, kinds].concat().join(", "));
        }
        for (kind, k) in &self.per_kind {
            let edge = k
                .edge_hit_ratio
                .map(|r| format!("   edge hits {:.1} %", r * 100.0))
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "  {:<16} {:>9} requests   p50 {:.2} ms   p99 {:.2} ms{edge}",
                kind, k.requests, k.latency.p50_ms, k.latency.p99_ms
            );
        }
        self.edge_lines(&mut t);
        let s = &self.server;
        let fmt = |v: Option<f64>, digits: usize| {
            v.map(|x| format!("{x:.digits$}"))
                .unwrap_or_else(|| "n/a".into())
        };
        let _ = writeln!(
            t,
            "  server     db queries/request {}   cache hit ratio {}   cpu ms/request {}   peak memory MiB {}",
            fmt(s.db_queries_per_request, 3),
            fmt(s.cache_hit_ratio, 3),
            fmt(s.cpu_ms_per_request, 3),
            fmt(s.peak_rss_mib, 1)
        );
        if let Some(r) = &self.upload_ready {
            let _ = writeln!(
                t,
                "  uploads    {} probes ready after p50 {:.0} ms, p99 {:.0} ms",
                r.count, r.p50_ms, r.p99_ms
            );
        }
        if let Some(j) = self.jobs_per_second {
            let _ = writeln!(t, "  workers    {j:.1} jobs/s");
        }
        if let Some(share) = s.primary_read_share {
            let _ = writeln!(
                t,
                "  database   the primary served {:.1} % of reads",
                share * 100.0
            );
        }
        if let (Some(served), Some(reads)) = (s.cache_served_ratio, s.db_reads_per_read_request) {
            let _ = writeln!(
                t,
                "  cache      {:.1} % of cache reads served by a cache tier; {reads:.3} database queries per read request",
                served * 100.0
            );
        }
        if let Some(cpu) = &self.cpu {
            t.push_str(&cpu.table());
        }
        if let Some(c) = &self.ceiling {
            t.push_str(&c.table());
        }
        t
    }

    /// What edges did, when the target had them: the client's view and the edges' own.
    fn edge_lines(&self, t: &mut String) {
        if let Some(r) = self.edge_hit_ratio {
            let _ = writeln!(
                t,
                "  edge       {:.1} % of the answers that passed an edge were served from its store",
                r * 100.0
            );
        }
        if let Some(e) = self.edges.filter(|e| e.requests > 0) {
            let _ = writeln!(
                t,
                "  edges      {} requests, {} hits, {} misses, {} passed; {:.3} origin requests per client request",
                e.requests,
                e.hits,
                e.misses,
                e.passes,
                e.origin_fetches as f64 / e.requests as f64
            );
        }
    }

    /// Writes `report.json` and `report.html` into `dir`.
    ///
    /// # Errors
    /// The directory or files cannot be written.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_vec_pretty(self).expect("reports serialise"),
        )?;
        std::fs::write(dir.join("report.html"), self.html())
    }

    /// The HTML report.
    pub fn html(&self) -> String {
        let mut h = page_head(&format!(
            "Crescendo bench: {} scenario",
            scenario_name(self.scenario)
        ));
        let _ = write!(
            h,
            "<h1>{} scenario</h1><p>{} — {} for {:.0} s.</p>",
            scenario_name(self.scenario),
            esc(&self.target),
            esc(&self.model_text()),
            self.duration_secs
        );
        if let Some(c) = &self.ceiling {
            let _ = write!(
                h,
                "<p><strong>{:.3} of the ceiling</strong>: {:.0} req/s here, {:.0} req/s from \
                 the same stack serving the {} recorded answers from memory ({:.2} % of its \
                 requests found none).</p>",
                c.fraction,
                self.throughput,
                c.throughput,
                c.recorded,
                c.missing_share * 100.0
            );
        }
        h.push_str("<pre>");
        h.push_str(&esc(&self.table()));
        h.push_str("</pre>");
        let rps: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .map(|p| (p.second as f64, p.requests as f64))
            .collect();
        let errs: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .map(|p| (p.second as f64, p.errors as f64))
            .collect();
        let p50: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .map(|p| (p.second as f64, p.p50_ms))
            .collect();
        let p99: Vec<(f64, f64)> = self
            .timeline
            .iter()
            .map(|p| (p.second as f64, p.p99_ms))
            .collect();
        h.push_str(&line_chart(
            "Throughput over time",
            "second",
            "requests/s",
            &[("requests", "#2563eb", &rps), ("errors", "#dc2626", &errs)],
            None,
        ));
        h.push_str(&line_chart(
            "Latency over time",
            "second",
            "ms",
            &[("p50", "#16a34a", &p50), ("p99", "#d97706", &p99)],
            None,
        ));
        // x on a "nines" scale: 0, 90, 99, 99.9 … are evenly spaced
        let dist: Vec<(f64, f64)> = self
            .distribution
            .iter()
            .map(|&(p, ms)| (-(1.0 - p / 100.0).max(1e-5).log10(), ms))
            .collect();
        h.push_str(&line_chart(
            "Latency distribution",
            "percentile",
            "ms",
            &[("latency", "#7c3aed", &dist)],
            Some(&[
                (0.0, "0"),
                (1.0, "90"),
                (2.0, "99"),
                (3.0, "99.9"),
                (4.0, "99.99"),
                (5.0, "99.999"),
            ]),
        ));
        h.push_str("</body></html>\n");
        h
    }
}

/// The scenario's name as the command line spells it.
pub fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::List => "list",
        Scenario::Article => "article",
        Scenario::Feed => "feed",
        Scenario::Profile => "profile",
        Scenario::Write => "write",
        Scenario::Social => "social",
        Scenario::Visitors => "visitors",
        Scenario::Upload => "upload",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats() -> Stats {
        let mut s = Stats::default();
        for i in 0..100u64 {
            let status = if i % 50 == 0 { 503 } else { 200 };
            s.record(
                Duration::from_millis(i * 20),
                "feed",
                Duration::from_millis(1 + i % 10),
                Ok(status),
            );
        }
        s.record(
            Duration::from_millis(1999),
            "write.comment",
            Duration::from_secs(5),
            Err("timeout"),
        );
        s
    }

    #[test]
    fn the_json_report_holds_the_figures() {
        let r = Report::new(
            "http://127.0.0.1:1",
            Scenario::Social,
            Model::Closed { connections: 4 },
            2.0,
            &stats(),
            ServerView::default(),
        );
        let dir = tempfile::tempdir().unwrap();
        r.write(dir.path()).unwrap();
        let j: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(j["requests"], 101);
        assert_eq!(j["errors"], 3);
        assert_eq!(j["ok"], 98);
        assert_eq!(j["throughput"], 50.5);
        assert_eq!(j["scenario"], "social");
        assert_eq!(j["model"]["model"], "closed");
        assert_eq!(j["statuses"]["503"], 2);
        assert_eq!(j["transport_errors"]["timeout"], 1);
        assert_eq!(j["timeline"].as_array().unwrap().len(), 2);
        assert_eq!(j["per_kind"]["feed"]["requests"], 100);
        assert!(j["latency"]["max_ms"].as_f64().unwrap() >= 4990.0);
    }

    #[test]
    fn the_html_report_draws_its_charts_and_escapes_text() {
        let r = Report::new(
            "http://x/<script>",
            Scenario::Feed,
            Model::Open {
                rate: 100.0,
                max_in_flight: 10,
            },
            2.0,
            &stats(),
            ServerView::default(),
        );
        let html = r.html();
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("Throughput over time") && html.contains("Latency distribution"));
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
        assert!(html.contains("open loop, 100 requests/s"));
        assert!(
            r.table().contains("errors     503: 2, timeout: 1"),
            "{}",
            r.table()
        );
    }
}
