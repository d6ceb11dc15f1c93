//! NATS's metrics for Prometheus (`crescendo nats-exporter`): NATS 2.9 reports itself only as
//! JSON on its monitor port (`/varz`, `/jsz`) and Debian has no exporter for it, so this
//! small server answers `GET /metrics` with those figures as Prometheus text, read afresh on
//! each scrape, behind basic auth with the run's exporter password. It runs as a process of
//! role `exporter` named `nats-exporter-nats`.

use serde_json::Value;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Each series: its name, type, help, and where in `/varz` (`v`) or `/jsz` (`j`) it is.
const SERIES: [(&str, &str, &str, char, &str); 14] = [
    (
        "nats_connections",
        "gauge",
        "Client connections open.",
        'v',
        "/connections",
    ),
    (
        "nats_connections_total",
        "counter",
        "Client connections accepted.",
        'v',
        "/total_connections",
    ),
    (
        "nats_subscriptions",
        "gauge",
        "Subscriptions.",
        'v',
        "/subscriptions",
    ),
    (
        "nats_slow_consumers_total",
        "counter",
        "Clients dropped as slow consumers.",
        'v',
        "/slow_consumers",
    ),
    (
        "nats_in_messages_total",
        "counter",
        "Messages received from clients.",
        'v',
        "/in_msgs",
    ),
    (
        "nats_out_messages_total",
        "counter",
        "Messages sent to clients.",
        'v',
        "/out_msgs",
    ),
    (
        "nats_in_bytes_total",
        "counter",
        "Bytes received from clients.",
        'v',
        "/in_bytes",
    ),
    (
        "nats_out_bytes_total",
        "counter",
        "Bytes sent to clients.",
        'v',
        "/out_bytes",
    ),
    (
        "nats_memory_bytes",
        "gauge",
        "Resident memory of the server.",
        'v',
        "/mem",
    ),
    (
        "nats_jetstream_streams",
        "gauge",
        "JetStream streams.",
        'j',
        "/streams",
    ),
    (
        "nats_jetstream_consumers",
        "gauge",
        "JetStream consumers.",
        'j',
        "/consumers",
    ),
    (
        "nats_jetstream_messages",
        "gauge",
        "Messages stored in JetStream.",
        'j',
        "/messages",
    ),
    (
        "nats_jetstream_bytes",
        "gauge",
        "Bytes stored in JetStream.",
        'j',
        "/bytes",
    ),
    (
        "nats_jetstream_api_errors_total",
        "counter",
        "JetStream API requests that failed.",
        'j',
        "/api/errors",
    ),
];

/// The Prometheus text for NATS's `/varz` and `/jsz` answers (`None`: it did not answer,
/// and `nats_up` is 0).
pub fn translate(varz: Option<&Value>, jsz: Option<&Value>) -> String {
    let up = u8::from(varz.is_some() && jsz.is_some());
    let mut s = format!(
        "# HELP nats_up Whether NATS's monitor answered.\n# TYPE nats_up gauge\nnats_up {up}\n"
    );
    for (name, kind, help, source, pointer) in SERIES {
        let doc = if source == 'v' { varz } else { jsz };
        let Some(value) = doc.and_then(|d| d.pointer(pointer)).and_then(Value::as_f64) else {
            continue;
        };
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    }
    s
}

/// GETs `path` from the monitor at `monitor`, as JSON.
fn fetch(monitor: SocketAddr, path: &str) -> Option<Value> {
    let (code, body) = crate::status::http_get(&monitor.to_string(), path)?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// Answers one connection: `GET /metrics` with [`crate::prometheus::USER`] and `password`
/// gets the text, without them 401, any other path 404.
fn answer(conn: TcpStream, monitor: SocketAddr, password: &str) -> std::io::Result<()> {
    use base64::Engine;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let head = crate::http_head::RequestHead::read(&mut reader)?;
    let want = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{password}", crate::prometheus::USER));
    let authorized = head.credentials("Basic") == Some(want.as_str());
    let path = head.path;
    let (status, extra, body) = match (path.as_str(), authorized) {
        ("/metrics", true) => {
            let text = translate(
                fetch(monitor, "/varz").as_ref(),
                fetch(monitor, "/jsz").as_ref(),
            );
            (
                "200 OK",
                "Content-Type: text/plain; version=0.0.4\r\n",
                text,
            )
        }
        ("/metrics", false) => (
            "401 Unauthorized",
            "WWW-Authenticate: Basic realm=\"metrics\"\r\n",
            "unauthorized\n".to_string(),
        ),
        _ => ("404 Not Found", "", "not found\n".to_string()),
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Serves NATS's metrics on `listener` for the monitor at `monitor`, one connection at a
/// time (Prometheus scrapes it every few seconds), until the process is stopped.
pub fn serve(listener: TcpListener, monitor: SocketAddr, password: &str) {
    for conn in listener.incoming().flatten() {
        if let Err(e) = answer(conn, monitor, password) {
            tracing::debug!(error = %e, "a metrics request failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_monitors_json_becomes_prometheus_text() {
        let varz = json!({"connections": 3, "total_connections": 9, "in_msgs": 120, "mem": 1024});
        let jsz = json!({"streams": 1, "consumers": 2, "messages": 7, "api": {"errors": 1}});
        let text = translate(Some(&varz), Some(&jsz));
        assert!(text.contains("nats_up 1\n"));
        assert!(text.contains("# TYPE nats_connections gauge\nnats_connections 3\n"));
        assert!(text.contains("nats_connections_total 9\n"));
        assert!(text.contains("nats_in_messages_total 120\n"));
        assert!(text.contains("nats_jetstream_messages 7\n"));
        assert!(text.contains("nats_jetstream_api_errors_total 1\n"));
        assert!(
            !text.contains("nats_out_bytes_total"),
            "absent figures are left out"
        );
        let down = translate(None, None);
        assert_eq!(down.lines().last(), Some("nats_up 0"));
    }

    #[test]
    fn metrics_are_served_only_with_the_password() {
        // a stand-in monitor that is not there: nats_up 0, still served
        let monitor: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || serve(listener, monitor, "pw"));
        let get = |auth| crate::status::http_get_as(&addr, "/metrics", auth).unwrap();
        let (code, body) = get(Some((crate::prometheus::USER, "pw")));
        assert_eq!(code, 200);
        assert!(body.contains("nats_up 0"), "{body}");
        assert_eq!(get(None).0, 401);
        assert_eq!(get(Some((crate::prometheus::USER, "wrong"))).0, 401);
    }
}
