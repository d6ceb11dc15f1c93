//! `ReadThrough`: typed read-through caching over a [`Cache`], with a local decoded tier.
//!
//! Reads: local (near) tier (decoded `Arc<T>`, no copy, no decode) → shared [`Cache`]
//! (bytes, JSON) → the loader (the store). What the loader returns, found or not found,
//! fills both tiers.
//!
//! Consistency (DESIGN.md's contract): no read that starts after a write was acknowledged may
//! see data older than that write. Writers call [`ReadThrough::invalidate`] after the store
//! commits and before they answer. Two mechanisms make that hold:
//!
//! - **This process's writes**: invalidation bumps a generation counter for each key (a
//!   fixed array of striped counters, so memory stays bounded) and drops the key from both
//!   tiers. A local entry is served only while its key's generation is the one it was loaded
//!   under, and a load whose key was invalidated while it ran returns its result to its own
//!   caller but fills nothing. That is all the single-server rung needs, at no round trip.
//! - **Other processes' writes** (a [`Cache::versioned`] tier shared by several web nodes):
//!   every key has a version in the shared tier, replaced by each invalidation. A local entry
//!   remembers the version it was loaded under and is served only after the shared tier
//!   confirms that version is still current: one small round trip (the value is not sent
//!   again) instead of a full read. A fill names the version its load started under and is
//!   refused if the key changed meanwhile.
//!
//! Single-flight is per (key, generation, version), so a read that starts after an
//! invalidation never joins a load that started before it. Across processes, a shared tier
//! that keeps load leases ([`Lookup::wait`]) lets one node load a missing key while the
//! others wait briefly for its fill: after a write, the key is loaded once, not once per node.

use crate::{Cache, CacheError, Lookup, UNKNOWN_FENCE};
use bytes::Bytes;
use crescendo_telemetry::names;
use serde::{Serialize, de::DeserializeOwned};
use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

type AnyValue = Arc<dyn Any + Send + Sync>;
type Flight = Arc<OnceCell<AnyValue>>;

const STRIPES: usize = 1 << 16;

#[derive(Clone)]
struct Local {
    generation: u64,
    /// The shared tier's version of the key when this copy was made (0: unversioned tier).
    version: u64,
    value: AnyValue,
    /// Approximate bytes held: the encoded size, three times over (the decoded value and
    /// up to two renderings of it), plus the key.
    weight: u32,
}

fn weight(key: &str, encoded_len: usize) -> u32 {
    (key.len() + encoded_len * 3 + 64).min(u32::MAX as usize) as u32
}

/// A stamp of one key at one moment: its local generation and its shared version. A value
/// derived from several cached keys (a hydrated page of a list, say) takes stamps of its
/// keys *before* reading them ([`ReadThrough::stamps`]), and stays valid while
/// [`ReadThrough::stamps_current`] says every stamp is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamp {
    key: String,
    stripe: u32,
    generation: u64,
    version: u64,
}

/// Counters of one [`ReadThrough`], for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from the local tier.
    pub local_hits: u64,
    /// Served from the shared tier.
    pub shared_hits: u64,
    /// Missed the local tier.
    pub misses: u64,
    /// Loader calls (misses of both tiers, after single-flight).
    pub loads: u64,
    /// Waits for another process's load of a key (it held the key's load lease).
    pub lease_waits: u64,
}

/// Typed read-through cache; see the module docs for its consistency rules.
pub struct ReadThrough {
    shared: Arc<dyn Cache>,
    /// Whether other processes write through `shared` (local entries need its version check).
    versioned: bool,
    local: moka::sync::Cache<String, Local>,
    /// Generation per stripe of keys; bumped by every invalidation of a key in the stripe.
    generations: Box<[AtomicU64]>,
    /// Per stripe, the highest store position (see `crescendo_store::fence`) of a write from
    /// this process that invalidated a key in it: a load must read data at least that fresh.
    fences: Box<[AtomicU64]>,
    /// Loads in progress, per (key, generation, version).
    flights: Mutex<HashMap<(String, u64, u64), Flight>>,
    /// TTL of "not found" entries.
    negative_ttl: Duration,
    /// Upper bound on how long a local entry lives.
    local_ttl: Duration,
    stats: [AtomicU64; 5],
    /// Registered once: looking a labelled metric up costs more than the cache hit it counts.
    counters: Counters,
}

