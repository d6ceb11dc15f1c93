//! Where the CPU goes, on a real PostgreSQL: `bench` given a run directory whose state lists
//! the database server samples the postmaster, its backends and the backends that exited.

use crescendo_bench::load::Model;
use crescendo_bench::scenario::Scenario;
use crescendo_bench::{BenchOptions, SeedMode, SeedPlan, bench};
use crescendo_testkit::TestApp;
use crescendo_topology::pg::Postgres;
use crescendo_topology::{Process, Role, State};
use std::time::Duration;

/// A `state.json` in `run_dir` that lists `pg` as the topology's PostgreSQL primary, as
/// `crescendo up` records it.
fn record_state(run_dir: &std::path::Path, pg: &Postgres, app: &TestApp) {
    let state = State {
        name: "cpu-test".into(),
        rung: 2,
        url: format!("http://{}", app.addr),
        https_url: None,
        processes: vec![Process::new(
            Role::PgPrimary,
            "pg-primary",
            pg.pid(),
            format!("127.0.0.1:{}", pg.port()),
            pg.dir().join("postgres.log"),
        )],
        web_env: Vec::new(),
        lb: None,
        exe: std::path::PathBuf::new(),
        worker_env: Vec::new(),
        workers: None,
        web_scaling: None,
        regions: Vec::new(),
    };
    std::fs::write(
        run_dir.join("state.json"),
        serde_json::to_vec_pretty(&state).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_mix_on_postgresql_shows_a_non_zero_postgresql_share_of_the_cpu() {
    let pg = tokio::task::spawn_blocking(|| Postgres::start(&[]))
        .await
        .unwrap()
        .expect("a private PostgreSQL server starts (install postgresql-15)");
    let url = pg.url("postgres");
    let app = TestApp::spawn_with(move |s| {
        s.auth.argon2_memory_kib = 1024;
        s.store.backend = crescendo_config::StoreBackend::Postgres;
        s.store.postgres_url = url;
    })
    .await;
    let run = tempfile::tempdir().unwrap();
    record_state(run.path(), &pg, &app);
    let out = tempfile::tempdir().unwrap();
    let o = BenchOptions {
        target: format!("http://{}/api", app.addr),
        scenario: Scenario::Write,
        model: Model::Closed { connections: 4 },
        duration: Duration::from_secs(2),
        timeout: Duration::from_secs(10),
        seed: SeedPlan {
            users: 6,
            follows_per_user: 2,
            articles: 12,
            favorites_per_user: 1,
            comments: 4,
            concurrency: 4,
            ..SeedPlan::default()
        },
        seed_mode: SeedMode::Seed,
        metrics: vec![format!("http://{}/metrics", app.ops_addr)],
        pid: None,
        run_dir: Some(run.path().to_path_buf()),
        out: out.path().to_path_buf(),
        progress: false,
        ceiling: false,
    };

    let r = bench(&o).await.unwrap().expect("a report");

    assert_eq!(r.errors, 0, "{}", r.table());
    assert!(r.requests > 0);
    let cpu = r.cpu.as_ref().expect("a CPU view from the run directory");
    let pg_cpu = cpu.role("pg-primary").expect("the PostgreSQL role");
    assert_eq!(pg_cpu.processes, 1);
    assert!(
        pg_cpu.cpu_ms_per_request > 0.0 && pg_cpu.share > 0.0,
        "{}",
        r.table()
    );
    assert!(cpu.server_cpu_ms_per_request >= pg_cpu.cpu_ms_per_request);
    assert!(cpu.load_generator_cpu_ms_per_request > 0.0, "{}", r.table());
    assert!(r.table().contains("pg-primary"), "{}", r.table());
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["cpu"]["roles"][0]["role"], "pg-primary", "{json}");
}
