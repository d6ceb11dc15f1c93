//! The generated configuration, and a real HAProxy balancing over two tiny backends.

use super::*;
use std::time::Instant;

#[test]
fn the_configuration_checks_health_balances_and_pins_only_when_sticky() {
    let cfg = LbConfig {
        public: "127.0.0.1:8000".parse().unwrap(),
        backends: vec![Backend {
            name: "web-1".into(),
            addr: "127.0.0.2:9001".parse().unwrap(),
        }],
        sticky: false,
        server_maxconn: 0,
        metrics: None,
    };
    let t = config_text(&cfg, Path::new("/run/x/admin.sock"));
    assert!(
        t.contains("bind 127.0.0.1:8000")
            && t.contains("balance leastconn")
            && t.contains("option httpchk GET /ready")
    );
    // the nodes learn each client's address from it (they trust the balancer's)
    assert!(t.contains("    option forwardfor\n"));
    assert!(t.contains("server web-1 127.0.0.2:9001 check\n") && !t.contains("cookie"));
    // a node gets at most its `http.max_in_flight` requests; the rest queue, for a while
    let limited = config_text(
        &LbConfig {
            server_maxconn: 16,
            metrics: None,
            ..cfg.clone()
        },
        Path::new("/s"),
    );
    assert!(
        limited.contains("server web-1 127.0.0.2:9001 check maxconn 16\n"),
        "{limited}"
    );
    assert_eq!(timeout_secs(&limited, "queue"), QUEUE_WAIT.as_secs());
    assert!(limited.contains("http-error status 503 content-type application/json string '{"));
    assert!(limited.contains("hdr retry-after 1\n"), "{limited}");
    // a node's 503 (shed or timed out) is answered, never retried onto the overload
    let retry = limited
        .lines()
        .find(|l| l.trim().starts_with("retry-on"))
        .unwrap();
    assert!(
        !retry.contains("503") && !retry.contains("all-retryable-errors"),
        "{retry}"
    );
    let sticky = config_text(
        &LbConfig {
            sticky: true,
            ..cfg
        },
        Path::new("/s"),
    );
    assert!(
        sticky.contains("cookie CRESCENDO_NODE insert")
            && sticky.contains("server web-1 127.0.0.2:9001 check cookie web-1")
    );
}

/// The value of the `timeout <name>` line of a configuration, in seconds.
fn timeout_secs(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("timeout {name} ")))
        .unwrap_or_else(|| panic!("no timeout {name} in {text}"));
    let value = line.rsplit(' ').next().unwrap();
    value.strip_suffix('s').unwrap().parse().unwrap()
}

#[test]
fn a_node_keeps_idle_connections_longer_than_haproxy_may_leave_them_idle() {
    let cfg = LbConfig {
        public: "127.0.0.1:8000".parse().unwrap(),
        backends: Vec::new(),
        sticky: false,
        server_maxconn: 0,
        metrics: None,
    };
    let t = config_text(&cfg, Path::new("/s"));
    // a connection to a node serves one client session: no idle connection is shared
    assert!(t.contains("http-reuse never\n"), "{t}");
    let idle = timeout_secs(&t, "http-keep-alive") + timeout_secs(&t, "http-request");
    assert_eq!(Duration::from_secs(idle), SERVER_IDLE_MAX, "{t}");
    let node = crescendo_config::Settings::default().http.idle_timeout_secs;
    assert!(
        node > idle,
        "a node closes after {node}s, HAProxy after {idle}s"
    );
}

/// A real HAProxy over `backends` on a free public address, its files in `dir`.
fn balancer(dir: &Path, backends: Vec<Backend>) -> (Haproxy, SocketAddr) {
    let public: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = LbConfig {
        public,
        backends,
        sticky: false,
        server_maxconn: 16,
        metrics: None,
    };
    (Haproxy::start(dir, &cfg).expect("haproxy starts"), public)
}

/// The whole answer (status line, headers, body) to `GET path` at `public`, on a new
/// connection.
fn get_raw(public: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(public).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn haproxy_accepts_the_configuration_and_balances_over_live_nodes() {
    let dir = tempfile::tempdir().unwrap();
    // two tiny backends: a listener each that answers every request with its name
    let backends = vec![
        tiny_backend("web-1", Duration::ZERO),
        tiny_backend("web-2", Duration::ZERO),
    ];
    let (lb, public) = balancer(dir.path(), backends);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Haproxy::backend_states(dir.path())
        .iter()
        .filter(|(_, s)| s == "UP")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            Haproxy::backend_states(dir.path())
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let text = get_raw(public, "/");
        seen.insert(text.rsplit("\r\n\r\n").next().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "both nodes served: {seen:?}");
    drop(lb);
    assert!(std::net::TcpStream::connect(public).is_err(), "stopped");
}

/// A tiny backend: a listener that answers every request, `delay` after reading it, with
/// its name.
fn tiny_backend(name: &'static str, delay: Duration) -> Backend {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                    name.len()
                );
            });
        }
    });
    Backend {
        name: name.into(),
        addr,
    }
}

#[test]
fn a_node_that_answers_its_checks_slowly_stays_in_the_balancer() {
    // a node under load: every answer, its health checks' too, takes 700 ms
    let dir = tempfile::tempdir().unwrap();
    let slow = tiny_backend("web-1", Duration::from_millis(700));
    let (lb, public) = balancer(dir.path(), vec![slow]);
    let state = || Haproxy::backend_states(dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state().iter().any(|(_, s)| s == "UP") {
        assert!(Instant::now() < deadline, "never up: {:?}", state());
        std::thread::sleep(Duration::from_millis(100));
    }
    // several check intervals later it is still in, and serves
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        assert!(state().iter().all(|(_, s)| s == "UP"), "{:?}", state());
    }
    let text = get_raw(public, "/");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    drop(lb);
}

#[test]
fn haproxy_answers_its_own_503_in_the_api_format_with_retry_after() {
    // arrange: a balancer with no node to send to
    let dir = tempfile::tempdir().unwrap();
    let (lb, public) = balancer(dir.path(), Vec::new());
    // act
    let text = get_raw(public, "/api/tags");
    // assert: what a client of a node would get, and a time to come back
    let text = text.to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("retry-after: 1\r\n"), "{text}");
    assert!(
        text.ends_with(r#"{"errors":{"body":["no server could take the request, retry later"]}}"#),
        "{text}"
    );
    drop(lb);
}

#[test]
fn the_metrics_listener_is_checked_by_haproxy_and_its_password_kept_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = LbConfig {
        public: "127.0.0.1:8000".parse().unwrap(),
        backends: Vec::new(),
        sticky: false,
        server_maxconn: 0,
        metrics: Some(LbMetrics {
            addr: "127.0.9.1:9300".parse().unwrap(),
            password: "MetricsPw1".into(),
        }),
    };
    // `haproxy -c` accepts it, or this fails
    Haproxy::write_config(dir.path(), &cfg).unwrap();
    let path = dir.path().join("haproxy.cfg");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("bind 127.0.9.1:9300"), "{text}");
    assert!(text.contains("use-service prometheus-exporter"));
    assert!(text.contains("unless { http_auth(scrapers) }"));
    assert!(text.contains("user crescendo insecure-password MetricsPw1"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}
