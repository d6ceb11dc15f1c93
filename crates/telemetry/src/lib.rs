//! Telemetry shared by every role: log setup ([`init_logs`], [`init_logs_to`]) with JSON lines
//! that carry the request ID ([`json`]) and files rotated by size ([`rotate`]), the metric
//! names of DESIGN.md's contract ([`names`]), and the process-wide Prometheus recorder
//! ([`metrics_handle`]).
//!
//! Metrics go through the `metrics` facade, so library crates record without knowing the
//! exporter; `/metrics` renders [`metrics_handle`]'s text.

pub mod json;
pub mod rotate;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Metric names, `crescendo_<area>_<what>_<unit>`, as DESIGN.md's contracts give them.
pub mod names {
    /// Counter of HTTP requests; labels `method`, `route`, `status`.
    pub const HTTP_REQUESTS: &str = "crescendo_http_requests_total";
    /// Histogram of HTTP request latency in seconds; labels `method`, `route`, `status`.
    pub const HTTP_DURATION: &str = "crescendo_http_request_duration_seconds";
    /// Counter of database round trips (one statement or one transaction); label `role`
    /// (`sqlite`, `primary`, `replica`).
    pub const DB_QUERIES: &str = "crescendo_db_queries_total";
    /// Counter of database round trips made while serving HTTP requests; label `method`
    /// (so reads per read request can be told from what writes cost).
    pub const HTTP_DB_QUERIES: &str = "crescendo_http_db_queries_total";
    /// Counter of answers that left out a shard cluster that was down (a global list or
    /// feed gathered from the clusters that answered); label `cluster`.
    pub const SHARD_PARTIAL_READS: &str = "crescendo_shard_partial_reads_total";
    /// Gauge: 1 while a shard cluster answers, 0 while it is skipped as down; label `cluster`.
    pub const SHARD_CLUSTER_UP: &str = "crescendo_shard_cluster_up";
    /// Counter of HTTP answers marked partial (`x-crescendo-partial`).
    pub const HTTP_PARTIAL_ANSWERS: &str = "crescendo_http_partial_answers_total";
    /// Counter of purge requests sent to edge caches, one per edge and request; label
    /// `outcome` (`ok`, `failed`).
    pub const EDGE_PURGES: &str = "crescendo_edge_purges_total";
    /// Histogram of how long a write's purge of every edge took before it answered, seconds.
    pub const EDGE_PURGE_DURATION: &str = "crescendo_edge_purge_duration_seconds";
    /// Gauge of database connections in use; label `role`.
    pub const DB_POOL_IN_USE: &str = "crescendo_db_pool_connections_in_use";
    /// Gauge of open database connections; label `role`.
    pub const DB_POOL_OPEN: &str = "crescendo_db_pool_connections_open";
    /// Counter of cache hits; label `layer` (`local`, `shared`).
    pub const CACHE_HITS: &str = "crescendo_cache_hits_total";
    /// Counter of near (`local`) hits served without asking the shared tier for the entry's
    /// version, because its servers report every change (a subset of `local` hits).
    pub const CACHE_UNCHECKED_HITS: &str = "crescendo_cache_unchecked_hits_total";
    /// Counter of changes reported by the shared tier's servers (client tracking); label
    /// `kind`: `keys` (a batch of keys), `all` (a server was flushed or a channel dropped).
    pub const CACHE_REPORTS: &str = "crescendo_cache_reports_total";
    /// Counter of cache misses; label `layer`.
    pub const CACHE_MISSES: &str = "crescendo_cache_misses_total";
    /// Counter of loads from the store made on cache misses (after single-flight).
    pub const CACHE_LOADS: &str = "crescendo_cache_loads_total";
    /// Histogram of how long those loads take, in seconds.
    pub const CACHE_LOAD_DURATION: &str = "crescendo_cache_load_duration_seconds";
    /// Histogram of how long readers waited for another node's load of a key (its load
    /// lease), in seconds; label `outcome`: `filled` (the value came), `leased` (the lease
    /// passed to this reader, which loaded), `gave_up` (the wait ran out or the cache failed).
    pub const CACHE_LEASE_WAIT: &str = "crescendo_cache_lease_wait_seconds";
    /// Counter of entries the local (near) tier evicted to stay within its bound.
    pub const CACHE_EVICTIONS: &str = "crescendo_cache_evictions_total";
    /// Gauge of keys a cache server evicted under its `maxmemory` (its own counter, read
    /// from `INFO stats`); label `node`.
    pub const CACHE_SERVER_EVICTED: &str = "crescendo_cache_server_evicted_keys";
    /// Gauge per cache server: 1 while it is in the hash ring, 0 while it is out; label `node`.
    pub const CACHE_RING_MEMBER: &str = "crescendo_cache_ring_member";
    /// Counter of cache servers leaving and joining the ring; labels `node`, `event`.
    pub const CACHE_RING_CHANGES: &str = "crescendo_cache_ring_changes_total";
    /// Histogram of the cross-region invalidation delay: from a write's record in the stream
    /// to its region invalidator's applying it to another region's cache, in seconds (rung 8).
    pub const CACHE_REGION_INVALIDATION_DELAY: &str =
        "crescendo_cache_region_invalidation_delay_seconds";
    /// Gauge: 1 while a region's invalidator reads the stream and its replica receives WAL,
    /// 0 while the stream is lost (the region's cache is then emptied).
    pub const CACHE_REGION_STREAM_HEALTHY: &str = "crescendo_cache_region_stream_healthy";
    /// Counter of other regions' invalidations applied to this region's cache.
    pub const CACHE_REGION_INVALIDATIONS: &str = "crescendo_cache_region_invalidations_total";
    /// Counter of times a region's invalidator emptied its region's cache (at start, and
    /// while the stream was lost).
    pub const CACHE_REGION_EMPTIES: &str = "crescendo_cache_region_empties_total";
    /// Gauge of pending jobs; label `queue`.
    pub const QUEUE_DEPTH: &str = "crescendo_queue_depth";
    /// Gauge of the age in seconds of the oldest job waiting or running (0 when none);
    /// label `queue`.
    pub const QUEUE_OLDEST_AGE: &str = "crescendo_queue_oldest_job_age_seconds";
    /// Counter of finished jobs; labels `queue`, `outcome` (`ok`, `retry`, `dead`).
    pub const JOBS: &str = "crescendo_jobs_total";
    /// Gauge of jobs a worker process is running now; label `queue`.
    pub const JOBS_IN_PROGRESS: &str = "crescendo_jobs_in_progress";
    /// Counter of password hashes computed; label `op` (`hash`, `verify`).
    pub const PASSWORD_HASHES: &str = "crescendo_password_hashes_total";
}

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global tracing subscriber writing to standard error: `RUST_LOG` if set, else
/// `default_filter`. Safe to call more than once (later calls do nothing), so tests can call
/// it freely.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    // standard error always opens
    let _ = init_logs_to(format, default_filter, None);
}

