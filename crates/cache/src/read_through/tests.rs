//! Unit tests of `ReadThrough`: bounds, stamps, stripes, hits, misses and races.

use super::*;
use crate::MemoryCache;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::atomic::AtomicUsize;

/// Reads `key` with a minute's TTL, loading `value` on a miss.
async fn fetch<T>(c: &ReadThrough, key: &str, value: Option<T>) -> Option<Arc<T>>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let load = |_| async move { Ok::<_, ()>(value) };
    c.get_or_load(key, Duration::from_secs(60), load)
        .await
        .unwrap()
}

fn rt() -> ReadThrough {
    ReadThrough::new(
        Arc::new(MemoryCache::new(1 << 20)),
        1 << 20,
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn the_local_tier_stays_within_its_byte_bound() {
    let c = ReadThrough::new(
        Arc::new(MemoryCache::new(1 << 20)),
        64 * 1024,
        Duration::from_secs(60),
        Duration::from_secs(5),
    );
    for i in 0..1000 {
        fetch(&c, &format!("k{i}"), Some("x".repeat(1000))).await;
    }
    c.local.run_pending_tasks();
    assert!(
        c.local.weighted_size() <= 64 * 1024,
        "{} bytes",
        c.local.weighted_size()
    );
    assert!(c.local.entry_count() > 0);
}

#[tokio::test]
async fn stamps_turn_stale_when_their_key_is_invalidated() {
    let c = rt();
    let s = c.stamps(vec!["a".into(), "b".into()]).await;
    assert!(c.stamps_current(&s).await);
    c.invalidate(&["b".into()]).await.unwrap();
    assert!(c.stamps_current(&s[..1]).await);
    assert!(!c.stamps_current(&s).await);
}

#[test]
fn keys_spread_over_the_stripes() {
    let mut used = std::collections::HashSet::new();
    for i in 0..20_000 {
        used.insert(stripe_of(&format!(
            "article:{}",
            120_000_000_000_000i64 + i * 4096
        )));
    }
    assert!(used.len() > 15_000, "{} stripes used", used.len());
    assert_eq!(stripe_of("article:1"), stripe_of("article:1"));
}

#[tokio::test]
async fn a_second_read_is_served_locally() {
    let c = rt();
    let v = fetch(&c, "k", Some(7u32)).await;
    assert_eq!(v.as_deref(), Some(&7));
    let v = fetch(&c, "k", Some(8u32)).await;
    assert_eq!(v.as_deref(), Some(&7));
    assert_eq!(
        c.stats(),
        CacheStats {
            local_hits: 1,
            shared_hits: 0,
            misses: 1,
            loads: 1,
            lease_waits: 0,
            unchecked_hits: 0,
        }
    );
}

#[tokio::test]
async fn not_found_is_cached_too() {
    let c = rt();
    for _ in 0..3 {
        let v = fetch::<u32>(&c, "none", None).await;
        assert_eq!(v, None);
    }
    assert_eq!(c.stats().loads, 1);
}

#[tokio::test]
async fn invalidation_makes_the_next_read_load_afresh() {
    let c = rt();
    fetch(&c, "k", Some(1u32)).await;
    c.invalidate(&["k".into()]).await.unwrap();
    let v = fetch(&c, "k", Some(2u32)).await;
    assert_eq!(v.as_deref(), Some(&2));
}

#[tokio::test]
async fn a_load_that_skips_the_fill_is_served_but_kept_in_neither_tier() {
    let c = rt();
    let partial = c
        .get_or_load("k", Duration::from_secs(60), |_| async {
            skip_fill();
            Ok::<_, ()>(Some(1u32))
        })
        .await
        .unwrap();
    assert_eq!(
        partial.as_deref(),
        Some(&1),
        "the read gets what was loaded"
    );
    assert_eq!(
        fetch(&c, "k", Some(2u32)).await.as_deref(),
        Some(&2),
        "nothing was kept"
    );
    assert_eq!(
        fetch(&c, "k", Some(3u32)).await.as_deref(),
        Some(&2),
        "a full load is"
    );
    skip_fill(); // outside a load: no effect
}

#[tokio::test]
async fn errors_are_returned_and_not_cached() {
    let c = rt();
    let e = c
        .get_or_load::<u32, _, _, _>("k", Duration::from_secs(60), |_| async { Err("db down") })
        .await;
    assert_eq!(e, Err("db down"));
    let v = c
        .get_or_load("k", Duration::from_secs(60), |_| async {
            Ok::<_, &str>(Some(3u32))
        })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(&3));
}

#[tokio::test]
async fn a_load_that_raced_a_write_does_not_fill_the_cache() {
    let c = Arc::new(rt());
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let c2 = Arc::clone(&c);
    let slow = tokio::spawn(async move {
        c2.get_or_load("k", Duration::from_secs(60), |_| async move {
            started_tx.send(()).unwrap();
            go_rx.await.unwrap();
            Ok::<_, ()>(Some("old".to_string()))
        })
        .await
    });
    started_rx.await.unwrap();
    // the write commits and invalidates while the load of the old value is in flight
    c.invalidate(&["k".into()]).await.unwrap();
    // a read that starts after the write does not join the old flight
    let fresh = fetch(&c, "k", Some("new".to_string())).await;
    assert_eq!(fresh.as_deref().map(String::as_str), Some("new"));
    go_tx.send(()).unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap().as_deref().map(String::as_str),
        Some("old")
    );
    let after = fetch(&c, "k", Some("newer".to_string())).await;
    assert_eq!(
        after.as_deref().map(String::as_str),
        Some("new"),
        "the stale load must not have overwritten the fresh entry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_load_once() {
    let c = Arc::new(rt());
    let loads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (c, loads) = (Arc::clone(&c), Arc::clone(&loads));
        tasks.push(tokio::spawn(async move {
            c.get_or_load("hot", Duration::from_secs(60), |_| async {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, ()>(Some(42u64))
            })
            .await
            .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().as_deref(), Some(&42));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn values_come_back_from_the_shared_tier_after_the_local_one_forgets() {
    let shared = Arc::new(MemoryCache::new(1 << 20));
    let a = ReadThrough::new(
        shared.clone(),
        1 << 20,
        Duration::from_secs(60),
        Duration::from_secs(5),
    );
    fetch(&a, "k", Some(vec![1u8, 2])).await;
    let b = ReadThrough::new(
        shared,
        1 << 20,
        Duration::from_secs(60),
        Duration::from_secs(5),
    );
    let v = fetch(&b, "k", Some(vec![9u8])).await;
    assert_eq!(v.as_deref(), Some(&vec![1u8, 2]));
    assert_eq!(b.stats().shared_hits, 1);
}

/// A shared tier whose fills wait for the test's go-ahead after telling it they started:
/// it holds a fill between [`ReadThrough`]'s own staleness check and the tier's insert.
struct PausingFill {
    inner: MemoryCache,
    started: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    go: tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
}

#[async_trait::async_trait]
impl Cache for PausingFill {
    async fn lookup(&self, key: &str, known: u64) -> Result<crate::Lookup, CacheError> {
        self.inner.lookup(key, known).await
    }
    async fn fill(
        &self,
        key: &str,
        version: u64,
        value: bytes::Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let started = self.started.lock().unwrap().take();
        if let Some(started) = started {
            started.send(()).unwrap();
            let go = self.go.lock().await.take().expect("one paused fill");
            go.await.unwrap();
        }
        self.inner.fill(key, version, value, ttl).await
    }
    async fn invalidate(&self, keys: &[String], position: u64) -> Result<(), CacheError> {
        self.inner.invalidate(keys, position).await
    }
}

#[tokio::test]
async fn an_invalidation_between_the_check_and_the_fill_keeps_the_old_value_out() {
    // arrange: a read whose fill of the shared tier pauses after the generation check
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel();
    let shared = Arc::new(PausingFill {
        inner: MemoryCache::new(1 << 20),
        started: Mutex::new(Some(started_tx)),
        go: tokio::sync::Mutex::new(Some(go_rx)),
    });
    let c = Arc::new(ReadThrough::new(
        shared.clone(),
        1 << 20,
        Duration::from_secs(60),
        Duration::from_secs(5),
    ));
    let reader = Arc::clone(&c);
    let read = tokio::spawn(async move {
        reader
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some("old".to_string()))
            })
            .await
    });
    started_rx.await.unwrap();
    // act: a write's invalidation lands while the fill is paused, then the fill goes on
    c.invalidate(&["k".into()]).await.unwrap();
    go_tx.send(()).unwrap();
    let old = read.await.unwrap().unwrap();
    // assert: the reader got its value, but the shared tier does not keep it
    assert_eq!(old.as_deref().map(String::as_str), Some("old"));
    assert_eq!(
        shared.inner.lookup("k", 0).await.unwrap().value,
        None,
        "the shared tier holds a value older than the write"
    );
    let next = fetch(&c, "k", Some("new".to_string())).await;
    assert_eq!(next.as_deref().map(String::as_str), Some("new"));
}
