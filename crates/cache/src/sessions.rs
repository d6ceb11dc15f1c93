//! The `Sessions` seam: small shared state with expiry.

use crate::CacheError;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Small shared state with expiry: web sessions, CSRF secrets, rate-limit counters,
/// idempotency records and short locks. Every node of a topology must see the same state,
/// so web nodes keep none of it in their own memory once a shared backend is configured.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;
    /// Stores `value` under `key` for `ttl`, replacing what was there.
    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// Stores `value` only if `key` is absent (or expired); `true` if it was stored.
    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, CacheError>;
    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Adds one to the counter under `key` and returns the new count. The counter starts
    /// at its first increment and disappears `window` later (a fixed window).
    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError>;
}

enum Value {
    Bytes(Bytes),
    Counter(u64),
}

/// The live entries of a [`MemorySessions`], each with its expiry.
type Entries = HashMap<String, (Value, Instant)>;

/// What the mutex of a [`MemorySessions`] guards.
struct State {
    entries: Entries,
    /// The entry count at which the next sweep of expired entries runs.
    next_sweep: usize,
}

/// In-process `Sessions` for the single-server rung.
///
/// A mutex-guarded map: every operation is a few map steps, far below the cost of the
/// request around it. Expired entries are dropped when read, and swept whenever the map
/// has doubled since the last sweep, so it stays bounded by the live entries.
pub struct MemorySessions {
    inner: Mutex<State>,
}

impl std::fmt::Debug for MemorySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySessions")
    }
}

impl Default for MemorySessions {
    fn default() -> Self {
        Self {
            inner: Mutex::new(State {
                entries: HashMap::new(),
                next_sweep: 1024,
            }),
        }
    }
}

impl MemorySessions {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Entries, Instant) -> R) -> R {
        let mut guard = self.inner.lock().expect("sessions lock is never poisoned");
        let now = Instant::now();
        let State {
            entries: map,
            next_sweep,
        } = &mut *guard;
        if map.len() >= *next_sweep {
            map.retain(|_, (_, exp)| *exp > now);
            *next_sweep = (map.len() * 2).max(1024);
        }
        f(map, now)
    }
}

#[async_trait]
impl Sessions for MemorySessions {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.with(|m, now| match m.get(key) {
            Some((Value::Bytes(b), exp)) if *exp > now => Some(b.clone()),
            Some((Value::Counter(n), exp)) if *exp > now => Some(Bytes::from(n.to_string())),
            _ => None,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.with(|m, now| m.insert(key.to_string(), (Value::Bytes(value), now + ttl)));
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        Ok(self.with(|m, now| match m.get(key) {
            Some((_, exp)) if *exp > now => false,
            _ => {
                m.insert(key.to_string(), (Value::Bytes(value), now + ttl));
                true
            }
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.with(|m, _| m.remove(key));
        Ok(())
    }

    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        Ok(self.with(|m, now| {
            let entry = m
                .entry(key.to_string())
                .or_insert((Value::Counter(0), now + window));
            if entry.1 <= now || !matches!(entry.0, Value::Counter(_)) {
                *entry = (Value::Counter(0), now + window);
            }
            match &mut entry.0 {
                Value::Counter(n) => {
                    *n += 1;
                    *n
                }
                Value::Bytes(_) => unreachable!("reset to a counter above"),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_if_absent_holds_until_expiry() {
        let s = MemorySessions::new();
        assert!(
            s.put_if_absent("lock", Bytes::from_static(b"a"), Duration::from_millis(30))
                .await
                .unwrap()
        );
        assert!(
            !s.put_if_absent("lock", Bytes::from_static(b"b"), Duration::from_millis(30))
                .await
                .unwrap()
        );
        assert_eq!(s.get("lock").await.unwrap(), Some(Bytes::from_static(b"a")));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.get("lock").await.unwrap(), None);
        assert!(
            s.put_if_absent("lock", Bytes::from_static(b"c"), Duration::from_secs(5))
                .await
                .unwrap()
        );
        s.delete("lock").await.unwrap();
        assert_eq!(s.get("lock").await.unwrap(), None);
    }

    #[tokio::test]
    async fn counters_reset_after_their_window() {
        let s = MemorySessions::new();
        for want in 1..=3 {
            assert_eq!(
                s.increment("login:ann", Duration::from_millis(30))
                    .await
                    .unwrap(),
                want
            );
        }
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            s.increment("login:ann", Duration::from_millis(30))
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn expired_entries_are_swept() {
        let s = MemorySessions::new();
        for i in 0..5000 {
            s.put(&format!("k{i}"), Bytes::new(), Duration::from_millis(1))
                .await
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        for i in 0..5000 {
            s.put(&format!("j{i}"), Bytes::new(), Duration::from_secs(60))
                .await
                .unwrap();
        }
        let len = s.inner.lock().unwrap().entries.len();
        assert!(len < 9000, "{len} entries kept");
    }
}
