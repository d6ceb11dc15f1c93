//! The outbox: jobs written in the same transaction as their data, which a relay claims
//! under a lease, publishes, then removes.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_store::{OutboxEntry, StoreResult};
use sqlx::Row;

pub(crate) async fn claim_outbox(
    db: &Db,
    limit: u32,
    lease_ms: i64,
) -> StoreResult<Vec<OutboxEntry>> {
    let mut tx = db.begin().await?;
    let now = now_ms();
    let rows = sqlx::query(
        "UPDATE outbox SET lease_until = $1 + $2
         WHERE id IN (SELECT id FROM outbox WHERE lease_until <= $1 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING id, queue, payload",
    )
    .bind(now)
    .bind(lease_ms)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    db.commit(tx).await?;
    let mut out = rows
        .iter()
        .map(|r| {
            Ok(OutboxEntry {
                id: r.try_get(0)?,
                queue: r.try_get(1)?,
                payload: r.try_get(2)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(map_err)?;
    out.sort_by_key(|e| e.id);
    Ok(out)
}

pub(crate) async fn remove_outbox(db: &Db, ids: &[i64]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    db.execute(sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(ids))
        .await
        .map(drop)
}

pub(crate) async fn outbox_len(db: &Db) -> StoreResult<u64> {
    db.read_primary(|pool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .map(|n| n.max(0) as u64)
            .map_err(map_err)
    })
    .await
}
