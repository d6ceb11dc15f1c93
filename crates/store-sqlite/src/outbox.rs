//! The outbox: jobs written in the same transaction as their data, which a relay claims
//! under a lease, publishes, then removes.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_store::{OutboxEntry, StoreResult};
use rusqlite::params;

pub(crate) async fn claim_outbox(
    db: &Db,
    limit: u32,
    lease_ms: i64,
) -> StoreResult<Vec<OutboxEntry>> {
    db.write(move |tx| {
        let now = now_ms();
        tx.prepare_cached(
            "UPDATE outbox SET lease_until = ?1 + ?2
             WHERE id IN (SELECT id FROM outbox WHERE lease_until <= ?1 ORDER BY id LIMIT ?3)
             RETURNING id, queue, payload",
        )
        .and_then(|mut st| {
            st.query_map(params![now, lease_ms, limit], |r| {
                Ok(OutboxEntry {
                    id: r.get(0)?,
                    queue: r.get(1)?,
                    payload: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map(|mut v| {
            v.sort_by_key(|e| e.id);
            v
        })
        .map_err(map_err)
    })
    .await
}

pub(crate) async fn remove_outbox(db: &Db, ids: &[i64]) -> StoreResult<()> {
    let ids = ids.to_vec();
    db.write(move |tx| {
        let mut st = tx
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")
            .map_err(map_err)?;
        for id in ids {
            st.execute([id]).map_err(map_err)?;
        }
        Ok(())
    })
    .await
}

pub(crate) async fn outbox_len(db: &Db) -> StoreResult<u64> {
    db.read(|conn| {
        conn.query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(map_err)
    })
    .await
}
