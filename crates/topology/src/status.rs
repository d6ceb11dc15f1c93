//! `crescendo status`: every process of a running topology — alive and answering, and for
//! web nodes requests per second, p99 and 5xx from their `/metrics` — as JSON or a table.

use crate::haproxy::Haproxy;
use crate::state::{Process, Role, State, alive};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// A process as `status` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessStatus {
    /// As recorded.
    #[serde(flatten)]
    pub process: Process,
    /// The process is alive and answers (web: `/ready` is 200; others: the port accepts).
    pub healthy: bool,
    /// Web nodes: requests per second over the sampling second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<f64>,
    /// Web nodes: 99th percentile latency since start, ms (from the histogram buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// Web nodes: 5xx answers since start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// The load balancer's view of each web node (`UP`, `DOWN`…).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<(String, String)>,
    /// Edges: what it counted since it started (hits, misses, origin fetches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<crate::varnish::EdgeCounters>,
}

impl ProcessStatus {
    /// `process`, healthy or not, with no figures yet.
    pub fn new(process: Process, healthy: bool) -> Self {
        Self {
            process,
            healthy,
            rps: None,
            p99_ms: None,
            errors: None,
            backends: Vec::new(),
            edge: None,
        }
    }
}

/// The whole status report.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The topology's name.
    pub name: String,
    /// Its rung.
    pub rung: u8,
    /// The public URL.
    pub url: String,
    /// Every process.
    pub processes: Vec<ProcessStatus>,
    /// The worker autoscaler's last decision (`autoscale.json`), when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<serde_json::Value>,
    /// The web autoscaler's decisions (`web-autoscale.json`), when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_autoscale: Option<crate::web_autoscale::Decisions>,
    /// Prometheus, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<MonitoringStatus>,
    /// The alerts firing now, as the alert sink keeps them (empty without monitoring).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<crate::alert_sink::FiringAlert>,
    /// Region B's automatic failover, its last decision (two regions with `[regions]
    /// auto_failover`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region_failover: Option<crate::regions::watch::Decision>,
}

/// Where Prometheus is and what it sees.
#[derive(Clone, Debug, Serialize)]
pub struct MonitoringStatus {
    /// Its URL (loopback, basic auth).
    pub url: String,
    /// Its basic-auth user.
    pub user: String,
    /// The file holding its password (owner-only).
    pub password_file: std::path::PathBuf,
    /// Each scrape target: (job, `name` label, health as Prometheus last saw it).
    pub targets: Vec<(String, String, String)>,
}

/// Prometheus of the topology `state` in `run_dir`, when it runs.
fn monitoring(run_dir: &Path, state: &State) -> Option<MonitoringStatus> {
    let p = state.of(Role::Prometheus).next()?;
    Some(MonitoringStatus {
        url: format!("http://{}", p.addr),
        user: crate::prometheus::USER.into(),
        password_file: crate::prometheus::dir(run_dir).join(crate::prometheus::PASSWORD_FILE),
        targets: crate::prometheus::target_health(run_dir, &p.addr),
    })
}

/// A plain HTTP/1.0 GET with a short time-out: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    http_get_as(addr, path, None)
}

/// [`http_get`] with basic auth as `(user, password)` when given.
pub fn http_get_as(addr: &str, path: &str, auth: Option<(&str, &str)>) -> Option<(u16, String)> {
    use base64::Engine;
    use std::io::{Read, Write};
    let sock: SocketAddr = addr.parse().ok()?;
    // a namespace address is asked from inside its namespace only (see `crate::netns`)
    crate::netns::refuse_from_root(sock.ip()).ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let auth = auth.map_or(String::new(), |(user, password)| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Authorization: Basic {token}\r\n")
    });
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}

