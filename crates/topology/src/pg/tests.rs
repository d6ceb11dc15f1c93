//! Private servers: disposable ones for tests, durable ones as `crescendo up` starts them.

use super::*;

#[test]
fn a_private_server_starts_answers_and_stops() {
    let pg = Postgres::start(&[]).expect("postgres starts");
    let pid = pg.pid();
    std::net::TcpStream::connect(("127.0.0.1", pg.port())).expect("it listens");
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    let dir = pg.dir().to_path_buf();
    drop(pg);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "stopped and reaped"
    );
    assert!(!dir.exists(), "its directory is removed");
}

#[test]
fn a_replica_streams_replays_and_survives_a_restart() {
    let primary = Postgres::start(&[]).expect("primary starts");
    let mut replica = Postgres::replica_of(&primary, "r1", &[]).expect("replica starts");
    assert_eq!(replica.query("SELECT pg_is_in_recovery()").unwrap(), "t");
    primary
        .query("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.query("SELECT x FROM t").ok().as_deref() != Some("42") {
        assert!(Instant::now() < deadline, "the row reaches the replica");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = replica.pid();
    replica.kill();
    assert!(
        replica.query("SELECT 1").is_err(),
        "a killed server does not answer"
    );
    replica.restart().expect("it comes back");
    assert_ne!(replica.pid(), pid);
    assert_eq!(replica.query("SELECT x FROM t").unwrap(), "42");
}

/// Whether `pid` is gone or a zombie (dead, not yet reaped by its new parent).
fn dead(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

#[test]
fn a_killed_server_leaves_no_backend_running() {
    let mut pg = Postgres::start(&[]).expect("postgres starts");
    let children = children_of(pg.pid() as i32);
    assert!(children.len() >= 3, "checkpointer, writers…: {children:?}");
    // a child that is not running when the postmaster dies (here: stopped) never notices
    // the death by itself; kill must end it too
    let stopped = nix::unistd::Pid::from_raw(children[0]);
    nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGSTOP).unwrap();
    pg.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut alive: Vec<i32> = children.clone();
    while !alive.is_empty() && Instant::now() < deadline {
        alive.retain(|&c| !dead(c));
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = nix::sys::signal::kill(stopped, nix::sys::signal::Signal::SIGCONT);
    assert!(alive.is_empty(), "still running after kill: {alive:?}");
}

/// `SHOW fsync` and `SHOW full_page_writes` on the server at `url` (with its credentials).
fn durability(url: &str) -> (String, String) {
    let show = |name: &str| {
        let out = Command::new(bin("psql").unwrap())
            .args(["-X", "-At", "-d", url, "-c", &format!("SHOW {name}")])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    (show("fsync"), show("full_page_writes"))
}

#[test]
fn every_server_up_starts_keeps_fsync_and_full_page_writes_on() {
    let run_dir = tempfile::tempdir().unwrap();
    let state = crate::state::State {
        name: "durability".into(),
        rung: 0,
        url: String::new(),
        https_url: None,
        processes: Vec::new(),
        web_env: Vec::new(),
        lb: None,
        exe: PathBuf::new(),
        worker_env: Vec::new(),
        workers: None,
        web_scaling: None,
        regions: Vec::new(),
    };
    let mut up = crate::up::Up {
        o: crate::launch::UpOptions {
            exe: PathBuf::new(),
            run_dir: run_dir.path().to_path_buf(),
            public: None,
            progress: |_| {},
            region: None,
        },
        public: "127.0.0.1:0".parse().unwrap(),
        running: crate::launch::Running::new(state, run_dir.path().to_path_buf()),
        node: crescendo_config::Settings::default(),
    };
    let tier = crate::model::PgTier {
        clusters: 0,
        spare: 0,
        replicas: 2,
        synchronous: true,
    };

    start_tier(&mut up, &tier).expect("the tier starts");

    let store = &up.node.store;
    assert_eq!(store.postgres_replica_urls.len(), 2);
    for url in std::iter::once(&store.postgres_url).chain(&store.postgres_replica_urls) {
        assert_eq!(
            durability(url),
            ("on".to_string(), "on".to_string()),
            "fsync and full_page_writes on {url}"
        );
    }
}

#[test]
fn the_test_kits_disposable_servers_trade_durability_for_speed() {
    let primary = Postgres::start(&[]).expect("primary starts");
    let replica = Postgres::replica_of(&primary, "r1", &[]).expect("replica starts");
    for pg in [&primary, &replica] {
        assert_eq!(
            durability(&pg.url("postgres")),
            ("off".to_string(), "off".to_string())
        );
    }
}

#[test]
fn no_setting_turns_durability_off_on_a_durable_server() {
    let parent = tempfile::tempdir().unwrap();
    let pg = Postgres::start_in(
        parent.path(),
        &[("fsync", "off"), ("full_page_writes", "off")],
    )
    .expect("primary starts");
    assert_eq!(
        durability(&pg.url("postgres")),
        ("on".to_string(), "on".to_string())
    );
    // and PostgreSQL's own SCRAM iteration count
    let verifier = "SELECT rolpassword FROM pg_authid WHERE rolname = 'crescendo'";
    assert!(
        pg.query(verifier)
            .unwrap()
            .starts_with("SCRAM-SHA-256$4096:")
    );
}

/// `SELECT 1` through `psql` at `url`, with no password file: its error when refused.
fn connect(url: &str) -> Result<String, String> {
    let out = Command::new(bin("psql").unwrap())
        .args(["-X", "-At", "-w", "-d", url, "-c", "SELECT current_user"])
        .env("PGPASSFILE", "/nonexistent")
        .env_remove("PGPASSWORD")
        .output()
        .expect("psql runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

#[test]
fn a_server_and_its_replica_take_only_their_roles_with_their_passwords() {
    let primary = Postgres::start(&[]).expect("primary starts");
    let replica = Postgres::replica_of(&primary, "r1", &[]).expect("replica streams");
    for pg in [&primary, &replica] {
        assert_eq!(connect(&pg.url("postgres")).unwrap(), "postgres");
        assert_eq!(connect(&pg.app_url("postgres")).unwrap(), auth::APP_ROLE);
        let port = pg.port();
        for url in [
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            format!("postgres://postgres:wrong@127.0.0.1:{port}/postgres"),
            format!("postgres://{}@127.0.0.1:{port}/postgres", auth::APP_ROLE),
        ] {
            let e = connect(&url).expect_err(&url);
            assert!(e.contains("password"), "{url}: {e}");
        }
    }
    let hba = std::fs::read_to_string(primary.dir().join("data/pg_hba.conf")).unwrap();
    let rules: Vec<&str> = hba
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    assert!(!rules.is_empty());
    assert!(
        rules
            .iter()
            .all(|l| l.trim_end().ends_with("scram-sha-256")),
        "{rules:?}"
    );
    // a disposable server keeps one SCRAM iteration (see auth.rs)
    let verifier = "SELECT rolpassword FROM pg_authid WHERE rolname = 'crescendo'";
    assert!(
        primary
            .query(verifier)
            .unwrap()
            .starts_with("SCRAM-SHA-256$1:")
    );
    // the application role owns its schema and nothing more
    let app = primary.app_url("postgres");
    assert_eq!(
        primary
            .query(&format!(
                "SELECT rolsuper FROM pg_roles WHERE rolname = '{}'",
                auth::APP_ROLE
            ))
            .unwrap(),
        "f"
    );
    let out = Command::new(bin("psql").unwrap())
        .args(["-X", "-q", "-At", "-d", &app, "-c"])
        .arg("CREATE TABLE t (x int); SELECT schemaname FROM pg_tables WHERE tablename = 't'")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), auth::APP_ROLE);
}
