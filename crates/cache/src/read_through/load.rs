//! The read path of [`ReadThrough`]: the local tier, the shared tier, single-flight loads
//! from the store, waits on other processes' load leases, and the fills that follow.

use super::{AnyValue, Local, ReadThrough, stripe_of, weight};
use crate::{Lookup, UNKNOWN_FENCE};
use bytes::Bytes;
use crescendo_telemetry::names;
use serde::{Serialize, de::DeserializeOwned};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A read that missed the local tier: what its load needs to know.
struct Miss<'a> {
    key: &'a str,
    /// The key's generation when the read started: a load whose key was invalidated since
    /// fills nothing.
    generation: u64,
    /// Whether the load may fill the tiers at all: not with a versioned tier out of reach,
    /// since nothing could be checked later.
    keep: bool,
    /// TTL of a found value in the shared tier.
    ttl: Duration,
    /// The shared tier's trust epoch when the read started.
    epoch: Option<u64>,
    /// The key's stripe's count of reported changes when the read started.
    reported: u64,
}

/// How often a load that holds its key's lease renews it ([`crate::Cache::renew`]).
pub const LEASE_RENEW_EVERY: Duration = Duration::from_millis(150);

/// How long a reader waits for another process's load while that process holds the lease
/// (renewing it), before it loads itself.
const MAX_FILL_WAIT: Duration = Duration::from_secs(5);

tokio::task_local! {
    /// Whether the load running in this task may be cached; see [`skip_fill`].
    static KEEP: std::cell::Cell<bool>;
}

/// Called by a load: its value is served to this read but cached in neither tier (a
/// partial answer, gathered while part of the store was down). No effect outside a load.
pub fn skip_fill() {
    let _ = KEEP.try_with(|k| k.set(false));
}

/// `ttl` scaled by a random factor in [0.9, 1.1), so entries filled together expire apart.
fn jittered(ttl: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 2000;
    ttl.mul_f64(0.9 + r as f64 / 10_000.0)
}

