//! The store conformance suite and queue behaviour on SQLite, each case on a fresh file.

use crescendo_queue::{Delivery, Queue};
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
async fn a_job_whose_leases_run_out_max_attempts_times_is_given_up_then_dead_lettered() {
    // arrange: workers that die holding the job (a zero lease has run out at once)
    let (_dir, store) = fresh().await;
    let q = store.queue(2);
    q.publish("images", b"poison").await.unwrap();
    for (attempt, delivery) in [(1, Delivery::Run), (2, Delivery::LastRun)] {
        let job = q
            .claim("images", Duration::ZERO)
            .await
            .unwrap()
            .expect("delivered again while attempts remain");
        assert_eq!((job.attempts, job.delivery), (attempt, delivery));
    }

    // act
    let given_up = q
        .claim("images", Duration::ZERO)
        .await
        .unwrap()
        .expect("handed out once more, to be given up");

    // assert: not to run, with the reason; a worker dying now leaves it to be given up again
    let reason = "delivered 2 times without an answer (workers died or timed out)";
    assert_eq!(
        (given_up.payload.as_slice(), &given_up.delivery),
        (&b"poison"[..], &Delivery::GiveUp(reason.into()))
    );
    let again = q.claim("images", Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        again.map(|j| j.delivery),
        Some(Delivery::GiveUp(reason.into())),
        "given up again after the giving-up worker died"
    );
    let d = q.depth("images").await.unwrap();
    assert_eq!((d.pending, d.dead), (1, 0), "pending until given up");
}

#[tokio::test]
async fn a_job_given_up_and_failed_is_a_dead_letter() {
    let (_dir, store) = fresh().await;
    let q = store.queue(1);
    q.publish("images", b"poison").await.unwrap();
    let last = q.claim("images", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!(last.delivery, Delivery::LastRun);
    let given_up = q
        .claim("images", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    q.fail(&given_up, "given up", Duration::ZERO).await.unwrap();
    assert_eq!(
        q.claim("images", Duration::ZERO).await.unwrap(),
        None,
        "dead letters are not handed out"
    );
    let d = q.depth("images").await.unwrap();
    assert_eq!((d.pending, d.dead), (0, 1));
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
