//! Conformance cases for jobs a write adds to the outbox in its own transaction
//! ([`crate::outbox`]).

use super::{article, user};
use crate::outbox::{PendingJob, with_jobs};
use crate::*;

/// A pending job leased by its writer for `lease_ms`.
fn job(lease_ms: i64) -> PendingJob {
    PendingJob {
        queue: jobs::EDGE_PURGE_QUEUE,
        payload: b"1 0123456789abcdef".to_vec(),
        lease_ms,
    }
}

/// A write's pending jobs are committed with it, born leased: no relay claims one before
/// its lease ends, any relay claims it after; a write that fails writes none; the writer
/// removes them by the IDs reported.
pub async fn jobs_born_leased_wait_for_their_writer(s: &dyn Store) {
    let (pat, held) = with_jobs(vec![job(3_600_000)], async { user(s, "Pat").await }).await;
    assert_eq!(held.len(), 1, "the write reports its entry");
    assert_eq!(s.outbox_len().await.unwrap(), 1);
    assert!(
        s.claim_outbox(10, 60_000).await.unwrap().is_empty(),
        "an entry leased by its writer is not claimed before its lease ends"
    );

    let (taken, none) = with_jobs(
        vec![job(0)],
        s.create_user(NewUser {
            username: "Pat".into(),
            email: "other@example.com".into(),
            password_hash: "$argon2id$fake".into(),
        }),
    )
    .await;
    assert!(taken.is_err(), "the name is taken");
    assert!(none.is_empty(), "a write that fails writes no entry");
    assert_eq!(s.outbox_len().await.unwrap(), 1);

    let (_, ended) = with_jobs(vec![job(1)], article(s, pat.id, "Leased", &[])).await;
    assert_eq!(ended.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    // a store that keeps timelines adds its own feed job (born free) to a new article
    let (claimed, feed): (Vec<_>, Vec<_>) = s
        .claim_outbox(10, 60_000)
        .await
        .unwrap()
        .into_iter()
        .partition(|e| e.queue != jobs::FEED_QUEUE);
    assert_eq!(
        claimed.iter().map(|e| e.id).collect::<Vec<_>>(),
        ended,
        "an entry whose lease ended is claimed like any other, and only it"
    );
    assert_eq!(claimed[0].queue, jobs::EDGE_PURGE_QUEUE);
    assert_eq!(claimed[0].payload, job(0).payload);

    s.remove_outbox(&held).await.unwrap();
    s.remove_outbox(&ended).await.unwrap();
    s.remove_outbox(&feed.iter().map(|e| e.id).collect::<Vec<_>>())
        .await
        .unwrap();
    assert_eq!(
        s.outbox_len().await.unwrap(),
        0,
        "removed by the reported IDs"
    );
}
