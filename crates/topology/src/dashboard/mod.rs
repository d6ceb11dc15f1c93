//! The dashboard (`crescendo dashboard`, role `dashboard`): one page of line charts of a
//! running topology, drawn on the server as SVG from Prometheus's `/api/v1/query_range`
//! ([`panels::PANELS`]: requests/s, errors, p50 and p99 per tier, database queries per
//! request, cache hit ratio, replica lag, queue depth and age, web and worker counts, firing
//! alerts) with the table of alerts the alert sink holds. The page reloads itself every
//! [`REFRESH_SECS`] (a meta refresh; it runs no script).
//!
//! `up` starts it as a process of its own once Prometheus runs, so its URL lives as long as
//! the topology: on a loopback ops address (never the public one), behind basic auth (user
//! [`crate::prometheus::USER`], a password generated for the run in
//! `RUN_DIR/dashboard/`[`PASSWORD_FILE`], 0600). It asks Prometheus with Prometheus's own
//! password, which it reads from the run directory.
//!
//! `GET /` is the page (`?minutes=N` charts the last N minutes, 15 by default, at most a
//! day); `GET /ready` answers 200 once it serves (both need the password).

pub mod chart;
pub mod panels;

use crate::state::{Process, Role, State};
use chart::escape;
use std::fmt::Write as _;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The dashboard's password, in its directory.
pub const PASSWORD_FILE: &str = "password";
/// How often the page reloads itself, in seconds.
pub const REFRESH_SECS: u32 = 10;
/// The window charted unless the page asks for another, in minutes.
const DEFAULT_MINUTES: u32 = 15;
/// Requests answered at once; more wait in the listen queue (a browser opens a few).
const MAX_CONNECTIONS: usize = 8;

/// The dashboard's directory in a run directory.
pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join("dashboard")
}

/// What a page is drawn from.
struct Source {
    run_dir: PathBuf,
    prometheus: String,
}

/// The page for the last `minutes`, drawn from Prometheus as it answers now.
fn page(src: &Source, minutes: u32) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let window = panels::window(now, minutes);
    let password = crate::prometheus::password(&src.run_dir).unwrap_or_default();
    let title = State::read(&src.run_dir).map_or("a topology".to_string(), |s| {
        format!("{} (rung {}) at {}", s.name, s.rung, s.url)
    });
    let secs = now as u64 % 86_400;
    let mut html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>Crescendo dashboard: {t}</title><style>{STYLE}</style></head><body>\
         <h1>{t}</h1><p class=\"meta\">The last {minutes} minutes from Prometheus at {p}, \
         drawn at {:02}:{:02}:{:02} UTC; this page reloads every {REFRESH_SECS} s.</p><main>",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        t = escape(&title),
        p = escape(&src.prometheus),
    );
    for panel in &panels::PANELS {
        let (series, no_data) = match panels::fetch(&src.prometheus, &password, panel, window) {
            Ok(s) => (s, "no data in this window".to_string()),
            Err(e) => (Vec::new(), format!("no data: {e}")),
        };
        let _ = write!(
            html,
            "<figure class=\"panel\" id=\"{}\"><figcaption>{}</figcaption>{}{}<p class=\"note\">{}</p></figure>",
            panel.id,
            escape(panel.title),
            chart::render(
                panel.title,
                panel.unit,
                &series,
                (window.0, window.1),
                &no_data
            ),
            chart::legend(panel.unit, &series),
            escape(panel.note)
        );
    }
    html.push_str("</main>");
    html.push_str(&alerts_table(&crate::alert_sink::firing(&src.run_dir)));
    if let Some(d) = crate::web_autoscale::Decisions::read(&src.run_dir) {
        html.push_str(&autoscaler_section(&d, crate::web_autoscale::now_ms()));
    }
    html.push_str("</body></html>");
    html
}

/// The page's style: a grid of charts, readable without colour.
const STYLE: &str = "body{font-family:sans-serif;margin:1rem;color:#222}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(26rem,1fr));gap:1rem}\
figure{margin:0;border:1px solid #ddd;padding:.5rem}figcaption{font-weight:bold}\
svg{width:100%;height:auto}.legend{list-style:none;padding:0;margin:.25rem 0;font-size:.85rem}\
.legend li{display:inline-block;margin-right:1rem}.note,.meta{font-size:.8rem;color:#555}\
table{border-collapse:collapse;margin-top:1rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}";

