//! Change reports (Redis client tracking) under `ReadThrough`, on real Redis servers the
//! tests start: two "web nodes", A and B, each a `ReadThrough` over its own ring client.
//! B's near copies are served without a round trip while its report channels are up; a
//! fenced read still checks; a dropped channel empties B's near tier and stops the trust.

use crescendo_cache::{Cache, NearInvalidations, ReadThrough};
use crescendo_cache_redis::{RedisCache, RingOptions};
use crescendo_topology::redis::Redis;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(60);
/// A generous bound on waits for a report (they take well under a millisecond).
const BOUND: Duration = Duration::from_secs(10);

fn start_servers(dir: &std::path::Path, n: usize) -> Vec<Redis> {
    (0..n)
        .map(|i| {
            Redis::start(&dir.join(format!("r{i}")), [127, 0, 0, 1], 32).expect("redis starts")
        })
        .collect()
}

/// What a node's ring reported: keys, or "all" (`None`).
type Reports = mpsc::UnboundedReceiver<(Option<String>, Instant)>;

/// Forwards a ring's reports to a test.
struct Listener(mpsc::UnboundedSender<(Option<String>, Instant)>);

impl NearInvalidations for Listener {
    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let _ = self.0.send((Some((*k).to_string()), Instant::now()));
        }
    }
    fn all(&self) {
        let _ = self.0.send((None, Instant::now()));
    }
}

struct Node {
    rt: Arc<ReadThrough>,
    ring: RedisCache,
    reports: Reports,
}

async fn node(urls: Vec<String>, check_interval: Duration) -> Node {
    let mut opts = RingOptions::new(urls);
    opts.check_interval = check_interval;
    let ring = RedisCache::connect(&opts).await.expect("ring connects");
    assert!(ring.trust_epoch().is_some(), "every server reports changes");
    let rt = ReadThrough::new(Arc::new(ring.clone()), 1 << 20, TTL, Duration::from_secs(5));
    let rt = Arc::new(rt);
    let (tx, reports) = mpsc::unbounded_channel();
    ring.on_invalidations(Arc::new(Listener(tx)));
    Node { rt, ring, reports }
}

impl Node {
    async fn read(&self, db: &Db, key: &str) -> String {
        let load = |_| async { Ok::<_, ()>(Some(db.0.lock().unwrap().clone())) };
        (*self.rt.get_or_load(key, TTL, load).await.unwrap().unwrap()).clone()
    }
    async fn read_fenced(&self, db: &Db, key: &str) -> String {
        let load = |_| async { Ok::<_, ()>(Some(db.0.lock().unwrap().clone())) };
        let v = self.rt.get_or_load_fenced(key, TTL, load).await;
        (*v.unwrap().unwrap()).clone()
    }
    /// Reads `key` until its near copy is trusted (a read that confirms the version renews
    /// the trust a report of the read's own fill took away).
    async fn warm(&mut self, db: &Db, key: &str) {
        self.read(db, key).await;
        self.ring.reports_delivered().await;
        self.read(db, key).await;
        while self.reports.try_recv().is_ok() {}
    }
    /// Waits (within [`BOUND`]) for a report naming `key`, or for "all" when `key` is `None`.
    async fn report_of(&mut self, key: Option<&str>) -> Instant {
        let wait = async {
            loop {
                let (k, at) = self.reports.recv().await.expect("the ring lives");
                if k.as_deref() == key {
                    return at;
                }
            }
        };
        tokio::time::timeout(BOUND, wait)
            .await
            .expect("the report arrives")
    }
}

/// A "store" holding one value.
#[derive(Default)]
struct Db(Mutex<String>);

impl Db {
    fn set(&self, v: &str) {
        *self.0.lock().unwrap() = v.to_string();
    }
}

/// Scripts (lookups, fills, invalidations) the servers ran, all told.
async fn scripts_run(urls: &[String]) -> u64 {
    let mut total = 0;
    for url in urls {
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut c)
            .await
            .unwrap();
        for line in info.lines().filter(|l| l.starts_with("cmdstat_eval")) {
            let calls = line
                .split("calls=")
                .nth(1)
                .and_then(|r| r.split(',').next());
            total += calls.and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    if threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    }
    .enable_all()
    .build()
    .unwrap()
}

