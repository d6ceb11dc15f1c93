//! Builds the application's seams from settings: this is where configuration picks backends.

use anyhow::Context;
use crescendo_app::{App, Parts, Passwords, SignInLimits, Tokens};
use crescendo_blobs::LocalBlobs;
use crescendo_cache::{MemoryCache, MemorySessions, ReadThrough};
use crescendo_config::{
    BlobBackend, CacheBackend, QueueBackend, SessionBackend, Settings, SqliteSync, StoreBackend,
};
use crescendo_store_postgres::{PgOptions, PgStore, ShardedOptions, ShardedStore};
use crescendo_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The application and what was made to build it.
pub struct Built {
    /// The application.
    pub app: App,
    /// The web pages' set-up (session keys derived from the token key).
    pub web: crescendo_web::WebConfig,
}

/// Reads the token key from settings, or from `data_dir/jwt.key`, creating it (32 random
/// bytes, hex, mode 0600) on first start.
fn jwt_key(settings: &Settings) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = &settings.auth.jwt_secret {
        return Ok(s.expose().as_bytes().to_vec());
    }
    let path = settings.data_dir.join("jwt.key");
    match std::fs::read_to_string(&path) {
        Ok(k) if k.trim().len() >= 32 => return Ok(k.trim().as_bytes().to_vec()),
        Ok(_) => anyhow::bail!(
            "{} is shorter than 32 characters; delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a key: {e}"))?;
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new token signing key");
    Ok(key.into_bytes())
}

/// Creates `path` with mode 0600 from the start and `contents`, then flushes the file and
/// its directory to disk: a key that tokens were signed with must survive a power cut.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    crescendo_blobs::sync_dir(dir, &mut crescendo_blobs::fsync)
}

/// Opens (or creates) the SQLite database `file` in the data directory.
async fn open_sqlite(settings: &Settings, file: &str) -> anyhow::Result<SqliteStore> {
    let mut opts = SqliteOptions::new(settings.data_dir.join(file));
    opts.readers = settings.store.sqlite_readers.max(1);
    opts.synchronous = match settings.store.sqlite_synchronous {
        SqliteSync::Full => Synchronous::Full,
        SqliteSync::Normal => Synchronous::Normal,
    };
    let path = opts.path.clone();
    tokio::task::spawn_blocking(move || SqliteStore::open(&opts))
        .await?
        .with_context(|| format!("opening the database {}", path.display()))
}

/// Connection options for the PostgreSQL server at `url`, from the settings.
fn pg_options(settings: &Settings, url: String) -> PgOptions {
    let mut opts = PgOptions::new(url);
    opts.max_connections = settings.store.postgres_max_connections.max(1);
    opts.acquire_timeout = Duration::from_millis(settings.store.postgres_acquire_timeout_ms.max(1));
    opts.max_replica_lag = Duration::from_millis(settings.store.replica_max_lag_ms);
    opts.check_interval = Duration::from_millis(settings.store.replica_check_interval_ms.max(10));
    opts.serve_stale_reads = settings.store.serve_stale_reads;
    opts
}

/// The sharded store of `store.postgres_shards`, migrated, with the shard map in force.
pub(crate) async fn open_sharded(settings: &Settings) -> anyhow::Result<ShardedStore> {
    if settings.store.postgres_shards.is_empty() {
        anyhow::bail!("the store is not sharded: store.postgres_shards is empty");
    }
    let replicas = settings.store.shard_replica_urls()?;
    let clusters = settings
        .store
        .shard_urls()?
        .into_iter()
        .map(|(name, url)| {
            let mut opts = pg_options(settings, url);
            opts.replicas = replicas
                .iter()
                .filter(|(of, _)| *of == name)
                .map(|(_, url)| url.clone())
                .collect();
            (name, opts)
        })
        .collect();
    let mut catalogue = pg_options(settings, settings.store.postgres_url.clone());
    catalogue.replicas = settings.store.postgres_replica_urls.clone();
    let mut opts = ShardedOptions::new(catalogue, clusters);
    opts.spare = settings.store.postgres_spare_shards.clone();
    opts.celebrity_followers = settings.store.celebrity_followers;
    ShardedStore::open(&opts)
        .await
        .context("opening the sharded PostgreSQL store (store.postgres_shards)")
}

