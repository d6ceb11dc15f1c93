//! `crescendo invalidator`: one per region (rung 8). It tails the cross-region cache
//! invalidation stream (`cache_invalidations`, written on the primary by every writer) on its
//! region's own copy of the database, and applies the other regions' rows to its region's
//! cache ring: `invalidate(keys, position)`, as the writer did to its own ring.
//!
//! **Order.** The region's copy is a streaming replica of the primary (or the primary
//! itself), which replays a row only after the data of the write it follows, so once a key
//! is invalidated here, a reader who misses loads the new data, from this replica at least
//! at the row's position. Rows are read by sequence number, which writers take in order
//! but may commit out of it; the [`cursor`] keeps the numbers seen above a gap and waits
//! `region.gap_wait_ms` for it, so a late row is not lost.
//!
//! **Loss.** When the stream cannot be read, or the replica is not receiving WAL
//! (`pg_stat_wal_receiver` not streaming), for `region.lost_after_ms`, the region's cache is
//! emptied ([`Cache::empty`]: every ring server's keys dropped in one script, its highest
//! write position kept and raised to what this invalidator knows the replica holds), and
//! again every `region.lost_after_ms` while that lasts: an entry another region's write made
//! stale lives at most about that long. A load that looked its key up before an emptying
//! cannot fill after it (its version is gone with the key); one that starts after it reads
//! at least the kept position. Rows are durable, so once the stream is back the cursor goes
//! on from where it was and applies what was written meanwhile. At start the cache is
//! emptied too (what it holds may predate rows this process never saw) and the cursor
//! starts at the stream's end: every older row's data is already in the copy the loads read.
//!
//! **Pruning.** The invalidator whose database is the primary deletes rows older than
//! `region.keep_secs` once a minute.
//!
//! Metrics: `crescendo_cache_region_invalidation_delay_seconds` (now − the row's `at_ms` when
//! it is applied; both clocks are this machine's in a one-machine topology),
//! `crescendo_cache_region_stream_healthy` (1 while the stream is read and the replica
//! receives WAL, 0 otherwise), `crescendo_cache_region_invalidations_total`,
//! `crescendo_cache_region_empties_total`; each labelled with the invalidator's `region`.

