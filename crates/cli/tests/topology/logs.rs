//! Rung 11's logs, checked inside a test that already brings a topology up: `crescendo logs
//! --role web --json` gives lines from every web node in time order, and `--follow` shows a
//! request's line, with the request ID the client sent, as the node writes it.

use super::*;
use std::io::BufRead;

/// How long `logs --follow` may take to show a line once written: it reads every 250 ms.
const FOLLOW_BOUND: Duration = Duration::from_secs(10);

/// Registers a user through `url` with request ID `id`; asserts it was created.
async fn register_as(url: &str, name: &str, id: &str) {
    let res = reqwest::Client::new()
        .post(format!("{url}/api/users"))
        .header("x-request-id", id)
        .json(&json!({"user": {"username": name, "email": format!("{name}@example.com"), "password": "password123"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["x-request-id"], id, "the node keeps the ID");
}

/// The web nodes `nodes` of the topology in `run_dir` (behind `url`) log as JSON with the
/// request ID: `logs --follow` shows a registration's line, and `logs --role web --json`
/// then lists every node's lines in time order, that one among them.
pub async fn web_nodes_log_the_request_id(run_dir: &Path, url: &str, nodes: &[&str]) {
    let started = Instant::now();
    let run = run_dir.to_string_lossy();
    let mut follow = Command::new(env!("CARGO_BIN_EXE_crescendo"))
        .args([
            "logs",
            "--run-dir",
            &run,
            "--role",
            "web",
            "--follow",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // the first line comes with everything already written: from then on it follows
    rx.recv_timeout(FOLLOW_BOUND)
        .expect("logs --follow prints what is there");
    let id = format!("logs-check-{}", std::process::id());
    register_as(url, &format!("logger{}", std::process::id()), &id).await;
    let written = Instant::now();
    let seen = loop {
        let left = FOLLOW_BOUND.saturating_sub(written.elapsed());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            panic!("logs --follow did not show request {id} within {FOLLOW_BOUND:?}")
        });
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["request_id"] == id.as_str() {
            break v;
        }
    };
    eprintln!(
        "logs --follow showed the request's line {:?} after it was answered",
        written.elapsed()
    );
    follow.kill().unwrap();
    follow.wait().unwrap();
    assert_eq!(seen["message"], "user registered", "{seen}");
    assert_eq!(seen["role"], "web");

    let out = crescendo(&["logs", "--run-dir", &run, "--role", "web", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["role"] == "web"), "only web nodes");
    for node in nodes {
        assert!(
            lines
                .iter()
                .any(|l| l["process"] == *node && l["level"].is_string()),
            "no JSON line from {node}"
        );
    }
    let stamps: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["timestamp"].as_str())
        .collect();
    assert!(stamps.len() > nodes.len(), "{} timed lines", stamps.len());
    assert!(stamps.is_sorted(), "lines are in time order: {stamps:?}");
    let mine: Vec<&Value> = lines
        .iter()
        .filter(|l| l["request_id"] == id.as_str())
        .collect();
    assert!(
        mine.iter()
            .any(|l| l["message"] == "user registered" && l["process"] == seen["process"]),
        "request {id}'s line: {mine:?}"
    );
    eprintln!(
        "logs --role web: {} lines from {} nodes in time order; the logs check took {:?}",
        lines.len(),
        nodes.len(),
        started.elapsed()
    );
}