/// A log file a process writes and rotates itself (see [`rotate::RotatingFile`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// The file; rotated ones beside it as `PATH.1` (newest) to `PATH.KEEP`.
    pub path: PathBuf,
    /// The size at which it is rotated.
    pub max_bytes: u64,
    /// How many rotated files are kept.
    pub keep: usize,
}

/// [`init_logs`] writing to `file` when given, else to standard error. In the JSON format
/// every line written while a request is served carries its `request_id` (see [`json`]).
///
/// # Errors
/// The log file cannot be opened.
pub fn init_logs_to(
    format: LogFormat,
    default_filter: &str,
    file: Option<&LogFile>,
) -> std::io::Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, fmt};
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let writer = match file {
        Some(f) => BoxMakeWriter::new(rotate::RotatingFile::open(&f.path, f.max_bytes, f.keep)?),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Pretty => registry
            .with(
                fmt::layer()
                    .compact()
                    .with_ansi(file.is_none())
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(json::RequestIdLayer)
            .with(
                fmt::layer()
                    .event_format(json::JsonLine)
                    .with_writer(writer),
            )
            .try_init(),
    };
    Ok(())
}

/// The process-wide Prometheus recorder, installed on first use.
///
/// One per process: every server started in this process (tests start many) records into
/// it. Latency histograms use fixed buckets from 100 µs to 10 s; a background thread folds
/// their samples into the buckets every 2 s.
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        const BUCKETS: &[f64] = &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0, 10.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // A recorder may already be installed by an embedding program; then ours only renders
        // what it holds (nothing), which is the embedder's choice.
        let _ = metrics::set_global_recorder(recorder);
        // Histogram samples queue up until folded into their buckets; fold them every few
        // seconds, or a busy server's memory grows with every request between scrapes.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(2));
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}
