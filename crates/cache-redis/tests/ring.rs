//! The Redis ring under `ReadThrough`, on real Redis servers the tests start: two "web
//! nodes" (two `ReadThrough`s, each with its own ring client) share three servers.

use bytes::Bytes;
use crescendo_cache::{Cache, ReadThrough};
use crescendo_cache_redis::{RedisCache, RingOptions};
use crescendo_topology::redis::Redis;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

struct Servers {
    servers: Vec<Redis>,
    _dir: tempfile::TempDir,
}

async fn servers(n: usize) -> Servers {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let servers = tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|i| {
                Redis::start(&root.join(format!("r{i}")), [127, 0, 0, 1], 32).expect("redis starts")
            })
            .collect()
    })
    .await
    .unwrap();
    Servers { servers, _dir: dir }
}

impl Servers {
    fn urls(&self) -> Vec<String> {
        self.servers.iter().map(Redis::url).collect()
    }
}

async fn node(s: &Servers) -> (ReadThrough, RedisCache) {
    let ring = RedisCache::connect(&RingOptions::new(s.urls()))
        .await
        .expect("ring connects");
    let rt = ReadThrough::new(Arc::new(ring.clone()), 1 << 20, TTL, Duration::from_secs(5));
    (rt, ring)
}

/// A "store": one value per key, and a count of loads. Its reads carry the writer's read
/// fence (`get_or_load_fenced`), so they see a write through any node at once, whether or
/// not the servers' change reports have arrived (tests/tracking.rs covers reads without it).
#[derive(Default)]
struct Db {
    value: std::sync::Mutex<String>,
    loads: AtomicUsize,
}

