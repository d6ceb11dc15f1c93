-- 0002: the plan of a resharding run, kept until the run ends, so that an interrupted run
-- can be resumed (or aborted) from where it stopped. One row per logical shard that moves.
CREATE TABLE reshard_moves (
    shard        integer PRIMARY KEY CHECK (shard BETWEEN 0 AND 4095),
    from_cluster text    NOT NULL,
    to_cluster   text    NOT NULL,
    -- its writes go to to_cluster now (the map says so)
    moved        boolean NOT NULL DEFAULT false
);