impl ReadThrough {
    /// The value under `key`: cached, or loaded by `load` (once per key at a time per
    /// process) and cached for about `ttl` (`None`, "not found", for the negative TTL).
    /// `load` is given the store position it must read at least (see
    /// `crescendo_store::fence`): that of the last write that invalidated the key, or
    /// [`UNKNOWN_FENCE`] when the shared tier cannot say. A near copy may be served without
    /// asking the shared tier when its servers report changes (see the module docs), so a
    /// write through another node is seen once its report arrives.
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
        self.read(key, ttl, false, load).await
    }

    /// [`ReadThrough::get_or_load`] for a reader that must see every acknowledged write at
    /// once, on any node (a request whose read fence is raised: its user wrote recently):
    /// a near copy of a versioned shared tier is served only after the tier confirms its
    /// version, even while the tier reports changes.
    ///
    /// # Errors
    /// Only the loader's; cache failures fall back to the loader.
    pub async fn get_or_load_fenced<T, E, F, Fut>(
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
        self.read(key, ttl, true, load).await
    }

    /// The read path; `fenced` asks for the version check of a near copy.
    async fn read<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        fenced: bool,
        load: F,
    ) -> Result<Option<Arc<T>>, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let generation = self.generation(key);
        // both read before the version is, so a report that comes after it is noticed
        let reported = self.reported(key);
        let epoch = if self.versioned {
            self.shared.trust_epoch()
        } else {
            None
        };
        let near = self.local.get(key).filter(|e| e.generation == generation);
        let trusted = !self.versioned
            || (!fenced
                && epoch.is_some()
                && near
                    .as_ref()
                    .is_some_and(|e| e.epoch == epoch && e.reported == reported));
        if trusted
            && let Some(v) = near
                .as_ref()
                .and_then(|e| e.value.downcast_ref::<Option<Arc<T>>>())
        {
            self.count(0);
            if self.versioned {
                self.count(5);
            }
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
            if epoch.is_some()
                && (e.epoch != epoch || e.reported != reported)
                && self.generation(key) == generation
            {
                // confirmed current: trusted again until the next report of its stripe
                let mut renewed = e.clone();
                renewed.epoch = epoch;
                renewed.reported = reported;
                self.local.insert(key.to_string(), renewed);
            }
            return Ok(v.clone());
        }
        self.count(2);
        let miss = Miss {
            key,
            generation,
            keep: !self.versioned || looked.as_ref().is_some_and(|l| l.version != 0),
            ttl,
            epoch,
            reported,
        };
        self.single_flight(&miss, looked, load).await
    }

    /// Resolves a miss once per (key, generation, version) at a time: concurrent misses of
    /// the same key under the same generation and version share one flight and its result.
    async fn single_flight<T, E, F, Fut>(
        &self,
        miss: &Miss<'_>,
        looked: Option<Lookup>,
        load: F,
    ) -> Result<Option<Arc<T>>, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let version = looked.as_ref().map_or(0, |l| l.version);
        let fence = self.load_fence(miss.key, looked.as_ref());
        let flight_key = (miss.key.to_string(), miss.generation, version);
        let flight = Arc::clone(
            self.flights
                .lock()
                .expect("flights lock is never poisoned")
                .entry(flight_key.clone())
                .or_default(),
        );
        let result = flight
            .get_or_try_init(|| self.resolve(miss, looked, version, fence, load))
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

    /// One flight's work: waits for another process's fill while that process holds the
    /// key's load lease, then takes the value the shared tier sent or loads it from the
    /// store, and keeps it in the local tier unless the key was invalidated meanwhile.
    async fn resolve<T, E, F, Fut>(
        &self,
        miss: &Miss<'_>,
        mut looked: Option<Lookup>,
        mut version: u64,
        mut fence: u64,
        load: F,
    ) -> Result<AnyValue, E>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let key = miss.key;
        if let Some(value) = self.filled_meanwhile(miss, looked.as_ref()) {
            return Ok(value);
        }
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
        let (value, encoded_len, fill): (Option<Arc<T>>, usize, bool) = match from_shared {
            Some((value, len)) => (value, len, true),
            None => {
                self.load_from_store(miss, version, fence, leased, load)
                    .await?
            }
        };
        let value: AnyValue = Arc::new(value);
        if fill && miss.keep && self.generation(key) == miss.generation {
            let weight = weight(key, encoded_len);
            self.local.insert(
                key.to_string(),
                Local {
                    generation: miss.generation,
                    version,
                    epoch: miss.epoch,
                    reported: miss.reported,
                    value: Arc::clone(&value),
                    weight,
                },
            );
        }
        Ok(value)
    }

    /// The value an earlier flight of this miss's (key, generation, version) left in the
    /// local tier, when the shared tier's lookup gave no value. Such a lookup is stale: it
    /// reached the server before that flight's fill and its reply was taken up after the
    /// flight had ended (a busy runtime polls a waking task late). On the flight's own node
    /// it even names the flight's lease as this process's, so without this check the read
    /// would load the key a second time, at the very moment of a stampede. The copy is as
    /// fresh as joining that flight would have been: its load began under the version the
    /// lookup found current after this read started.
    fn filled_meanwhile(&self, miss: &Miss<'_>, looked: Option<&Lookup>) -> Option<AnyValue> {
        let l = looked.filter(|l| l.value.is_none() && l.version != 0)?;
        self.local
            .get(miss.key)
            .filter(|e| e.generation == miss.generation && e.version == l.version)
            .map(|e| e.value)
    }

    /// Loads the value from the store, reading at least at `fence`, and fills the shared
    /// tier under `version` unless the key was invalidated meanwhile; a load lease this
    /// process holds (`leased`) and does not fill is released. Returns the value, its
    /// encoded size (0 when the shared tier was not filled), and whether it may be kept
    /// (the load did not call [`skip_fill`]).
    async fn load_from_store<T, E, F, Fut>(
        &self,
        miss: &Miss<'_>,
        version: u64,
        fence: u64,
        leased: bool,
        load: F,
    ) -> Result<(Option<Arc<T>>, usize, bool), E>
    where
        T: Serialize,
        F: FnOnce(u64) -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let key = miss.key;
        self.count(3);
        let started = Instant::now();
        let loading = KEEP.scope(std::cell::Cell::new(true), async {
            (load(fence).await, KEEP.with(std::cell::Cell::get))
        });
        let (loaded, fill) = if leased {
            self.renewing(key, version, loading).await
        } else {
            loading.await
        };
        let loaded = match loaded {
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
        if fill && miss.keep && self.generation(key) == miss.generation {
            len = self.to_shared(key, version, &loaded, miss.ttl).await;
        } else if leased {
            let _ = self.shared.release(key, version).await;
        }
        Ok((loaded, len, fill))
    }

    /// Runs `loading` while renewing this process's load lease on `key` at `version`
    /// every [`LEASE_RENEW_EVERY`], so a slow load keeps the other nodes waiting for it.
    async fn renewing<F: Future>(&self, key: &str, version: u64, loading: F) -> F::Output {
        tokio::pin!(loading);
        let mut tick = tokio::time::interval(LEASE_RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the lease was just taken
        loop {
            tokio::select! {
                out = &mut loading => return out,
                _ = tick.tick() => {
                    // a failed renewal leaves the lease to expire: others load then
                    let _ = self.shared.renew(key, version).await;
                }
            }
        }
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
        while started.elapsed() < MAX_FILL_WAIT {
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
}
