//! The cross-region cache invalidation stream (rung 8) on real servers: a PostgreSQL primary
//! with a streaming replica, and two private Redis cache rings standing for regions A and B.
//! Region A's web node writes on the primary and records its invalidations; region B's web
//! node reads from the replica through its own ring, which region B's `invalidator` keeps in
//! step. Each test starts its own servers and uses its own region name (metrics are
//! labelled by it, and tests share one metrics registry).

use crescendo_testkit::{PgCluster, TestApp};
use crescendo_topology::redis::Redis;
use reqwest::StatusCode;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Cheap password hashing: these tests are about the cache.
fn quick(s: &mut crescendo_config::Settings) {
    s.auth.argon2_memory_kib = 1024;
    s.auth.argon2_iterations = 1;
}

/// One private Redis server as a region's cache ring.
async fn ring(dir: &std::path::Path) -> Redis {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || Redis::start(&dir, [127, 0, 0, 1], 32))
        .await
        .expect("launcher thread")
        .expect("a private Redis server starts")
}

/// How many keys the server holds.
fn dbsize(r: &Redis) -> i64 {
    let mut s = std::net::TcpStream::connect(r.addr()).expect("redis answers");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let user = crescendo_topology::redis::USER;
    write!(s, "AUTH {user} {}\r\nDBSIZE\r\n", r.password()).unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 64];
    while !text.ends_with("\r\n") || text.lines().count() < 2 {
        let n = s.read(&mut buf).expect("redis replies");
        assert!(n > 0, "redis closed the connection: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .nth(1)
        .and_then(|l| l.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("DBSIZE reply: {text}"))
}

/// A metric's value, by name and region label.
fn metric(name: &str, region: &str) -> f64 {
    let label = format!("region=\"{region}\"");
    crescendo_telemetry::metrics_handle()
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two regions on one database cluster: A writes to the primary, B reads from the replica.
struct Regions {
    cluster: PgCluster,
    a: TestApp,
    b: TestApp,
    ring_b: Redis,
    _ring_a: Redis,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    invalidator: Option<crescendo_server::invalidator::Invalidating>,
}

impl Regions {
    async fn start(b_name: &str, lost_after_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cluster = PgCluster::start(1, false, false, &[]).await;
        let ring_a = ring(&dir.path().join("ring-a")).await;
        let ring_b = ring(&dir.path().join("ring-b")).await;
        let a = TestApp::spawn_with(|s| {
            quick(s);
            cluster.configure(s);
            // region A's own copy is the primary
            s.store.postgres_replica_urls.clear();
            s.cache.backend = crescendo_config::CacheBackend::Redis;
            s.cache.redis_urls = vec![ring_a.url()];
            s.region.name = "a".into();
        })
        .await;
        let b = TestApp::spawn_with(|s| {
            quick(s);
            cluster.configure(s);
            s.cache.backend = crescendo_config::CacheBackend::Redis;
            s.cache.redis_urls = vec![ring_b.url()];
            s.region.name = b_name.into();
            s.region.lost_after_ms = lost_after_ms;
            // B reads its own replica however far behind (as during a WAN cut)
            s.store.replica_max_lag_ms = 600_000;
        })
        .await;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut settings = b.settings.clone();
        settings.http.listen = "127.0.0.1:0".parse().unwrap();
        let running = crescendo_server::invalidator::invalidator(settings, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the invalidator starts");
        let regions = Self {
            cluster,
            a,
            b,
            ring_b,
            _ring_a: ring_a,
            _dir: dir,
            stop: Some(stop),
            invalidator: None,
        };
        let ready = format!("http://{}/ready", running.addr);
        let mut regions = regions;
        regions.invalidator = Some(running);
        regions
            .until(
                "the invalidator reads the stream",
                Duration::from_secs(20),
                || async {
                    reqwest::get(&ready)
                        .await
                        .is_ok_and(|r| r.status() == StatusCode::OK)
                },
            )
            .await;
        regions
    }

    /// Waits until `ok`, at most `limit`; how long it took.
    async fn until<F, Fut>(&self, what: &str, limit: Duration, mut ok: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !ok().await {
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        started.elapsed()
    }

    /// The article's title as region B serves it to an anonymous reader.
    async fn title_in_b(&self, slug: &str) -> Option<String> {
        let got = self.b.get(&format!("/api/articles/{slug}"), None).await;
        (got.status == StatusCode::OK)
            .then(|| got.json["article"]["title"].as_str().unwrap().to_string())
    }

    /// Region A changes the article's title.
    async fn retitle_in_a(&self, token: &str, slug: &str, title: &str) {
        let put = self
            .a
            .put(
                &format!("/api/articles/{slug}"),
                Some(token),
                json!({"article": {"title": title}}),
            )
            .await;
        assert_eq!(put.status, StatusCode::OK, "{:?}", put.json);
    }

    /// A user and an article written in A, read (and so cached) in B.
    async fn article_cached_in_b(&self) -> (String, String) {
        let token = self.a.register("writer").await;
        let slug = self.a.article_slug(&token, "first").await;
        self.until(
            "the replica shows the article",
            Duration::from_secs(10),
            || async { self.title_in_b(&slug).await.is_some() },
        )
        .await;
        assert_eq!(self.title_in_b(&slug).await.as_deref(), Some("first"));
        assert!(
            dbsize(&self.ring_b) > 1,
            "region B's ring holds the article"
        );
        (token, slug)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let done = self.invalidator.take().unwrap().done;
        done.await.unwrap().expect("the invalidator stops cleanly");
        self.a.stop().await;
        self.b.stop().await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_in_region_a_reaches_region_b_cache_through_the_invalidator() {
    let r = Regions::start("b-delay", 2_000).await;
    let (token, slug) = r.article_cached_in_b().await;
    let mut delays = Vec::new();
    for i in 0..100 {
        let title = format!("title {i}");
        r.retitle_in_a(&token, &slug, &title).await;
        let took = r
            .until(
                "region B serves the new title",
                Duration::from_secs(10),
                || async { r.title_in_b(&slug).await.as_deref() == Some(title.as_str()) },
            )
            .await;
        delays.push(took);
        // B holds the new title again for the next round
        assert_eq!(r.title_in_b(&slug).await.as_deref(), Some(title.as_str()));
    }
    delays.sort();
    let applied = metric("crescendo_cache_region_invalidations_total", "b-delay");
    println!(
        "write acknowledged in A -> new value served in B, 100 writes: p50 {:?}, p90 {:?}, max {:?}; rows applied {applied}; invalidator's own delay histogram: count {}, sum {:.3} s",
        percentile(&delays, 0.5),
        percentile(&delays, 0.9),
        delays[delays.len() - 1],
        metric(
            "crescendo_cache_region_invalidation_delay_seconds_count",
            "b-delay"
        ),
        metric(
            "crescendo_cache_region_invalidation_delay_seconds_sum",
            "b-delay"
        ),
    );
    assert!(applied >= 100.0, "every write's row was applied: {applied}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_b_cache_is_emptied_while_its_replica_receives_no_wal_and_caught_up_after() {
    let r = Regions::start("b-loss", 1_000).await;
    let (token, slug) = r.article_cached_in_b().await;
    let empties_before = metric("crescendo_cache_region_empties_total", "b-loss");
    // the replica's WAL receiver stops: no upstream to stream from
    let replica = &r.cluster.replicas[0];
    let conninfo = replica.query("SHOW primary_conninfo").unwrap();
    assert!(!conninfo.is_empty());
    replica
        .query("ALTER SYSTEM SET primary_conninfo = ''")
        .unwrap();
    replica.query("SELECT pg_reload_conf()").unwrap();
    let stopped = Instant::now();
    // A writes while B cannot hear of it
    r.retitle_in_a(&token, &slug, "during the loss").await;
    let emptied = r
        .until(
            "region B's cache is emptied",
            Duration::from_secs(10),
            || async {
                metric("crescendo_cache_region_empties_total", "b-loss") > empties_before
                    && metric("crescendo_cache_region_stream_healthy", "b-loss") == 0.0
            },
        )
        .await;
    // nothing but the ring's write-position key is left
    assert!(
        dbsize(&r.ring_b) <= 1,
        "ring B holds {} keys",
        dbsize(&r.ring_b)
    );
    println!(
        "WAL receiver stopped -> region B's cache emptied in {emptied:?} (bound: region.lost_after_ms = 1000 plus a poll)"
    );
    // B reads what its replica has: the old title (the write has not arrived)
    assert_eq!(r.title_in_b(&slug).await.as_deref(), Some("first"));
    let applied_before = metric("crescendo_cache_region_invalidations_total", "b-loss");
    // the link heals: the write and its row arrive, and the row is applied
    let escaped = conninfo.replace('\'', "''");
    replica
        .query(&format!("ALTER SYSTEM SET primary_conninfo = '{escaped}'"))
        .unwrap();
    replica.query("SELECT pg_reload_conf()").unwrap();
    let healed = r
        .until(
            "region B serves the write made during the loss",
            Duration::from_secs(20),
            || async { r.title_in_b(&slug).await.as_deref() == Some("during the loss") },
        )
        .await;
    r.until(
        "the row written during the loss is applied",
        Duration::from_secs(10),
        || async {
            metric("crescendo_cache_region_invalidations_total", "b-loss") > applied_before
        },
    )
    .await;
    assert_eq!(
        metric("crescendo_cache_region_stream_healthy", "b-loss"),
        1.0
    );
    println!(
        "receiver back -> new value served in B after {healed:?}; whole loss {:?}",
        stopped.elapsed()
    );
    r.stop().await;
}
