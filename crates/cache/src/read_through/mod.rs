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
//!   caller but fills nothing. The generation check and the fill are two steps, so the fill
//!   itself names the shared tier's version read before the load, and the tier refuses it
//!   if an invalidation came in between (the in-memory tier compares and stores under the
//!   lock its invalidation takes). That is all the single-server rung needs, at no round trip.
//! - **Other processes' writes** (a [`Cache::versioned`] tier shared by several web nodes):
//!   every key has a version in the shared tier, replaced by each invalidation. A local entry
//!   remembers the version it was loaded under and is served only after the shared tier
//!   confirms that version is still current: one small round trip (the value is not sent
//!   again) instead of a full read. A fill names the version its load started under and is
//!   refused if the key changed meanwhile.
//! - **Reported changes** (a tier whose servers tell this process of every change to any
//!   key, [`Cache::trust_epoch`]; the Redis ring does with client tracking): a near copy is
//!   served with no round trip at all while three things hold: (1) the tier's trust epoch is
//!   the one read before the copy's version was read or confirmed (no report channel has
//!   dropped or come back, and no server was flushed, since); (2) no report has named the
//!   key's stripe since then (a per-stripe counter of reported changes); (3) the read does
//!   not ask for the check ([`ReadThrough::get_or_load_fenced`]: a request carrying a raised
//!   read fence, whose user wrote recently, still confirms the version, so a writer sees
//!   their write at once on every node). Everyone else sees another node's write once its
//!   report arrives (README: the invalidation delay). A report makes copies of its keys
//!   untrusted, not unusable: the next read confirms the version (no value sent) and trusts
//!   the copy again. Reports do not bump the generation that gates fills, since a server
//!   reports every change, fills and version stubs made by this process's own loads
//!   included: the shared tier's version check already refuses fills that raced a write.
//!   When a report channel drops, the tier changes its epoch and reports `all`: the near
//!   tier is emptied, and nothing is trusted until every channel is back (a new epoch).
//!
//! Single-flight is per (key, generation, version), so a read that starts after an
//! invalidation never joins a load that started before it; a read that comes to its flight
//! after an earlier one of the same triple ended takes that flight's near copy instead of
//! loading again (its lookup predates the fill). Across processes, a shared tier
//! that keeps load leases ([`Lookup::wait`](crate::Lookup::wait)) lets one node load a
//! missing key while the others wait briefly for its fill: after a write, the key is loaded
//! once, not once per node.
//!
//! Submodules: `load` (the read path), `stamps` ([`Stamp`]) and `stripes` (where a key's
//! invalidation state lives, [`stable_hash`]).

mod load;
mod stamps;
mod stripes;
#[cfg(test)]
mod tests;

pub use crescendo_domain::stable_hash;
pub use load::{LEASE_RENEW_EVERY, skip_fill};
pub use stamps::Stamp;

use crate::{Cache, CacheError, NearInvalidations};
use crescendo_telemetry::names;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stripes::{STRIPES, stripe_of};
use tokio::sync::OnceCell;

type AnyValue = Arc<dyn Any + Send + Sync>;
type Flight = Arc<OnceCell<AnyValue>>;

#[derive(Clone)]
struct Local {
    generation: u64,
    /// The shared tier's version of the key when this copy was made (0: unversioned tier).
    version: u64,
    value: AnyValue,
    /// The shared tier's trust epoch read before `version` was read or confirmed (`None`:
    /// the tier reports no changes, so the copy is always checked).
    epoch: Option<u64>,
    /// The key's stripe's count of reported changes, read at the same moment.
    reported: u64,
    /// Approximate bytes held: the encoded size, three times over (the decoded value and
    /// up to two renderings of it), plus the key.
    weight: u32,
}

fn weight(key: &str, encoded_len: usize) -> u32 {
    (key.len() + encoded_len * 3 + 64).min(u32::MAX as usize) as u32
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
    /// Local hits served without asking the shared tier (its servers report changes).
    pub unchecked_hits: u64,
}

