//! A web node whose primary is cut off (`store.serve_stale_reads`): reads answer 200 from
//! the replica with `X-Crescendo-Staleness`, writes answer 503 in the API's error format,
//! and both are as before once the link heals. The cut stops every process of the primary
//! (SIGSTOP), so connections to it hang as behind a blackholed WAN link.

use crescendo_testkit::{PgCluster, TestApp, blackhole};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

/// Continues the cut-off primary when the test ends, even by a failed assertion.
struct Heal<'a>(&'a crescendo_topology::pg::Postgres);

impl Drop for Heal<'_> {
    fn drop(&mut self) {
        blackhole(self.0, false);
    }
}

fn article(title: &str) -> serde_json::Value {
    json!({"article": {"title": title, "description": "d", "body": "b", "tagList": []}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_primary_gives_stale_marked_reads_and_503_writes_until_it_heals() {
    // arrange: one node over a primary and a replica, nothing cached
    let cluster = PgCluster::start(1, false, false, &[]).await;
    let app = TestApp::spawn_with(|s| {
        cluster.configure(s);
        s.store.replica_check_interval_ms = 200;
        s.store.serve_stale_reads = true;
        s.cache.backend = crescendo_config::CacheBackend::None;
        s.auth.argon2_memory_kib = 1024;
        s.auth.argon2_iterations = 1;
    })
    .await;
    let token = app.register("writer").await;
    let slug = app.create_article(&token, "Before the cut", &[]).await["slug"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/articles/{slug}");
    let fresh = app.get(&path, Some(&token)).await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(!fresh.headers.contains_key("x-crescendo-staleness"));

    // act: the primary is cut off; writes are tried until one fails
    let cut = Instant::now();
    blackhole(&cluster.primary, true);
    let heal = Heal(&cluster.primary);
    let failed = loop {
        let w = app
            .post("/api/articles", Some(&token), article("During"))
            .await;
        if w.status != StatusCode::CREATED {
            break w;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(30),
            "writes never failed"
        );
    };
    let first_503 = cut.elapsed();

    // assert: a 503 in the API's format, within the bound; reads marked stale, the writer's
    // own (fenced) read too
    eprintln!("cut → first 503 on a write: {first_503:?}");
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        failed.json
    );
    assert_eq!(
        failed.json,
        json!({"errors": {"body": ["service unavailable, try again shortly"]}})
    );
    assert!(first_503 < Duration::from_secs(6), "{first_503:?}");
    let mut seen = Vec::new();
    for token in [Some(token.as_str()), None] {
        let read = app.get(&path, token).await;
        assert_eq!(read.status, StatusCode::OK, "{:?}", read.json);
        assert_eq!(read.json["article"]["title"], "Before the cut");
        let stale = read.headers["x-crescendo-staleness"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(read.headers["cache-control"], "no-store");
        seen.push(stale.parse::<f64>().unwrap());
    }
    eprintln!("staleness seen: {seen:?}");
    assert!(
        seen.iter().all(|&s| s >= first_503.as_secs_f64() - 0.1),
        "{seen:?}"
    );
    let ready = app.get("/ready", None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "the node stays ready on its replica"
    );

    // act: the link heals
    drop(heal);
    let healed = Instant::now();
    let written = loop {
        let w = app
            .post("/api/articles", Some(&token), article("After"))
            .await;
        if w.status == StatusCode::CREATED {
            break w;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(30),
            "writes never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("heal → first successful write: {:?}", healed.elapsed());

    // assert: the writer reads the write, unmarked
    let slug = written.json["article"]["slug"].as_str().unwrap();
    let read = app
        .get(&format!("/api/articles/{slug}"), Some(&token))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        !read.headers.contains_key("x-crescendo-staleness"),
        "{:?}",
        read.headers
    );
}
