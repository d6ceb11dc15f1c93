//! The store conformance suite and queue behaviour on SQLite, each case on a fresh file.

use crescendo_queue::Queue;
use crescendo_store::Store;
use crescendo_store_sqlite::{SqliteOptions, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("data.db"))).unwrap();
    (dir, store)
}

crescendo_store::store_conformance_tests!(async {
    let (dir, store) = fresh().await;
    (dir, Arc::new(store) as Arc<dyn Store>)
});

#[tokio::test]
async fn a_claimed_job_is_held_by_one_worker_until_acked() {
    let (_dir, store) = fresh().await;
    let q = store.queue(3);
    let id = q.publish("images", b"one").await.unwrap();
    let job = q
        .claim("images", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("a job");
    assert_eq!(
        (job.id, job.payload.as_slice(), job.attempts),
        (id, &b"one"[..], 1)
    );
    assert_eq!(
        q.claim("images", Duration::from_secs(30)).await.unwrap(),
        None,
        "leased jobs are not handed out twice"
    );
    assert_eq!(
        q.claim("other", Duration::from_secs(30)).await.unwrap(),
        None
    );
    assert_eq!(q.depth("images").await.unwrap().pending, 1);
    q.ack(&job).await.unwrap();
    assert_eq!(q.depth("images").await.unwrap().pending, 0);
}

#[tokio::test]
async fn an_expired_lease_lets_another_worker_take_the_job() {
    let (_dir, store) = fresh().await;
    let q = store.queue(3);
    q.publish("images", b"x").await.unwrap();
    let first = q
        .claim("images", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = q
        .claim("images", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the job again");
    assert_eq!((second.id, second.attempts), (first.id, 2));
    assert!(
        matches!(
            q.ack(&first).await,
            Err(crescendo_queue::QueueError::LeaseLost(_))
        ),
        "the stale claim cannot ack"
    );
    q.ack(&second).await.unwrap();
}

#[tokio::test]
async fn failing_jobs_are_retried_then_dead_lettered() {
    let (_dir, store) = fresh().await;
    let q = store.queue(2);
    q.publish("images", b"bad").await.unwrap();
    let j1 = q
        .claim("images", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    q.fail(&j1, "boom", Duration::ZERO).await.unwrap();
    let j2 = q
        .claim("images", Duration::from_secs(30))
        .await
        .unwrap()
        .expect("retried");
    assert_eq!(j2.attempts, 2);
    q.fail(&j2, "boom again", Duration::ZERO).await.unwrap();
    assert_eq!(
        q.claim("images", Duration::from_secs(30)).await.unwrap(),
        None,
        "dead letters are not handed out"
    );
    let d = q.depth("images").await.unwrap();
    assert_eq!((d.pending, d.dead), (0, 1));
}

#[tokio::test]
async fn a_job_whose_leases_run_out_max_attempts_times_is_dead_lettered() {
    // arrange: workers that die holding the job (a zero lease has run out at once)
    let (_dir, store) = fresh().await;
    let q = store.queue(2);
    q.publish("images", b"poison").await.unwrap();
    for attempt in 1..=2 {
        let job = q
            .claim("images", Duration::ZERO)
            .await
            .unwrap()
            .expect("delivered again while attempts remain");
        assert_eq!(job.attempts, attempt);
    }

    // act
    let after_the_last = q.claim("images", Duration::ZERO).await.unwrap();

    // assert
    assert_eq!(after_the_last, None, "not handed out a third time");
    let d = q.depth("images").await.unwrap();
    assert_eq!(
        (d.pending, d.dead),
        (0, 1),
        "a dead letter, not a pending job"
    );
}

#[tokio::test]
async fn the_database_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.db");
    let id = {
        let s = SqliteStore::open(&SqliteOptions::new(&path)).unwrap();
        s.create_user(crescendo_store::NewUser {
            username: "a".into(),
            email: "a@x.io".into(),
            password_hash: "h".into(),
        })
        .await
        .unwrap()
        .id
    };
    let s = SqliteStore::open(&SqliteOptions::new(&path)).unwrap();
    assert_eq!(
        s.user_by_id(id).await.unwrap().map(|u| u.username),
        Some("a".into())
    );
}
