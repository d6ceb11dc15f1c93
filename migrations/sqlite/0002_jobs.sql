-- 0002: the embedded job queue. Jobs are written in the same transaction as the data they
-- concern (an outbox), then claimed by workers with a lease: a worker that dies leaves its
-- job to be claimed again once the lease runs out.

CREATE TABLE jobs (
    id          INTEGER PRIMARY KEY,
    queue       TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    -- 'ready' (waiting or leased; see lease_until) or 'dead' (out of attempts)
    state       TEXT    NOT NULL DEFAULT 'ready',
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- a claim is valid until this time; NULL when not claimed
    lease_until INTEGER,
    -- not before this time (retry back-off)
    run_at      INTEGER NOT NULL,
    last_error  TEXT,
    created_at  INTEGER NOT NULL
) STRICT;
-- the claim query: the oldest runnable job of one queue
CREATE INDEX jobs_claim ON jobs (queue, state, run_at, id);