/// The store the settings name, migrated; with SQLite, also the store itself (its file
/// holds the job queue too).
async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn crescendo_store::Store>, Option<SqliteStore>)> {
    match settings.store.backend {
        StoreBackend::Sqlite => {
            let s = open_sqlite(settings, "crescendo.db").await?;
            Ok((Arc::new(s.clone()), Some(s)))
        }
        StoreBackend::Postgres if !settings.store.postgres_shards.is_empty() => {
            let sharded = open_sharded(settings).await?;
            let map = sharded.map();
            tracing::info!(epoch = map.epoch(), clusters = ?map.clusters(), "sharded store");
            Ok((Arc::new(sharded), None))
        }
        StoreBackend::Postgres => {
            let mut opts = pg_options(settings, settings.store.postgres_url.clone());
            opts.replicas = settings.store.postgres_replica_urls.clone();
            let pg = PgStore::connect(&opts).context("store.postgres_url")?;
            pg.check_servers().await;
            pg.migrate()
                .await
                .context("migrating the PostgreSQL database")?;
            Ok((Arc::new(pg), None))
        }
    }
}

/// The job queue the settings name; `sqlite_store` is the SQLite store when the data is in
/// SQLite (its file holds the queue).
pub(crate) async fn open_queue(
    settings: &Settings,
    sqlite_store: Option<&SqliteStore>,
) -> anyhow::Result<Arc<dyn crescendo_queue::Queue>> {
    let max_attempts = settings.queue.max_attempts;
    Ok(match settings.queue.backend {
        QueueBackend::Sqlite => match sqlite_store {
            Some(s) => Arc::new(s.queue(max_attempts)),
            // With PostgreSQL holding the data (and the outbox), a node without a queue
            // tier keeps its jobs in a file of its own
            None => Arc::new(open_sqlite(settings, "queue.db").await?.queue(max_attempts)),
        },
        QueueBackend::Nats => Arc::new(
            crescendo_queue_nats::NatsQueue::connect(
                &settings.queue.nats_url,
                max_attempts,
                Duration::from_secs(settings.queue.lease_secs.max(1)),
            )
            .await
            .with_context(|| format!("queue.nats_url = {}", settings.queue.nats_url))?,
        ),
    })
}

/// The read-through cache over the shared tier the settings name, and the entries' TTL.
async fn open_cache(settings: &Settings) -> anyhow::Result<(ReadThrough, Duration)> {
    let c = &settings.cache;
    let (shared, local_bytes): (Arc<dyn crescendo_cache::Cache>, u64) = match c.backend {
        CacheBackend::Memory => (
            Arc::new(MemoryCache::new(c.memory_max_bytes)),
            c.local_max_bytes,
        ),
        CacheBackend::Redis => {
            let mut opts = crescendo_cache_redis::RingOptions::new(c.redis_urls.clone());
            opts.timeout = Duration::from_millis(c.redis_timeout_ms.max(1));
            opts.check_interval = Duration::from_millis(c.redis_check_interval_ms.max(10));
            opts.tracking = c.redis_tracking;
            let ring = crescendo_cache_redis::RedisCache::connect(&opts)
                .await
                .context("cache.redis_urls")?;
            tracing::info!(servers = c.redis_urls.len(), members = ?ring.members(), "cache ring");
            (Arc::new(ring), c.local_max_bytes)
        }
        // nothing kept in this process either: another node's write could not reach it
        CacheBackend::None => (Arc::new(crescendo_cache::NoCache), 0),
    };
    let ttl = Duration::from_secs(c.ttl_secs);
    let local_ttl = match c.backend {
        CacheBackend::Redis => Duration::from_secs(c.local_ttl_secs.max(1)),
        _ => ttl,
    };
    let cache = ReadThrough::new(
        shared,
        local_bytes,
        local_ttl,
        Duration::from_secs(c.negative_ttl_secs),
    );
    Ok((cache, ttl))
}

/// The blob store the settings name.
fn open_blobs(settings: &Settings) -> anyhow::Result<Arc<dyn crescendo_blobs::Blobs>> {
    let b = &settings.blobs;
    Ok(match b.backend {
        BlobBackend::Local => Arc::new(LocalBlobs::new(settings.blob_dir())),
        BlobBackend::S3 => {
            let options = crescendo_blobs_s3::S3Options {
                endpoint: b.s3_endpoint.clone(),
                bucket: b.s3_bucket.clone(),
                region: b.s3_region.clone(),
                access_key: b.s3_access_key.clone(),
                secret_key: b
                    .s3_secret_key
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .unwrap_or_default(),
                timeout: Duration::from_millis(b.s3_timeout_ms.max(1)),
            };
            Arc::new(crescendo_blobs_s3::S3Blobs::new(&options).context("blobs.backend = \"s3\"")?)
        }
    })
}

