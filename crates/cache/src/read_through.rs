//! `ReadThrough`: typed read-through caching over a [`Cache`], with a local decoded tier.
//!
//! Reads: local tier (decoded `Arc<T>`, no copy, no decode) → shared [`Cache`] (bytes, JSON)
//! → the loader (the store). What the loader returns, found or not found, fills both tiers.
//!
//! Consistency (DESIGN.md's contract): no read that starts after a write was acknowledged may
//! see data older than that write. Writers call [`ReadThrough::invalidate`] after the store
//! commits and before they answer. Invalidation bumps a generation counter for each key
//! (a fixed array of striped counters, so memory stays bounded) and deletes the key from
//! both tiers. A local entry is served only while its key's generation is the one it was
//! loaded under, and a load whose key was invalidated while it ran returns its result
//! to its own caller but fills nothing. Single-flight is per (key, generation), so a read
//! that starts after an invalidation never joins a load that started before it.
//!
//! The generation counters are this process's: they make the local tier exact when this
//! process makes every write (the single-server rung). With several web nodes in front of a
//! shared Redis tier, the local tier must also check a version kept in the shared tier
//! (issue 7, the cache tier).

use crate::{Cache, CacheError};
use bytes::Bytes;
use crescendo_telemetry::names;
use serde::{de::DeserializeOwned, Serialize};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

type AnyValue = Arc<dyn Any + Send + Sync>;
type Flight = Arc<OnceCell<AnyValue>>;

const STRIPES: usize = 1 << 16;

#[derive(Clone)]
struct Local {
    generation: u64,
    value: AnyValue,
    /// Approximate bytes held: the encoded size, three times over (the decoded value and
    /// up to two renderings of it), plus the key.
    weight: u32,
}

fn weight(key: &str, encoded_len: usize) -> u32 {
    (key.len() + encoded_len * 3 + 64).min(u32::MAX as usize) as u32
}

/// The generation of one key at one moment. A value derived from several cached keys
/// (a hydrated page of a list, say) takes a stamp of each key *before* reading it, and stays
/// valid while [`ReadThrough::stamps_current`] says every stamp is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    stripe: u32,
    generation: u64,
}

/// Counters of one [`ReadThrough`], for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from the local tier.
    pub local_hits: u64,
    /// Served from the shared tier.
    pub shared_hits: u64,
    /// Missed both tiers.
    pub misses: u64,
    /// Loader calls (misses after single-flight).
    pub loads: u64,
}

/// Typed read-through cache; see the module docs for its consistency rules.
pub struct ReadThrough {
    shared: Arc<dyn Cache>,
    local: moka::sync::Cache<String, Local>,
    /// Generation per stripe of keys; bumped by every invalidation of a key in the stripe.
    generations: Box<[AtomicU64]>,
    /// Per stripe, the highest store position (see `crescendo_store::fence`) of a write that
    /// invalidated a key in it: a load must read a copy of the data at least that fresh.
    fences: Box<[AtomicU64]>,
    /// Loads in progress, per (key, generation).
    flights: Mutex<HashMap<(String, u64), Flight>>,
    /// TTL of "not found" entries.
    negative_ttl: Duration,
    /// Upper bound on how long a local entry lives.
    local_ttl: Duration,
    stats: [AtomicU64; 4],
    /// Registered once: looking a labelled metric up costs more than the cache hit it counts.
    counters: Counters,
}

struct Counters {
    local_hits: metrics::Counter,
    local_misses: metrics::Counter,
    shared_hits: metrics::Counter,
    shared_misses: metrics::Counter,
    loads: metrics::Counter,
}

impl std::fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough").field("stats", &self.stats()).finish()
    }
}

/// The stripe of a key: a multiply-rotate hash over 8-byte words (written out here so it
/// never depends on std's hasher), reduced to the stripe count.
fn stripe_of(key: &str) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes = key.as_bytes();
    let mut h: u64 = bytes.len() as u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        h = (h ^ w).wrapping_mul(K).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^= h >> 32;
    (h as usize) & (STRIPES - 1)
}

