-- 0003: an aborted resharding run returns to the placement before it. The abort turns the
-- plan into its reverse: the shards not cut over yet leave it (they never left their
-- source), and each shard already cut over becomes a move back, from the cluster the run
-- moved it to (now from_cluster) to its home before the run (now to_cluster), with
-- `aborted` set. The reverse plan runs as any plan does, so an interrupted abort is resumed
-- like a run, and a second abort sees from `aborted` that the plan is reversed already and
-- goes on returning instead of reversing it again.
ALTER TABLE reshard_moves ADD COLUMN aborted boolean NOT NULL DEFAULT false;
