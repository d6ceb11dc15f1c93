//! The `Cache` and `Sessions` seams.
//!
//! - [`Cache`]: bytes in, bytes out, with a TTL per entry and a version per key. Backends:
//!   [`MemoryCache`] (in-process, moka), [`NoCache`] (caches nothing) and, in
//!   `crescendo-cache-redis`, a ring of Redis servers shared by every web node.
//! - [`ReadThrough`]: the typed layer the application uses. It keeps decoded values in a
//!   local (near) tier in front of a [`Cache`], loads each missing key once at a time
//!   (single-flight), caches "not found" too, adds jitter to TTLs, and never lets a load that
//!   raced with a write fill the cache (see [`ReadThrough::invalidate`]).
//! - [`Sessions`]: small shared state with expiry (web sessions, CSRF, rate-limit counters,
//!   idempotency records). Backends: [`MemorySessions`]; Redis in `crescendo-cache-redis`.
//! - [`surrogate`]: the cache keys a request's answer depended on, and their tokens
//!   ([`surrogate_key`]) by which an edge cache is told to drop the answer.
//!
//! A shared tier whose servers report every change to this process ([`Cache::trust_epoch`],
//! [`NearInvalidations`]) lets the near tier serve a copy without asking; see `ReadThrough`'s
//! module docs for when it may.
//!
//! This crate names no Redis types.

mod memory;
mod read_through;
mod sessions;
pub mod surrogate;

pub use memory::MemoryCache;
pub use read_through::stable_hash;
pub use read_through::{CacheStats, LEASE_RENEW_EVERY, ReadThrough, Stamp, skip_fill};
pub use sessions::{MemorySessions, Sessions};
pub use surrogate::surrogate_key;

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

/// What a [`Cache`] holds for a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The key's version: a random number replaced by every invalidation of the key, so a
    /// fill or a near copy made under an older version is recognised as stale. 0 when the
    /// backend keeps no versions (it stores nothing).
    pub version: u64,
    /// The lowest store position (see `crescendo_store::fence`) a load of this key must
    /// read: that of the last write that invalidated it. [`UNKNOWN_FENCE`] when the cache
    /// cannot tell (it lost its entries), so the load reads the freshest copy.
    pub fence: u64,
    /// The value stored under `version`, unless the caller already holds that version.
    pub value: Option<Bytes>,
    /// With no value: another process holds the load lease of this key (it is loading it
    /// now), so the caller should wait for its fill rather than load the key again. False
    /// when the caller got the lease, or the backend keeps none.
    pub wait: bool,
}

/// [`Lookup::fence`] when the cache does not know which writes a load must see.
pub const UNKNOWN_FENCE: u64 = u64::MAX;

/// A cache that keeps nothing: every read misses. For several web nodes without a shared
/// cache tier, since one node's cache cannot see another node's writes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCache;

#[async_trait]
impl Cache for NoCache {
    async fn lookup(&self, _key: &str, _known: u64) -> Result<Lookup, CacheError> {
        Ok(Lookup::default())
    }
    async fn fill(
        &self,
        _key: &str,
        _version: u64,
        _value: Bytes,
        _ttl: Duration,
    ) -> Result<(), CacheError> {
        Ok(())
    }
    async fn invalidate(&self, _keys: &[String], _position: u64) -> Result<(), CacheError> {
        Ok(())
    }
}