#[test]
fn a_near_hit_asks_no_server_and_another_nodes_write_is_served_once_reported() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 3);
    let urls: Vec<String> = servers.iter().map(Redis::url).collect();
    // B runs on a runtime of its own, so its reports are read only while a B step runs
    let (rt_a, rt_b) = (runtime(1), runtime(0));
    let a = rt_a.block_on(node(urls.clone(), Duration::from_millis(200)));
    let mut b = rt_b.block_on(node(urls.clone(), Duration::from_millis(200)));
    let db = Db::default();
    db.set("v1");
    rt_b.block_on(async {
        b.warm(&db, "article:1").await;
        let (scripts, before) = (scripts_run(&urls).await, b.rt.stats());
        for _ in 0..10 {
            assert_eq!(b.read(&db, "article:1").await, "v1");
        }
        assert_eq!(b.rt.stats().unchecked_hits - before.unchecked_hits, 10);
        assert_eq!(scripts_run(&urls).await, scripts, "near hits ran no script");
    });
    // A writes: the store commits, A invalidates (before it would acknowledge)
    db.set("v2");
    rt_a.block_on(a.rt.invalidate(&["article:1".into()]))
        .unwrap();
    rt_b.block_on(async {
        b.report_of(Some("article:1")).await;
        assert_eq!(
            b.read(&db, "article:1").await,
            "v2",
            "the report was heeded"
        );
        b.warm(&db, "article:1").await;
        let before = b.rt.stats().unchecked_hits;
        assert_eq!(b.read(&db, "article:1").await, "v2");
        assert_eq!(b.rt.stats().unchecked_hits, before + 1, "trusted again");
    });
}

#[test]
fn a_fenced_read_sees_another_nodes_write_before_its_report_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 2);
    let urls: Vec<String> = servers.iter().map(Redis::url).collect();
    let (rt_a, rt_b) = (runtime(1), runtime(0));
    let a = rt_a.block_on(node(urls.clone(), Duration::from_millis(200)));
    let mut b = rt_b.block_on(node(urls, Duration::from_millis(200)));
    let db = Db::default();
    db.set("old");
    rt_b.block_on(b.warm(&db, "profile:9"));
    db.set("new");
    rt_a.block_on(a.rt.invalidate(&["profile:9".into()]))
        .unwrap();
    rt_b.block_on(async {
        // B's runtime has not run since A's write, so its report is not read yet: an
        // unfenced read is served B's near copy (the stated invalidation delay), while a
        // read carrying the writer's fence checks the version and sees the write
        let unfenced = b.read(&db, "profile:9").await;
        assert_eq!(b.read_fenced(&db, "profile:9").await, "new");
        assert_eq!(unfenced, "old", "the unfenced read trusted its near copy");
        b.report_of(Some("profile:9")).await;
        assert_eq!(b.read(&db, "profile:9").await, "new");
    });
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn reports_are_delivered_through_a_time_only_once_every_change_before_it_was_reported() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 2);
    let urls: Vec<String> = servers.iter().map(Redis::url).collect();
    let (rt_a, rt_b) = (runtime(1), runtime(0));
    let a = rt_a.block_on(node(urls.clone(), Duration::from_millis(200)));
    let mut b = rt_b.block_on(node(urls, Duration::from_millis(200)));
    let db = Db::default();
    db.set("old");
    rt_b.block_on(b.warm(&db, "profile:7"));
    // A writes while B's runtime is not running: B has not read the report yet
    db.set("new");
    rt_a.block_on(a.rt.invalidate(&["profile:7".into()]))
        .unwrap();
    let written = now_ms();
    rt_b.block_on(async {
        let through = async {
            while b.ring.reported_through().is_none_or(|t| t <= written) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(BOUND, through)
            .await
            .expect("B's pings come back");
        // a time after the write is vouched for only once the write's report is in
        let mut named = false;
        while let Ok((k, _)) = b.reports.try_recv() {
            named |= k.as_deref() == Some("profile:7");
        }
        assert!(named, "the report came before the time was vouched for");
        assert_eq!(b.read(&db, "profile:7").await, "new");
    });
}

/// Kills this ring client's report channel on the server at `url`.
async fn kill_channel(url: &str, name: &str) {
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut c)
        .await
        .unwrap();
    let line = list
        .lines()
        .find(|l| l.contains(&format!(" name={name} ")))
        .expect("the channel is connected");
    let id = line.split(' ').next().unwrap().trim_start_matches("id=");
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(killed, 1);
}

