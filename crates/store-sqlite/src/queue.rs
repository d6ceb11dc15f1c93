//! `SqliteQueue`: the `Queue` seam on the `jobs` table.
//!
//! A claim is one `UPDATE … RETURNING` that takes the oldest runnable job and stamps a lease,
//! so two workers can never hold the same job at once. Depth is exact: it is a `COUNT(*)`.
//!
//! A claim's lease is extended ([`Queue::extend`]) by moving its end forward, only while the
//! claim still holds the job: same attempt, still ready, still leased (a failed job handed
//! back has no lease, so a late extension cannot hold it back).
//!
//! A claim counts a delivery (`attempts`) whether or not an answer follows; the
//! `max_attempts`-th is a [`Delivery::LastRun`]. A job whose lease ran out after it (its
//! workers died or hung on it, e.g. killed for memory) is never run again: the next claim
//! hands it out as [`Delivery::GiveUp`], with the reason, and the worker's `fail` then makes
//! it a dead letter.

use crate::clock::now_ms;
use crate::db::{Db, map_err};
use async_trait::async_trait;
use crescendo_queue::{Delivery, Job, Queue, QueueDepth, QueueError};
use rusqlite::{OptionalExtension, params};
use std::time::Duration;

/// The job table as a queue.
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    db: Db,
    /// After this many failed claims a job becomes a dead letter.
    max_attempts: u32,
}

impl SqliteQueue {
    pub(crate) fn new(db: Db, max_attempts: u32) -> Self {
        Self {
            db,
            max_attempts: max_attempts.max(1),
        }
    }
}

fn qerr(e: crescendo_store::StoreError) -> QueueError {
    match e {
        crescendo_store::StoreError::Unavailable(m) => QueueError::Unavailable(m),
        other => QueueError::Other(other.to_string()),
    }
}