/// (requests, 5xx, p99 ms) from a node's `/metrics` text, leaving out the operators'
/// routes (health checks and scrapes are not traffic).
fn figures(metrics: &str) -> (f64, f64, Option<f64>) {
    let (mut total, mut errors) = (0.0, 0.0);
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        if [
            "route=\"/ready\"",
            "route=\"/health\"",
            "route=\"/metrics\"",
        ]
        .iter()
        .any(|r| series.contains(r))
        {
            continue;
        }
        if series.starts_with("crescendo_http_requests_total{") {
            total += v;
            if series.contains("status=\"5") {
                errors += v;
            }
        } else if series.starts_with("crescendo_http_request_duration_seconds_bucket{")
            && let Some(le) = series
                .split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
        {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some(b) => b.1 += v,
                None => buckets.push((le, v)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let count = buckets.last().map_or(0.0, |b| b.1);
    let p99 = (count > 0.0).then(|| {
        buckets
            .iter()
            .find(|(_, c)| *c >= count * 0.99)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    });
    (total, errors, p99)
}

/// Checks every process of the topology in `run_dir`, sampling web nodes' counters over
/// one second.
///
/// # Errors
/// No topology runs from `run_dir`.
pub fn status(run_dir: &Path) -> anyhow::Result<Status> {
    let state = State::read(run_dir)?;
    if !state.regions.is_empty() {
        return crate::regions::status(state);
    }
    let first: Vec<Option<f64>> = state
        .processes
        .iter()
        .map(|p| {
            if p.role == Role::Web {
                http_get(p.metrics_addr(), "/metrics").map(|(_, m)| figures(&m).0)
            } else {
                None
            }
        })
        .collect();
    let started = Instant::now();
    if state.of(Role::Web).next().is_some() {
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut out = Vec::new();
    for (p, before) in state.processes.iter().zip(first) {
        let live = alive(p.pid);
        let mut s = ProcessStatus::new(p.clone(), false);
        match p.role {
            // an invalidator is ready while it reads its stream
            Role::Worker | Role::Invalidator => {
                s.healthy = live && http_get(&p.addr, "/ready").is_some_and(|(code, _)| code == 200)
            }
            // the WAN relay listens on no port: it is healthy while it runs
            Role::Supervisor | Role::Wan | Role::RegionWatch => s.healthy = live,
            Role::Web => {
                s.healthy =
                    live && http_get(&p.addr, "/ready").is_some_and(|(code, _)| code == 200);
                if let Some((_, m)) = http_get(p.metrics_addr(), "/metrics") {
                    let (total, errors, p99) = figures(&m);
                    s.rps = before.map(|b| (total - b) / started.elapsed().as_secs_f64());
                    s.errors = Some(errors);
                    s.p99_ms = p99;
                }
            }
            _ => {
                s.healthy = live
                    && p.addr.parse::<SocketAddr>().is_ok_and(|a| {
                        crate::netns::refuse_from_root(a.ip()).is_ok()
                            && std::net::TcpStream::connect_timeout(&a, Duration::from_millis(500))
                                .is_ok()
                    });
                if p.role == Role::Lb {
                    s.backends = Haproxy::backend_states(&run_dir.join("haproxy"));
                }
                if p.role == Role::Edge && live {
                    s.edge = crate::varnish::counters(&run_dir.join(&p.name));
                }
            }
        }
        out.push(s);
    }
    let autoscale = std::fs::read(run_dir.join("autoscale.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let prometheus = monitoring(run_dir, &state);
    let alerts = crate::alert_sink::firing(run_dir);
    Ok(Status {
        web_autoscale: crate::web_autoscale::Decisions::read(run_dir),
        prometheus,
        alerts,
        name: state.name,
        rung: state.rung,
        url: state.url,
        processes: out,
        autoscale,
        region_failover: None,
    })
}

impl Status {
    /// A table for people.
    pub fn table(&self) -> String {
        let mut t = format!("{} (rung {}) at {}\n", self.name, self.rung, self.url);
        // as wide as the longest name (exporters are named after the server they report on)
        let w = self
            .processes
            .iter()
            .map(|p| p.process.name.len() + p.process.region.as_ref().map_or(0, |r| r.len() + 1))
            .max()
            .unwrap_or(0)
            .max(11);
        t.push_str(&format!(
            "{:<11} {:<w$} {:>8} {:<22} {:<16} {:>8} {:>8} {:>7}\n",
            "ROLE", "NAME", "PID", "ADDRESS", "HEALTH", "REQ/S", "P99 MS", "5XX"
        ));
        for p in &self.processes {
            let f = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |x| format!("{x:.d$}"));
            let mut health = if p.healthy { "up" } else { "DOWN" }.to_string();
            if !p.backends.is_empty() {
                let up = p.backends.iter().filter(|(_, s)| s == "UP").count();
                health = format!("{health} ({up}/{} nodes)", p.backends.len());
            }
            if let Some(ratio) = p.edge.and_then(|e| e.hit_ratio()) {
                health = format!("{health} ({:.0} % hits)", ratio * 100.0);
            }
            let role = serde_json::to_value(p.process.role).unwrap_or_default();
            // a two-region topology's processes carry their region: `a/web-1`
            let name = match &p.process.region {
                Some(r) => format!("{r}/{}", p.process.name),
                None => p.process.name.clone(),
            };
            t.push_str(&format!(
                "{:<11} {:<w$} {:>8} {:<22} {:<16} {:>8} {:>8} {:>7}\n",
                role.as_str().unwrap_or("?"),
                name,
                p.process.pid,
                p.process.addr,
                health,
                f(p.rps, 1),
                f(p.p99_ms, 1),
                f(p.errors, 0)
            ));
        }
        if let Some(a) = &self.autoscale {
            t.push_str(&format!(
                "autoscaler: {} workers (min {}, max {}), {} jobs waiting or running; {}\n",
                a["workers"],
                a["min"],
                a["max"],
                a["pending"],
                a["note"].as_str().unwrap_or("")
            ));
        }
        if let Some(d) = &self.web_autoscale {
            t.push_str(&crate::web_autoscale::summary(
                d,
                crate::web_autoscale::now_ms(),
            ));
        }
        if let Some(m) = &self.prometheus {
            let up = m.targets.iter().filter(|(_, _, h)| h == "up").count();
            t.push_str(&format!(
                "prometheus: {} (user {}, password in {}); {up}/{} targets up\n",
                m.url,
                m.user,
                m.password_file.display(),
                m.targets.len()
            ));
            for (job, name, health) in m.targets.iter().filter(|(_, _, h)| h != "up") {
                t.push_str(&format!("  target {name} ({job}): {health}\n"));
            }
        }
        if let Some(d) = &self.region_failover {
            let state = serde_json::to_value(d.state).unwrap_or_default();
            t.push_str(&format!(
                "region failover: {} at {}: {}\n",
                state.as_str().unwrap_or("?"),
                d.at,
                d.reasons.join("; ")
            ));
        }
        for a in &self.alerts {
            let labels = a.other_labels();
            t.push_str(&format!(
                "ALERT {} since {} {{{}}}: {}\n",
                a.name,
                a.since,
                labels.join(", "),
                a.summary
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_prometheus_its_password_file_the_targets_not_up_and_firing_alerts() {
        let status = Status {
            name: "t".into(),
            rung: 6,
            url: "http://127.0.0.1:8000".into(),
            processes: Vec::new(),
            autoscale: None,
            web_autoscale: None,
            prometheus: Some(MonitoringStatus {
                url: "http://127.0.9.1:9090".into(),
                user: "crescendo".into(),
                password_file: "/run/prometheus/password".into(),
                targets: vec![
                    ("web".into(), "web-1".into(), "up".into()),
                    (
                        "redis".into(),
                        "redis-exporter-cache-1".into(),
                        "down".into(),
                    ),
                ],
            }),
            alerts: vec![crate::alert_sink::FiringAlert {
                name: "TierMemberDown".into(),
                labels: [
                    ("alertname", "TierMemberDown"),
                    ("job", "web"),
                    ("name", "web-2"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                summary: "web-2 (web) is down".into(),
                since: "2026-12-01T01:00:00Z".into(),
                fingerprint: "abc".into(),
            }],
            region_failover: None,
        };
        let t = status.table();
        assert!(
            t.contains(
                "ALERT TierMemberDown since 2026-12-01T01:00:00Z {job=web, name=web-2}: \
                 web-2 (web) is down\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "prometheus: http://127.0.9.1:9090 (user crescendo, password in \
                 /run/prometheus/password); 1/2 targets up\n"
            ),
            "{t}"
        );
        assert!(
            t.contains("  target redis-exporter-cache-1 (redis): down\n"),
            "{t}"
        );
        assert!(!t.contains("target web-1"), "{t}");
    }

    #[test]
    fn node_figures_come_from_the_metrics_text() {
        let m = "crescendo_http_requests_total{method=\"GET\",route=\"/api/articles\",status=\"200\"} 98\n\
                 crescendo_http_requests_total{method=\"GET\",route=\"/api/articles\",status=\"503\"} 2\n\
                 crescendo_http_requests_total{method=\"GET\",route=\"/ready\",status=\"200\"} 500\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.005\"} 90\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"0.01\"} 99\n\
                 crescendo_http_request_duration_seconds_bucket{method=\"GET\",le=\"+Inf\"} 100\n";
        let (total, errors, p99) = figures(m);
        assert_eq!((total, errors), (100.0, 2.0));
        assert_eq!(p99, Some(10.0));
    }
}
