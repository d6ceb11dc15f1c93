//! The RealWorld Postman collection (`shared/realworld/`), run by newman against the real
//! `crescendo serve` binary, as a user would start it: every assertion must pass.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
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

fn collection() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = manifest.join("../../../shared/realworld/Conduit.postman_collection.json");
    assert!(path.is_file(), "the conformance collection is missing at {}", path.display());
    path
}

/// Starts `crescendo serve` on port 0 and returns it with its base URL. With
/// `TEST_STORE=postgres` it runs on a private PostgreSQL server, configured through the
/// environment as an operator would.
fn start(data_dir: &std::path::Path) -> (Server, String, Option<crescendo_topology::pg::Postgres>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crescendo"));
    let pg = match std::env::var("TEST_STORE").as_deref() {
        Ok("postgres") => {
            let pg = crescendo_topology::pg::Postgres::start(&[]).expect("postgres starts");
            cmd.env("CRESCENDO_STORE__BACKEND", "postgres").env("CRESCENDO_STORE__POSTGRES_URL", pg.url("postgres"));
            Some(pg)
        }
        _ => None,
    };
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
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
    loop {
        assert!(Instant::now() < deadline, "no 'listening on' line within 60 s");
        let line = lines.next().expect("crescendo printed its address before exiting").expect("stdout readable");
        if let Some(url) = line.strip_prefix("listening on ") {
            // keep draining stdout so the server never blocks on a full pipe
            std::thread::spawn(move || for _ in lines {});
            return (server, url.trim().to_string(), pg);
        }
    }
}

#[test]
fn the_realworld_collection_passes_against_crescendo_serve() {
    let dir = tempfile::tempdir().unwrap();
    // the server stops before its database (fields drop in order)
    let (_server, url, _pg) = start(dir.path());
    let suffix = format!("{}", std::process::id());
    let out = Command::new("newman")
        .arg("run")
        .arg(collection())
        .args(["--global-var", &format!("APIURL={url}/api")])
        .args(["--global-var", &format!("USERNAME=user{suffix}")])
        .args(["--global-var", &format!("EMAIL=user{suffix}@example.com")])
        .args(["--global-var", "PASSWORD=password123"])
        .args(["--reporters", "cli", "--color", "off", "--disable-unicode"])
        .output()
        .expect("newman is installed (npm install -g newman; the README's test command does this)");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "newman reported failures:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("assertions"), "newman printed no summary");
}

#[test]
fn serve_answers_help_and_names_its_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_crescendo")).args(["serve", "--help"]).output().unwrap();
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

#[test]
fn the_tour_starts_rung_one_measures_it_and_stops_it() {
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args(["tour", "--scenario", "social", "--duration", "1s", "--connections", "4"])
        .args(["--users", "4", "--follows", "2", "--articles", "8", "--favorites", "1", "--comments", "4"])
        .arg("--out")
        .arg(out.path())
        .env("RUST_LOG", "warn")
        .output()
        .expect("crescendo runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let tour: serde_json::Value = serde_json::from_slice(&std::fs::read(out.path().join("tour.json")).unwrap()).unwrap();
    let rung = &tour["rungs"][0];
    assert_eq!(rung["rung"], 1);
    assert_eq!(rung["errors"], 0, "{tour}");
    assert!(rung["throughput"].as_f64().unwrap() > 0.0);
    assert!(rung["verdict"].as_str().unwrap().starts_with("Rung 1: "));
    assert!(out.path().join("tour.html").is_file());
    assert!(out.path().join("rung-1/report.html").is_file());
}