#[test]
fn a_dropped_report_channel_empties_the_near_tier_and_checks_until_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 2);
    let urls: Vec<String> = servers.iter().map(Redis::url).collect();
    let rt = runtime(0);
    rt.block_on(async {
        // checks 2 s apart: the channel comes back at the first check after the drop
        let mut b = node(urls.clone(), Duration::from_secs(2)).await;
        let db = Db::default();
        db.set("x");
        b.warm(&db, "article:3").await;
        let epoch = b.ring.trust_epoch();
        let name = b.ring.tracking_client_name().to_string();
        kill_channel(&urls[1], &name).await;
        b.report_of(None).await;
        assert_eq!(b.ring.trust_epoch(), None, "nothing is trusted");
        assert_eq!(b.ring.reported_through(), None, "no time is vouched for");
        let (before, scripts) = (b.rt.stats(), scripts_run(&urls).await);
        assert_eq!(b.read(&db, "article:3").await, "x");
        assert_eq!(b.read(&db, "article:3").await, "x");
        let after = b.rt.stats();
        assert_eq!(after.misses - before.misses, 1, "the near tier was emptied");
        assert_eq!(after.local_hits - before.local_hits, 1);
        assert_eq!(
            after.unchecked_hits, before.unchecked_hits,
            "every hit checked"
        );
        assert_eq!(scripts_run(&urls).await - scripts, 2, "one lookup per read");
        // the monitor sets the channel up again: a new epoch, and near hits ask no server
        let mut changes = b.ring.trust_changes();
        let back = changes.wait_for(|e| e.is_some() && *e != epoch);
        tokio::time::timeout(BOUND, back)
            .await
            .expect("the channel comes back")
            .unwrap();
        b.warm(&db, "article:3").await;
        let before = b.rt.stats().unchecked_hits;
        assert_eq!(b.read(&db, "article:3").await, "x");
        assert_eq!(b.rt.stats().unchecked_hits, before + 1);
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// From A's invalidation of each of 1,000 keys to B's report of it: after A's acknowledgement
/// and after its start, sorted.
async fn delays(a: &Node, b: &mut Node, round: &str) -> (Vec<Duration>, Vec<Duration>) {
    let (mut after_ack, mut after_start) = (Vec::new(), Vec::new());
    for i in 0..1000 {
        let key = format!("article:{round}{i}");
        let started = Instant::now();
        a.rt.invalidate(std::slice::from_ref(&key)).await.unwrap();
        let acked = Instant::now();
        let reported = b.report_of(Some(&key)).await;
        after_ack.push(reported.saturating_duration_since(acked));
        after_start.push(reported.saturating_duration_since(started));
    }
    after_ack.sort();
    after_start.sort();
    (after_ack, after_start)
}

#[test]
fn the_invalidation_delay_between_two_nodes_is_measured() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 3);
    let urls: Vec<String> = servers.iter().map(Redis::url).collect();
    let rt = runtime(2);
    rt.block_on(async {
        let a = node(urls.clone(), Duration::from_millis(200)).await;
        let mut b = node(urls, Duration::from_millis(200)).await;
        let idle = delays(&a, &mut b, "idle").await;
        // again while B serves reads of the keys A invalidates (checks, loads, fills)
        let b_rt = Arc::clone(&b.rt);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|t| {
                let (rt, stop) = (Arc::clone(&b_rt), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("article:busy{}", (n * 7 + t) % 1000);
                        let load = |_| async { Ok::<_, ()>(Some("v".to_string())) };
                        rt.get_or_load(&key, TTL, load).await.unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let busy = delays(&a, &mut b, "busy").await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut reads = 0;
        for r in readers {
            reads += r.await.unwrap();
        }
        for ((after_ack, after_start), what) in [
            (idle, "idle".to_string()),
            (busy, format!("B serving {reads} reads meanwhile")),
        ] {
            eprintln!(
                "invalidation delay over {} writes ({what}), from A's acknowledged invalidation \
                 to B's report: p50 {:?}, p99 {:?}, max {:?}; from the start of A's \
                 invalidation: p50 {:?}, p99 {:?}",
                after_ack.len(),
                percentile(&after_ack, 0.5),
                percentile(&after_ack, 0.99),
                after_ack.last().unwrap(),
                percentile(&after_start, 0.5),
                percentile(&after_start, 0.99),
            );
        }
    });
}

#[test]
fn a_reported_change_makes_stamps_of_the_key_stale_even_when_its_version_stands() {
    let dir = tempfile::tempdir().unwrap();
    let servers = start_servers(dir.path(), 1);
    let url = servers[0].url();
    let rt = runtime(0);
    rt.block_on(async {
        let mut b = node(vec![url.clone()], Duration::from_millis(200)).await;
        let db = Db::default();
        db.set("x");
        b.warm(&db, "article:5").await;
        let stamps = b.rt.stamps(vec!["article:5".into()]).await;
        assert!(b.rt.stamps_current(&stamps).await);
        let scripts = scripts_run(std::slice::from_ref(&url)).await;
        assert!(
            b.rt.stamps_unreported(&stamps),
            "current, by the reports alone"
        );
        assert_eq!(scripts_run(std::slice::from_ref(&url)).await, scripts);
        // a change the version does not show (here a new expiry; in production, a near copy
        // served unchecked before its report arrived could have been read under the stamp)
        let mut c = redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: i64 = redis::cmd("PEXPIRE")
            .arg("c:article:5")
            .arg(600_000)
            .query_async(&mut c)
            .await
            .unwrap();
        b.report_of(Some("article:5")).await;
        assert!(!b.rt.stamps_unreported(&stamps), "the report was heeded");
        assert!(!b.rt.stamps_current(&stamps).await, "the report was heeded");
        let again = b.rt.stamps(vec!["article:5".into()]).await;
        assert!(b.rt.stamps_current(&again).await);
    });
}
