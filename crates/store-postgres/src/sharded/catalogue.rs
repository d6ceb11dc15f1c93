//! The catalogue database of a sharded deployment: the shard map with its epoch, and the
//! directory that keeps usernames and emails unique across clusters (`migrations/catalogue/`).
//!
//! Sign-up spans two databases, so it goes in three steps: [`reserve`] the name and email
//! here, create the user on its cluster, then [`confirm`]. [`sweep`] settles reservations a
//! killed process left behind: one whose user exists on its cluster is confirmed, any other
//! is freed. A name is therefore never taken for good without a user.

use super::db::Shards;
use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{StoreError, StoreResult};
use std::time::Duration;

/// The catalogue's map epoch (0: no map stored yet).
pub(crate) async fn epoch(cat: &Db) -> StoreResult<u64> {
    cat.read_primary(|pool| async move {
        let e: Option<i64> = sqlx::query_scalar("SELECT epoch FROM map_epoch")
            .fetch_optional(&pool)
            .await
            .map_err(map_err)?;
        Ok(e.unwrap_or(0) as u64)
    })
    .await
}

/// The stored map, or `None` before the first one is stored.
pub(crate) async fn load_map(cat: &Db) -> StoreResult<Option<ShardMap>> {
    let mut tx = cat.begin().await?;
    // one snapshot for the epoch and the homes
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM map_epoch")
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    let Some(epoch) = epoch else {
        return Ok(None);
    };
    let homes: Vec<(i32, String)> = sqlx::query_as("SELECT shard, cluster FROM shard_homes")
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    tx.commit().await.map_err(map_err)?;
    ShardMap::from_homes(epoch as u64, homes.into_iter().map(|(s, c)| (s as u16, c)))
        .map(Some)
        .map_err(|e| StoreError::Other(format!("the catalogue's shard map: {e}").into()))
}

/// The number of each cluster of `names` (see `migrations/catalogue/0004_cluster_numbers.sql`),
/// in that order: the one the catalogue holds, or the next free one, stored now.
pub(crate) async fn cluster_numbers(cat: &Db, names: &[&str]) -> StoreResult<Vec<u8>> {
    let mut tx = cat.begin().await?;
    // nodes starting together number a new cluster once
    sqlx::query("LOCK TABLE cluster_numbers IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let mut numbers = Vec::with_capacity(names.len());
    for name in names {
        let number: i16 = sqlx::query_scalar(
            "WITH given AS (
                 INSERT INTO cluster_numbers (name, number)
                 SELECT $1, (SELECT COALESCE(MAX(number), 0) + 1 FROM cluster_numbers)
                 WHERE NOT EXISTS (SELECT 1 FROM cluster_numbers WHERE name = $1)
                 RETURNING number)
             SELECT number FROM given
             UNION ALL SELECT number FROM cluster_numbers WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let number = u8::try_from(number)
            .map_err(|_| StoreError::Other("more than 255 clusters were ever numbered".into()))?;
        numbers.push(number);
    }
    cat.commit(tx).await?;
    Ok(numbers)
}

/// Stores `map` as the first map unless the catalogue already holds one; returns the map in
/// force either way.
pub(crate) async fn init_map(cat: &Db, map: &ShardMap) -> StoreResult<ShardMap> {
    let mut tx = cat.begin().await?;
    sqlx::query("LOCK TABLE map_epoch IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    let stored: Option<i64> = sqlx::query_scalar("SELECT epoch FROM map_epoch")
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_err)?;
    if stored.is_none() {
        let (shards, clusters): (Vec<i32>, Vec<String>) = map
            .homes()
            .map(|(s, c)| (i32::from(s), c.to_string()))
            .unzip();
        sqlx::query(
            "INSERT INTO shard_homes (shard, cluster) SELECT * FROM unnest($1::int[], $2::text[])",
        )
        .bind(&shards)
        .bind(&clusters)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query("INSERT INTO map_epoch (epoch) VALUES ($1)")
            .bind(map.epoch() as i64)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tracing::info!(epoch = map.epoch(), clusters = ?map.clusters(), "stored the first shard map");
    }
    cat.commit(tx).await?;
    load_map(cat)
        .await?
        .ok_or_else(|| StoreError::Other("the shard map vanished".into()))
}

/// The two directory tables: (table, key column, how a value becomes its key).
const USERNAMES: (&str, &str, &str) = ("usernames", "username_key", "lower($1)");
const EMAILS: (&str, &str, &str) = ("emails", "email", "$1");

/// Reserves `username` and `email` for a user about to be created on `shard`.
///
/// # Errors
/// [`StoreError::Conflict`] naming the field that is taken or reserved.
pub(crate) async fn reserve(
    cat: &Db,
    username: &str,
    email: &str,
    shard: LogicalShard,
) -> StoreResult<()> {
    let mut tx = cat.begin().await?;
    let now = now_ms();
    for ((table, column, key), value) in [(USERNAMES, username), (EMAILS, email)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({column}, user_id, shard, reserved_at) VALUES ({key}, NULL, $2, $3)"
        )))
        .bind(value)
        .bind(i32::from(shard.get()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    cat.commit(tx).await
}

/// Gives the reserved `username` and `email` to `id`. Answers false when a reservation is
/// gone (swept) and the name or email was taken by someone else meanwhile.
pub(crate) async fn confirm(cat: &Db, username: &str, email: &str, id: Id) -> StoreResult<bool> {
    let mut tx = cat.begin().await?;
    let now = now_ms();
    for ((table, column, key), value) in [(USERNAMES, username), (EMAILS, email)] {
        // the reservation, or a fresh entry if a sweep freed it
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({column}, user_id, shard, reserved_at) VALUES ({key}, $2, $3, $4)
             ON CONFLICT ({column}) DO UPDATE SET user_id = $2
             WHERE {table}.user_id IS NULL OR {table}.user_id = $2"
        )))
        .bind(value)
        .bind(id.as_i64())
        .bind(i32::from(id.shard().get()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if n.rows_affected() != 1 {
            return Ok(false);
        }
    }
    cat.commit(tx).await?;
    Ok(true)
}

