//! `MemoryCache`: the in-process `Cache` backend on moka.

use crate::{Cache, CacheError, Lookup};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::{Duration, Instant};

/// An in-process byte cache, bounded by total bytes, with a TTL per entry.
///
/// moka evicts by TinyLFU admission and LRU eviction; since every write path deletes the
/// keys it changes, a refused admission only costs a later miss, never a stale read.
/// It keeps no versions: only this process writes through it, and [`crate::ReadThrough`]'s
/// own generations keep a load that raced a write from filling it.
#[derive(Clone)]
pub struct MemoryCache {
    inner: moka::sync::Cache<String, (Bytes, Duration)>,
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
        Self { inner }
    }
}

impl MemoryCache {
    fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.get(key).map(|(b, _)| b)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn lookup(&self, key: &str, _known: u64) -> Result<Lookup, CacheError> {
        Ok(Lookup {
            version: 0,
            fence: 0,
            value: self.get(key),
            wait: false,
        })
    }
    async fn fill(
        &self,
        key: &str,
        _version: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        self.inner.insert(key.to_string(), (value, ttl));
        Ok(())
    }
    async fn invalidate(&self, keys: &[String], _position: u64) -> Result<(), CacheError> {
        for k in keys {
            self.inner.invalidate(k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_expire_after_their_own_ttl() {
        let c = MemoryCache::new(1 << 20);
        c.fill(
            "short",
            0,
            Bytes::from_static(b"1"),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
        c.fill("long", 0, Bytes::from_static(b"2"), Duration::from_secs(60))
            .await
            .unwrap();
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
    async fn the_byte_bound_holds() {
        let c = MemoryCache::new(64 * 1024);
        for i in 0..1000 {
            c.fill(
                &format!("k{i}"),
                0,
                Bytes::from(vec![0u8; 1024]),
                Duration::from_secs(60),
            )
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
