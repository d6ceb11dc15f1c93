//! Conformance cases for uploads and the outbox of jobs written with them.

use super::user;
use crate::*;
use crescendo_domain::Id;

/// The queue every upload's job goes to in these cases.
const QUEUE: &str = "images.variants";

/// An upload is recorded with its job in the outbox; relays hold entries while they publish
/// them; an upload settles once.
pub async fn uploads_come_with_their_job_and_settle_once(s: &dyn Store) {
    let u = user(s, "Pat").await;
    let up = upload(s, u.id, "image/png", "originals/a", (40, 20)).await;
    assert_eq!(up.state, UploadState::Processing);
    assert_eq!(
        up.id.shard(),
        u.id.shard(),
        "an upload lives on its owner's shard"
    );
    assert_eq!(s.upload(up.id).await.unwrap(), Some(up.clone()));
    assert_eq!(s.upload(Id::from_i64(1)).await.unwrap(), None);
    let second = upload(s, u.id, "image/jpeg", "originals/b", (1, 1)).await;

    outbox_holds_entries_while_relays_publish_them(s, u.id, &up, &second).await;
    uploads_settle_once(s, &up, &second).await;
}

/// Records an upload (its width and height given as a pair) owned by `owner`, with its job
/// for [`QUEUE`].
async fn upload(
    s: &dyn Store,
    owner: Id,
    mime: &str,
    original: &str,
    (width, height): (u32, u32),
) -> UploadRecord {
    s.create_upload(
        NewUpload {
            owner_id: owner,
            mime: mime.into(),
            original: original.into(),
            width,
            height,
        },
        QUEUE,
    )
    .await
    .unwrap()
}

/// The jobs of `up` and `second` come out of the outbox in order and once while held; an
/// entry whose lease runs out is handed out again.
async fn outbox_holds_entries_while_relays_publish_them(
    s: &dyn Store,
    owner: Id,
    up: &UploadRecord,
    second: &UploadRecord,
) {
    let claimed = s.claim_outbox(10, 60_000).await.unwrap();
    let payloads: Vec<String> = claimed
        .iter()
        .map(|e| String::from_utf8(e.payload.clone()).unwrap())
        .collect();
    assert_eq!(
        payloads,
        [up.id.as_i64().to_string(), second.id.as_i64().to_string()]
    );
    assert!(claimed.iter().all(|e| e.queue == QUEUE));
    assert!(
        s.claim_outbox(10, 60_000).await.unwrap().is_empty(),
        "held entries are not handed out twice"
    );
    s.remove_outbox(&[claimed[0].id, claimed[1].id])
        .await
        .unwrap();
    // an entry whose lease ran out (its relay died before removing it) is handed out again
    let third = upload(s, owner, "image/gif", "originals/c", (2, 2)).await;
    let first_try = s.claim_outbox(10, 1).await.unwrap();
    assert_eq!(first_try.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    let retry = s.claim_outbox(10, 60_000).await.unwrap();
    assert_eq!(retry, first_try, "{}", third.id);
    s.remove_outbox(&[retry[0].id]).await.unwrap();
    assert!(s.claim_outbox(10, 0).await.unwrap().is_empty());
}

/// `up` settles as ready once (a later failure changes nothing); `second` fails with its
/// reason.
async fn uploads_settle_once(s: &dyn Store, up: &UploadRecord, second: &UploadRecord) {
    assert!(
        s.settle_upload(up.id, UploadState::Ready, None)
            .await
            .unwrap()
    );
    assert!(
        !s.settle_upload(up.id, UploadState::Failed, Some("late".into()))
            .await
            .unwrap(),
        "settled once"
    );
    assert_eq!(
        s.upload(up.id).await.unwrap().unwrap().state,
        UploadState::Ready
    );
    assert!(
        s.settle_upload(second.id, UploadState::Failed, Some("not an image".into()))
            .await
            .unwrap()
    );
    let failed = s.upload(second.id).await.unwrap().unwrap();
    assert_eq!(
        (failed.state, failed.reason.as_deref()),
        (UploadState::Failed, Some("not an image"))
    );
}