/// An ack or fail changes its job's row only while the caller's lease holds (same attempt,
/// still ready); otherwise another worker has the job now.
fn lease_held(changed: usize, id: i64) -> Result<(), QueueError> {
    if changed == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(id))
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn publish(&self, queue: &str, payload: &[u8]) -> Result<i64, QueueError> {
        let (queue, payload) = (queue.to_string(), payload.to_vec());
        self.db
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached("INSERT INTO jobs (queue, payload, run_at, created_at) VALUES (?1, ?2, ?3, ?3) RETURNING id")
                    .and_then(|mut st| st.query_row(params![queue, payload, now], |r| r.get(0)))
                    .map_err(map_err)
            })
            .await
            .map_err(qerr)
    }

    async fn claim(&self, queue: &str, lease: Duration) -> Result<Option<Job>, QueueError> {
        let queue = queue.to_string();
        let lease_ms = lease.as_millis() as i64;
        let max_attempts = self.max_attempts;
        self.db
            .write(move |tx| {
                let now = now_ms();
                let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, Vec<u8>, u32)> {
                    Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u32))
                };
                // first a job whose last lease ran out: handed out to be given up, not run
                let given_up = tx
                    .prepare_cached(
                        "UPDATE jobs SET lease_until = ?2
                         WHERE id = (SELECT id FROM jobs
                                     WHERE queue = ?1 AND state = 'ready' AND attempts >= ?4
                                       AND lease_until IS NOT NULL AND lease_until <= ?3
                                     ORDER BY id LIMIT 1)
                         RETURNING id, payload, attempts",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![queue, now + lease_ms, now, max_attempts], row)
                            .optional()
                    })
                    .map_err(map_err)?;
                if let Some((id, payload, attempts)) = given_up {
                    tracing::warn!(
                        queue,
                        job_id = id,
                        attempts,
                        "job given up: its workers died"
                    );
                    let reason = format!(
                        "delivered {attempts} times without an answer (workers died or timed out)"
                    );
                    return Ok(Some(Job {
                        id,
                        queue,
                        payload,
                        attempts,
                        delivery: Delivery::GiveUp(reason),
                    }));
                }
                let claimed = tx
                    .prepare_cached(
                        "UPDATE jobs SET attempts = attempts + 1, lease_until = ?2
                         WHERE id = (SELECT id FROM jobs
                                     WHERE queue = ?1 AND state = 'ready' AND run_at <= ?3
                                       AND attempts < ?4
                                       AND (lease_until IS NULL OR lease_until <= ?3)
                                     ORDER BY run_at, id LIMIT 1)
                         RETURNING id, payload, attempts",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![queue, now + lease_ms, now, max_attempts], row)
                            .optional()
                    })
                    .map_err(map_err)?;
                Ok(claimed.map(|(id, payload, attempts)| Job {
                    id,
                    queue,
                    payload,
                    attempts,
                    delivery: if attempts >= max_attempts {
                        Delivery::LastRun
                    } else {
                        Delivery::Run
                    },
                }))
            })
            .await
            .map_err(qerr)
    }

    async fn ack(&self, job: &Job) -> Result<(), QueueError> {
        let (id, attempts) = (job.id, i64::from(job.attempts));
        let n = self
            .db
            .execute(
                "DELETE FROM jobs WHERE id = ?1 AND attempts = ?2 AND state = 'ready'",
                (id, attempts),
            )
            .await
            .map_err(qerr)?;
        lease_held(n, id)
    }

    async fn extend(&self, job: &Job, lease: Duration) -> Result<(), QueueError> {
        let (id, attempts) = (job.id, i64::from(job.attempts));
        let lease_ms = lease.as_millis() as i64;
        let n = self
            .db
            .write(move |tx| {
                tx.prepare_cached(
                    "UPDATE jobs SET lease_until = ?3
                     WHERE id = ?1 AND attempts = ?2 AND state = 'ready'
                       AND lease_until IS NOT NULL",
                )
                .and_then(|mut st| st.execute(params![id, attempts, now_ms() + lease_ms]))
                .map_err(map_err)
            })
            .await
            .map_err(qerr)?;
        lease_held(n, id)
    }

    async fn fail(&self, job: &Job, reason: &str, retry_after: Duration) -> Result<(), QueueError> {
        let (id, attempts, reason) = (job.id, i64::from(job.attempts), reason.to_string());
        let dead = job.attempts >= self.max_attempts;
        let n = self
            .db
            .write(move |tx| {
                let now = now_ms();
                tx.prepare_cached(
                    "UPDATE jobs SET state = ?3, lease_until = NULL, run_at = ?4, last_error = ?5
                     WHERE id = ?1 AND attempts = ?2 AND state = 'ready'",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        id,
                        attempts,
                        if dead { "dead" } else { "ready" },
                        now + retry_after.as_millis() as i64,
                        reason
                    ])
                })
                .map_err(map_err)
            })
            .await
            .map_err(qerr)?;
        lease_held(n, id)
    }

    async fn depth(&self, queue: &str) -> Result<QueueDepth, QueueError> {
        let queue = queue.to_string();
        self.db
            .read(move |c| {
                c.prepare_cached(
                    "SELECT COALESCE(SUM(state = 'ready'), 0), COALESCE(SUM(state = 'dead'), 0),
                            MIN(CASE WHEN state = 'ready' THEN created_at END)
                     FROM jobs WHERE queue = ?1",
                )
                .and_then(|mut st| {
                    st.query_row([&queue], |r| {
                        let oldest: Option<i64> = r.get(2)?;
                        Ok(QueueDepth {
                            pending: r.get::<_, i64>(0)? as u64,
                            dead: r.get::<_, i64>(1)? as u64,
                            oldest_ms: oldest.map(|t| (now_ms() - t).max(0) as u64).unwrap_or(0),
                        })
                    })
                })
                .map_err(map_err)
            })
            .await
            .map_err(qerr)
    }
}
