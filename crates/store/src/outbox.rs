//! Jobs a write adds to the outbox in its own transaction, without a parameter on every
//! write method of [`Store`](crate::Store).
//!
//! The caller opens a task-local scope around one store write with [`with_jobs`], holding
//! the jobs that must exist exactly when that write does (an edge purge of the cache keys
//! it changes). Each backend has one place where its write transactions commit (SQLite's
//! `Db::write`, PostgreSQL's `Db::commit`); there it [`take`]s the scope's jobs, inserts
//! them into the outbox of the database that commits, commits, and reports the new entries'
//! IDs with [`written`] (as `remove_outbox` takes them), or, when the commit fails, hands
//! the jobs back with [`restore`] for a write that is tried again. A commit point is used
//! instead of a parameter because every write method then carries the jobs for free, and
//! the jobs go to whichever database (cluster) commits the write's data. Outside a scope
//! nothing is pending and the commit point costs one task-local check.
//!
//! A job is written leased for [`PendingJob::lease_ms`]: its writer means to finish the
//! work itself and remove the entry; no relay claims it before the lease ends, and after
//! that (the writer died, or its work failed) any relay publishes it as an ordinary job. A
//! job written with no lease (`0`, e.g. a feed fan-out) is for a relay at once: its entry is
//! not reported to the writer, which therefore never removes it.

use std::cell::RefCell;
use std::future::Future;

/// A job for the outbox, written in the transaction of the next write that commits in the
/// current [`with_jobs`] scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingJob {
    /// The queue a relay publishes it to.
    pub queue: &'static str,
    /// Its payload (see [`crate::jobs`]).
    pub payload: Vec<u8>,
    /// How long after the commit its writer holds it, milliseconds: no relay claims it
    /// sooner.
    pub lease_ms: i64,
}

#[derive(Default)]
struct Pending {
    /// Jobs not yet written.
    jobs: RefCell<Vec<PendingJob>>,
    /// IDs of the outbox entries commits in this scope wrote.
    written: RefCell<Vec<i64>>,
}

tokio::task_local! {
    static PENDING: Pending;
}

/// Runs `fut` (one store write) with `jobs` pending: the write's commit adds them to the
/// outbox. Returns its output and the IDs of the entries written (empty when nothing
/// committed, e.g. the write failed).
pub async fn with_jobs<F: Future>(jobs: Vec<PendingJob>, fut: F) -> (F::Output, Vec<i64>) {
    PENDING
        .scope(
            Pending {
                jobs: RefCell::new(jobs),
                written: RefCell::new(Vec::new()),
            },
            async move {
                let out = fut.await;
                let ids = PENDING.with(|p| std::mem::take(&mut *p.written.borrow_mut()));
                (out, ids)
            },
        )
        .await
}

/// Takes the jobs waiting for the current scope's next commit (none outside a scope). A
/// backend calls it just before it commits a write transaction, and inserts them in it.
pub fn take() -> Vec<PendingJob> {
    PENDING
        .try_with(|p| std::mem::take(&mut *p.jobs.borrow_mut()))
        .unwrap_or_default()
}

/// Hands back jobs [`take`]n for a commit that failed, so a retried write still carries
/// them.
pub fn restore(jobs: Vec<PendingJob>) {
    if jobs.is_empty() {
        return;
    }
    let _ = PENDING.try_with(|p| p.jobs.borrow_mut().extend(jobs));
}

/// Records the IDs of the outbox entries a commit wrote for `jobs` (`ids[i]` is the entry
/// of `jobs[i]`). Only entries their writer holds (`lease_ms > 0`) are reported: the writer
/// finishes and removes those itself, while a job written with no lease is for a relay at
/// once and must stay until a relay has published it.
pub fn written(jobs: &[PendingJob], ids: &[i64]) {
    let held: Vec<i64> = jobs
        .iter()
        .zip(ids)
        .filter(|(j, _)| j.lease_ms > 0)
        .map(|(_, &id)| id)
        .collect();
    if held.is_empty() {
        return;
    }
    let _ = PENDING.try_with(|p| p.written.borrow_mut().extend_from_slice(&held));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> PendingJob {
        PendingJob {
            queue: "q",
            payload: vec![n],
            lease_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_scope_hands_its_jobs_to_one_commit_and_reports_what_it_wrote() {
        assert!(take().is_empty(), "no scope: nothing pending");
        written(&[job(1)], &[9]); // outside a scope: ignored
        let ((), ids) = with_jobs(vec![job(1)], async {
            let jobs = take();
            assert_eq!(jobs, [job(1)]);
            restore(jobs); // that commit failed
            let again = take();
            assert_eq!(again, [job(1)], "a retried write still carries them");
            assert!(take().is_empty(), "a second commit carries none");
            let for_a_relay = PendingJob {
                lease_ms: 0,
                ..job(2)
            };
            written(&[job(1), for_a_relay], &[7, 8]);
        })
        .await;
        assert_eq!(
            ids,
            [7],
            "a job for a relay at once is not its writer's to remove"
        );
    }
}
