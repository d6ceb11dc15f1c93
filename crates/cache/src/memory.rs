//! `MemoryCache`: the in-process `Cache` backend on moka.

use crate::{Cache, CacheError, Lookup, stable_hash};
use async_trait::async_trait;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many stripes of keys share one version.
const VERSION_STRIPES: usize = 1024;

/// An in-process byte cache, bounded by total bytes, with a TTL per entry.
///
/// moka evicts by TinyLFU admission and LRU eviction; since every write path deletes the
/// keys it changes, a refused admission only costs a later miss, never a stale read.
///
/// Keys have versions, as the [`Cache`] protocol asks: a fill is stored only if its key's
/// version is still the one [`Cache::lookup`] gave before the load, checked under the same
/// lock an invalidation holds while it replaces the version and drops the value. So a load
/// that read the store before a write can never fill after that write's invalidation, even
/// when the invalidation lands between a caller's own staleness check and its fill. A
/// version belongs to a stripe of keys (a fixed number, so memory stays bounded): an
/// invalidation of another key in the stripe only costs a refused fill, never a stale read.
/// [`Cache::versioned`] stays false: only this process writes through it, so a near copy
/// needs no round trip to be checked.
#[derive(Clone)]
pub struct MemoryCache {
    inner: moka::sync::Cache<String, (Bytes, Duration)>,
    /// Per stripe of keys, its version (never 0), bumped by each invalidation of a key in
    /// it. The lock is held across a fill's compare and insert and across an invalidation's
    /// bump and removal, so the two never interleave.
    versions: Arc<[Mutex<u64>]>,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("entries", &self.inner.entry_count())
            .finish()
    }
}

struct PerEntryTtl;

impl moka::Expiry<String, (Bytes, Duration)> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _k: &String,
        v: &(Bytes, Duration),
        _now: Instant,
    ) -> Option<Duration> {
        Some(v.1)
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &(Bytes, Duration),
        _now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.1)
    }
}

impl MemoryCache {
    /// A cache holding at most about `max_bytes` of keys and values.
    pub fn new(max_bytes: u64) -> Self {
        let inner = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &(Bytes, Duration)| {
                (k.len() + v.0.len() + 64).min(u32::MAX as usize) as u32
            })
            .expire_after(PerEntryTtl)
            .build();
        Self {
            inner,
            versions: (0..VERSION_STRIPES).map(|_| Mutex::new(1)).collect(),
        }
    }

    /// The version lock of `key`'s stripe.
    fn stripe(&self, key: &str) -> std::sync::MutexGuard<'_, u64> {
        let i = (stable_hash(key.as_bytes()) % VERSION_STRIPES as u64) as usize;
        self.versions[i]
            .lock()
            .expect("a version lock is never poisoned: nothing under it panics")
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn lookup(&self, key: &str, _known: u64) -> Result<Lookup, CacheError> {
        let version = self.stripe(key);
        Ok(Lookup {
            version: *version,
            fence: 0,
            value: self.inner.get(key).map(|(b, _)| b),
            wait: false,
        })
    }
    async fn fill(
        &self,
        key: &str,
        version: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let current = self.stripe(key);
        if *current == version {
            self.inner.insert(key.to_string(), (value, ttl));
        }
        Ok(())
    }
    async fn invalidate(&self, keys: &[String], _position: u64) -> Result<(), CacheError> {
        for k in keys {
            let mut version = self.stripe(k);
            *version = version.wrapping_add(1).max(1);
            self.inner.invalidate(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills `key` under `version` with `value` for a minute.
    async fn fill(c: &MemoryCache, key: &str, version: u64, value: &'static [u8]) {
        let ttl = Duration::from_secs(60);
        c.fill(key, version, Bytes::from_static(value), ttl)
            .await
            .unwrap();
    }

    /// Fills `key` under its current version, as a reader that just missed it would.
    async fn put(c: &MemoryCache, key: &str, value: &'static [u8], ttl: Duration) {
        let version = c.lookup(key, 0).await.unwrap().version;
        c.fill(key, version, Bytes::from_static(value), ttl)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn values_expire_after_their_own_ttl() {
        let c = MemoryCache::new(1 << 20);
        put(&c, "short", b"1", Duration::from_millis(20)).await;
        put(&c, "long", b"2", Duration::from_secs(60)).await;
        assert_eq!(
            c.lookup("short", 0).await.unwrap().value,
            Some(Bytes::from_static(b"1"))
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(c.lookup("short", 0).await.unwrap().value, None);
        assert_eq!(
            c.lookup("long", 0).await.unwrap().value,
            Some(Bytes::from_static(b"2"))
        );
        c.invalidate(&["long".into(), "absent".into()], 0)
            .await
            .unwrap();
        assert_eq!(c.lookup("long", 0).await.unwrap().value, None);
    }

    #[tokio::test]
    async fn a_fill_under_a_version_an_invalidation_replaced_is_refused() {
        // arrange: a reader misses the key and notes its version before loading
        let c = MemoryCache::new(1 << 20);
        let before = c.lookup("k", 0).await.unwrap();
        assert_eq!(before.value, None);
        // act: a write invalidates the key, then the reader's load of the old value fills
        c.invalidate(&["k".into()], 7).await.unwrap();
        fill(&c, "k", before.version, b"old").await;
        // assert: the old value was not stored; a fill under the new version is
        let after = c.lookup("k", 0).await.unwrap();
        assert_eq!(after.value, None, "a fill older than the write was stored");
        assert_ne!(after.version, before.version);
        fill(&c, "k", after.version, b"new").await;
        assert_eq!(
            c.lookup("k", 0).await.unwrap().value,
            Some(Bytes::from_static(b"new"))
        );
    }

    #[tokio::test]
    async fn the_byte_bound_holds() {
        let c = MemoryCache::new(64 * 1024);
        let value = Bytes::from(vec![0u8; 1024]);
        for i in 0..1000 {
            let key = format!("k{i}");
            let version = c.lookup(&key, 0).await.unwrap().version;
            c.fill(&key, version, value.clone(), Duration::from_secs(60))
                .await
                .unwrap();
        }
        c.inner.run_pending_tasks();
        assert!(
            c.inner.weighted_size() <= 64 * 1024,
            "{}",
            c.inner.weighted_size()
        );
    }
}
