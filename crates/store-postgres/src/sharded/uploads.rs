//! Uploads on a sharded store: an upload lives with its owner (its ID carries the owner's
//! logical shard), and its job goes to the outbox of that cluster in the same transaction.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::Shards;
use crate::uploads;
use crescendo_domain::Id;
use crescendo_store::{NewUpload, StoreResult, UploadRecord, UploadState};

pub(crate) async fn create_upload(
    s: &Shards,
    new: NewUpload,
    queue: &str,
) -> StoreResult<UploadRecord> {
    s.write(new.owner_id.shard(), |db| {
        uploads::create_upload(db, new.clone(), queue)
    })
    .await
}

pub(crate) async fn upload(s: &Shards, id: Id) -> StoreResult<Option<UploadRecord>> {
    uploads::upload(s.of(id), id).await
}

pub(crate) async fn settle_upload(
    s: &Shards,
    id: Id,
    state: UploadState,
    reason: Option<String>,
) -> StoreResult<bool> {
    s.write(id.shard(), |db| {
        uploads::settle_upload(db, id, state, reason.clone())
    })
    .await
}
