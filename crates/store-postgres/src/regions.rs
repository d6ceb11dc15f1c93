//! The cross-region cache invalidation stream (rung 8): the table `cache_invalidations`
//! (`migrations/postgres/0008_cache_invalidations.sql`), written on the primary by every
//! writer of a deployment with regions ([`record_invalidation`], the `Store` method), and
//! read by each region's `crescendo invalidator` on its region's copy of the database
//! ([`InvalidationStream`]).

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_store::{StoreError, StoreResult};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::time::Duration;

pub(crate) async fn record_invalidation(
    db: &Db,
    region: &str,
    keys: &[String],
    position: u64,
    at_ms: u64,
) -> StoreResult<()> {
    // The primary's WAL position now is past the write's commit (the write committed before
    // this statement began), so it serves as the row's position even when the writer kept
    // none (no replicas of its own) or an unknown one (`u64::MAX`, which would send every
    // later load in the other regions to the primary): a replica that shows the row has
    // replayed it.
    let position = if position == u64::MAX { 0 } else { position };
    let statement = sqlx::query(
        "INSERT INTO cache_invalidations (region, keys, position, at_ms)
         VALUES ($1, $2, GREATEST($3, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint), $4)",
    )
    .bind(region)
    .bind(keys)
    .bind(i64::try_from(position).unwrap_or(i64::MAX))
    .bind(i64::try_from(at_ms).unwrap_or(i64::MAX));
    // one statement on the primary; its own commit position need not raise the writer's
    // read fence (it changes no data a reader sees), so it bypasses `Db::execute`
    db.cluster().count_write();
    statement
        .execute(&db.cluster().primary().pool)
        .await
        .map_err(map_err)
        .map(drop)
}

/// One row of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRow {
    /// Its sequence number (`bigserial`: numbers are taken in order but may commit out of it).
    pub id: i64,
    /// The region whose writer recorded it.
    pub region: String,
    /// The cache keys the write invalidated.
    pub keys: Vec<String>,
    /// The store position later loads of the keys must read.
    pub position: u64,
    /// When it was recorded, ms since the Unix epoch on the writer's clock.
    pub at_ms: u64,
}

/// What the database an invalidator reads says of itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSource {
    /// It is a replica (in recovery), not the primary.
    pub replica: bool,
    /// A replica whose WAL receiver is streaming from its upstream now (always true of the
    /// primary).
    pub receiving: bool,
    /// The position it has replayed (a replica) or written (the primary).
    pub position: u64,
}

/// The stream as one region's invalidator reads it, on one database server (its region's
/// replica, or the primary).
#[derive(Clone, Debug)]
pub struct InvalidationStream {
    pool: PgPool,
}

impl InvalidationStream {
    /// Connects lazily to `url` with two connections; a query waits at most `timeout` for
    /// one.
    ///
    /// # Errors
    /// A malformed URL.
    pub fn connect(url: &str, timeout: Duration) -> StoreResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .acquire_timeout(timeout)
            .connect_lazy(url)
            .map_err(map_err)?;
        Ok(Self { pool })
    }

    /// The highest sequence number in the stream (0 when it is empty).
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn last_id(&self) -> StoreResult<i64> {
        sqlx::query_scalar::<_, i64>("SELECT COALESCE(max(id), 0) FROM cache_invalidations")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)
    }

    /// Up to `limit` rows whose sequence number is above `after`, lowest first.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn after(&self, after: i64, limit: u32) -> StoreResult<Vec<StreamRow>> {
        let rows = sqlx::query(
            "SELECT id, region, keys, position, at_ms FROM cache_invalidations
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(StreamRow {
                    id: r.try_get(0)?,
                    region: r.try_get(1)?,
                    keys: r.try_get(2)?,
                    position: r.try_get::<i64, _>(3)?.max(0) as u64,
                    at_ms: r.try_get::<i64, _>(4)?.max(0) as u64,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(map_err)
    }

    /// Whether the server is a replica, whether it receives WAL now, and its position.
    ///
    /// # Errors
    /// The server does not answer.
    pub async fn source(&self) -> StoreResult<StreamSource> {
        let row = sqlx::query(
            "SELECT pg_is_in_recovery(),
                    COALESCE((SELECT status = 'streaming' FROM pg_stat_wal_receiver), false),
                    (COALESCE(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                                   ELSE pg_current_wal_lsn() END, '0/0') - '0/0'::pg_lsn)::bigint",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        let replica: bool = row.try_get(0).map_err(map_err)?;
        let streaming: bool = row.try_get(1).map_err(map_err)?;
        let position: i64 = row.try_get(2).map_err(map_err)?;
        Ok(StreamSource {
            replica,
            receiving: !replica || streaming,
            position: position.max(0) as u64,
        })
    }

    /// Deletes the rows recorded more than `older_than` ago (on the primary only: a replica
    /// refuses writes); how many.
    ///
    /// # Errors
    /// The server does not answer or is a replica.
    pub async fn prune(&self, older_than: Duration) -> StoreResult<u64> {
        let before = now_ms().saturating_sub(older_than.as_millis() as i64);
        sqlx::query("DELETE FROM cache_invalidations WHERE at_ms < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| match e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("25006") => {
                    StoreError::Unavailable("a replica cannot prune the stream".into())
                }
                other => map_err(other),
            })
    }
}
