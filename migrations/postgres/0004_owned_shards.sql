-- 0004: the logical shards this database holds, for fencing in a sharded deployment
-- (rung 10). Every write of a sharded store first takes a share lock on its shard's row
-- here, in the write's own transaction; a move of the shard to another cluster deletes the
-- row, which waits for the writes in flight and refuses every later one, so a node whose
-- map is stale cannot write to the shard's old home. Unsharded, the table stays empty and
-- is never read.
CREATE TABLE owned_shards (
    shard integer PRIMARY KEY CHECK (shard BETWEEN 0 AND 4095)
);
