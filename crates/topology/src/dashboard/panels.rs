//! What the dashboard charts: one [`Panel`] per figure an operator watches, each a few PromQL
//! queries (the recording rules of `rules/crescendo.yml` where one exists), read from
//! Prometheus's `/api/v1/query_range` with its basic-auth password.

use super::chart::{Series, Unit};
use anyhow::{Context, bail};
use serde_json::Value;

/// One query of a panel: its PromQL, and its legend, where `{label}` is replaced by that
/// label's value in each series the query returns.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    /// The PromQL expression.
    pub expr: &'static str,
    /// The legend template, e.g. `{role} p99`.
    pub legend: &'static str,
}

/// One chart of the dashboard.
#[derive(Clone, Copy, Debug)]
pub struct Panel {
    /// Its element ID on the page.
    pub id: &'static str,
    /// Its title.
    pub title: &'static str,
    /// How its values read.
    pub unit: Unit,
    /// What it shows, under the chart.
    pub note: &'static str,
    /// Its lines.
    pub queries: &'static [Query],
}

const fn q(expr: &'static str, legend: &'static str) -> Query {
    Query { expr, legend }
}

/// Every chart, in page order. Where a figure would have no series while all is well (no 5xx
/// answer yet, no alert firing), the query adds a zero from a series that does exist, so an
/// empty chart always means Prometheus has nothing, never that nothing went wrong.
pub const PANELS: [Panel; 10] = [
    Panel {
        id: "requests",
        title: "Requests per second",
        unit: Unit::PerSecond,
        note: "Answers per second by tier over the last minute: the web nodes and workers by role \
               (crescendo_http_requests_total), HAProxy by frontend.",
        queries: &[
            q("role:crescendo_http_requests:rate1m", "{role}"),
            q(
                "proxy:haproxy_frontend_http_requests:rate1m",
                "haproxy {proxy}",
            ),
        ],
    },
    Panel {
        id: "errors",
        title: "Errors (5xx) per second",
        unit: Unit::PerSecond,
        note: "5xx answers per second by tier over the last minute; 0 while every answer succeeds.",
        queries: &[
            q(
                "sum by (role) (name:crescendo_http_errors:rate1m) or 0 * role:crescendo_http_requests:rate1m",
                "{role}",
            ),
            q(
                "proxy:haproxy_frontend_http_errors:rate1m",
                "haproxy {proxy}",
            ),
        ],
    },
    Panel {
        id: "latency",
        title: "Latency p50 and p99",
        unit: Unit::Seconds,
        note: "The median and 99th percentile of answer times by tier over the last minute, \
               from the nodes' histograms; a gap while a tier answers nothing.",
        queries: &[
            q(
                "role:crescendo_http_request_duration_seconds:p50_1m",
                "{role} p50",
            ),
            q(
                "role:crescendo_http_request_duration_seconds:p99_1m",
                "{role} p99",
            ),
        ],
    },
    Panel {
        id: "db-queries",
        title: "Database queries per request",
        unit: Unit::Number,
        note: "Queries the web tier sent to PostgreSQL per answer over the last minute: what the \
               caches spare the database.",
        queries: &[q(
            "role:crescendo_http_db_queries_per_request:ratio_rate1m",
            "{role}",
        )],
    },
    Panel {
        id: "cache-hits",
        title: "Cache hit ratio",
        unit: Unit::Ratio,
        note: "Lookups the cache (near and ring) answered, of all lookups, over 5 minutes.",
        queries: &[q("crescendo_cache_hit:ratio_rate5m", "all layers")],
    },
    Panel {
        id: "replica-lag",
        title: "Replica lag",
        unit: Unit::Seconds,
        note: "How far each database server's replay is behind the WAL it has received \
               (0 on a primary); ReplicaLagHigh fires above 10 s.",
        queries: &[q("max by (of) (pg_replication_lag)", "{of}")],
    },
    Panel {
        id: "queue-depth",
        title: "Queue depth",
        unit: Unit::Number,
        note: "Jobs waiting or running per queue, as the workers report it.",
        queries: &[q("max by (queue) (crescendo_queue_depth)", "{queue}")],
    },
    Panel {
        id: "queue-age",
        title: "Queue age",
        unit: Unit::Seconds,
        note: "Age of the oldest job waiting or running per queue, as the workers report it.",
        queries: &[q(
            "max by (queue) (crescendo_queue_oldest_job_age_seconds)",
            "{queue}",
        )],
    },
    Panel {
        id: "members",
        title: "Web nodes and workers",
        unit: Unit::Number,
        note: "Members of the web and worker tiers Prometheus scraped successfully: follows \
               scale, restarts and the autoscaler.",
        queries: &[q("sum by (job) (up{job=~\"web|worker\"})", "{job}")],
    },
    Panel {
        id: "alerts",
        title: "Firing alerts",
        unit: Unit::Number,
        note: "Alerts firing in Prometheus (ALERTS), in all and by name; the table below lists \
               what the alert sink received.",
        queries: &[
            q(
                "count(ALERTS{alertstate=\"firing\"}) or 0 * count(up)",
                "firing",
            ),
            q(
                "count by (alertname) (ALERTS{alertstate=\"firing\"})",
                "{alertname}",
            ),
        ],
    },
];