/// The near tier as the shared tier's reports reach it (see the module docs).
struct Reported {
    local: moka::sync::Cache<String, Local>,
    /// Per stripe, how many reported changes named a key in it.
    counts: Arc<[AtomicU64]>,
    reports: metrics::Counter,
    flushes: metrics::Counter,
}

impl NearInvalidations for Reported {
    fn keys(&self, keys: &[&str]) {
        self.reports.increment(1);
        for k in keys {
            self.counts[stripe_of(k)].fetch_add(1, Ordering::AcqRel);
        }
    }

    fn all(&self) {
        self.flushes.increment(1);
        self.local.invalidate_all();
    }
}

/// Typed read-through cache; see the module docs for its consistency rules.
pub struct ReadThrough {
    shared: Arc<dyn Cache>,
    /// Whether other processes write through `shared` (local entries need its version check).
    versioned: bool,
    local: moka::sync::Cache<String, Local>,
    /// Generation per stripe of keys; bumped by every invalidation of a key in the stripe.
    generations: Box<[AtomicU64]>,
    /// Per stripe, the count of changes the shared tier reported (see [`Reported`]).
    reported: Arc<[AtomicU64]>,
    /// Per stripe, the highest store position (see `crescendo_store::fence`) of a write from
    /// this process that invalidated a key in it: a load must read data at least that fresh.
    fences: Box<[AtomicU64]>,
    /// Loads in progress, per (key, generation, version).
    flights: Mutex<HashMap<(String, u64, u64), Flight>>,
    /// TTL of "not found" entries.
    negative_ttl: Duration,
    /// Upper bound on how long a local entry lives.
    local_ttl: Duration,
    stats: [AtomicU64; 6],
    /// Registered once: looking a labelled metric up costs more than the cache hit it counts.
    counters: Counters,
}

struct Counters {
    local_hits: metrics::Counter,
    local_misses: metrics::Counter,
    shared_hits: metrics::Counter,
    shared_misses: metrics::Counter,
    loads: metrics::Counter,
    unchecked_hits: metrics::Counter,
    load_time: metrics::Histogram,
}

impl std::fmt::Debug for ReadThrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadThrough")
            .field("stats", &self.stats())
            .finish()
    }
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
        let local = moka::sync::Cache::builder()
            .max_capacity(local_max_bytes)
            .weigher(|_k: &String, v: &Local| v.weight)
            .time_to_live(local_ttl)
            .eviction_listener(move |_k, _v, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .build();
        let reported: Arc<[AtomicU64]> = (0..STRIPES).map(|_| AtomicU64::new(0)).collect();
        shared.on_invalidations(Arc::new(Reported {
            local: local.clone(),
            counts: Arc::clone(&reported),
            reports: metrics::counter!(names::CACHE_REPORTS, "kind" => "keys"),
            flushes: metrics::counter!(names::CACHE_REPORTS, "kind" => "all"),
        }));
        Self {
            versioned: shared.versioned(),
            shared,
            local,
            reported,
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
                unchecked_hits: metrics::counter!(names::CACHE_UNCHECKED_HITS),
                load_time: metrics::histogram!(names::CACHE_LOAD_DURATION),
            },
        }
    }

    fn generation(&self, key: &str) -> u64 {
        self.generations[stripe_of(key)].load(Ordering::Acquire)
    }

    /// How many changes to keys of `key`'s stripe the shared tier has reported.
    fn reported(&self, key: &str) -> u64 {
        self.reported[stripe_of(key)].load(Ordering::Acquire)
    }

    fn count(&self, i: usize) {
        self.stats[i].fetch_add(1, Ordering::Relaxed);
        let c = &self.counters;
        let counter = match i {
            0 => &c.local_hits,
            1 => &c.shared_hits,
            2 => &c.local_misses,
            3 => &c.loads,
            _ => &c.unchecked_hits,
        };
        counter.increment(1);
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
            unchecked_hits: g(5),
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

    /// The shared tier's [`Cache::reported_through`].
    pub fn reported_through(&self) -> Option<u64> {
        self.shared.reported_through()
    }
}
