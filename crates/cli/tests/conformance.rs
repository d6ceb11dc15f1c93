//! The RealWorld Postman collection (`shared/realworld/`), run by newman against the real
//! `crescendo serve` binary, as a user would start it: every assertion must pass.

use crescendo_testkit::realworld::run_collection;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `crescendo serve` on port 0 and returns it with its base URL. With
/// `TEST_STORE=postgres` it runs on a private PostgreSQL server, configured through the
/// environment as an operator would.
fn start(data_dir: &std::path::Path) -> (Server, String, Option<crescendo_topology::pg::Postgres>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crescendo"));
    let pg = match std::env::var("TEST_STORE").as_deref() {
        Ok("postgres") => {
            let pg = crescendo_topology::pg::Postgres::start(&[]).expect("postgres starts");
            cmd.env("CRESCENDO_STORE__BACKEND", "postgres")
                .env("CRESCENDO_STORE__POSTGRES_URL", pg.url("postgres"));
            Some(pg)
        }
        _ => None,
    };
    let (server, url, _) = launch(cmd, "serve", data_dir);
    (server, url, pg)
}

/// Starts `crescendo ROLE` on port 0 and waits for its address: (server, public URL, URL of
/// its operators' listener, printed first).
fn launch(mut cmd: Command, role: &str, data_dir: &std::path::Path) -> (Server, String, String) {
    let mut child = cmd
        .args([role, "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("crescendo starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = BufReader::new(stdout).lines();
    let mut ops = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "no 'listening on' line within 60 s"
        );
        let line = lines
            .next()
            .expect("crescendo printed its address before exiting")
            .expect("stdout readable");
        if let Some(url) = line.strip_prefix("ops listening on ") {
            ops = url.trim().to_string();
        } else if let Some(url) = line.strip_prefix("listening on ") {
            // keep draining stdout so the server never blocks on a full pipe
            std::thread::spawn(move || for _ in lines {});
            return (server, url.trim().to_string(), ops);
        }
    }
}

#[test]
fn the_realworld_collection_passes_against_crescendo_serve() {
    let dir = tempfile::tempdir().unwrap();
    // the server stops before its database (fields drop in order)
    let (_server, url, _pg) = start(dir.path());
    run_collection(&url, "s", &[]);
}

#[test]
fn the_realworld_collection_passes_against_a_web_node_on_three_shard_clusters() {
    use crescendo_topology::pg::Postgres;
    let dir = tempfile::tempdir().unwrap();
    let catalogue = Postgres::start(&[]).expect("the catalogue starts");
    let clusters: Vec<Postgres> = (0..3)
        .map(|_| Postgres::start(&[]).expect("a cluster starts"))
        .collect();
    let shards: Vec<String> = clusters
        .iter()
        .enumerate()
        .map(|(i, c)| format!("\"c{}={}\"", i + 1, c.app_url("postgres")))
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crescendo"));
    cmd.env("CRESCENDO_STORE__BACKEND", "postgres")
        .env(
            "CRESCENDO_STORE__POSTGRES_URL",
            catalogue.app_url("postgres"),
        )
        .env(
            "CRESCENDO_STORE__POSTGRES_SHARDS",
            format!("[{}]", shards.join(", ")),
        );
    let (_server, url, _) = launch(cmd, "web", dir.path());
    run_collection(&url, "k", &[]);
    // the collection's two users live on the clusters, their names in the catalogue
    let users: u32 = clusters
        .iter()
        .map(|c| {
            let n = c.query("SELECT COUNT(*) FROM crescendo.users");
            n.expect("the cluster answers").parse::<u32>().unwrap()
        })
        .sum();
    assert_eq!(users, 2, "the collection signs up two users");
    let names = catalogue
        .query("SELECT COUNT(*) FROM crescendo.usernames WHERE user_id IS NOT NULL")
        .unwrap();
    assert_eq!(names, "2");
    let catalogue_users = catalogue.query("SELECT to_regclass('crescendo.users') IS NULL");
    assert_eq!(
        catalogue_users.unwrap(),
        "t",
        "the catalogue holds no user rows"
    );
}

