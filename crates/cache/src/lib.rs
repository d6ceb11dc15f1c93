//! The `Cache` and `Sessions` seams.
//!
//! - [`Cache`]: bytes in, bytes out, with a TTL per entry. Backends: [`MemoryCache`]
//!   (in-process, moka) and [`NoCache`] (caches nothing: for several web nodes until the
//!   shared cache tier); a Redis ring later.
//! - [`ReadThrough`]: the typed layer the application uses. It keeps decoded values in a
//!   local (near) tier in front of a [`Cache`], loads each missing key once at a time
//!   (single-flight), caches "not found" too, adds jitter to TTLs, and never lets a load that
//!   raced with a write fill the cache (see [`ReadThrough::invalidate`]).
//! - [`Sessions`]: small shared state with expiry (web sessions, CSRF, rate-limit counters,
//!   idempotency records). Backend: [`MemorySessions`] now; Redis later.
//!
//! This crate names no Redis types.

mod memory;
mod read_through;
mod sessions;

pub use memory::MemoryCache;
pub use read_through::{CacheStats, ReadThrough, Stamp};
pub use sessions::{MemorySessions, Sessions};

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// What went wrong talking to a cache or session backend.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend cannot be reached; callers fall back to the store.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded (e.g. written by another version).
    #[error("cache value undecodable: {0}")]
    Decode(String),
}

/// A cache that keeps nothing: every read misses. What several web nodes run on until they
/// share a cache tier, since one node's cache cannot see another node's writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn get(&self, _key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(None)
    }
    async fn set(&self, _key: &str, _value: Bytes, _ttl: Duration) -> Result<(), CacheError> {
        Ok(())
    }
    async fn delete(&self, _keys: &[String]) -> Result<(), CacheError> {
        Ok(())
    }
}

/// A byte cache with per-entry TTL.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;
    /// Removes the keys (absent keys are fine).
    async fn delete(&self, keys: &[String]) -> Result<(), CacheError>;
}
