//! `bench` end to end against a real server: seeds, loads, reports, in both load models.

use crescendo_bench::load::Model;
use crescendo_bench::scenario::Scenario;
use crescendo_bench::{BenchOptions, SeedMode, SeedPlan, bench};
use crescendo_testkit::TestApp;
use std::time::Duration;

fn options(app: &TestApp, out: &std::path::Path, scenario: Scenario, model: Model) -> BenchOptions {
    BenchOptions {
        target: format!("http://{}/api", app.addr),
        scenario,
        model,
        duration: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
        seed: SeedPlan {
            users: 6,
            follows_per_user: 3,
            articles: 24,
            favorites_per_user: 2,
            comments: 10,
            concurrency: 4,
            ..SeedPlan::default()
        },
        seed_mode: SeedMode::Seed,
        metrics: vec![format!("http://{}/metrics", app.ops_addr)],
        pid: Some(std::process::id()),
        run_dir: None,
        out: out.to_path_buf(),
        progress: false,
        ceiling: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_social_run_reports_what_it_measured() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let out = tempfile::tempdir().unwrap();
    let o = options(
        &app,
        out.path(),
        Scenario::Social,
        Model::Closed { connections: 4 },
    );
    let r = bench(&o).await.unwrap().expect("a report");
    assert!(r.requests > 50, "{} requests", r.requests);
    assert_eq!(r.errors, 0, "{}", r.table());
    assert!(r.per_kind.contains_key("feed"));
    assert!(r.latency.p99_ms > 0.0);
    // the server saw the run: its counters moved, and this process's own figures were read
    let s = &r.server;
    assert!(s.requests.unwrap() >= r.requests as f64, "{s:?}");
    assert!(
        s.db_queries_per_request.is_some() && s.cache_hit_ratio.unwrap() > 0.0,
        "{s:?}"
    );
    assert!(s.peak_rss_mib.unwrap() > 0.0);
    // the target given by PID is in the CPU view, as the role `server`
    let cpu = r.cpu.as_ref().expect("a CPU view for the PID");
    assert!(cpu.role("server").is_some(), "{}", r.table());
    for f in ["report.json", "report.html", "tokens.txt", "slugs.txt"] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    // seeding again is idempotent: same users and articles
    let again = bench(&BenchOptions {
        seed_mode: SeedMode::SeedOnly,
        ..o.clone()
    })
    .await
    .unwrap();
    assert!(again.is_none());
    let slugs = std::fs::read_to_string(out.path().join("slugs.txt")).unwrap();
    let written = r
        .per_kind
        .get("write.article")
        .map(|k| k.requests)
        .unwrap_or(0) as usize;
    assert_eq!(
        slugs.lines().count(),
        24 + written,
        "no articles were added by seeding twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_sends_at_the_asked_rate() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let out = tempfile::tempdir().unwrap();
    let mut o = options(
        &app,
        out.path(),
        Scenario::Article,
        Model::Open {
            rate: 200.0,
            max_in_flight: 64,
        },
    );
    o.seed_mode = SeedMode::Seed;
    let r = bench(&o).await.unwrap().expect("a report");
    assert_eq!(r.requests, 200, "1 s at 200 requests/s");
    assert_eq!(r.errors, 0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_run_however_short_times_an_upload_to_ready() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let out = tempfile::tempdir().unwrap();
    let o = BenchOptions {
        // shorter than making the image takes: the run still sends a probe and times it
        duration: Duration::from_millis(1),
        ..options(
            &app,
            out.path(),
            Scenario::Upload,
            Model::Closed { connections: 2 },
        )
    };
    let r = bench(&o).await.unwrap().expect("a report");
    let ready = r.upload_ready.expect("the upload run times readiness");
    assert!(ready.count >= 1, "{}", r.table());
    assert!(ready.p50_ms > 0.0, "{}", r.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceiling_run_serves_the_recorded_answers_and_states_the_fraction_reached() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let out = tempfile::tempdir().unwrap();
    let o = BenchOptions {
        ceiling: true,
        ..options(
            &app,
            out.path(),
            Scenario::Article,
            Model::Closed { connections: 4 },
        )
    };
    let r = bench(&o).await.unwrap().expect("a report");
    let c = r.ceiling.as_ref().expect("a ceiling in the report");
    assert!(c.recorded > 0 && c.recorded <= 24, "{}", r.table());
    assert_eq!(c.not_recorded, 0);
    assert!(c.requests > 0 && c.throughput > 0.0, "{}", r.table());
    assert!(c.p99_ms > 0.0 && c.fraction > 0.0, "{}", r.table());
    // every article read in the ceiling run was read from the target first, or nearly
    assert!(c.missing_share < 0.01, "{}", r.table());
    assert!(
        r.table().contains("fraction of the ceiling"),
        "{}",
        r.table()
    );
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    assert!(j["ceiling"]["fraction"].as_f64().unwrap() > 0.0, "{j}");
    let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
    assert!(html.contains("of the ceiling"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceiling_is_refused_for_the_open_loop() {
    let app = TestApp::spawn_with(|s| s.auth.argon2_memory_kib = 1024).await;
    let out = tempfile::tempdir().unwrap();
    let o = BenchOptions {
        ceiling: true,
        ..options(
            &app,
            out.path(),
            Scenario::List,
            Model::Open {
                rate: 10.0,
                max_in_flight: 4,
            },
        )
    };
    let e = bench(&o).await.unwrap_err();
    assert!(e.to_string().contains("--connections"), "{e:#}");
}