/// The alerts the sink holds as firing, as a table (or a line saying there are none).
fn alerts_table(alerts: &[crate::alert_sink::FiringAlert]) -> String {
    if alerts.is_empty() {
        return "<h2>Firing alerts</h2><p id=\"no-alerts\">None: the alert sink holds no firing alert.</p>"
            .into();
    }
    let mut t = String::from(
        "<h2>Firing alerts</h2><table id=\"alerts\"><tr><th>Alert</th><th>Since</th>\
         <th>Labels</th><th>Summary</th></tr>",
    );
    for a in alerts {
        let labels = a.other_labels();
        let _ = write!(
            t,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.name),
            escape(&a.since),
            escape(&labels.join(", ")),
            escape(&a.summary)
        );
    }
    t.push_str("</table>");
    t
}

/// The web autoscaler's decisions as `status` prints them: its bounds, its latest look and
/// why, and its last changes of the node count.
fn autoscaler_section(d: &crate::web_autoscale::Decisions, now_ms: u64) -> String {
    format!(
        "<h2>Web autoscaler</h2><pre id=\"web-autoscale\">{}</pre>",
        escape(&crate::web_autoscale::summary(d, now_ms))
    )
}

/// The window a request asks for: `?minutes=N` within 1..=1440, else the default.
fn minutes_of(path: &str) -> u32 {
    path.split_once('?')
        .into_iter()
        .flat_map(|(_, q)| q.split('&'))
        .find_map(|kv| kv.strip_prefix("minutes="))
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|m| (1..=1440).contains(m))
        .unwrap_or(DEFAULT_MINUTES)
}