/// `text` percent-encoded for a URL's query string.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `legend` with each `{label}` replaced by that label of `metric` (empty when missing).
pub fn legend(legend: &str, metric: &Value) -> String {
    let mut out = String::new();
    let mut rest = legend;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        let Some((name, tail)) = after.split_once('}') else {
            rest = after;
            break;
        };
        out.push_str(metric[name].as_str().unwrap_or_default());
        rest = tail;
    }
    out.push_str(rest);
    out.trim().to_string()
}

/// The series of a `query_range` answer (`resultType: matrix`), labelled by `legend_of`.
///
/// # Errors
/// The answer is not a successful matrix.
pub fn parse_matrix(body: &str, legend_of: &str) -> anyhow::Result<Vec<Series>> {
    let v: Value = serde_json::from_str(body).context("Prometheus's answer is not JSON")?;
    if v["status"] != "success" {
        bail!(
            "Prometheus: {}",
            v["error"].as_str().unwrap_or("no success")
        );
    }
    let results = v["data"]["result"].as_array().context("no result")?;
    let mut out: Vec<Series> = results
        .iter()
        .map(|r| Series {
            label: legend(legend_of, &r["metric"]),
            points: r["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    // values come as strings: "NaN", "+Inf" and numbers
                    let t = p[0].as_f64()?;
                    let v = p[1].as_str()?.parse::<f64>().ok()?;
                    Some((t, v))
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.label.cmp(&b.label));
    Ok(out)
}

/// The window a page charts: from `end - minutes` to `end` (Unix seconds), sampled at about
/// 120 points (never finer than Prometheus's 5 s scrapes).
pub fn window(end: f64, minutes: u32) -> (f64, f64, f64) {
    let span = f64::from(minutes.max(1)) * 60.0;
    let step = (span / 120.0).max(5.0);
    (end - span, end, step)
}

/// Every series of `panel` over `window` (start, end, step), from the Prometheus at `addr`
/// asked as [`crate::prometheus::USER`] with `password`.
///
/// # Errors
/// Prometheus does not answer, refuses or answers an error.
pub fn fetch(
    addr: &str,
    password: &str,
    panel: &Panel,
    (start, end, step): (f64, f64, f64),
) -> anyhow::Result<Vec<Series>> {
    let mut out = Vec::new();
    for query in panel.queries {
        let path = format!(
            "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step={step}",
            encode(query.expr)
        );
        let (code, body) =
            crate::status::http_get_as(addr, &path, Some((crate::prometheus::USER, password)))
                .with_context(|| format!("Prometheus at {addr} does not answer"))?;
        if code != 200 {
            bail!("Prometheus answered {code}: {}", body.trim());
        }
        out.extend(parse_matrix(&body, query.legend)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_matrix_becomes_labelled_series_with_nan_kept_as_gaps() {
        let body = json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"role": "worker"}, "values": [[100.0, "1"], [105.5, "NaN"]]},
            {"metric": {"role": "web"}, "values": [[100, "2.5"], [105, "+Inf"]]}
        ]}})
        .to_string();
        let s = parse_matrix(&body, "{role} p99").unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].label, "web p99", "sorted by label");
        assert_eq!(s[0].points[0], (100.0, 2.5));
        assert!(s[0].points[1].1.is_infinite());
        assert_eq!(s[1].label, "worker p99");
        assert!(s[1].points[1].1.is_nan());
        assert_eq!(s[1].points[1].0, 105.5);
    }

    #[test]
    fn an_error_answer_is_an_error_not_an_empty_chart() {
        let body = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let e = parse_matrix(&body.to_string(), "x").unwrap_err();
        assert!(e.to_string().contains("parse error"), "{e}");
        assert!(parse_matrix("<html>", "x").is_err());
    }

    #[test]
    fn legends_take_labels_and_queries_are_encoded() {
        let m = json!({"proxy": "public", "role": "web"});
        assert_eq!(legend("haproxy {proxy}", &m), "haproxy public");
        assert_eq!(legend("{missing} p50", &m), "p50");
        assert_eq!(legend("firing", &m), "firing");
        assert_eq!(
            encode("sum by (job) (up{job=~\"web|worker\"})"),
            "sum%20by%20%28job%29%20%28up%7Bjob%3D~%22web%7Cworker%22%7D%29"
        );
    }

    #[test]
    fn the_window_has_about_120_steps_but_none_under_5_s() {
        assert_eq!(window(1000.0, 15), (100.0, 1000.0, 7.5));
        assert_eq!(window(1000.0, 1).2, 5.0);
        assert_eq!(window(1000.0, 0).0, 940.0);
    }

    #[test]
    fn every_panel_has_a_unique_id_and_at_least_one_query() {
        let mut ids: Vec<&str> = PANELS.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), PANELS.len());
        assert!(PANELS.iter().all(|p| !p.queries.is_empty()));
        // the recording rules a panel names exist
        for p in PANELS {
            for query in p.queries {
                for word in query
                    .expr
                    .split(|c: char| !(c.is_alphanumeric() || "_:".contains(c)))
                {
                    if word.contains(':') {
                        assert!(
                            crate::alerting::RULES.contains(&format!("record: {word}\n")),
                            "{} names {word}, which no rule records",
                            p.id
                        );
                    }
                }
            }
        }
    }
}