#[test]
fn the_realworld_collection_passes_against_a_web_node_on_a_primary_and_two_replicas() {
    use crescendo_topology::pg::Postgres;
    let dir = tempfile::tempdir().unwrap();
    let primary = Postgres::start(&[]).expect("primary starts");
    let replicas: Vec<Postgres> = ["r1", "r2"]
        .iter()
        .map(|n| Postgres::replica_of(&primary, n, &[]).expect("replica starts"))
        .collect();
    let replica_urls: Vec<String> = replicas
        .iter()
        .map(|r| format!("\"{}\"", r.url("postgres")))
        .collect();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crescendo"));
    cmd.env("CRESCENDO_STORE__BACKEND", "postgres")
        .env("CRESCENDO_STORE__POSTGRES_URL", primary.url("postgres"))
        .env(
            "CRESCENDO_STORE__POSTGRES_REPLICA_URLS",
            format!("[{}]", replica_urls.join(", ")),
        )
        .env("CRESCENDO_STORE__REPLICA_CHECK_INTERVAL_MS", "50");
    let (server, url, ops) = launch(cmd, "web", dir.path());
    run_collection(&url, "w", &[]);
    // the replicas served reads: their counters are in the node's /metrics
    let metrics = http_get(&format!("{ops}/metrics"));
    for r in &replicas {
        let name = format!("127.0.0.1:{}", r.port());
        let served: f64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("crescendo_db_queries_total{")
                    && l.contains("role=\"replica\"")
                    && l.contains(&name)
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(served > 0.0, "replica {name} served no reads:\n{metrics}");
    }
    drop(server);
}

#[test]
fn web_refuses_to_start_without_postgresql() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(["web", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("store.backend") && err.contains("postgres"),
        "{err}"
    );
}

/// A GET over a plain TCP connection (HTTP/1.0), returning the body.
fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

#[test]
fn serve_answers_help_and_names_its_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for flag in ["--listen", "--data-dir", "--config"] {
        assert!(text.contains(flag), "{flag} missing from help:\n{text}");
    }
}

#[test]
fn a_bad_setting_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .env("CRESCENDO_HTTP__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");
}

