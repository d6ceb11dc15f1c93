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

/// `SHOW fsync` and `SHOW full_page_writes` on the server at `url`'s port.
fn durability(url: &str) -> (String, String) {
    let port = url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("a URL with a port");
    let show = |name: &str| {
        let out = Command::new(bin("psql").unwrap())
            .args(["-X", "-At", "-h", "127.0.0.1", "-p", port, "-U", "postgres"])
            .args(["-d", "postgres", "-c", &format!("SHOW {name}")])
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
        processes: Vec::new(),
        web_env: Vec::new(),
        lb: None,
        exe: PathBuf::new(),
        worker_env: Vec::new(),
        workers: None,
    };
    let mut up = crate::up::Up {
        o: crate::launch::UpOptions {
            exe: PathBuf::new(),
            run_dir: run_dir.path().to_path_buf(),
            public: None,
            progress: |_| {},
        },
        public: "127.0.0.1:0".parse().unwrap(),
        running: crate::launch::Running::new(state, run_dir.path().to_path_buf()),
        node: crescendo_config::Settings::default(),
    };
    let tier = crate::model::PgTier {
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
}