/// A byte cache with a TTL per entry and, when several processes share it, a version per key.
///
/// The protocol that keeps every reader on every node from seeing data older than the last
/// acknowledged write (DESIGN.md's consistency contract):
/// 1. a reader calls [`Cache::lookup`]: the key's current version (created when absent) and
///    the value stored under it;
/// 2. on a miss it loads from the store, reading at least at [`Lookup::fence`], and calls
///    [`Cache::fill`] with the version from step 1, which stores the value only if the key
///    still has that version: a load that raced a write never fills. When a shared backend
///    says [`Lookup::wait`], another process is loading the key: the reader looks again
///    shortly instead, so one load serves every node;
/// 3. a writer, after the store commits and before it answers, calls [`Cache::invalidate`],
///    which gives each key a new version and drops its value.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// Whether processes other than this one write through the cache, so a near copy of an
    /// entry must be checked against the entry's version before it is served.
    fn versioned(&self) -> bool {
        false
    }
    /// The key's version and value; `value` is left out when the version is `known`
    /// (the caller holds a copy of it already).
    async fn lookup(&self, key: &str, known: u64) -> Result<Lookup, CacheError>;
    /// Stores `value` under `key` for `ttl` if the key's version is still `version`.
    async fn fill(
        &self,
        key: &str,
        version: u64,
        value: Bytes,
        ttl: Duration,
    ) -> Result<(), CacheError>;
    /// Gives the keys new versions and drops their values; `position` is the store position
    /// of the write (0 when the store has none), which later loads of the keys must read.
    async fn invalidate(&self, keys: &[String], position: u64) -> Result<(), CacheError>;
    /// Ends the load lease this process got for `key` at `version` without filling it (its
    /// load failed, or must not fill), so readers waiting on other nodes load at once
    /// instead of waiting out the lease.
    async fn release(&self, _key: &str, _version: u64) -> Result<(), CacheError> {
        Ok(())
    }
    /// Extends the load lease this process holds for `key` at `version` (a load that takes
    /// longer than the lease keeps it while it runs, so readers on other nodes go on
    /// waiting for its fill instead of loading too). [`ReadThrough`] renews every
    /// [`LEASE_RENEW_EVERY`]; a backend's lease must outlast a few of those. Nothing happens
    /// when the lease is no longer this process's.
    async fn renew(&self, _key: &str, _version: u64) -> Result<(), CacheError> {
        Ok(())
    }
    /// The current versions of `keys`, 0 for a key that has none; one round trip per server.
    async fn versions(&self, keys: &[&str]) -> Result<Vec<u64>, CacheError> {
        Ok(vec![0; keys.len()])
    }
    /// Whether the cache server tells this process of every other process's change to any
    /// key, now: `Some(epoch)` while it does, where `epoch` changes whenever that stops or
    /// starts again (a channel to a server dropped or came back, or a server was flushed).
    /// A near copy made while the epoch was `e`, and told of no change since, may then be
    /// served without [`Cache::lookup`] for as long as the epoch stays `e`. `None` (the
    /// default): every near copy of a [`Cache::versioned`] tier is checked.
    fn trust_epoch(&self) -> Option<u64> {
        None
    }
    /// A time (milliseconds since the Unix epoch, on this process's clock) such that every
    /// change any process made to the cache before it has been reported to this process,
    /// while the trust epoch holds: a request whose user's last write ended before it may
    /// trust near copies like any other request. `None` (the default): not known, so such a
    /// request checks every near copy.
    fn reported_through(&self) -> Option<u64> {
        None
    }
    /// Drops every entry, on every server of a shared tier, and makes later loads of any key
    /// read at least at store position `position` and at every position the cache had been
    /// told of before (so no acknowledged write is forgotten): what a region's invalidator
    /// does while the cross-region invalidation stream is lost. A load that looked its key up
    /// before cannot fill afterwards (its version is gone); a near tier is told to drop
    /// everything ([`NearInvalidations::all`]) by the tier's change reports.
    ///
    /// # Errors
    /// The cache cannot be emptied (the default: it is not a shared tier).
    async fn empty(&self, _position: u64) -> Result<(), CacheError> {
        Err(CacheError::Unavailable(
            "only a shared cache tier can be emptied for another process".into(),
        ))
    }
    /// Registers where this cache reports changes other processes make (see
    /// [`NearInvalidations`]); [`ReadThrough::new`] registers its near tier. A cache that
    /// reports nothing ignores it.
    fn on_invalidations(&self, _sink: std::sync::Arc<dyn NearInvalidations>) {}
}

/// Where a shared [`Cache`] reports, as its servers tell it, changes to keys made by any
/// process: a near tier drops its trust in its copies of them (see [`Cache::trust_epoch`]).
/// Called from the connection that receives the reports, so implementations must not block.
pub trait NearInvalidations: Send + Sync + 'static {
    /// These keys changed (were invalidated, filled, evicted or expired).
    fn keys(&self, keys: &[&str]);
    /// Any key may have changed (a server was flushed, or a report channel was lost).
    fn all(&self);
}
