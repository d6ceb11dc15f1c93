//! `NatsQueue` against a real NATS server with JetStream, started by the test.

use crescendo_queue::{Delivery, Queue};
use crescendo_queue_nats::NatsQueue;
use crescendo_topology::nats::Nats;
use std::time::{Duration, Instant};

const Q: &str = "images.variants";

async fn server() -> (Nats, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let n = tokio::task::spawn_blocking(move || Nats::start(&d, [127, 0, 0, 1]))
        .await
        .unwrap()
        .expect("nats starts");
    (n, dir)
}

/// A queue on a fresh server, giving up on a job after `max_attempts`.
async fn queue(max_attempts: u32) -> (Nats, tempfile::TempDir, NatsQueue) {
    let (nats, dir) = server().await;
    let q = NatsQueue::connect(&nats.url(), max_attempts, Duration::from_secs(1))
        .await
        .unwrap();
    (nats, dir, q)
}

async fn claim_within(q: &NatsQueue, limit: Duration) -> Option<crescendo_queue::Job> {
    let started = Instant::now();
    loop {
        if let Some(j) = q.claim(Q, Duration::from_secs(1)).await.unwrap() {
            return Some(j);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_claimed_once_acknowledged_retried_and_dead_lettered() {
    let (_nats, _dir, q) = queue(2).await;
    q.publish(Q, b"1").await.unwrap();
    let job = q
        .claim(Q, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("a job");
    assert_eq!((job.payload.as_slice(), job.attempts), (&b"1"[..], 1));
    assert!(
        q.claim(Q, Duration::from_secs(1)).await.unwrap().is_none(),
        "held by its claim"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let d = q.depth(Q).await.unwrap();
    assert_eq!(d.pending, 1);
    assert!(
        (100..60_000).contains(&d.oldest_ms),
        "the oldest job's age: {} ms",
        d.oldest_ms
    );
    q.ack(&job).await.unwrap();
    assert_eq!(
        q.depth(Q).await.unwrap(),
        crescendo_queue::QueueDepth {
            pending: 0,
            dead: 0,
            oldest_ms: 0
        }
    );
    assert!(q.ack(&job).await.is_err(), "acknowledged once");

    // a failed job comes back after its back-off, then dies on its last attempt with the reason
    q.publish(Q, b"2").await.unwrap();
    let job = claim_within(&q, Duration::from_secs(1)).await.unwrap();
    q.fail(&job, "decoder crashed", Duration::from_millis(100))
        .await
        .unwrap();
    let again = claim_within(&q, Duration::from_secs(3))
        .await
        .expect("redelivered after its back-off");
    assert_eq!((again.payload.as_slice(), again.attempts), (&b"2"[..], 2));
    q.fail(&again, "decoder crashed again", Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        claim_within(&q, Duration::from_millis(500)).await.is_none(),
        "no third attempt"
    );
    assert_eq!(
        q.dead_letters(Q).await.unwrap(),
        vec![(b"2".to_vec(), "decoder crashed again".to_string())]
    );
    assert_eq!(q.depth(Q).await.unwrap().dead, 1);

    // the same message ID twice (a relay that lost the answer) makes one job
    q.publish_once(Q, b"3", "outbox-3").await.unwrap();
    q.publish_once(Q, b"3", "outbox-3").await.unwrap();
    let job = claim_within(&q, Duration::from_secs(1)).await.unwrap();
    q.ack(&job).await.unwrap();
    assert!(
        claim_within(&q, Duration::from_millis(300)).await.is_none(),
        "stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_worker_dies_is_delivered_again_and_jobs_survive_a_broker_restart() {
    let (mut nats, _dir) = server().await;
    let a = NatsQueue::connect(&nats.url(), 5, Duration::from_secs(1))
        .await
        .unwrap();
    a.publish(Q, b"7").await.unwrap();
    let held = a.claim(Q, Duration::from_secs(1)).await.unwrap().unwrap();
    // the worker holding it dies: nothing answers for the job
    drop(a);
    let b = NatsQueue::connect(&nats.url(), 5, Duration::from_secs(1))
        .await
        .unwrap();
    let started = Instant::now();
    let again = claim_within(&b, Duration::from_secs(5))
        .await
        .expect("delivered again");
    eprintln!(
        "a job whose worker died was delivered again after {:?}",
        started.elapsed()
    );
    assert_eq!((again.id, again.attempts), (held.id, 2));
    b.ack(&again).await.unwrap();

    // the broker stops: publishing fails (the outbox keeps such jobs); what it stored survives
    b.publish(Q, b"8").await.unwrap();
    tokio::task::block_in_place(|| nats.stop());
    assert!(b.publish(Q, b"9").await.is_err(), "no broker, no publish");
    tokio::task::block_in_place(|| nats.restart().unwrap());
    let started = Instant::now();
    let job = loop {
        match b.claim(Q, Duration::from_secs(1)).await {
            Ok(Some(j)) => break j,
            _ if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("no job after the restart: {other:?}"),
        }
    };
    assert_eq!(job.payload, b"8");
    b.ack(&job).await.unwrap();
}

/// Claims a job of `Q` for `lease`, asking every 50 ms until `limit` passes.
async fn claim_for(
    q: &NatsQueue,
    lease: Duration,
    limit: Duration,
) -> Option<crescendo_queue::Job> {
    let started = Instant::now();
    loop {
        if let Some(j) = q.claim(Q, lease).await.unwrap() {
            return Some(j);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_holds_its_job_for_the_lease_it_names() {
    let (nats, _dir) = server().await;
    // the constructor's lease is long; the consumer is made with it by a depth reading
    let q = NatsQueue::connect(&nats.url(), 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(q.depth(Q).await.unwrap().pending, 0);

    // a claim for 1 s: nobody answers, so the job comes back after a second, not a minute
    q.publish(Q, b"1").await.unwrap();
    let held = q
        .claim(Q, Duration::from_secs(1))
        .await
        .unwrap()
        .expect("a job");
    let started = Instant::now();
    let again = claim_for(&q, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .expect("delivered again once its 1 s lease ran out");
    assert_eq!((again.id, again.attempts), (held.id, 2));
    assert!(started.elapsed() >= Duration::from_millis(500));
    q.ack(&again).await.unwrap();

    // a claim for 3 s: still held after a second and a half, delivered again after three
    q.publish(Q, b"2").await.unwrap();
    let held = claim_for(&q, Duration::from_secs(3), Duration::from_secs(1))
        .await
        .expect("a job");
    let started = Instant::now();
    assert!(
        claim_for(&q, Duration::from_secs(3), Duration::from_millis(1500))
            .await
            .is_none(),
        "held for the 3 s it was claimed for"
    );
    let again = claim_for(&q, Duration::from_secs(3), Duration::from_secs(5))
        .await
        .expect("delivered again once its 3 s lease ran out");
    assert_eq!((again.id, again.attempts), (held.id, 2));
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "delivered again after {:?}",
        started.elapsed()
    );
    q.ack(&again).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_workers_die_every_time_is_handed_out_to_be_given_up() {
    // arrange: two claims that are never answered, as by workers killed holding the job
    let (_nats, _dir, q) = queue(2).await;
    q.publish(Q, b"poison").await.unwrap();
    let first = claim_for(&q, Duration::from_secs(1), Duration::from_secs(1))
        .await
        .expect("a job");
    assert_eq!((first.attempts, &first.delivery), (1, &Delivery::Run));
    let last = claim_for(&q, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .expect("delivered again once its lease ran out");
    assert_eq!((last.attempts, &last.delivery), (2, &Delivery::LastRun));

    // act: its last lease runs out too
    let given_up = claim_for(&q, Duration::from_secs(1), Duration::from_secs(5))
        .await
        .expect("handed out once more, to be given up");

    // assert: not to run, with the reason; failing it makes the dead letter
    let reason = "delivered 2 times without an answer (workers died or timed out)";
    assert_eq!(given_up.delivery, Delivery::GiveUp(reason.into()));
    assert_eq!(given_up.payload, b"poison");
    q.fail(&given_up, reason, Duration::ZERO).await.unwrap();
    assert_eq!(
        q.dead_letters(Q).await.unwrap(),
        vec![(b"poison".to_vec(), reason.to_string())]
    );
    assert!(
        claim_for(&q, Duration::from_secs(1), Duration::from_millis(1500))
            .await
            .is_none(),
        "never handed out again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extended_lease_keeps_the_job_past_the_lease_it_was_claimed_for() {
    // the consumer is made with an older, longer lease; the first claim sets its ack wait to
    // the claim's lease, which the extensions then restart
    let (nats, _dir) = server().await;
    let a = NatsQueue::connect(&nats.url(), 5, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(a.depth(Q).await.unwrap().pending, 0);
    let b = NatsQueue::connect(&nats.url(), 5, LEASE).await.unwrap();
    crescendo_queue::conformance::an_extended_lease_keeps_the_job(&a, &b, Q, LEASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_not_extended_runs_out_and_the_job_is_claimed_again() {
    let (nats, _dir) = server().await;
    let a = NatsQueue::connect(&nats.url(), 5, LEASE).await.unwrap();
    let b = NatsQueue::connect(&nats.url(), 5, LEASE).await.unwrap();
    crescendo_queue::conformance::a_lease_not_extended_runs_out(&a, &b, Q, LEASE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extending_a_lost_lease_answers_lease_lost_in_the_claiming_process() {
    // the server restarts whatever delivery of the message is pending, so a claim overtaken
    // by another process cannot be told: one handle claims both times
    let (_nats, _dir, q) = queue(5).await;
    crescendo_queue::conformance::extending_a_lost_lease_answers_lease_lost(&q, &q, Q, LEASE).await;
}

const LEASE: Duration = Duration::from_secs(1);
