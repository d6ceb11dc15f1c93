//! The alert sink (`crescendo alert-sink`, role `alert-sink`): the webhook Alertmanager
//! sends every alert to. A small HTTP server on loopback behind basic auth (user
//! [`crate::prometheus::USER`], a password generated for the run), it logs each alert it is
//! sent as one JSON line on its standard output (its log, `RUN_DIR/alertmanager/sink.log`)
//! and keeps the alerts firing now in `RUN_DIR/`[`ALERTS_FILE`] (0600), which `crescendo
//! status` reads. A resolved alert leaves the file.
//!
//! `POST /alerts` takes Alertmanager's webhook payload (version 4); `GET /alerts` answers
//! the firing alerts (and tells `up` the sink is ready).

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The firing alerts, in the run directory.
pub const ALERTS_FILE: &str = "alerts.json";

/// The largest payload the sink reads; Alertmanager's groups are far smaller.
const MAX_BODY: usize = 4 << 20;

/// One firing alert, as `alerts.json` and `status --json` show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FiringAlert {
    /// Its name (the `alertname` label).
    pub name: String,
    /// Its labels, `alertname` included.
    pub labels: BTreeMap<String, String>,
    /// Its `summary` annotation.
    pub summary: String,
    /// When it started firing (RFC 3339, as Alertmanager says).
    pub since: String,
    /// Alertmanager's fingerprint of its labels.
    pub fingerprint: String,
}

impl FiringAlert {
    /// Its labels but `alertname`, each as `key=value`.
    pub fn other_labels(&self) -> Vec<String> {
        self.labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect()
    }
}

/// The alerts firing in the topology of `run_dir`, as the sink last wrote them; empty when
/// none fire or no sink runs.
pub fn firing(run_dir: &Path) -> Vec<FiringAlert> {
    std::fs::read(run_dir.join(ALERTS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// What the sink keeps: the firing alerts by fingerprint, and where it writes them.
struct Sink {
    file: PathBuf,
    firing: BTreeMap<String, FiringAlert>,
}

impl Sink {
    /// Applies one webhook payload: logs each alert, adds the firing ones, drops the
    /// resolved ones, and rewrites the file.
    fn apply(&mut self, payload: &Value) -> anyhow::Result<()> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        for a in payload["alerts"].as_array().into_iter().flatten() {
            let labels: BTreeMap<String, String> =
                serde_json::from_value(a["labels"].clone()).unwrap_or_default();
            let alert = FiringAlert {
                name: labels.get("alertname").cloned().unwrap_or_default(),
                summary: text(&a["annotations"]["summary"]),
                since: text(&a["startsAt"]),
                fingerprint: text(&a["fingerprint"]),
                labels,
            };
            let status = text(&a["status"]);
            println!(
                "{}",
                serde_json::json!({"timestamp": crate::logs_time::now(), "status": status, "alert": alert.name, "labels": alert.labels,
                    "summary": alert.summary, "since": alert.since, "endsAt": a["endsAt"]})
            );
            if status == "firing" {
                self.firing.insert(alert.fingerprint.clone(), alert);
            } else {
                self.firing.remove(&alert.fingerprint);
            }
        }
        let list: Vec<&FiringAlert> = self.firing.values().collect();
        crate::secret::write_file(&self.file, &serde_json::to_vec_pretty(&list)?)
    }
}

/// A request as the sink (and the dashboard) reads it: method, path, whether it carries
/// the password, body.
pub(crate) fn read_request(
    conn: &TcpStream,
    password: &str,
) -> anyhow::Result<(String, String, bool, Vec<u8>)> {
    let mut reader = BufReader::new(conn);
    let head = crate::http_head::RequestHead::read(&mut reader)?;
    let want = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{password}", crate::prometheus::USER));
    let authorized = head.credentials("Basic") == Some(want.as_str());
    let length = head.content_length;
    anyhow::ensure!(length <= MAX_BODY, "a payload of {length} bytes");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok((head.method, head.path, authorized, body))
}

fn answer(conn: TcpStream, password: &str, sink: &mut Sink) -> anyhow::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let (method, path, authorized, body) = read_request(&conn, password)?;
    let (status, body) = match (method.as_str(), path.as_str(), authorized) {
        (_, "/alerts", false) => ("401 Unauthorized", "unauthorized\n".to_string()),
        ("POST", "/alerts", true) => match serde_json::from_slice::<Value>(&body) {
            Ok(payload) => {
                sink.apply(&payload)?;
                ("200 OK", "ok\n".to_string())
            }
            Err(e) => ("400 Bad Request", format!("not a webhook payload: {e}\n")),
        },
        ("GET", "/alerts", true) => {
            let list: Vec<&FiringAlert> = sink.firing.values().collect();
            ("200 OK", serde_json::to_string(&list)?)
        }
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let mut conn = conn;
    let auth = if status.starts_with("401") {
        "WWW-Authenticate: Basic realm=\"alerts\"\r\n"
    } else {
        ""
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    Ok(())
}

/// Serves the webhook on `listener` until the process is stopped, one request at a time,
/// keeping the firing alerts in `file` (emptied at start).
///
/// # Errors
/// The file cannot be written.
pub fn serve(listener: TcpListener, password: &str, file: PathBuf) -> anyhow::Result<()> {
    let mut sink = Sink {
        file,
        firing: BTreeMap::new(),
    };
    sink.apply(&Value::Null)?;
    for conn in listener.incoming().flatten() {
        if let Err(e) = answer(conn, password, &mut sink) {
            tracing::warn!(error = %e, "an alert request failed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(addr: &str, auth: Option<&str>, body: &str) -> u16 {
        let mut s = TcpStream::connect(addr).unwrap();
        let auth = auth.map_or(String::new(), |p| {
            let t = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{p}", crate::prometheus::USER));
            format!("Authorization: Basic {t}\r\n")
        });
        write!(
            s,
            "POST /alerts HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn payload(status: &str) -> String {
        serde_json::json!({"version": "4", "status": status, "alerts": [{
            "status": status,
            "labels": {"alertname": "TierMemberDown", "name": "web-2", "job": "web"},
            "annotations": {"summary": "web-2 (web) is down"},
            "startsAt": "2026-12-01T01:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "fingerprint": "abc"}]})
        .to_string()
    }

    #[test]
    fn firing_alerts_are_kept_until_resolved_and_only_with_the_password() {
        let run = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let file = run.path().join(ALERTS_FILE);
        std::thread::spawn(move || serve(listener, "pw", file));

        assert_eq!(post(&addr, None, &payload("firing")), 401);
        assert_eq!(post(&addr, Some("wrong"), &payload("firing")), 401);
        assert_eq!(post(&addr, Some("pw"), "not json"), 400);
        assert!(firing(run.path()).is_empty());

        assert_eq!(post(&addr, Some("pw"), &payload("firing")), 200);
        let now = firing(run.path());
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].name, "TierMemberDown");
        assert_eq!(now[0].labels["name"], "web-2");
        assert_eq!(now[0].since, "2026-12-01T01:00:00Z");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(run.path().join(ALERTS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        assert_eq!(post(&addr, Some("pw"), &payload("resolved")), 200);
        assert!(firing(run.path()).is_empty());
    }
}
