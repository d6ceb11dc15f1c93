-- 0008: the cross-region cache invalidation stream (rung 8).
--
-- Each region has its own cache tier. A write records the cache keys it invalidated here,
-- on the primary, after its own commit; every other region's `crescendo invalidator`
-- tails the table on its region's copy of the database (a streaming replica) and
-- invalidates those keys in its region's cache. The replica replays a row only after the
-- data of the write it follows, so a reader who misses after the invalidation loads the
-- new data. `position` is the primary's WAL position when the row was written (at least
-- the write's own), which later loads of the keys must have replayed; `at_ms` is when the
-- writer recorded it (ms since the Unix epoch), from which the invalidation delay is
-- measured. Rows older than an hour are pruned by the invalidator that reads the primary.
CREATE TABLE cache_invalidations (
    id       bigserial PRIMARY KEY,
    region   text NOT NULL,
    keys     text[] NOT NULL,
    position bigint NOT NULL,
    at_ms    bigint NOT NULL
);
-- the pruning of old rows (`WHERE at_ms < $1`) reads only them
CREATE INDEX cache_invalidations_at_ms ON cache_invalidations (at_ms);