impl Db {
    async fn read(&self, c: &ReadThrough, key: &str) -> String {
        let v = c
            .get_or_load_fenced(key, TTL, |_| async {
                self.loads.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>(Some(self.value.lock().unwrap().clone()))
            })
            .await
            .unwrap();
        (*v.unwrap()).clone()
    }
    fn set(&self, v: &str) {
        *self.value.lock().unwrap() = v.to_string();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_node_is_read_by_the_other() {
    let s = servers(3).await;
    let ((a, _), (b, _)) = (node(&s).await, node(&s).await);
    let db = Db::default();
    for round in 0..20 {
        let key = format!("article:{}", round % 4);
        let value = format!("v{round}");
        // both nodes hold the old value in their near tiers
        db.read(&a, &key).await;
        db.read(&b, &key).await;
        // node A writes: the store commits, then A invalidates before acknowledging
        db.set(&value);
        a.invalidate(std::slice::from_ref(&key)).await.unwrap();
        assert_eq!(
            db.read(&b, &key).await,
            value,
            "round {round}: B must not serve its near copy"
        );
        assert_eq!(db.read(&a, &key).await, value, "round {round}");
    }
    // and unchanged keys are served from the near tier after a one-round-trip version check
    let before = b.stats();
    for _ in 0..10 {
        db.read(&b, "article:1").await;
    }
    assert_eq!(b.stats().local_hits - before.local_hits, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_raced_another_nodes_write_fills_nothing() {
    let s = servers(2).await;
    let ((a, _), (b, _)) = (node(&s).await, node(&s).await);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let a = Arc::new(a);
    let a2 = Arc::clone(&a);
    let slow = tokio::spawn(async move {
        a2.get_or_load("k", TTL, |_| async move {
            started_tx.send(()).unwrap();
            go_rx.await.unwrap();
            Ok::<_, ()>(Some("old".to_string()))
        })
        .await
    });
    started_rx.await.unwrap();
    // node B's write commits and invalidates while A's load of the old value is in flight
    b.invalidate(&["k".into()]).await.unwrap();
    go_tx.send(()).unwrap();
    slow.await.unwrap().unwrap();
    for c in [&*a, &b] {
        let v = c
            .get_or_load_fenced("k", TTL, |_| async { Ok::<_, ()>(Some("new".to_string())) })
            .await
            .unwrap();
        assert_eq!(
            v.as_deref().map(String::as_str),
            Some("new"),
            "the stale load must not have filled the cache"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_reads_of_a_cold_key_over_two_nodes_load_it_once() {
    let s = servers(3).await;
    let (a, b) = (Arc::new(node(&s).await.0), Arc::new(node(&s).await.0));
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (c, loads) = (
            Arc::clone(if i % 2 == 0 { &a } else { &b }),
            Arc::clone(&loads),
        );
        tasks.push(tokio::spawn(async move {
            c.get_or_load("hot", TTL, |_| async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, ()>(Some(42u64))
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().as_deref(), Some(&42));
    }
    // one node holds the load lease; the other waits for its fill instead of loading too
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for both nodes");
    assert_eq!(a.stats().loads + b.stats().loads, 1);
    // and the loading node never waited on its own lease (a request that found the lease
    // taken by its own process must not wait for it)
    let loader = if a.stats().loads == 1 { &a } else { &b };
    assert_eq!(
        loader.stats().lease_waits,
        0,
        "the loading node waited on itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_write_every_node_reads_the_one_reload() {
    let s = servers(2).await;
    let nodes: Vec<Arc<ReadThrough>> = vec![
        Arc::new(node(&s).await.0),
        Arc::new(node(&s).await.0),
        Arc::new(node(&s).await.0),
    ];
    let value = Arc::new(std::sync::Mutex::new("v0".to_string()));
    let loads = Arc::new(AtomicUsize::new(0));
    let read = |c: Arc<ReadThrough>| {
        let (value, loads) = (Arc::clone(&value), Arc::clone(&loads));
        async move {
            c.get_or_load_fenced("article:7", TTL, |_| async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, ()>(Some(value.lock().unwrap().clone()))
            })
            .await
            .unwrap()
            .map(|v| v.to_string())
        }
    };
    for round in 1..=5 {
        // the write commits, then invalidates through one node
        *value.lock().unwrap() = format!("v{round}");
        nodes[round % 3]
            .invalidate(&["article:7".into()])
            .await
            .unwrap();
        loads.store(0, Ordering::SeqCst);
        let mut tasks = Vec::new();
        for i in 0..60 {
            tasks.push(tokio::spawn(read(Arc::clone(&nodes[i % 3]))));
        }
        for t in tasks {
            assert_eq!(
                t.await.unwrap().as_deref(),
                Some(format!("v{round}").as_str()),
                "round {round}"
            );
        }
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "round {round}: one reload for three nodes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loader_that_never_fills_holds_the_others_up_only_for_its_lease() {
    let s = servers(1).await;
    let ((a, _), (b, _)) = (node(&s).await, node(&s).await);
    let a = Arc::new(a);
    let a2 = Arc::clone(&a);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    // node A takes the lease and its load hangs (a node that died mid-load)
    let stuck = tokio::spawn(async move {
        a2.get_or_load("k", TTL, |_| async move {
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
            Ok::<_, ()>(Some("never".to_string()))
        })
        .await
    });
    started_rx.await.unwrap();
    // the loading node dies: nothing renews its lease any more
    stuck.abort();
    let t = std::time::Instant::now();
    let v = b
        .get_or_load("k", TTL, |_| async {
            Ok::<_, ()>(Some("from b".to_string()))
        })
        .await
        .unwrap();
    let waited = t.elapsed();
    assert_eq!(v.as_deref().map(String::as_str), Some("from b"));
    assert_eq!(b.stats().loads, 1, "B loaded once the lease ran out");
    eprintln!("a reader waited {waited:?} on a loader that died");
    assert!(
        waited >= Duration::from_millis(200),
        "B waited for the lease first: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_slower_than_the_lease_keeps_it_and_the_other_node_waits_for_its_fill() {
    let s = servers(1).await;
    let ((a, _), (b, _)) = (node(&s).await, node(&s).await);
    let a = Arc::new(a);
    let a2 = Arc::clone(&a);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    // node A's load takes three leases' time (a busy database)
    let slow = tokio::spawn(async move {
        a2.get_or_load("k", TTL, |_| async move {
            started_tx.send(()).unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Ok::<_, ()>(Some("from a".to_string()))
        })
        .await
    });
    started_rx.await.unwrap();
    let v = b
        .get_or_load("k", TTL, |_| async {
            Ok::<_, ()>(Some("from b".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(
        v.as_deref().map(String::as_str),
        Some("from a"),
        "B waited for A's fill"
    );
    assert_eq!(b.stats().loads, 0, "one load for both nodes");
    slow.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_the_servers_and_only_a_lost_servers_keys_move() {
    let mut s = servers(3).await;
    let ring = RedisCache::connect(&RingOptions::new(s.urls()))
        .await
        .unwrap();
    let keys: Vec<String> = (0..3000).map(|i| format!("article:{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| ring.owner_of(k).unwrap()).collect();
    for (name, _) in ring.members() {
        let share = before.iter().filter(|o| **o == name).count();
        assert!(
            (600..=1400).contains(&share),
            "{name} owns {share} of 3000 keys"
        );
    }
    let lost = s.servers[1].addr().to_string();
    s.servers[1].kill();
    // a command to the lost server takes it out of the ring at once
    let _ = ring.lookup("article:0", 0).await;
    let _ = ring
        .versions(&keys.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    let started = Instant::now();
    while ring.members().iter().any(|(n, live)| *n == lost && *live) {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the lost server is still in the ring"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for (k, owner) in keys.iter().zip(&before) {
        let now = ring.owner_of(k).unwrap();
        if *owner == lost {
            assert_ne!(now, lost);
        } else {
            assert_eq!(&now, owner, "{k} moved although its server is still there");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_within_a_second_and_rejoins_flushed() {
    let mut s = servers(3).await;
    let ((a, ring_a), (b, _)) = (node(&s).await, node(&s).await);
    let db = Db::default();
    db.set("one");
    let keys: Vec<String> = (0..50).map(|i| format!("profile:{i}")).collect();
    for k in &keys {
        db.read(&a, k).await;
    }
    let victim = 0;
    let victim_name = s.servers[victim].addr().to_string();
    // a key the victim owns, read by B before the kill
    let owned = keys
        .iter()
        .find(|k| ring_a.owner_of(k).unwrap() == victim_name)
        .unwrap()
        .clone();
    db.read(&b, &owned).await;
    s.servers[victim].kill();
    let killed = Instant::now();
    // the monitor notices on its own, without any command sent to the server
    while ring_a.members()[victim].1 {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "still in the ring after {:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let left_after = killed.elapsed();
    // reads go on (from the other servers, or the store), and writes are still seen
    db.set("two");
    a.invalidate(&keys).await.unwrap();
    for k in &keys {
        assert_eq!(db.read(&b, k).await, "two");
        assert_eq!(db.read(&a, k).await, "two");
    }
    // the server comes back, empty
    tokio::task::block_in_place(|| s.servers[victim].restart().unwrap());
    let back = Instant::now();
    while !ring_a.members()[victim].1 {
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "not back in the ring after {:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "left the ring {left_after:?} after the kill; rejoined {:?} after the restart",
        back.elapsed()
    );
    assert_eq!(
        ring_a.owner_of(&owned).unwrap(),
        victim_name,
        "its keys return to it"
    );
    assert_eq!(db.read(&b, &owned).await, "two");
}

/// Stops (`SIGSTOP`) or resumes (`SIGCONT`) a server: it keeps its memory and its
/// connections, and answers nothing until it resumes, as a server too busy to answer would.
fn pause(server: &Redis, stopped: bool) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let signal = if stopped {
        Signal::SIGSTOP
    } else {
        Signal::SIGCONT
    };
    kill(Pid::from_raw(server.pid() as i32), signal).unwrap();
}

/// The first of `article:0`, `article:1`… that `ring` places on `server`, after `skip` of them.
fn key_on(ring: &RedisCache, server: &Redis, skip: usize) -> String {
    let name = server.addr().to_string();
    (0..)
        .map(|i| format!("article:{i}"))
        .filter(|k| ring.owner_of(k).unwrap() == name)
        .nth(skip)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_a_lookup_late_stays_in_the_ring_with_its_entries() {
    // arrange: a ring whose monitor does not check during the test, and an entry on the
    // victim
    let s = servers(2).await;
    let mut opts = RingOptions::new(s.urls());
    opts.check_interval = Duration::from_secs(3600);
    let ring = RedisCache::connect(&opts).await.expect("ring connects");
    let victim = 0;
    let key = key_on(&ring, &s.servers[victim], 0);
    let version = ring.lookup(&key, 0).await.unwrap().version;
    ring.fill(&key, version, Bytes::from_static(b"cached"), TTL)
        .await
        .unwrap();

    // act: the server stalls through a lookup longer than the time-out, then resumes
    pause(&s.servers[victim], true);
    let during = ring.lookup(&key, 0).await;
    pause(&s.servers[victim], false);

    // assert: the lookup fell back, and the server kept its place and its entries
    assert!(
        during.is_err(),
        "the stalled server answered within the time-out: {during:?}"
    );
    assert!(
        ring.members()[victim].1,
        "a server that answered one lookup late left the ring"
    );
    let after = ring.lookup(&key, 0).await.unwrap();
    assert_eq!(
        (after.version, after.value.as_deref()),
        (version, Some(&b"cached"[..])),
        "the server's entry is served from it as before (it was not flushed)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stalls_through_an_invalidation_leaves_and_is_flushed_before_it_is_read_again()
 {
    // arrange: both nodes hold the victim's entry; another entry sits on the victim too
    let s = servers(3).await;
    let ((a, ring_a), (b, ring_b)) = (node(&s).await, node(&s).await);
    let db = Db::default();
    db.set("before");
    let victim = 2;
    let victim_name = s.servers[victim].addr().to_string();
    let key = key_on(&ring_a, &s.servers[victim], 0);
    let untouched = key_on(&ring_a, &s.servers[victim], 1);
    db.read(&a, &key).await;
    db.read(&b, &key).await;
    db.read(&a, &untouched).await;

    // act: a write while the server is stalled
    pause(&s.servers[victim], true);
    let stopped = Instant::now();
    db.set("after");
    a.invalidate(std::slice::from_ref(&key)).await.unwrap();

    // assert: the writer's node took the server out; the write is read everywhere
    assert!(
        !ring_a.members()[victim].1,
        "a server an invalidation timed out on is still in the ring"
    );
    assert_eq!(db.read(&b, &key).await, "after");
    let stalled_for = stopped.elapsed();
    pause(&s.servers[victim], false);
    let back = Instant::now();
    while !(ring_a.members()[victim].1 && ring_b.members()[victim].1) {
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "not back in the ring"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "stalled for {stalled_for:?}; rejoined {:?} after it resumed",
        back.elapsed()
    );
    assert_eq!(ring_b.owner_of(&key).unwrap(), victim_name);
    assert_eq!(db.read(&b, &key).await, "after");
    assert_eq!(db.read(&a, &key).await, "after");
    assert_eq!(
        ring_a.lookup(&untouched, 0).await.unwrap().value,
        None,
        "the server was flushed before it rejoined: an entry set before is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_that_timed_out_on_a_stalled_server_still_runs_there_when_it_resumes() {
    // arrange: two nodes whose monitors do not check during the test (so neither flushes
    // the server), both reading an entry on the victim
    let s = servers(2).await;
    let mut opts = RingOptions::new(s.urls());
    opts.check_interval = Duration::from_secs(3600);
    let writer = RedisCache::connect(&opts).await.expect("ring connects");
    let reader = RedisCache::connect(&opts).await.expect("ring connects");
    let victim = 0;
    let key = key_on(&writer, &s.servers[victim], 0);
    let version = writer.lookup(&key, 0).await.unwrap().version;
    writer
        .fill(&key, version, Bytes::from_static(b"old"), TTL)
        .await
        .unwrap();

    // act: the writer's invalidation times out on the stalled server
    pause(&s.servers[victim], true);
    writer
        .invalidate(std::slice::from_ref(&key), 7)
        .await
        .unwrap();
    pause(&s.servers[victim], false);

    // assert: the writer took the server out; the reader, which kept it, does not read the
    // old value from it
    assert!(!writer.members()[victim].1);
    assert!(reader.members()[victim].1);
    let seen = reader.lookup(&key, 0).await.unwrap();
    assert_ne!(seen.version, version, "the invalidation did not run");
    assert_eq!(seen.value, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_stalled_leaves_after_missing_checks_and_rejoins_flushed() {
    // arrange
    let s = servers(2).await;
    let ring = RedisCache::connect(&RingOptions::new(s.urls()))
        .await
        .expect("ring connects");
    let victim = 1;
    let key = key_on(&ring, &s.servers[victim], 0);
    let version = ring.lookup(&key, 0).await.unwrap().version;
    ring.fill(&key, version, Bytes::from_static(b"cached"), TTL)
        .await
        .unwrap();

    // act: the server stalls, with no command sent to it
    pause(&s.servers[victim], true);
    let stopped = Instant::now();
    while ring.members()[victim].1 {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "a stalled server stays in the ring"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left_after = stopped.elapsed();
    pause(&s.servers[victim], false);
    let back = Instant::now();
    while !ring.members()[victim].1 {
        assert!(
            back.elapsed() < Duration::from_secs(3),
            "not back in the ring"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // assert
    eprintln!(
        "a stalled server left the ring after {left_after:?}; rejoined {:?} after it resumed",
        back.elapsed()
    );
    assert_eq!(
        ring.lookup(&key, 0).await.unwrap().value,
        None,
        "it was flushed before it rejoined"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_fails_lets_the_waiting_nodes_load_at_once() {
    let s = servers(1).await;
    let ((a, _), (b, _)) = (node(&s).await, node(&s).await);
    let a = Arc::new(a);
    let a2 = Arc::clone(&a);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (fail_tx, fail_rx) = tokio::sync::oneshot::channel::<()>();
    // node A takes the lease, then its store read fails
    let failing = tokio::spawn(async move {
        a2.get_or_load("k", TTL, |_| async move {
            started_tx.send(()).unwrap();
            fail_rx.await.unwrap();
            Err::<Option<String>, &str>("the store is down")
        })
        .await
    });
    started_rx.await.unwrap();
    let b = Arc::new(b);
    let b2 = Arc::clone(&b);
    let waiting = tokio::spawn(async move {
        b2.get_or_load("k", TTL, |_| async {
            Ok::<_, ()>(Some("from b".to_string()))
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "B waits while A holds the lease");
    let t = std::time::Instant::now();
    fail_tx.send(()).unwrap();
    assert!(failing.await.unwrap().is_err());
    let v = waiting.await.unwrap().unwrap();
    let after = t.elapsed();
    assert_eq!(v.as_deref().map(String::as_str), Some("from b"));
    eprintln!("B loaded {after:?} after A's load failed");
    // the lease was let go, not waited out (it would have held for 500 ms)
    assert!(
        after < Duration::from_millis(400),
        "B waited out the lease: {after:?}"
    );
}

/// A stampede on a starved runtime (a task that blocks its worker thread now and then, like
/// a loaded machine): readers keep arriving while the load runs, so some look the key up
/// before the fill and are polled again only after the loading flight has ended. Such a
/// reader must take the flight's value, not load again under its process's own lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_that_looked_before_the_fill_and_resumed_after_it_do_not_load_again() {
    let s = servers(3).await;
    let nodes = [Arc::new(node(&s).await.0), Arc::new(node(&s).await.0)];
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hog = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(2));
                tokio::task::yield_now().await;
            }
        })
    };
    let mut extra = Vec::new();
    for k in 0..20 {
        let key = format!("cold:{k}");
        let before: Vec<u64> = nodes.iter().map(|n| n.stats().loads).collect();
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..400 {
            let (c, loads, key) = (Arc::clone(&nodes[i % 2]), Arc::clone(&loads), key.clone());
            tasks.push(tokio::spawn(async move {
                c.get_or_load(&key, TTL, |_| async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, ()>(Some(7u64))
                })
                .await
                .unwrap()
            }));
            if i % 10 == 9 {
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().as_deref(), Some(&7));
        }
        let per_node: Vec<u64> = nodes
            .iter()
            .zip(before)
            .map(|(n, b)| n.stats().loads - b)
            .collect();
        if loads.load(Ordering::SeqCst) > 1 {
            extra.push(format!("{key}: loads per node {per_node:?}"));
        }
    }
    stop.store(true, Ordering::Relaxed);
    hog.await.unwrap();
    let loads: u64 = nodes.iter().map(|n| n.stats().loads).sum();
    eprintln!("20 cold keys, 400 readers each over 2 nodes: {loads} loads; {extra:?}");
    assert_eq!(loads, 20, "one load per key: {extra:?}");
}
