//! The lease behaviour every [`Queue`] backend must show, run by each backend's tests on two
//! claimers of one queue (`a` and `b`: two workers' handles on the same jobs).
//!
//! Each case publishes its own jobs to `queue`, which must be empty, and claims them for
//! `lease`; a lease of a second or two keeps the cases quick and leaves room for a loaded
//! machine. A case panics, naming what went wrong, when the backend does not behave.

use crate::{Job, Queue, QueueError};
use std::time::{Duration, Instant};

/// Claims a job of `queue` on `q` for `lease`, asking every 50 ms until `limit` passes.
///
/// # Panics
/// The backend answers a claim with an error.
pub async fn claim_within(
    q: &dyn Queue,
    queue: &str,
    lease: Duration,
    limit: Duration,
) -> Option<Job> {
    let started = Instant::now();
    loop {
        if let Some(job) = q.claim(queue, lease).await.expect("claiming a job") {
            return Some(job);
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `payload` to `queue` on `q` and claims it there for `lease`.
///
/// # Panics
/// The job cannot be published, or is not claimed within a lease.
async fn publish_and_claim(q: &dyn Queue, queue: &str, payload: &[u8], lease: Duration) -> Job {
    q.publish(queue, payload).await.expect("publishing a job");
    claim_within(q, queue, lease, lease)
        .await
        .expect("a job to claim")
}

/// A job whose claim extends its lease every third of it stays with `a` for three leases:
/// `b` never gets it, and `a` acknowledges it at the end.
///
/// # Panics
/// The job is handed to `b`, or `a` cannot extend or acknowledge it.
pub async fn an_extended_lease_keeps_the_job(
    a: &dyn Queue,
    b: &dyn Queue,
    queue: &str,
    lease: Duration,
) {
    let job = publish_and_claim(a, queue, b"extended", lease).await;
    let started = Instant::now();
    while started.elapsed() < lease * 3 {
        tokio::time::sleep(lease / 3).await;
        a.extend(&job, lease)
            .await
            .expect("the claim extends its lease");
        let other = b.claim(queue, lease).await.expect("claiming a job");
        assert_eq!(
            other.map(|j| j.id),
            None,
            "the job was handed to a second claimer {:?} after a claim for {lease:?} that kept extending it",
            started.elapsed()
        );
    }
    a.ack(&job)
        .await
        .expect("the extended claim still holds its job");
}

/// A job whose lease is not extended is claimed by `b` once it runs out, as its second
/// attempt.
///
/// # Panics
/// `b` does not get the job within ten leases, or gets it as another attempt.
pub async fn a_lease_not_extended_runs_out(
    a: &dyn Queue,
    b: &dyn Queue,
    queue: &str,
    lease: Duration,
) {
    let job = publish_and_claim(a, queue, b"abandoned", lease).await;
    let again = claim_within(b, queue, lease, lease * 10)
        .await
        .expect("the job claimed again once its lease ran out");
    assert_eq!(
        (again.id, again.attempts),
        (job.id, 2),
        "the same job, a second attempt"
    );
    b.ack(&again).await.expect("the second claim holds the job");
}

/// Extending a claim that no longer holds its job answers [`QueueError::LeaseLost`]: once
/// the job is acknowledged, and once its lease ran out and `b` claimed it (and then so does
/// acknowledging it, while `b` can extend and acknowledge its own claim). A backend that cannot tell the second case across processes passes
/// the same handle as `a` and `b`.
///
/// # Panics
/// An extension of a lost claim succeeds, or `b` cannot extend its own.
pub async fn extending_a_lost_lease_answers_lease_lost(
    a: &dyn Queue,
    b: &dyn Queue,
    queue: &str,
    lease: Duration,
) {
    let job = publish_and_claim(a, queue, b"answered", lease).await;
    a.ack(&job).await.expect("acknowledging the job");
    let extended = a.extend(&job, lease).await;
    assert!(
        matches!(extended, Err(QueueError::LeaseLost(id)) if id == job.id),
        "extending an acknowledged job: {extended:?}"
    );

    let job = publish_and_claim(a, queue, b"overtaken", lease).await;
    let again = claim_within(b, queue, lease, lease * 10)
        .await
        .expect("the job claimed again once its lease ran out");
    let extended = a.extend(&job, lease).await;
    assert!(
        matches!(extended, Err(QueueError::LeaseLost(id)) if id == job.id),
        "extending a claim overtaken by another: {extended:?}"
    );
    let answered = a.ack(&job).await;
    assert!(
        matches!(answered, Err(QueueError::LeaseLost(id)) if id == job.id),
        "acknowledging a claim overtaken by another: {answered:?}"
    );
    b.extend(&again, lease)
        .await
        .expect("the new claim extends its lease");
    b.ack(&again).await.expect("the new claim holds the job");
}
