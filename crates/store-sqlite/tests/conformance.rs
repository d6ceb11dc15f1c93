//! The store conformance suite and queue behaviour on SQLite, each case on a fresh file.

use crescendo_queue::{Delivery, Job, Queue};
use crescendo_store::Store;
use crescendo_store_sqlite::{SqliteOptions, SqliteQueue, SqliteStore};
use std::sync::Arc;
use std::time::Duration;

async fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("data.db"))).unwrap();
    (dir, store)
}

/// A fresh queue that gives up on a job after `max_attempts`, holding one job of `images`
/// with `payload`, and the job's ID.
async fn one_job(max_attempts: u32, payload: &[u8]) -> (tempfile::TempDir, SqliteQueue, i64) {
    let (dir, store) = fresh().await;
    let q = store.queue(max_attempts);
    let id = q.publish("images", payload).await.unwrap();
    (dir, q, id)
}

/// The next job of `queue`, held for `lease`, if any.
async fn claim(q: &SqliteQueue, queue: &str, lease: Duration) -> Option<Job> {
    q.claim(queue, lease).await.unwrap()
}

crescendo_store::store_conformance_tests!(async {
    let (dir, store) = fresh().await;
    (dir, Arc::new(store) as Arc<dyn Store>)
});

#[tokio::test]
async fn a_claimed_job_is_held_by_one_worker_until_acked() {
    let (_dir, q, id) = one_job(3, b"one").await;
    let job = claim(&q, "images", Duration::from_secs(30))
        .await
        .expect("a job");
    assert_eq!(
        (job.id, job.payload.as_slice(), job.attempts),
        (id, &b"one"[..], 1)
    );
    assert_eq!(
        claim(&q, "images", Duration::from_secs(30)).await,
        None,
        "leased jobs are not handed out twice"
    );
    assert_eq!(claim(&q, "other", Duration::from_secs(30)).await, None);
    assert_eq!(q.depth("images").await.unwrap().pending, 1);
    q.ack(&job).await.unwrap();
    assert_eq!(q.depth("images").await.unwrap().pending, 0);
}

#[tokio::test]
async fn an_expired_lease_lets_another_worker_take_the_job() {
    let (_dir, q, _) = one_job(3, b"x").await;
    let first = claim(&q, "images", Duration::from_millis(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = claim(&q, "images", Duration::from_secs(30))
        .await
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
    let (_dir, q, _) = one_job(2, b"bad").await;
    let j1 = claim(&q, "images", Duration::from_secs(30)).await.unwrap();
    q.fail(&j1, "boom", Duration::ZERO).await.unwrap();
    let j2 = claim(&q, "images", Duration::from_secs(30))
        .await
        .expect("retried");
    assert_eq!(j2.attempts, 2);
    q.fail(&j2, "boom again", Duration::ZERO).await.unwrap();
    assert_one_dead_letter(&q).await;
}

/// The queue's one job is a dead letter: counted as such and never handed out.
async fn assert_one_dead_letter(q: &SqliteQueue) {
    assert_eq!(
        claim(q, "images", Duration::ZERO).await,
        None,
        "dead letters are not handed out"
    );
    let d = q.depth("images").await.unwrap();
    assert_eq!((d.pending, d.dead), (0, 1));
}

#[tokio::test]
async fn a_job_whose_leases_run_out_max_attempts_times_is_given_up_then_dead_lettered() {
    // arrange: workers that die holding the job (a zero lease has run out at once)
    let (_dir, q, _) = one_job(2, b"poison").await;
    for (attempt, delivery) in [(1, Delivery::Run), (2, Delivery::LastRun)] {
        let job = claim(&q, "images", Duration::ZERO)
            .await
            .expect("delivered again while attempts remain");
        assert_eq!((job.attempts, job.delivery), (attempt, delivery));
    }

    // act
    let given_up = claim(&q, "images", Duration::ZERO)
        .await
        .expect("handed out once more, to be given up");

    // assert: not to run, with the reason; a worker dying now leaves it to be given up again
    let reason = "delivered 2 times without an answer (workers died or timed out)";
    assert_eq!(
        (given_up.payload.as_slice(), &given_up.delivery),
        (&b"poison"[..], &Delivery::GiveUp(reason.into()))
    );
    let again = claim(&q, "images", Duration::from_secs(30)).await;
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
    let (_dir, q, _) = one_job(1, b"poison").await;
    let last = claim(&q, "images", Duration::ZERO).await.unwrap();
    assert_eq!(last.delivery, Delivery::LastRun);
    let given_up = claim(&q, "images", Duration::from_secs(30)).await.unwrap();
    q.fail(&given_up, "given up", Duration::ZERO).await.unwrap();
    assert_one_dead_letter(&q).await;
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

/// Two handles on one fresh job table, as two workers have.
async fn two_claimers() -> (tempfile::TempDir, SqliteQueue, SqliteQueue) {
    let (dir, store) = fresh().await;
    (dir, store.queue(5), store.queue(5))
}

const LEASE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_lease_keeps_the_job_past_the_lease_it_was_claimed_for() {
    let (_dir, a, b) = two_claimers().await;
    crescendo_queue::conformance::an_extended_lease_keeps_the_job(&a, &b, "images", LEASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_not_extended_runs_out_and_the_job_is_claimed_again() {
    let (_dir, a, b) = two_claimers().await;
    crescendo_queue::conformance::a_lease_not_extended_runs_out(&a, &b, "images", LEASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extending_a_lost_lease_answers_lease_lost() {
    let (_dir, a, b) = two_claimers().await;
    crescendo_queue::conformance::extending_a_lost_lease_answers_lease_lost(
        &a, &b, "images", LEASE,
    )
    .await;
}

#[tokio::test]
async fn a_late_extension_does_not_hold_back_a_job_handed_back_to_run_again() {
    let (_dir, q, _) = one_job(3, b"x").await;
    let job = claim(&q, "images", Duration::from_secs(30)).await.unwrap();
    q.fail(&job, "boom", Duration::ZERO).await.unwrap();
    assert!(
        matches!(
            q.extend(&job, Duration::from_secs(30)).await,
            Err(crescendo_queue::QueueError::LeaseLost(_))
        ),
        "a failed claim holds nothing"
    );
    let again = claim(&q, "images", Duration::from_secs(30)).await;
    assert_eq!(again.map(|j| j.attempts), Some(2), "runnable at once");
}