struct Counters {
    local_hits: metrics::Counter,
    local_misses: metrics::Counter,
    shared_hits: metrics::Counter,
    shared_misses: metrics::Counter,
    loads: metrics::Counter,
    load_time: metrics::Histogram,
}

impl std::fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough")
            .field("stats", &self.stats())
            .finish()
    }
}

/// A stable 64-bit hash of `bytes`: multiply-rotate over 8-byte words, then a final mix.
/// Written out here so it never changes with the toolchain (std's hasher may), since cache
/// servers and web nodes of different builds must agree on where a key lives.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
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
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 29)
}

/// The stripe of a key.
fn stripe_of(key: &str) -> usize {
    (stable_hash(key.as_bytes()) as usize) & (STRIPES - 1)
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
    pub fn new(
        shared: Arc<dyn Cache>,
        local_max_bytes: u64,
        local_ttl: Duration,
        negative_ttl: Duration,
    ) -> Self {
        let evictions = metrics::counter!(names::CACHE_EVICTIONS, "layer" => "local");
        Self {
            versioned: shared.versioned(),
            shared,
            local: moka::sync::Cache::builder()
                .max_capacity(local_max_bytes)
                .weigher(|_k: &String, v: &Local| v.weight)
                .time_to_live(local_ttl)
                .eviction_listener(move |_k, _v, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        evictions.increment(1);
                    }
                })
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
                load_time: metrics::histogram!(names::CACHE_LOAD_DURATION),
            },
        }
    }

    fn generation(&self, key: &str) -> u64 {
        self.generations[stripe_of(key)].load(Ordering::Acquire)
    }

    fn count(&self, i: usize) {
        self.stats[i].fetch_add(1, Ordering::Relaxed);
        let c = &self.counters;
        [&c.local_hits, &c.shared_hits, &c.local_misses, &c.loads][i].increment(1);
    }

    /// Stamps of `keys` as they are now; take them before reading the keys.
    pub async fn stamps(&self, keys: Vec<String>) -> Vec<Stamp> {
        let mut stamps: Vec<Stamp> = keys
            .into_iter()
            .map(|key| {
                let stripe = stripe_of(&key);
                let generation = self.generations[stripe].load(Ordering::Acquire);
                Stamp {
                    key,
                    stripe: stripe as u32,
                    generation,
                    version: 0,
                }
            })
            .collect();
        if self.versioned {
            let keys: Vec<&str> = stamps.iter().map(|s| s.key.as_str()).collect();
            // a failure leaves versions at 0, which never counts as current
            if let Ok(versions) = self.shared.versions(&keys).await {
                for (s, v) in stamps.iter_mut().zip(versions) {
                    s.version = v;
                }
            }
        }
        stamps
    }

    /// Whether no key stamped in `stamps` has been invalidated since (by this process or,
    /// with a versioned shared tier, by any).
    pub async fn stamps_current(&self, stamps: &[Stamp]) -> bool {
        let local = stamps
            .iter()
            .all(|s| self.generations[s.stripe as usize].load(Ordering::Acquire) == s.generation);
        if !local || !self.versioned {
            return local;
        }
        let keys: Vec<&str> = stamps.iter().map(|s| s.key.as_str()).collect();
        match self.shared.versions(&keys).await {
            Ok(versions) => {
                versions.len() == stamps.len()
                    && stamps
                        .iter()
                        .zip(versions)
                        .all(|(s, v)| v != 0 && v == s.version)
            }
            Err(_) => false,
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let g = |i: usize| self.stats[i].load(Ordering::Relaxed);
        CacheStats {
            local_hits: g(0),
            shared_hits: g(1),
            misses: g(2),
            loads: g(3),
            lease_waits: g(4),
        }
    }

    /// The value under `key`: cached, or loaded by `load` (once per key at a time per
    /// process) and cached for about `ttl` (`None`, "not found", for the negative TTL).
    /// `load` is given the store position it must read at least (see
    /// `crescendo_store::fence`): that of the last write that invalidated the key, or
    /// [`UNKNOWN_FENCE`] when the shared tier cannot say.
    ///
    /// # Errors
    /// Only the loader's; cache failures fall back to the loader.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        load: F,
    ) -> Result<Option<Arc<T>>, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let generation = self.generation(key);
        let near = self.local.get(key).filter(|e| e.generation == generation);
        if !self.versioned
            && let Some(v) = near
                .as_ref()
                .and_then(|e| e.value.downcast_ref::<Option<Arc<T>>>())
        {
            self.count(0);
            return Ok(v.clone());
        }
        let known = near.as_ref().map_or(0, |e| e.version);
        let looked = match self.shared.lookup(key, known).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(key, error = %e, "shared cache unavailable; loading from the store");
                None
            }
        };
        if let (Some(l), Some(e)) = (&looked, &near)
            && l.version != 0
            && l.version == e.version
            && let Some(v) = e.value.downcast_ref::<Option<Arc<T>>>()
        {
            self.count(0);
            return Ok(v.clone());
        }
        self.count(2);
        // With a versioned tier out of reach nothing can be checked later, so nothing is kept.
        let keep = !self.versioned || looked.as_ref().is_some_and(|l| l.version != 0);
        let version = looked.as_ref().map_or(0, |l| l.version);
        let fence = self.load_fence(key, looked.as_ref());

        let flight_key = (key.to_string(), generation, version);
        let flight = Arc::clone(
            self.flights
                .lock()
                .expect("flights lock is never poisoned")
                .entry(flight_key.clone())
                .or_default(),
        );
        let result = flight
            .get_or_try_init(|| async {
                let (mut looked, mut version, mut fence) = (looked, version, fence);
                if let Some(l) = looked.as_ref().filter(|l| l.wait && l.value.is_none())
                    && let Some(now) = self.await_fill(key, l.version).await
                {
                    fence = self.load_fence(key, Some(&now));
                    version = now.version;
                    looked = Some(now);
                }
                // this process holds the key's load lease: it must fill it or let it go
                let leased = self.versioned
                    && looked
                        .as_ref()
                        .is_some_and(|l| l.value.is_none() && !l.wait);
                let from_shared = match looked {
                    Some(Lookup {
                        value: Some(bytes), ..
                    }) => self.decode::<T>(key, &bytes),
                    Some(_) => {
                        self.counters.shared_misses.increment(1);
                        None
                    }
                    None => None,
                };
                let (value, encoded_len): (Option<Arc<T>>, usize) = match from_shared {
                    Some(found) => found,
                    None => {
                        self.count(3);
                        let started = Instant::now();
                        let loaded = match load(fence).await {
                            Ok(v) => v.map(Arc::new),
                            Err(e) => {
                                if leased {
                                    let _ = self.shared.release(key, version).await;
                                }
                                return Err(e);
                            }
                        };
                        self.counters
                            .load_time
                            .record(started.elapsed().as_secs_f64());
                        let mut len = 0;
                        if keep && self.generation(key) == generation {
                            len = self.to_shared(key, version, &loaded, ttl).await;
                        } else if leased {
                            let _ = self.shared.release(key, version).await;
                        }
                        (loaded, len)
                    }
                };
                let value: AnyValue = Arc::new(value);
                if keep && self.generation(key) == generation {
                    let weight = weight(key, encoded_len);
                    self.local.insert(
                        key.to_string(),
                        Local {
                            generation,
                            version,
                            value: Arc::clone(&value),
                            weight,
                        },
                    );
                }
                Ok(value)
            })
            .await
            .cloned();
        {
            let mut flights = self.flights.lock().expect("flights lock is never poisoned");
            if flights
                .get(&flight_key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                flights.remove(&flight_key);
            }
        }
        let value = result?;
        Ok(value.downcast_ref::<Option<Arc<T>>>().cloned().flatten())
    }

    /// The store position a load of `key` must read at least: the shared tier's fence for it
    /// and this process's own invalidations of its stripe; [`UNKNOWN_FENCE`] when a versioned
    /// tier could not be asked.
    fn load_fence(&self, key: &str, looked: Option<&Lookup>) -> u64 {
        let own = self.fences[stripe_of(key)].load(Ordering::Acquire);
        match looked {
            Some(l) => l.fence.max(own),
            None if self.versioned => UNKNOWN_FENCE,
            None => own,
        }
    }

    /// Waits while another process loads `key` (it holds the shared tier's load lease for
    /// `version`), looking again after 1, 2, 4… ms (at most 16 ms apart, 1 s in all). Returns
    /// the lookup that ends the wait: one with the value, or one that gave this process the
    /// lease (the other loader died, or a write made a new version); `None` when the shared
    /// tier fails or the wait runs out, and the caller loads.
    async fn await_fill(&self, key: &str, version: u64) -> Option<Lookup> {
        self.stats[4].fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let waited = |outcome: &'static str| {
            metrics::histogram!(names::CACHE_LEASE_WAIT, "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
        };
        let mut pause = Duration::from_millis(1);
        while started.elapsed() < Duration::from_secs(1) {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(16));
            match self.shared.lookup(key, 0).await {
                Ok(l) if l.value.is_some() => {
                    waited("filled");
                    return Some(l);
                }
                Ok(l) if !l.wait => {
                    waited("leased");
                    return Some(l);
                }
                Ok(l) if l.version != version => {
                    tracing::debug!(key, "invalidated while waiting for another node's load")
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        waited("gave_up");
        tracing::warn!(
            key,
            waited_ms = started.elapsed().as_millis() as u64,
            "gave up waiting for another node's load"
        );
        None
    }

    /// A value the shared tier sent, decoded, and its encoded size.
    fn decode<T: DeserializeOwned>(
        &self,
        key: &str,
        bytes: &Bytes,
    ) -> Option<(Option<Arc<T>>, usize)> {
        match serde_json::from_slice::<Option<T>>(bytes) {
            Ok(v) => {
                self.count(1);
                Some((v.map(Arc::new), bytes.len()))
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "undecodable cache entry; loading from the store");
                None
            }
        }
    }

    /// Stores the value in the shared tier under `version`; returns its encoded size.
    async fn to_shared<T: Serialize>(
        &self,
        key: &str,
        version: u64,
        value: &Option<Arc<T>>,
        ttl: Duration,
    ) -> usize {
        let ttl = if value.is_some() {
            jittered(ttl)
        } else {
            jittered(self.negative_ttl)
        };
        match serde_json::to_vec(&value.as_deref()) {
            Ok(bytes) => {
                let len = bytes.len();
                if let Err(e) = self
                    .shared
                    .fill(key, version, Bytes::from(bytes), ttl)
                    .await
                {
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
    /// The shared tier could not invalidate the keys (the local tier is already invalid).
    pub async fn invalidate(&self, keys: &[String]) -> Result<(), CacheError> {
        self.invalidate_at(keys, 0).await
    }

    /// [`ReadThrough::invalidate`] for a write the store committed at `position`: later
    /// loads of these keys, on any node, read data at least that fresh (a replica that has
    /// not replayed the write must not refill the cache).
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
        self.shared.invalidate(keys, position).await
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
            c.get_or_load(&format!("k{i}"), Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some("x".repeat(1000)))
            })
            .await
            .unwrap();
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
        let v = c
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some(7u32))
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&7));
        let v = c
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some(8u32))
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&7));
        assert_eq!(
            c.stats(),
            CacheStats {
                local_hits: 1,
                shared_hits: 0,
                misses: 1,
                loads: 1,
                lease_waits: 0
            }
        );
    }

    #[tokio::test]
    async fn not_found_is_cached_too() {
        let c = rt();
        for _ in 0..3 {
            let v = c
                .get_or_load("none", Duration::from_secs(60), |_| async {
                    Ok::<Option<u32>, ()>(None)
                })
                .await
                .unwrap();
            assert_eq!(v, None);
        }
        assert_eq!(c.stats().loads, 1);
    }

    #[tokio::test]
    async fn invalidation_makes_the_next_read_load_afresh() {
        let c = rt();
        c.get_or_load("k", Duration::from_secs(60), |_| async {
            Ok::<_, ()>(Some(1u32))
        })
        .await
        .unwrap();
        c.invalidate(&["k".into()]).await.unwrap();
        let v = c
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some(2u32))
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&2));
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
        let fresh = c
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some("new".to_string()))
            })
            .await
            .unwrap();
        assert_eq!(fresh.as_deref().map(String::as_str), Some("new"));
        go_tx.send(()).unwrap();
        assert_eq!(
            slow.await.unwrap().unwrap().as_deref().map(String::as_str),
            Some("old")
        );
        let after = c
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some("newer".to_string()))
            })
            .await
            .unwrap();
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
        a.get_or_load("k", Duration::from_secs(60), |_| async {
            Ok::<_, ()>(Some(vec![1u8, 2]))
        })
        .await
        .unwrap();
        let b = ReadThrough::new(
            shared,
            1 << 20,
            Duration::from_secs(60),
            Duration::from_secs(5),
        );
        let v = b
            .get_or_load("k", Duration::from_secs(60), |_| async {
                Ok::<_, ()>(Some(vec![9u8]))
            })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&vec![1u8, 2]));
        assert_eq!(b.stats().shared_hits, 1);
    }
}
