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
    /// How many entries the store holds, when it can tell cheaply (the in-process store);
    /// `None` otherwise.
    async fn entry_count(&self) -> Result<Option<u64>, CacheError> {
        Ok(None)
    }
}

enum Value {
    Bytes(Bytes),
    Counter(u64),
}

/// One entry of a [`MemorySessions`].
struct Entry {
    value: Value,
    expires: Instant,
    /// When it was last read or written, on the store's own clock (a count of operations).
    used: u64,
}

/// The entries of a [`MemorySessions`].
type Entries = HashMap<String, Entry>;

/// What the mutex of a [`MemorySessions`] guards.
struct State {
    entries: Entries,
    /// The entry count at which the next sweep of expired entries runs.
    next_sweep: usize,
    /// The most entries kept.
    max_entries: usize,
    /// The store's clock: one tick per operation.
    clock: u64,
}

impl State {
    /// The live entry under `key`, marked as used now.
    fn live(&mut self, key: &str, now: Instant) -> Option<&mut Entry> {
        self.clock += 1;
        let clock = self.clock;
        let e = self.entries.get_mut(key).filter(|e| e.expires > now)?;
        e.used = clock;
        Some(e)
    }

    /// Stores `value` under `key` until `expires`, first making room for a new key.
    fn insert(&mut self, key: &str, value: Value, expires: Instant, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.max_entries {
            self.make_room(now);
        }
        self.clock += 1;
        let used = self.clock;
        self.entries.insert(
            key.to_string(),
            Entry {
                value,
                expires,
                used,
            },
        );
    }

    /// Drops the expired entries and then, if the store is still full, the least recently
    /// used ones: at least one, and a sixteenth of the bound at a time, so a full store
    /// pays for a scan once per many insertions rather than on each.
    fn make_room(&mut self, now: Instant) {
        self.entries.retain(|_, e| e.expires > now);
        if self.entries.len() < self.max_entries {
            return;
        }
        let drop = (self.entries.len() + 1 - self.max_entries).max(self.max_entries / 16);
        let mut uses: Vec<u64> = self.entries.values().map(|e| e.used).collect();
        let (_, &mut cutoff, _) = uses.select_nth_unstable(drop - 1);
        self.entries.retain(|_, e| e.used > cutoff);
        tracing::warn!(
            max_entries = self.max_entries,
            "the in-process session store is full; dropped the least recently used entries"
        );
    }
}

/// The default bound on a [`MemorySessions`]'s entries.
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// In-process `Sessions` for the single-server rung.
///
/// A mutex-guarded map: every operation is a few map steps, far below the cost of the
/// request around it. Expired entries are dropped when read, and swept whenever the map
/// has doubled since the last sweep, so it stays bounded by the live entries. It holds at
/// most a set number of entries: a new key in a full store first drops the expired ones,
/// then the least recently used (so the sessions of visitors who keep coming back are the
/// last to go).
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
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }
}

impl MemorySessions {
    /// An empty store of at most [`DEFAULT_MAX_ENTRIES`] entries.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store of at most `max_entries` entries (at least one).
    pub fn with_max_entries(max_entries: usize) -> Self {
        Self {
            inner: Mutex::new(State {
                entries: HashMap::new(),
                next_sweep: 1024,
                max_entries: max_entries.max(1),
                clock: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State, Instant) -> R) -> R {
        let mut guard = self.inner.lock().expect("sessions lock is never poisoned");
        let now = Instant::now();
        let state = &mut *guard;
        if state.entries.len() >= state.next_sweep {
            state.entries.retain(|_, e| e.expires > now);
            state.next_sweep = (state.entries.len() * 2).max(1024);
        }
        f(state, now)
    }
}

#[async_trait]
impl Sessions for MemorySessions {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.with(|m, now| match m.live(key, now) {
            Some(Entry {
                value: Value::Bytes(b),
                ..
            }) => Some(b.clone()),
            Some(Entry {
                value: Value::Counter(n),
                ..
            }) => Some(Bytes::from(n.to_string())),
            None => None,
        }))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        self.with(|m, now| m.insert(key, Value::Bytes(value), now + ttl, now));
        Ok(())
    }

    async fn put_if_absent(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        Ok(self.with(|m, now| {
            if m.live(key, now).is_some() {
                return false;
            }
            m.insert(key, Value::Bytes(value), now + ttl, now);
            true
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.with(|m, _| m.entries.remove(key));
        Ok(())
    }

    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        Ok(self.with(|m, now| {
            if let Some(Entry {
                value: Value::Counter(n),
                ..
            }) = m.live(key, now)
            {
                *n += 1;
                return *n;
            }
            m.insert(key, Value::Counter(1), now + window, now);
            1
        }))
    }

    async fn entry_count(&self) -> Result<Option<u64>, CacheError> {
        Ok(Some(self.with(|m, _| m.entries.len() as u64)))
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
    async fn a_full_store_drops_the_least_recently_used_entries() {
        let s = MemorySessions::with_max_entries(4);
        for i in 0..4 {
            s.put(&format!("k{i}"), Bytes::new(), Duration::from_secs(60))
                .await
                .unwrap();
        }
        // k0 is in use, so k1 is the least recently used
        assert!(s.get("k0").await.unwrap().is_some());
        s.put("k4", Bytes::new(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(s.entry_count().await.unwrap(), Some(4));
        assert!(
            s.get("k1").await.unwrap().is_none(),
            "the oldest unused goes"
        );
        for k in ["k0", "k2", "k3", "k4"] {
            assert!(s.get(k).await.unwrap().is_some(), "{k} is kept");
        }
        for i in 5..100 {
            s.increment(&format!("c{i}"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        assert_eq!(s.entry_count().await.unwrap(), Some(4), "the bound holds");
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