fn answer(mut conn: TcpStream, password: &str, src: &Source) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (method, target, authorized, _) = crate::alert_sink::read_request(&conn, password)?;
    let route = target.split('?').next().unwrap_or_default();
    let (status, kind, body) = match (method.as_str(), route, authorized) {
        (_, _, false) => (
            "401 Unauthorized",
            "text/plain",
            "unauthorized\n".to_string(),
        ),
        ("GET", "/", true) => (
            "200 OK",
            "text/html; charset=utf-8",
            page(src, minutes_of(&target)),
        ),
        ("GET", "/ready", true) => ("200 OK", "text/plain", "ready\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let auth = if status.starts_with("401") {
        "WWW-Authenticate: Basic realm=\"crescendo dashboard\"\r\n"
    } else {
        ""
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\n{auth}Content-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// Serves the dashboard of the topology in `run_dir`, whose Prometheus is at `prometheus`,
/// on `listener` until the process is stopped: each request on a thread of its own, at
/// most [`MAX_CONNECTIONS`] at once.
pub fn serve(listener: TcpListener, password: &str, run_dir: PathBuf, prometheus: String) {
    let src = Arc::new(Source {
        run_dir,
        prometheus,
    });
    let password: Arc<str> = password.into();
    let busy = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming().flatten() {
        while busy.load(Ordering::Acquire) >= MAX_CONNECTIONS {
            std::thread::sleep(Duration::from_millis(5));
        }
        busy.fetch_add(1, Ordering::AcqRel);
        let (src, password, busy) = (src.clone(), password.clone(), busy.clone());
        std::thread::spawn(move || {
            if let Err(e) = answer(conn, &password, &src) {
                tracing::debug!(error = %e, "a dashboard request failed");
            }
            busy.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

/// Starts the dashboard for the Prometheus at `prometheus` (`crescendo dashboard --serve`)
/// with a password generated for the run, and records it.
pub(crate) fn start(up: &mut crate::up::Up, prometheus: &str) -> anyhow::Result<()> {
    let run_dir = up.o.run_dir.clone();
    let dir = dir(&run_dir);
    std::fs::create_dir_all(&dir)?;
    let password = crate::secret::generate(32);
    crate::secret::write_file(&dir.join(PASSWORD_FILE), password.as_bytes())?;
    let addr = crate::launch::free_addr([127, 0, 9, 4])?;
    let mut cmd = Command::new(&up.o.exe);
    cmd.arg("dashboard")
        .arg(format!("--serve={addr}"))
        .arg(format!("--prometheus={prometheus}"))
        .arg(format!("--run-dir={}", run_dir.display()));
    up.progress(&format!(
        "starting the dashboard on http://{addr} (user {}, password in {})",
        crate::prometheus::USER,
        dir.join(PASSWORD_FILE).display()
    ));
    let log = dir.join("dashboard.log");
    let server = crate::alerting::start_server(
        cmd,
        &format!("the dashboard on {addr}"),
        &log,
        addr,
        ("/ready", &password),
    )?;
    let p = Process::new(Role::Dashboard, "dashboard", server.pid(), addr, log);
    up.running
        .record(p, Box::new(crate::alerting::Launched(server)));
    Ok(())
}

/// The dashboard of the topology in `run_dir`: its URL and the file holding its password.
///
/// # Errors
/// No topology runs from `run_dir`, or it has no dashboard (monitoring is off).
pub fn url(run_dir: &Path) -> anyhow::Result<(String, PathBuf)> {
    let state = State::read(run_dir)?;
    let p = state.of(Role::Dashboard).next().ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no dashboard: it comes with monitoring (rung 2 and up, [monitoring] not off)",
            state.name
        )
    })?;
    Ok((
        format!("http://{}/", p.addr),
        dir(run_dir).join(PASSWORD_FILE),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_fifteen_minutes_unless_asked_within_a_day() {
        assert_eq!(minutes_of("/"), 15);
        assert_eq!(minutes_of("/?minutes=60"), 60);
        assert_eq!(minutes_of("/?x=1&minutes=5"), 5);
        assert_eq!(minutes_of("/?minutes=0"), 15);
        assert_eq!(minutes_of("/?minutes=100000"), 15);
        assert_eq!(minutes_of("/?minutes=abc"), 15);
    }

    fn get(addr: &str, path: &str, password: Option<&str>) -> (u16, String) {
        crate::status::http_get_as(addr, path, password.map(|p| (crate::prometheus::USER, p)))
            .expect("the dashboard answers")
    }

    #[test]
    fn without_prometheus_every_chart_says_it_has_no_data_and_only_with_the_password() {
        let run = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // a Prometheus address nothing listens on
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let prometheus = dead.local_addr().unwrap().to_string();
        drop(dead);
        let run_dir = run.path().to_path_buf();
        std::thread::spawn(move || serve(listener, "pw", run_dir, prometheus));

        assert_eq!(get(&addr, "/", None).0, 401);
        assert_eq!(get(&addr, "/", Some("wrong")).0, 401);
        assert_eq!(get(&addr, "/ready", None).0, 401);
        assert_eq!(get(&addr, "/ready", Some("pw")).0, 200);
        assert_eq!(get(&addr, "/nothing", Some("pw")).0, 404);
        let (code, html) = get(&addr, "/?minutes=5", Some("pw"));
        assert_eq!(code, 200);
        assert!(
            html.contains(&format!("content=\"{REFRESH_SECS}\"")),
            "{html}"
        );
        assert!(html.contains("The last 5 minutes"));
        for p in &panels::PANELS {
            assert!(html.contains(&format!("id=\"{}\"", p.id)), "{}", p.id);
        }
        assert_eq!(
            html.matches("<text class=\"no-data\"").count(),
            panels::PANELS.len(),
            "{html}"
        );
        assert!(
            html.contains("no data: Prometheus at"),
            "the reason is given"
        );
        assert!(html.contains("id=\"no-alerts\""));
    }

    #[test]
    fn the_alerts_table_lists_each_alert_with_its_labels_escaped() {
        let a = crate::alert_sink::FiringAlert {
            name: "TierMemberDown".into(),
            labels: [("alertname", "TierMemberDown"), ("name", "web-<2>")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            summary: "web-2 (web) is down".into(),
            since: "2026-12-01T01:00:00Z".into(),
            fingerprint: "abc".into(),
        };
        let t = alerts_table(&[a]);
        assert!(
            t.contains("<td>TierMemberDown</td><td>2026-12-01T01:00:00Z</td>"),
            "{t}"
        );
        assert!(t.contains("<td>name=web-&lt;2&gt;</td>"), "{t}");
    }

    #[test]
    fn the_autoscaler_section_shows_the_latest_look_and_each_change_with_its_reason() {
        let look = |at_ms, current, desired, reason: &str| crate::web_autoscale::Decision {
            at_ms,
            current,
            total_rps: Some(300.0),
            observed_rps_per_node: Some(300.0 / current as f64),
            target_rps_per_node: 100.0,
            recommended: desired,
            desired,
            why: None,
            reason: reason.into(),
        };
        let d = crate::web_autoscale::Decisions {
            last: Some(look(9_000, 3, 3, "300 req/s on 3 nodes <= target")),
            scale_ups: 1,
            events: vec![look(5_000, 1, 3, "300 req/s on 1 node > target")],
            ..Default::default()
        };
        let t = autoscaler_section(&d, 10_000);
        assert!(t.contains("scaled up 1 times, down 0"), "{t}");
        assert!(t.contains("now: 300 req/s on 3 nodes &lt;= target"), "{t}");
        assert!(
            t.contains("5 s ago: 1 -&gt; 3 nodes: 300 req/s on 1 node &gt; target"),
            "{t}"
        );
    }
}