mod cursor;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use crescendo_cache::Cache;
use crescendo_config::{CacheBackend, Settings, StoreBackend};
use crescendo_store_postgres::{InvalidationStream, StreamRow};
use crescendo_telemetry::names;
use cursor::Cursor;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Rows read at a time.
const BATCH: u32 = 1000;
/// How often the primary's invalidator prunes old rows.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// A running invalidator.
pub struct Invalidating {
    /// Where `/health`, `/ready` (200 while the stream is healthy) and `/metrics` are served.
    pub addr: SocketAddr,
    /// Ends when it has stopped.
    pub done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// How an invalidator runs, from `region.*`.
#[derive(Clone, Debug)]
struct Options {
    region: String,
    poll: Duration,
    lost_after: Duration,
    gap_wait: Duration,
    keep: Duration,
}

/// Starts the invalidator of `settings.region.name`: it reads the stream on the first of
/// `store.postgres_replica_urls` (else `store.postgres_url`) and invalidates the ring of
/// `cache.redis_urls`, and serves its probes and metrics on `http.listen`, until `shutdown`.
///
/// # Errors
/// No region name, a store other than unsharded PostgreSQL, a cache other than a Redis ring,
/// or the listener cannot be bound.
pub async fn invalidator(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Invalidating> {
    let _ = crescendo_telemetry::metrics_handle();
    let r = &settings.region;
    if r.name.trim().is_empty() {
        bail!("crescendo invalidator needs region.name (CRESCENDO_REGION__NAME)");
    }
    if settings.store.backend != StoreBackend::Postgres
        || !settings.store.postgres_shards.is_empty()
    {
        bail!("crescendo invalidator reads the stream of an unsharded PostgreSQL store");
    }
    if settings.cache.backend != CacheBackend::Redis {
        bail!("crescendo invalidator keeps a Redis cache ring (cache.backend = \"redis\") in step");
    }
    let opts = Options {
        region: r.name.trim().to_string(),
        poll: Duration::from_millis(r.poll_ms.max(1)),
        lost_after: Duration::from_millis(r.lost_after_ms.max(1)),
        gap_wait: Duration::from_millis(r.gap_wait_ms),
        keep: Duration::from_secs(r.keep_secs.max(1)),
    };
    let url = settings
        .store
        .postgres_replica_urls
        .first()
        .unwrap_or(&settings.store.postgres_url);
    let stream = InvalidationStream::connect(url, opts.lost_after)
        .context("store.postgres_replica_urls / store.postgres_url")?;
    let c = &settings.cache;
    let mut ring = crescendo_cache_redis::RingOptions::new(c.redis_urls.clone());
    ring.timeout = Duration::from_millis(c.redis_timeout_ms.max(1));
    ring.check_interval = Duration::from_millis(c.redis_check_interval_ms.max(10));
    // it reads nothing, so it needs no change reports
    ring.tracking = false;
    let cache: Arc<dyn Cache> = Arc::new(
        crescendo_cache_redis::RedisCache::connect(&ring)
            .await
            .context("cache.redis_urls")?,
    );
    let listener = tokio::net::TcpListener::bind(settings.http.listen)
        .await
        .with_context(|| format!("binding http.listen = {}", settings.http.listen))?;
    let addr = listener.local_addr()?;
    let healthy = Arc::new(AtomicBool::new(false));
    let router = ops_router(Arc::clone(&healthy));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let on_replica = !settings.store.postgres_replica_urls.is_empty();
    tracing::info!(region = %opts.region, on_replica, "invalidating the region's cache from the stream");
    let tail = tokio::spawn(run(opts, stream, cache, healthy, stop_rx.clone()));
    let done = tokio::spawn(async move {
        let mut stop = stop_rx;
        let server = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        let stopper = tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        server.await.context("http server")?;
        let _ = tail.await;
        stopper.abort();
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Invalidating { addr, done })
}

/// `/health`, `/ready` (while the stream is healthy) and `/metrics`.
fn ops_router(healthy: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/ready",
            get(move || {
                let healthy = Arc::clone(&healthy);
                async move {
                    if healthy.load(Ordering::Acquire) {
                        (http::StatusCode::OK, "ready")
                    } else {
                        (http::StatusCode::SERVICE_UNAVAILABLE, "stream lost")
                    }
                }
            }),
        )
        .route("/metrics", get(crate::http::metrics_text))
}

/// The invalidator's state between polls.
struct Tail {
    opts: Options,
    stream: InvalidationStream,
    cache: Arc<dyn Cache>,
    /// `None` until the first read of the stream's end.
    cursor: Option<Cursor>,
    /// The highest position this invalidator knows its database holds.
    position: u64,
    /// Since when the stream has been lost (unreadable, or its replica not receiving).
    lost_since: Option<Instant>,
    /// When the cache was last emptied for that loss.
    emptied: Option<Instant>,
    pruned: Option<Instant>,
    delay: metrics::Histogram,
    healthy_gauge: metrics::Gauge,
    applied: metrics::Counter,
    empties: metrics::Counter,
}

/// Polls the stream every `opts.poll` until `stop`.
async fn run(
    opts: Options,
    stream: InvalidationStream,
    cache: Arc<dyn Cache>,
    healthy: Arc<AtomicBool>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut t = Tail {
        stream,
        cache,
        cursor: None,
        position: 0,
        lost_since: None,
        emptied: None,
        pruned: None,
        delay: metrics::histogram!(names::CACHE_REGION_INVALIDATION_DELAY, "region" => opts.region.clone()),
        healthy_gauge: metrics::gauge!(names::CACHE_REGION_STREAM_HEALTHY, "region" => opts.region.clone()),
        applied: metrics::counter!(names::CACHE_REGION_INVALIDATIONS, "region" => opts.region.clone()),
        empties: metrics::counter!(names::CACHE_REGION_EMPTIES, "region" => opts.region.clone()),
        opts,
    };
    let mut tick = tokio::time::interval(t.opts.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let ok = match tokio::time::timeout(t.opts.lost_after, t.poll()).await {
            Ok(Ok(receiving)) => receiving,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the invalidation stream");
                false
            }
            Err(_) => {
                tracing::warn!("reading the invalidation stream timed out");
                false
            }
        };
        healthy.store(ok, Ordering::Release);
        t.healthy_gauge.set(if ok { 1.0 } else { 0.0 });
        t.after_poll(ok).await;
    }
}

impl Tail {
    /// Reads and applies what the stream holds now; whether the database receives WAL.
    async fn poll(&mut self) -> anyhow::Result<bool> {
        let source = self.stream.source().await?;
        self.position = self.position.max(source.position);
        if self.cursor.is_none() {
            let end = self.stream.last_id().await?;
            // what the cache holds may predate rows never seen here
            self.cache.empty(self.position).await?;
            self.empties.increment(1);
            tracing::info!(
                from = end,
                "emptied the region's cache; following the stream"
            );
            self.cursor = Some(Cursor::new(end, self.opts.gap_wait));
        }
        loop {
            let low = self.cursor.as_ref().map_or(0, Cursor::low);
            let rows = self.stream.after(low, BATCH).await?;
            let full = rows.len() as u32 == BATCH;
            for row in rows {
                self.apply(row).await?;
            }
            if let Some(c) = self.cursor.as_mut() {
                let given_up = c.advance(Instant::now());
                if given_up > 0 {
                    tracing::debug!(
                        given_up,
                        low = c.low(),
                        held = c.held(),
                        "gaps in the stream given up"
                    );
                }
            }
            if !full {
                break;
            }
        }
        if !source.replica && self.pruned.is_none_or(|p| p.elapsed() >= PRUNE_EVERY) {
            self.pruned = Some(Instant::now());
            match self.stream.prune(self.opts.keep).await {
                Ok(n) if n > 0 => tracing::info!(rows = n, "pruned old invalidations"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the invalidation stream failed"),
            }
        }
        Ok(source.receiving)
    }

    /// Applies one row, unless it is this region's own or was applied already.
    async fn apply(&mut self, row: StreamRow) -> anyhow::Result<()> {
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        if !cursor.is_new(row.id) {
            return Ok(());
        }
        if row.region != self.opts.region {
            self.cache.invalidate(&row.keys, row.position).await?;
            let now = now_ms();
            self.delay
                .record(now.saturating_sub(row.at_ms) as f64 / 1000.0);
            self.applied.increment(1);
        }
        self.position = self.position.max(row.position);
        cursor.take(row.id, Instant::now());
        Ok(())
    }

    /// Notes a poll's outcome; empties the cache when the stream has been lost too long.
    async fn after_poll(&mut self, ok: bool) {
        if ok {
            if self.lost_since.take().is_some() {
                tracing::info!(
                    "the invalidation stream is back; the cursor goes on from where it was"
                );
            }
            self.emptied = None;
            return;
        }
        let now = Instant::now();
        let since = *self.lost_since.get_or_insert(now);
        let due = now.duration_since(since) >= self.opts.lost_after
            && self
                .emptied
                .is_none_or(|e| now.duration_since(e) >= self.opts.lost_after);
        if !due {
            return;
        }
        match self.cache.empty(self.position).await {
            Ok(()) => {
                self.emptied = Some(now);
                self.empties.increment(1);
                tracing::warn!(
                    lost_ms = now.duration_since(since).as_millis() as u64,
                    "the invalidation stream is lost: emptied the region's cache"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "the invalidation stream is lost and the cache could not be emptied")
            }
        }
    }
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