/// Frees the reservations of `username` and `email` (a sign-up that failed).
pub(crate) async fn release(cat: &Db, username: &str, email: &str) -> StoreResult<()> {
    let mut tx = cat.begin().await?;
    for ((table, column, key), value) in [(USERNAMES, username), (EMAILS, email)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE {column} = {key} AND user_id IS NULL"
        )))
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    cat.commit(tx).await
}

/// Gives `id` a new username and/or email besides its current ones (a profile change,
/// before the user's own row changes).
///
/// # Errors
/// [`StoreError::Conflict`] naming the field that another user holds or reserves.
pub(crate) async fn claim(
    cat: &Db,
    id: Id,
    username: Option<&str>,
    email: Option<&str>,
) -> StoreResult<()> {
    let mut tx = cat.begin().await?;
    let now = now_ms();
    for ((table, column, key), value, field) in
        [(USERNAMES, username, "username"), (EMAILS, email, "email")]
    {
        let Some(value) = value else { continue };
        let n = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {table} ({column}, user_id, shard, reserved_at) VALUES ({key}, $2, $3, $4)
             ON CONFLICT ({column}) DO UPDATE SET reserved_at = {table}.reserved_at
             WHERE {table}.user_id = $2"
        )))
        .bind(value)
        .bind(id.as_i64())
        .bind(i32::from(id.shard().get()))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if n.rows_affected() != 1 {
            return Err(StoreError::Conflict { constraint: field });
        }
    }
    cat.commit(tx).await
}

/// Removes every username and email of `id` except `username` and `email` (after a
/// profile change, or to undo a claim).
pub(crate) async fn keep_only(cat: &Db, id: Id, username: &str, email: &str) -> StoreResult<()> {
    let mut tx = cat.begin().await?;
    for ((table, column, key), value) in [(USERNAMES, username), (EMAILS, email)] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE user_id = $2 AND {column} <> {key}"
        )))
        .bind(value)
        .bind(id.as_i64())
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    }
    cat.commit(tx).await
}

/// The user holding `username` (any case), if one does: from a replica of the catalogue
/// that may serve the request's fence, as other reads.
pub(crate) async fn user_by_username(cat: &Db, username: &str) -> StoreResult<Option<Id>> {
    let sql = lookup(USERNAMES);
    cat.read(|pool| find(pool, &sql, username)).await
}

/// The user holding `email`, if one does: always from the primary, as sign-in reads it, so
/// that a user who has just signed up is found.
pub(crate) async fn user_by_email(cat: &Db, email: &str) -> StoreResult<Option<Id>> {
    let sql = lookup(EMAILS);
    cat.read_primary(|pool| find(pool, &sql, email)).await
}

/// The statement that finds the user holding a value of directory `table`.
fn lookup((table, column, key): (&str, &str, &str)) -> String {
    format!("SELECT user_id FROM {table} WHERE {column} = {key} AND user_id IS NOT NULL")
}

/// Runs a [`lookup`] statement for `value` on `pool`.
async fn find(pool: sqlx::PgPool, sql: &str, value: &str) -> StoreResult<Option<Id>> {
    let id: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(value)
        .fetch_optional(&pool)
        .await
        .map_err(map_err)?;
    Ok(id.map(Id::from_i64))
}

/// What one [`sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Reservations whose user exists on its cluster, now confirmed.
    pub confirmed: u64,
    /// Reservations whose user never appeared, now free again.
    pub freed: u64,
}

/// Settles reservations older than `age`: each is confirmed if its user exists on the
/// cluster of its shard (in that cluster's own directory table), freed otherwise.
pub(crate) async fn sweep(s: &Shards, age: Duration) -> StoreResult<Swept> {
    let cutoff = now_ms() - age.as_millis() as i64;
    let mut swept = Swept::default();
    for (table, column, _) in [USERNAMES, EMAILS] {
        let pending: Vec<(String, i32)> = s
            .catalogue
            .read_primary(|pool| async move {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {column}, shard FROM {table} WHERE user_id IS NULL AND reserved_at <= $1 LIMIT 1000"
                )))
                .bind(cutoff)
                .fetch_all(&pool)
                .await
                .map_err(map_err)
            })
            .await?;
        for (value, shard) in pending {
            let home = s.holding(LogicalShard::new(shard as u16));
            let local: Option<i64> = home
                .read_primary(|pool| {
                    let value = value.clone();
                    async move {
                        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                            "SELECT user_id FROM {table} WHERE {column} = $1"
                        )))
                        .bind(value)
                        .fetch_optional(&pool)
                        .await
                        .map_err(map_err)
                    }
                })
                .await?;
            let settle = match local {
                Some(id) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE {table} SET user_id = $2 WHERE {column} = $1 AND user_id IS NULL"
                )))
                .bind(&value)
                .bind(id),
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE {column} = $1 AND user_id IS NULL AND reserved_at <= $2"
                )))
                .bind(&value)
                .bind(cutoff),
            };
            if s.catalogue.execute(settle).await? == 1 {
                match local {
                    Some(_) => swept.confirmed += 1,
                    None => swept.freed += 1,
                }
            }
        }
    }
    if swept != Swept::default() {
        tracing::info!(
            confirmed = swept.confirmed,
            freed = swept.freed,
            "swept sign-up reservations"
        );
    }
    Ok(swept)
}
