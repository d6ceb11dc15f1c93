//! The numbered SQL files of `migrations/postgres/` (every database that holds data) and
//! `migrations/catalogue/` (the catalogue of a sharded deployment), compiled in and applied
//! in order, each in its own transaction, recorded in `schema_migrations`.

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_store::StoreResult;

/// One migration: (version, name, SQL).
pub(crate) type Migration = (i64, &'static str, &'static str);

/// The data schema, in order.
pub(crate) const DATA: &[Migration] = &[
    (
        1,
        "0001_initial.sql",
        include_str!("../../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "0002_uploads.sql",
        include_str!("../../../migrations/postgres/0002_uploads.sql"),
    ),
    (
        3,
        "0003_shard_local_keys.sql",
        include_str!("../../../migrations/postgres/0003_shard_local_keys.sql"),
    ),
    (
        4,
        "0004_owned_shards.sql",
        include_str!("../../../migrations/postgres/0004_owned_shards.sql"),
    ),
    (
        5,
        "0005_reshard.sql",
        include_str!("../../../migrations/postgres/0005_reshard.sql"),
    ),
    (
        6,
        "0006_followers_timelines.sql",
        include_str!("../../../migrations/postgres/0006_followers_timelines.sql"),
    ),
    (
        7,
        "0007_follower_counts.sql",
        include_str!("../../../migrations/postgres/0007_follower_counts.sql"),
    ),
    (
        8,
        "0008_cache_invalidations.sql",
        include_str!("../../../migrations/postgres/0008_cache_invalidations.sql"),
    ),
];

/// The catalogue schema, in order.
pub(crate) const CATALOGUE: &[Migration] = &[
    (
        1,
        "0001_catalogue.sql",
        include_str!("../../../migrations/catalogue/0001_catalogue.sql"),
    ),
    (
        2,
        "0002_reshard.sql",
        include_str!("../../../migrations/catalogue/0002_reshard.sql"),
    ),
    (
        3,
        "0003_reshard_abort.sql",
        include_str!("../../../migrations/catalogue/0003_reshard_abort.sql"),
    ),
    (
        4,
        "0004_cluster_numbers.sql",
        include_str!("../../../migrations/catalogue/0004_cluster_numbers.sql"),
    ),
];

/// Brings `db`'s schema up to date with `migrations`, serialised by an advisory lock so that
/// several nodes starting together migrate once; returns how many migrations ran.
pub(crate) async fn migrate(db: &Db, migrations: &[Migration]) -> StoreResult<usize> {
    let cluster = db.cluster();
    let mut conn = cluster.primary().pool.acquire().await.map_err(map_err)?;
    sqlx::query("SELECT pg_advisory_lock(774411)")
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version bigint PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)",
        )
        .execute(&mut *conn)
        .await
        .map_err(map_err)?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *conn)
                .await
                .map_err(map_err)?;
        let mut ran = 0;
        for (version, name, sql) in migrations.iter().filter(|(v, _, _)| *v > current) {
            let mut tx = sqlx::Connection::begin(&mut *conn).await.map_err(map_err)?;
            sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(map_err)?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(*name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            tracing::info!(version, name, "applied migration");
            ran += 1;
        }
        Ok(ran)
    }
    .await;
    let _ = sqlx::query("SELECT pg_advisory_unlock(774411)")
        .execute(&mut *conn)
        .await;
    // replicas get reads only once they have the schema (this node's or another's)
    if cluster.has_replicas() {
        let position: i64 =
            sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&mut *conn)
                .await
                .map_err(map_err)?;
        cluster.raise_floor(position as u64);
    }
    result
}
