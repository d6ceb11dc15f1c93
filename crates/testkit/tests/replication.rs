//! The replicated data tier through a web node: reads on replicas, read-your-writes with a
//! delayed replica, a replica killed under load, the primary killed under write load.
//! Each test starts its own PostgreSQL primary and replicas.

use crescendo_testkit::{PgCluster, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Cheap password hashing: these tests are about the data tier.
fn quick(s: &mut crescendo_config::Settings) {
    s.auth.argon2_memory_kib = 1024;
    s.auth.argon2_iterations = 1;
}

/// The sum of `crescendo_db_queries_total` samples whose labels contain all of `labels`.
fn queries(labels: &[&str]) -> f64 {
    crescendo_telemetry::metrics_handle()
        .render()
        .lines()
        .filter(|l| {
            l.starts_with("crescendo_db_queries_total{") && labels.iter().all(|x| l.contains(x))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value of `crescendo_db_replica_readable` for a replica.
fn readable(node: &str) -> Option<f64> {
    crescendo_telemetry::metrics_handle()
        .render()
        .lines()
        .find(|l| l.starts_with("crescendo_db_replica_readable{") && l.contains(node))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn node(pg: &crescendo_topology::pg::Postgres) -> String {
    format!("node=\"127.0.0.1:{}\"", pg.port())
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_their_own_writes_while_replicas_replay_two_seconds_late() {
    let cluster = PgCluster::start(2, false, false, &[("recovery_min_apply_delay", "2s")]).await;
    let app = TestApp::spawn_with(|s| {
        cluster.configure(s);
        quick(s);
        // the delayed replicas stay in rotation: only the fence keeps stale data away
        s.store.replica_max_lag_ms = 60_000;
    })
    .await;
    let token = app.register("writer").await;
    let other = app.register("reader").await;
    wait_for(
        "the delayed replicas have the schema",
        Duration::from_secs(10),
        || {
            cluster.replicas.iter().all(|r| {
                r.query("SELECT to_regclass('articles') IS NOT NULL")
                    .ok()
                    .as_deref()
                    == Some("t")
            })
        },
    )
    .await;

    for i in 0..10 {
        let a = app
            .create_article(&token, &format!("Fresh {i}"), &["ryw"])
            .await;
        let slug = a["slug"].as_str().unwrap().to_string();
        // the replicas have not applied it: a read there would be a 404
        let on_replica = cluster.replicas[0]
            .query(&format!(
                "SELECT count(*) FROM articles WHERE slug = '{slug}'"
            ))
            .unwrap();
        assert_eq!(on_replica, "0", "the replica is really behind");

        let got = app
            .get(&format!("/api/articles/{slug}"), Some(&token))
            .await;
        assert_eq!(
            got.status,
            StatusCode::OK,
            "the author reads the new article at once: {:?}",
            got.json
        );
        let put = app
            .put(
                &format!("/api/articles/{slug}"),
                Some(&token),
                json!({"article": {"body": format!("edited {i}")}}),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK);
        let got = app
            .get(&format!("/api/articles/{slug}"), Some(&token))
            .await;
        assert_eq!(
            got.json["article"]["body"],
            format!("edited {i}"),
            "the author reads the edit at once"
        );
        let mine = app
            .get("/api/articles?author=writer&limit=1", Some(&token))
            .await;
        assert_eq!(
            mine.json["articles"][0]["slug"],
            slug.as_str(),
            "and their list shows it first"
        );

        let bio = format!("bio {i}");
        let put = app
            .put("/api/user", Some(&token), json!({"user": {"bio": bio}}))
            .await;
        assert_eq!(put.status, StatusCode::OK);
        assert_eq!(
            app.get("/api/user", Some(&token)).await.json["user"]["bio"],
            bio.as_str()
        );
    }
    let follow = app
        .post("/api/profiles/writer/follow", Some(&other), json!({}))
        .await;
    assert_eq!(follow.json["profile"]["following"], true);
    let feed = app.get("/api/articles/feed", Some(&other)).await;
    assert_eq!(
        feed.json["articlesCount"], 10,
        "the follower's feed has the followee's articles at once: {:?}",
        feed.json
    );

    // and the replicas do serve reads: once they have caught up, anonymous reads go there
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before: f64 = cluster
        .replicas
        .iter()
        .map(|r| queries(&["role=\"replica\"", &node(r)]))
        .sum();
    for i in 0..20 {
        let a = app
            .get(
                &format!("/api/articles?author=writer&tag=ryw&offset={i}"),
                None,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let after: f64 = cluster
        .replicas
        .iter()
        .map(|r| queries(&["role=\"replica\"", &node(r)]))
        .sum();
    assert!(
        after >= before + 20.0,
        "reads went to the replicas: {before} -> {after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_load_fails_no_read_and_rejoins_when_back() {
    let mut cluster = PgCluster::start(2, false, false, &[]).await;
    let app = Arc::new(
        TestApp::spawn_with(|s| {
            cluster.configure(s);
            quick(s);
        })
        .await,
    );
    let token = app.register("author").await;
    for i in 0..5 {
        app.create_article(&token, &format!("Piece {i}"), &["load"])
            .await;
    }
    let victim = node(&cluster.replicas[0]);
    wait_for("both replicas readable", Duration::from_secs(5), || {
        cluster
            .replicas
            .iter()
            .all(|r| readable(&node(r)) == Some(1.0))
    })
    .await;

    // readers: a filter combination that is never cached, so every request reads the store
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let mut readers = Vec::new();
    for _ in 0..6 {
        let (app, stop, ok, failed) = (
            Arc::clone(&app),
            Arc::clone(&stop),
            Arc::clone(&ok),
            Arc::clone(&failed),
        );
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let a = app.get("/api/articles?author=author&tag=load", None).await;
                if a.status == StatusCode::OK && a.json["articlesCount"] == 5 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed
                        .lock()
                        .unwrap()
                        .push(format!("{} {:?}", a.status, a.json));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let served_before_kill = queries(&["role=\"replica\"", &victim]);
    assert!(
        served_before_kill > 0.0,
        "the victim served reads before it was killed"
    );
    cluster.replicas[0].kill();
    let out = wait_for(
        "the killed replica leaves the rotation",
        Duration::from_secs(1),
        || readable(&victim) == Some(0.0),
    )
    .await;
    eprintln!("killed replica out of rotation after {out:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;

    tokio::task::block_in_place(|| cluster.replicas[0].restart()).expect("the replica comes back");
    let back = wait_for("the replica rejoins", Duration::from_secs(10), || {
        readable(&victim) == Some(1.0)
    })
    .await;
    eprintln!("restarted replica back in rotation after {back:?}");
    let served_on_return = queries(&["role=\"replica\"", &victim]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let failed = failed.lock().unwrap();
    eprintln!(
        "reads: {} ok, {} failed",
        ok.load(Ordering::Relaxed),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "no read may fail: {} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        queries(&["role=\"replica\"", &victim]) > served_on_return,
        "the returned replica serves reads again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_killed_under_write_load_fails_over_and_loses_no_acknowledged_write() {
    let mut cluster = PgCluster::start(2, true, true, &[]).await;
    let urls: Vec<String> = std::iter::once(cluster.primary.url("postgres"))
        .chain(cluster.replicas.iter().map(|r| r.url("postgres")))
        .collect();
    let app = Arc::new(
        TestApp::spawn_with(|s| {
            cluster.configure(s);
            quick(s);
        })
        .await,
    );
    let mut tokens = Vec::new();
    for i in 0..4 {
        tokens.push(app.register(&format!("w{i}")).await);
    }

    // writers: each publishes articles one after another, keeping what was acknowledged
    let stop = Arc::new(AtomicBool::new(false));
    // (slug, when the request was sent) of each acknowledged write
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let slowest = Arc::new(Mutex::new(Duration::ZERO));
    let refused = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let (app, stop, acked, refused, slowest) = (
            Arc::clone(&app),
            Arc::clone(&stop),
            Arc::clone(&acked),
            Arc::clone(&refused),
            Arc::clone(&slowest),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let sent = Instant::now();
                let a = app
                    .post(
                        "/api/articles",
                        Some(&token),
                        json!({"article": {"title": format!("w{w} n{n}"), "description": "d", "body": "b"}}),
                    )
                    .await;
                let took = sent.elapsed();
                {
                    let mut s = slowest.lock().unwrap();
                    *s = (*s).max(took);
                }
                if a.status == StatusCode::CREATED {
                    acked.lock().unwrap().push((a.json["article"]["slug"].as_str().unwrap().to_string(), sent));
                } else {
                    assert!(a.status.is_server_error(), "a failed write says so: {} {:?}", a.status, a.json);
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let killed_at = Instant::now();
    cluster.primary.kill();
    // the operator's (or supervisor's) promotion command; here a moment after the crash
    tokio::time::sleep(Duration::from_millis(200)).await;
    let promoted = crescendo_store_postgres::failover::promote_most_advanced(&urls, true)
        .await
        .expect("a replica is promoted");
    eprintln!(
        "promoted {} in {:?}, re-pointed {:?}",
        promoted.primary, promoted.took, promoted.repointed
    );
    assert_eq!(promoted.repointed.len(), 1);
    wait_for("writes resume", Duration::from_secs(10), || {
        acked.lock().unwrap().iter().any(|(_, t)| *t > killed_at)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    let first_after = acked
        .iter()
        .filter(|(_, t)| *t > killed_at)
        .map(|(_, t)| *t)
        .min()
        .unwrap();
    let mut missing = Vec::new();
    for (slug, _) in &acked {
        if app.get(&format!("/api/articles/{slug}"), None).await.status != StatusCode::OK {
            missing.push(slug.clone());
        }
    }
    eprintln!(
        "acknowledged writes: {} ({} refused with 503 during the failover); missing after it: {}; \
         write-unavailability window (kill to the first write sent after it that succeeded): {:?}; slowest write: {:?}",
        acked.len(),
        refused.load(Ordering::Relaxed),
        missing.len(),
        first_after - killed_at,
        *slowest.lock().unwrap(),
    );
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
    // the survivor replica follows the new primary: a new write reaches it
    let follower = cluster
        .replicas
        .iter()
        .find(|r| format!("127.0.0.1:{}", r.port()) != promoted.primary)
        .unwrap();
    let (slug, _) = acked.last().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while follower
        .query(&format!(
            "SELECT count(*) FROM articles WHERE slug = '{slug}'"
        ))
        .unwrap()
        != "1"
    {
        assert!(
            Instant::now() < deadline,
            "the other replica follows the new primary"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_reads_trust_near_copies_once_the_reports_of_the_write_are_in() {
    let cluster = PgCluster::start(1, false, false, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let redis = tokio::task::spawn_blocking(move || {
        (0..2)
            .map(|i| {
                crescendo_topology::redis::Redis::start(
                    &root.join(i.to_string()),
                    [127, 0, 0, 1],
                    32,
                )
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .unwrap()
    .unwrap();
    let app = TestApp::spawn_with(|s| {
        cluster.configure(s);
        quick(s);
        s.cache.backend = crescendo_config::CacheBackend::Redis;
        s.cache.redis_urls = redis
            .iter()
            .map(crescendo_topology::redis::Redis::url)
            .collect();
    })
    .await;
    let author = app.register("nearwriter").await;
    let slug = app.article_slug(&author, "Near copies").await;
    let path = format!("/api/articles/{slug}");
    // the author's fence is raised (they just wrote); once this node has every change
    // report sent before the write ended, their reads are served from the near tier
    let before = app.app.cache_stats().unchecked_hits;
    let started = Instant::now();
    loop {
        let a = app.get(&path, Some(&author)).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.json);
        assert_eq!(a.json["article"]["title"], "Near copies");
        if app.app.cache_stats().unchecked_hits > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the writer's reads never trusted a near copy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // a new write is seen at once by its writer
    let put = app
        .put(
            &path,
            Some(&author),
            json!({"article": {"body": "changed"}}),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(
        app.get(&path, Some(&author)).await.json["article"]["body"],
        "changed"
    );
}