/// Where a tour rung's CPU went: its servers used some, and each role the rung runs is listed
/// (from rung 2 on, PostgreSQL with its backends).
fn assert_cpu_by_role(rung: &Value, tour: &Value) {
    let n = rung["rung"].as_u64().unwrap();
    assert!(rung["cpu_ms_per_request"].as_f64().unwrap() > 0.0, "{tour}");
    let roles: Vec<&str> = rung["cpu"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    let expected: &[&str] = match n {
        1 => &["server"],
        2 => &["web", "pg-primary"],
        3 => &["web", "lb", "pg-primary"],
        4 => &["web", "lb", "pg-primary", "pg-replica"],
        5 | 7 => &["web", "lb", "pg-primary", "pg-replica", "redis"],
        6 => &["edge", "web", "lb", "pg-primary", "pg-replica", "redis"],
        8 => &[
            "web",
            "lb",
            "pg-primary",
            "pg-replica",
            "redis",
            "invalidator",
            "wan",
            "dns",
        ],
        9 => &["web", "lb", "pg-primary", "redis", "worker", "nats"],
        _ => &["web", "lb", "pg-primary", "redis"],
    };
    for role in expected {
        assert!(roles.contains(role), "rung {n} lacks {role}: {tour}");
    }
}

/// Rung 8's row holds reads from each users' namespace to each region, writes from each,
/// and the social mix from both, every one of them answered; and the cross-region figures.
fn two_regions_are_measured_per_users_namespace(rung: &Value, tour: &Value) {
    let r = &rung["regions"];
    let count = |k: &str| r[k].as_array().map_or(0, Vec::len);
    assert_eq!(
        (count("reads"), count("writes"), count("social")),
        (4, 2, 2),
        "{tour}"
    );
    for k in ["reads", "writes", "social"] {
        for run in r[k].as_array().unwrap() {
            assert!(run["figures"]["requests"].as_u64().unwrap() > 0, "{tour}");
            assert_eq!(run["figures"]["errors"], 0, "{tour}");
        }
    }
    assert!(r["replica_lag"]["samples"].as_u64().unwrap() > 0, "{tour}");
    assert!(r["visible_in_b"]["samples"].as_u64().unwrap() > 0, "{tour}");
    assert_eq!(r["invalidation"].as_array().unwrap().len(), 2, "{tour}");
}

/// Runs a short `crescendo tour` into `out` and returns its `tour.json`.
fn run_the_tour(out: &std::path::Path) -> Value {
    let status = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args([
            "tour",
            "--scenario",
            "social",
            "--duration",
            "1s",
            "--connections",
            "4",
        ])
        .args([
            "--users",
            "4",
            "--follows",
            "2",
            "--articles",
            "8",
            "--favorites",
            "1",
            "--comments",
            "4",
        ])
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("crescendo runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("tour.json")).unwrap()).unwrap()
}

#[test]
fn the_tour_starts_each_rung_measures_it_and_stops_it() {
    let kept = KeptOnFailure(Some(tempfile::tempdir().unwrap()));
    let out = kept.0.as_ref().unwrap();
    let tour = run_the_tour(out.path());
    let rungs = tour["rungs"].as_array().unwrap();
    assert_eq!(
        rungs
            .iter()
            .map(|r| r["rung"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        "{tour}"
    );
    for rung in rungs {
        let n = rung["rung"].as_u64().unwrap();
        assert_eq!(rung["errors"], 0, "{tour}");
        assert!(rung["throughput"].as_f64().unwrap() > 0.0);
        assert!(
            rung["verdict"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Rung {n}: "))
        );
        // rung 8's details are its per-region figures
        let details = if n == 8 {
            "regions.json"
        } else {
            "report.html"
        };
        assert!(out.path().join(format!("rung-{n}/{details}")).is_file());
        assert_cpu_by_role(rung, &tour);
    }
    assert!(
        rungs[0]["primary_read_share"].is_null(),
        "SQLite has no primary"
    );
    assert_eq!(
        rungs[1]["primary_read_share"], 1.0,
        "without replicas the primary serves every read"
    );
    assert_eq!(
        rungs[2]["primary_read_share"], 1.0,
        "rung 3 has no replicas"
    );
    let survives: Vec<&Value> = rungs
        .iter()
        .map(|r| &r["session_survives_node_loss"])
        .collect();
    let (f, t) = (Value::Bool(false), Value::Bool(true));
    assert_eq!(
        survives,
        [
            &Value::Null,
            &Value::Null,
            &f,
            &f,
            &f,
            &t,
            &t,
            &Value::Null,
            &t,
            &t
        ],
        "sticky rungs lose a dead node's sessions, rungs 6, 7, 9 and 10 keep them: {tour}"
    );
    assert!(
        rungs[5]["edge_hit_ratio"].as_f64().is_some(),
        "rung 6's answers pass its edges: {tour}"
    );
    two_regions_are_measured_per_users_namespace(&rungs[7], &tour);
    let uploads = &rungs[8]["uploads"];
    assert_eq!(uploads["errors"], 0, "{tour}");
    assert!(
        uploads["throughput"].as_f64().unwrap() > 0.0
            && uploads["ready_p50_ms"].as_f64().unwrap() > 0.0,
        "rung 9 measures uploads: {tour}"
    );
    assert!(out.path().join("rung-9-upload/report.html").is_file());
    assert_eq!(
        rungs[3]["cache_served_ratio"], 0.0,
        "rung 4 caches nothing: {tour}"
    );
    for r in [&rungs[4], &rungs[5], &rungs[6]] {
        assert!(
            r["cache_served_ratio"].as_f64().unwrap() > 0.0,
            "rungs 5, 6 and 7 cache on Redis: {tour}"
        );
        assert!(r["db_reads_per_read_request"].as_f64().is_some(), "{tour}");
    }
    for r in [&rungs[3], &rungs[4], &rungs[5]] {
        assert!(
            r["primary_read_share"].as_f64().unwrap() < 1.0,
            "with replicas some reads leave the primary: {tour}"
        );
    }
    let html = std::fs::read_to_string(out.path().join("tour.html")).unwrap();
    assert!(html.contains("Where the CPU goes"), "{html}");
}

#[test]
fn failover_refuses_while_the_primary_answers_and_promotes_a_replica_once_it_is_gone() {
    use crescendo_topology::pg::Postgres;
    // durable servers, as `crescendo up` starts them: a failover test must not run on
    // servers that give up fsync and full-page writes
    let parent = std::env::temp_dir();
    let mut primary = Postgres::start_in(&parent, &[]).expect("primary starts");
    let replicas: Vec<Postgres> = ["r1", "r2"]
        .iter()
        .map(|n| Postgres::replica_in(&parent, &primary, n, &[]).expect("replica starts"))
        .collect();
    let urls: Vec<String> = replicas
        .iter()
        .map(|r| format!("\"{}\"", r.url("postgres")))
        .collect();
    let primary_url = primary.url("postgres");
    let failover = || {
        Command::new(env!("CARGO_BIN_EXE_crescendo"))
            .arg("failover")
            .env("CRESCENDO_STORE__BACKEND", "postgres")
            .env("CRESCENDO_STORE__POSTGRES_URL", &primary_url)
            .env(
                "CRESCENDO_STORE__POSTGRES_REPLICA_URLS",
                format!("[{}]", urls.join(", ")),
            )
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = failover();
    assert!(
        !out.status.success(),
        "a live primary is never failed over from"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still answers as the primary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        replicas
            .iter()
            .all(|r| r.query("SELECT pg_is_in_recovery()").unwrap() == "t"),
        "nothing was promoted"
    );

    primary.kill();
    let out = failover();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promoted: Vec<&Postgres> = replicas
        .iter()
        .filter(|r| r.query("SELECT pg_is_in_recovery()").unwrap() == "f")
        .collect();
    assert_eq!(promoted.len(), 1, "exactly one replica is promoted: {text}");
    assert!(
        text.contains(&format!("promoted 127.0.0.1:{}", promoted[0].port())),
        "{text}"
    );
    assert!(text.contains("re-pointed"), "{text}");
}

/// A directory removed when dropped, unless the test is failing: then it is kept and its
/// place printed (the tour's reports and each rung's server logs, to find out why).
struct KeptOnFailure(Option<tempfile::TempDir>);

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!("the tour's output is kept in {}", dir.keep().display());
        }
    }
}
