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
use sqlx::Row;

pub(crate) async fn create_upload(
    db: &Db,
    new: NewUpload,
    queue: &str,
) -> StoreResult<UploadRecord> {
    let mut tx = db.begin_for(new.owner_id.shard()).await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO uploads (id, owner_id, mime, original, width, height, created_at)
         VALUES (next_id($1), $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(i32::from(new.owner_id.shard().get()))
    .bind(new.owner_id.as_i64())
    .bind(&new.mime)
    .bind(&new.original)
    .bind(i64::from(new.width))
    .bind(i64::from(new.height))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    sqlx::query("INSERT INTO outbox (queue, payload, created_at) VALUES ($1, $2, $3)")
        .bind(queue)
        .bind(
            ImageVariants {
                upload: Id::from_i64(id),
            }
            .encode(),
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
    db.commit(tx).await?;
    Ok(new.into_record(Id::from_i64(id), now))
}

pub(crate) async fn upload(db: &Db, id: Id) -> StoreResult<Option<UploadRecord>> {
    db.read(|pool| async move {
        let row = sqlx::query("SELECT id, owner_id, state, reason, mime, original, width, height, created_at FROM uploads WHERE id = $1")
            .bind(id.as_i64())
            .fetch_optional(&pool)
            .await
            .map_err(map_err)?;
        row.map(|r| -> Result<UploadRecord, sqlx::Error> {
            let state: String = r.try_get(2)?;
            Ok(UploadRecord {
                id: Id::from_i64(r.try_get(0)?),
                owner_id: Id::from_i64(r.try_get(1)?),
                state: UploadState::parse(&state).unwrap_or(UploadState::Failed),
                reason: r.try_get(3)?,
                mime: r.try_get(4)?,
                original: r.try_get(5)?,
                width: u32::try_from(r.try_get::<i32, _>(6)?).unwrap_or(0),
                height: u32::try_from(r.try_get::<i32, _>(7)?).unwrap_or(0),
                created_at: r.try_get(8)?,
            })
        })
        .transpose()
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
    let settle = sqlx::query(
        "UPDATE uploads SET state = $2, reason = $3 WHERE id = $1 AND state = 'processing'",
    )
    .bind(id.as_i64())
    .bind(state.as_str())
    .bind(reason);
    Ok(db.execute_for(id.shard(), settle).await? == 1)
}
