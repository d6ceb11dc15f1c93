//! Tests of [`super`]: sources from a state, rotated files, merging and following.

use super::*;
use std::io::Write;

/// A JSON line of a `crescendo` process written at second `s` past 03:00:00.
fn own(s: u32, message: &str) -> String {
    format!(
        r#"{{"timestamp":"2026-12-01T03:00:{s:02}.000000Z","level":"INFO","target":"t","message":"{message}","request_id":"r{s}"}}"#
    )
}

fn write(path: &Path, lines: &[String]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// A run directory with web-1 (a rotated file and the current one), web-2, web-3 (left
/// the state), a PostgreSQL primary (its own timestamps) and HAProxy (none).
fn run_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pg = d.join("pg").join("postgres.log");
    let state = serde_json::json!({
        "name": "t", "rung": 3, "url": "http://127.0.0.1:1",
        "processes": [
            {"role": "pg-primary", "name": "pg-primary", "pid": 1, "addr": "", "log": pg},
            {"role": "web", "name": "web-1", "pid": 2, "addr": "", "log": d.join("web-1.log")},
            {"role": "web", "name": "web-2", "pid": 3, "addr": "", "log": d.join("web-2.log")},
            {"role": "lb", "name": "haproxy", "pid": 4, "addr": "", "log": d.join("lb").join("haproxy.log")},
        ]
    });
    std::fs::write(d.join("state.json"), state.to_string()).unwrap();
    write(
        &pg,
        &[
            "2026-12-01 03:00:00.500 UTC [7] LOG:  database system is ready".into(),
            "2026-12-01 03:00:05.500 UTC [7] LOG:  checkpoint starting".into(),
        ],
    );
    write(&d.join("web-1.log.2"), &[own(1, "oldest")]);
    write(&d.join("web-1.log.1"), &[own(3, "older")]);
    write(&d.join("web-1.log"), &[own(6, "newest")]);
    write(
        &d.join("web-1.stdout.log"),
        &["listening on http://127.0.1.1:1".into()],
    );
    write(&d.join("web-2.log"), &[own(2, "two"), own(4, "four")]);
    write(&d.join("web-3.log"), &[own(5, "left")]);
    write(
        &d.join("lb").join("haproxy.log"),
        &["[NOTICE] (4) : haproxy started".into()],
    );
    dir
}

fn shown(dir: &Path, filter: &LogFilter) -> Vec<Entry> {
    let mut out = Vec::new();
    show(dir, filter, false, |e| {
        out.push(e.clone());
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn every_log_merges_in_time_order_with_rotated_files_first_and_untimed_lines_by_place() {
    let dir = run_dir();
    let all = shown(dir.path(), &LogFilter::default());
    let seen: Vec<(&str, &str)> = all
        .iter()
        .map(|e| (e.name.as_str(), e.text.as_str()))
        .collect();
    let pg = "pg-primary";
    assert_eq!(
        seen,
        [
            ("haproxy", "[NOTICE] (4) : haproxy started"),
            ("web-1", "listening on http://127.0.1.1:1"),
            (
                pg,
                "2026-12-01 03:00:00.500 UTC [7] LOG:  database system is ready"
            ),
            ("web-1", own(1, "oldest").as_str()),
            ("web-2", own(2, "two").as_str()),
            ("web-1", own(3, "older").as_str()),
            ("web-2", own(4, "four").as_str()),
            ("web-3", own(5, "left").as_str()),
            (
                pg,
                "2026-12-01 03:00:05.500 UTC [7] LOG:  checkpoint starting"
            ),
            ("web-1", own(6, "newest").as_str()),
        ]
    );
    assert_eq!(
        all[7].role,
        Role::Web,
        "a node that left is still a web node"
    );
}

#[test]
fn roles_names_and_a_start_time_choose_the_lines() {
    let dir = run_dir();
    let web = LogFilter {
        roles: vec![Role::Web],
        ..Default::default()
    };
    let names: Vec<String> = shown(dir.path(), &web)
        .iter()
        .filter(|e| e.timed)
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(
        names,
        ["web-1", "web-2", "web-1", "web-2", "web-3", "web-1"]
    );

    let since = LogFilter {
        names: vec!["web-2".into(), "pg-primary".into()],
        since: logs_time::rfc3339("2026-12-01T03:00:02Z"),
        ..Default::default()
    };
    let lines: Vec<String> = shown(dir.path(), &since).iter().map(json).collect();
    let v: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v.len(), 3, "{lines:?}");
    assert_eq!(v[0]["process"], "web-2");
    assert_eq!(v[0]["role"], "web");
    assert_eq!(v[0]["request_id"], "r2");
    assert_eq!(v[2]["process"], "pg-primary");
    assert_eq!(v[2]["role"], "pg-primary");
    assert_eq!(v[2]["timestamp"], "2026-12-01T03:00:05.500000Z");

    let none = LogFilter {
        roles: vec![Role::Redis],
        ..Default::default()
    };
    assert!(show(dir.path(), &none, false, |_| Ok(())).is_err());
}

#[test]
fn a_tail_follows_its_file_through_a_rotation_and_keeps_unfinished_lines_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web-1.log");
    write(&path, &[own(1, "first")]);
    let source = Source {
        name: "web-1".into(),
        role: Role::Web,
        path: path.clone(),
    };
    let (mut tail, lines) = Tail::open(source);
    assert_eq!(lines.len(), 1);
    assert!(tail.read_new().is_empty());

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    write!(f, "{}\n{}", own(2, "second"), &own(3, "third")[..20]).unwrap();
    let texts = |e: Vec<Entry>| e.into_iter().map(|e| e.text).collect::<Vec<_>>();
    assert_eq!(texts(tail.read_new()), [own(2, "second")]);
    // the writer finishes its line, rotates, and writes on in a new file
    writeln!(f, "{}", &own(3, "third")[20..]).unwrap();
    std::fs::rename(&path, rotated_files_of(&path)).unwrap();
    write(&path, &[own(4, "fourth")]);
    assert_eq!(texts(tail.read_new()), [own(3, "third"), own(4, "fourth")]);
    let line = human(&tail_entry(own(4, "fourth")));
    assert_eq!(
        line,
        "         web-1 | 2026-12-01T03:00:04.000000Z  INFO t: fourth request_id=r4"
    );
}

/// `PATH.1`.
fn rotated_files_of(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.1", path.display()))
}

fn tail_entry(text: String) -> Entry {
    Entry {
        name: "web-1".into(),
        role: Role::Web,
        at: logs_time::parse(&text),
        timed: true,
        text,
    }
}
