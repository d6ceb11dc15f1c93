//! Uploads: each recorded with its job in the outbox, in one transaction, and
//! settled once by the worker.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_domain::Id;
use crescendo_store::jobs::ImageVariants;
use crescendo_store::{NewUpload, StoreResult, UploadRecord, UploadState};
use rusqlite::{OptionalExtension, Row, params};

fn upload_row(r: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    let state: String = r.get(2)?;
    Ok(UploadRecord {
        id: Id::from_i64(r.get(0)?),
        owner_id: Id::from_i64(r.get(1)?),
        state: UploadState::parse(&state).unwrap_or(UploadState::Failed),
        reason: r.get(3)?,
        mime: r.get(4)?,
        original: r.get(5)?,
        width: r.get(6)?,
        height: r.get(7)?,
        created_at: r.get(8)?,
    })
}

pub(crate) async fn create_upload(
    db: &Db,
    new: NewUpload,
    queue: &str,
) -> StoreResult<UploadRecord> {
    let id = db.ids().next_id(new.owner_id.shard());
    let queue = queue.to_string();
    db.write(move |tx| {
        let now = now_ms();
        tx.prepare_cached("INSERT INTO uploads (id, owner_id, mime, original, width, height, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
            .and_then(|mut st| st.execute(params![id.as_i64(), new.owner_id.as_i64(), new.mime, new.original, new.width, new.height, now]))
            .map_err(map_err)?;
        tx.prepare_cached("INSERT INTO outbox (queue, payload, created_at) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![queue, ImageVariants { upload: id }.encode(), now]))
            .map_err(map_err)?;
        Ok(new.into_record(id, now))
    })
    .await
}

pub(crate) async fn upload(db: &Db, id: Id) -> StoreResult<Option<UploadRecord>> {
    db.read(move |c| {
        c.prepare_cached("SELECT id, owner_id, state, reason, mime, original, width, height, created_at FROM uploads WHERE id = ?1")
            .and_then(|mut st| st.query_row([id.as_i64()], upload_row).optional())
            .map_err(map_err)
    })
    .await
}

pub(crate) async fn settle_upload(
    db: &Db,
    id: Id,
    state: UploadState,
    reason: Option<String>,
) -> StoreResult<bool> {
    let sql = "UPDATE uploads SET state = ?2, reason = ?3 WHERE id = ?1 AND state = 'processing'";
    let n = db
        .execute(sql, (id.as_i64(), state.as_str(), reason))
        .await?;
    Ok(n == 1)
}