/// The small shared state the settings name.
async fn open_sessions(settings: &Settings) -> anyhow::Result<Arc<dyn crescendo_cache::Sessions>> {
    Ok(match settings.sessions.backend {
        SessionBackend::Memory => Arc::new(MemorySessions::with_max_entries(
            settings.sessions.max_entries,
        )),
        SessionBackend::Redis => Arc::new(
            crescendo_cache_redis::RedisSessions::connect(&settings.sessions.redis_url)
                .await
                .with_context(|| format!("sessions.redis_url = {}", settings.sessions.redis_url))?,
        ),
    })
}

/// This node's region (`region.name`), when it has one: only an unsharded PostgreSQL store
/// keeps the cross-region invalidation stream. A sharded store would need a stream per
/// cluster (a row must replicate with the data it follows), which no invalidator reads yet.
fn region(settings: &Settings) -> anyhow::Result<Option<String>> {
    let name = settings.region.name.trim();
    if name.is_empty() {
        return Ok(None);
    }
    if settings.store.backend != StoreBackend::Postgres
        || !settings.store.postgres_shards.is_empty()
    {
        anyhow::bail!(
            "region.name = {name:?} needs an unsharded PostgreSQL store (store.backend = \"postgres\", no store.postgres_shards): the cross-region invalidation stream is a table on its primary"
        );
    }
    Ok(Some(name.to_string()))
}

/// Opens every backend the settings name and builds the application.
///
/// # Errors
/// The data directory, database or key cannot be created or opened.
pub async fn build(settings: &Settings) -> anyhow::Result<Built> {
    // metric handles made below must bind to the real recorder, so install it first
    let _ = crescendo_telemetry::metrics_handle();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data_dir {}", settings.data_dir.display()))?;
    let (store, sqlite_store) = open_store(settings).await?;
    let queue = open_queue(settings, sqlite_store.as_ref()).await?;
    let (cache, ttl) = open_cache(settings).await?;
    let blobs = open_blobs(settings)?;
    let sessions = open_sessions(settings).await?;
    let key = jwt_key(settings)?;
    let a = &settings.auth;
    let passwords = tokio::task::spawn_blocking({
        let (m, t, c) = (a.argon2_memory_kib, a.argon2_iterations, a.hash_concurrency);
        move || Passwords::new(m, t, c)
    })
    .await??;
    let app = App::new(Parts {
        store,
        cache,
        queue,
        blobs,
        sessions,
        tokens: Tokens::new(&key, Duration::from_secs(a.token_ttl_secs)),
        passwords,
        ttl,
        max_page_size: settings.http.max_page_size,
        // users' write positions matter only when reads can go to a replica
        caching: settings.cache.backend != CacheBackend::None,
        read_fences: settings.store.backend == StoreBackend::Postgres
            && !settings.store.postgres_replica_urls.is_empty(),
        media_base_url: settings.blobs.media_base_url.clone(),
        max_upload_pixels: settings.blobs.max_upload_pixels.max(1),
        max_upload_bytes: settings.blobs.max_upload_bytes.max(1),
        sign_in: SignInLimits {
            per_account_client: a.signin_max_failures_per_account_client,
            per_client: a.signin_max_failures_per_client,
            window: Duration::from_secs(a.signin_window_secs),
        },
        edges: crate::edge::from_settings(&settings.edge)?,
        purge_settle: Duration::from_millis(settings.edge.purge_settle_ms),
        clock_skew_ms: settings.cache.clock_skew_ms,
        region: region(settings)?,
    });
    let web = crescendo_web::WebConfig {
        keys: crescendo_web::session::SessionKeys::derive(&key, settings.web.secure_cookies),
        asset_base_url: settings.web.asset_base_url.clone(),
    };
    Ok(Built { app, web })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_key_is_made_once_private_and_whole() {
        let dir = std::env::temp_dir().join(format!(
            "crescendo-jwt-key-{:016x}",
            getrandom::u64().unwrap()
        ));
        std::fs::create_dir(&dir).unwrap();
        let mut settings = Settings::default();
        settings.auth.jwt_secret = None;
        settings.data_dir = dir.clone();

        let first = jwt_key(&settings).unwrap();
        let again = jwt_key(&settings).unwrap();

        assert_eq!(first.len(), 64, "32 random bytes in hex");
        assert_eq!(first, again, "the second start reads the first key");
        let meta = std::fs::metadata(dir.join("jwt.key")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
    }
}