/// `ttl` scaled by a random factor in [0.9, 1.1), so entries filled together expire apart.
fn jittered(ttl: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 2000;
    ttl.mul_f64(0.9 + r as f64 / 10_000.0)
}

impl ReadThrough {
    /// A read-through layer over `shared` whose local tier holds about `local_max_bytes` of
    /// values (weighed by their encoded size) for at most `local_ttl`; "not found" is cached
    /// for `negative_ttl`.
    pub fn new(shared: Arc<dyn Cache>, local_max_bytes: u64, local_ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            shared,
            local: moka::sync::Cache::builder()
                .max_capacity(local_max_bytes)
                .weigher(|_k: &String, v: &Local| v.weight)
                .time_to_live(local_ttl)
                .build(),
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            fences: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            flights: Mutex::new(HashMap::new()),
            negative_ttl,
            local_ttl,
            stats: Default::default(),
            counters: Counters {
                local_hits: metrics::counter!(names::CACHE_HITS, "layer" => "local"),
                local_misses: metrics::counter!(names::CACHE_MISSES, "layer" => "local"),
                shared_hits: metrics::counter!(names::CACHE_HITS, "layer" => "shared"),
                shared_misses: metrics::counter!(names::CACHE_MISSES, "layer" => "shared"),
                loads: metrics::counter!(names::CACHE_LOADS, "layer" => "store"),
            },
        }
    }

    /// The store position a load of `key` must read at least: that of the last write that
    /// invalidated it (or another key of its stripe). 0 when no such write had a position.
    pub fn fence(&self, key: &str) -> u64 {
        self.fences[stripe_of(key)].load(Ordering::Acquire)
    }

    fn generation(&self, key: &str) -> u64 {
        self.generations[stripe_of(key)].load(Ordering::Acquire)
    }

    fn count(&self, i: usize) {
        self.stats[i].fetch_add(1, Ordering::Relaxed);
        let c = &self.counters;
        [&c.local_hits, &c.shared_hits, &c.local_misses, &c.loads][i].increment(1);
    }

    /// A stamp of `key`'s current generation; take it before reading the key.
    pub fn stamp(&self, key: &str) -> Stamp {
        let stripe = stripe_of(key);
        Stamp { stripe: stripe as u32, generation: self.generations[stripe].load(Ordering::Acquire) }
    }

    /// Whether no key stamped in `stamps` has been invalidated since.
    pub fn stamps_current(&self, stamps: &[Stamp]) -> bool {
        stamps.iter().all(|s| self.generations[s.stripe as usize].load(Ordering::Acquire) == s.generation)
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let g = |i: usize| self.stats[i].load(Ordering::Relaxed);
        CacheStats { local_hits: g(0), shared_hits: g(1), misses: g(2), loads: g(3) }
    }

    /// The value under `key`: cached, or loaded by `load` (once per key at a time) and
    /// cached for about `ttl` (`None`, "not found", for the negative TTL).
    ///
    /// # Errors
    /// Only the loader's; cache failures fall back to the loader.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<Option<Arc<T>>, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let generation = self.generation(key);
        if let Some(entry) = self.local.get(key)
            && entry.generation == generation
            && let Some(v) = entry.value.downcast_ref::<Option<Arc<T>>>()
        {
            self.count(0);
            return Ok(v.clone());
        }
        self.count(2);

        let flight_key = (key.to_string(), generation);
        let flight = Arc::clone(
            self.flights.lock().expect("flights lock is never poisoned").entry(flight_key.clone()).or_default(),
        );
        let result = flight
            .get_or_try_init(|| async {
                let (value, encoded_len): (Option<Arc<T>>, usize) = match self.from_shared::<T>(key).await {
                    Some(found) => found,
                    None => {
                        self.count(3);
                        let loaded = load().await?.map(Arc::new);
                        let mut len = 0;
                        if self.generation(key) == generation {
                            len = self.to_shared(key, &loaded, ttl).await;
                        }
                        (loaded, len)
                    }
                };
                let value: AnyValue = Arc::new(value);
                if self.generation(key) == generation {
                    let weight = weight(key, encoded_len);
                    self.local.insert(key.to_string(), Local { generation, value: Arc::clone(&value), weight });
                }
                Ok(value)
            })
            .await
            .cloned();
        {
            let mut flights = self.flights.lock().expect("flights lock is never poisoned");
            if flights.get(&flight_key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                flights.remove(&flight_key);
            }
        }
        let value = result?;
        Ok(value.downcast_ref::<Option<Arc<T>>>().cloned().flatten())
    }

    /// The value from the shared tier, and its encoded size.
    async fn from_shared<T: DeserializeOwned>(&self, key: &str) -> Option<(Option<Arc<T>>, usize)> {
        match self.shared.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Option<T>>(&bytes) {
                Ok(v) => {
                    self.count(1);
                    Some((v.map(Arc::new), bytes.len()))
                }
                Err(e) => {
                    tracing::warn!(key, error = %e, "undecodable cache entry; loading from the store");
                    None
                }
            },
            Ok(None) => {
                self.counters.shared_misses.increment(1);
                None
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "shared cache unavailable; loading from the store");
                None
            }
        }
    }

    /// Stores the value in the shared tier; returns its encoded size.
    async fn to_shared<T: Serialize>(&self, key: &str, value: &Option<Arc<T>>, ttl: Duration) -> usize {
        let ttl = if value.is_some() { jittered(ttl) } else { jittered(self.negative_ttl) };
        match serde_json::to_vec(&value.as_deref()) {
            Ok(bytes) => {
                let len = bytes.len();
                if let Err(e) = self.shared.set(key, Bytes::from(bytes), ttl).await {
                    tracing::warn!(key, error = %e, "could not fill the shared cache");
                }
                len
            }
            Err(e) => {
                tracing::error!(key, error = %e, "cache value would not serialise");
                0
            }
        }
    }

    /// Makes every later read of `keys` load afresh. Call after the store commits a write
    /// and before the write is acknowledged.
    ///
    /// # Errors
    /// The shared tier could not delete the keys (the local tier is already invalid).
    pub async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError> {
        self.invalidate_at(keys, 0).await
    }

    /// [`ReadThrough::invalidate`] for a write the store committed at `position`: later
    /// loads of these keys are told, by [`ReadThrough::fence`], to read data at least that
    /// fresh (a replica that has not replayed the write must not refill the cache).
    ///
    /// # Errors
    /// As [`ReadThrough::invalidate`].
    pub async fn invalidate_at(&self, keys: &[String], position: u64) -> Result<(), CacheError> {
        for k in keys {
            let stripe = stripe_of(k);
            // the fence first: a load that sees the new generation also sees the new fence
            self.fences[stripe].fetch_max(position, Ordering::AcqRel);
            self.generations[stripe].fetch_add(1, Ordering::AcqRel);
            self.local.invalidate(k);
        }
        self.shared.delete(keys).await
    }

    /// How long local entries live at most.
    pub fn local_ttl(&self) -> Duration {
        self.local_ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryCache;
    use std::sync::atomic::AtomicUsize;

    fn rt() -> ReadThrough {
        ReadThrough::new(Arc::new(MemoryCache::new(1 << 20)), 1 << 20, Duration::from_secs(60), Duration::from_secs(5))
    }

    #[tokio::test]
    async fn the_local_tier_stays_within_its_byte_bound() {
        let c = ReadThrough::new(Arc::new(MemoryCache::new(1 << 20)), 64 * 1024, Duration::from_secs(60), Duration::from_secs(5));
        for i in 0..1000 {
            c.get_or_load(&format!("k{i}"), Duration::from_secs(60), || async { Ok::<_, ()>(Some("x".repeat(1000))) })
                .await
                .unwrap();
        }
        c.local.run_pending_tasks();
        assert!(c.local.weighted_size() <= 64 * 1024, "{} bytes", c.local.weighted_size());
        assert!(c.local.entry_count() > 0);
    }

    #[tokio::test]
    async fn stamps_turn_stale_when_their_key_is_invalidated() {
        let c = rt();
        let (a, b) = (c.stamp("a"), c.stamp("b"));
        assert!(c.stamps_current(&[a, b]));
        c.invalidate(&["b".into()]).await.unwrap();
        assert!(c.stamps_current(&[a]));
        assert!(!c.stamps_current(&[a, b]));
    }

    #[test]
    fn keys_spread_over_the_stripes() {
        let mut used = std::collections::HashSet::new();
        for i in 0..20_000 {
            used.insert(stripe_of(&format!("article:{}", 120_000_000_000_000i64 + i * 4096)));
        }
        assert!(used.len() > 15_000, "{} stripes used", used.len());
        assert_eq!(stripe_of("article:1"), stripe_of("article:1"));
    }

    #[tokio::test]
    async fn a_second_read_is_served_locally() {
        let c = rt();
        let v = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(7u32)) }).await.unwrap();
        assert_eq!(v.as_deref(), Some(&7));
        let v = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(8u32)) }).await.unwrap();
        assert_eq!(v.as_deref(), Some(&7));
        assert_eq!(c.stats(), CacheStats { local_hits: 1, shared_hits: 0, misses: 1, loads: 1 });
    }

    #[tokio::test]
    async fn not_found_is_cached_too() {
        let c = rt();
        for _ in 0..3 {
            let v = c.get_or_load("none", Duration::from_secs(60), || async { Ok::<Option<u32>, ()>(None) }).await.unwrap();
            assert_eq!(v, None);
        }
        assert_eq!(c.stats().loads, 1);
    }

    #[tokio::test]
    async fn invalidation_makes_the_next_read_load_afresh() {
        let c = rt();
        c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(1u32)) }).await.unwrap();
        c.invalidate(&["k".into()]).await.unwrap();
        let v = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(2u32)) }).await.unwrap();
        assert_eq!(v.as_deref(), Some(&2));
    }

    #[tokio::test]
    async fn errors_are_returned_and_not_cached() {
        let c = rt();
        let e = c.get_or_load::<u32, _, _, _>("k", Duration::from_secs(60), || async { Err("db down") }).await;
        assert_eq!(e, Err("db down"));
        let v = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, &str>(Some(3u32)) }).await.unwrap();
        assert_eq!(v.as_deref(), Some(&3));
    }

    #[tokio::test]
    async fn a_load_that_raced_a_write_does_not_fill_the_cache() {
        let c = Arc::new(rt());
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let c2 = Arc::clone(&c);
        let slow = tokio::spawn(async move {
            c2.get_or_load("k", Duration::from_secs(60), || async move {
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
        let fresh = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some("new".to_string())) }).await.unwrap();
        assert_eq!(fresh.as_deref().map(String::as_str), Some("new"));
        go_tx.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap().as_deref().map(String::as_str), Some("old"));
        let after = c.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some("newer".to_string())) }).await.unwrap();
        assert_eq!(after.as_deref().map(String::as_str), Some("new"), "the stale load must not have overwritten the fresh entry");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_load_once() {
        let c = Arc::new(rt());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (c, loads) = (Arc::clone(&c), Arc::clone(&loads));
            tasks.push(tokio::spawn(async move {
                c.get_or_load("hot", Duration::from_secs(60), || async {
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
        let a = ReadThrough::new(shared.clone(), 1 << 20, Duration::from_secs(60), Duration::from_secs(5));
        a.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(vec![1u8, 2])) }).await.unwrap();
        let b = ReadThrough::new(shared, 1 << 20, Duration::from_secs(60), Duration::from_secs(5));
        let v = b.get_or_load("k", Duration::from_secs(60), || async { Ok::<_, ()>(Some(vec![9u8])) }).await.unwrap();
        assert_eq!(v.as_deref(), Some(&vec![1u8, 2]));
        assert_eq!(b.stats().shared_hits, 1);
    }
}
