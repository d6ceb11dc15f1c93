-- 0005: what moving logical shards between clusters with PostgreSQL's logical replication
-- (rung 10's `crescendo reshard`) needs.
--
-- A publication filtered by logical shard may filter UPDATEs and DELETEs only on columns of
-- the replica identity. Most tables carry their shard in their key (users.id, articles.id,
-- follows.follower_id, article_tags.article_id, favorites.article_id, uploads.id). Three do
-- not: the directory tables (keyed by name and email, filtered by user_id) and comments
-- (keyed by a comment ID that carries no shard, filtered by article_id). They log their
-- whole old row instead (REPLICA IDENTITY FULL): their rows are small and rarely change, so
-- this costs less than a second key on every comment.
ALTER TABLE usernames REPLICA IDENTITY FULL;
ALTER TABLE emails REPLICA IDENTITY FULL;
ALTER TABLE comments REPLICA IDENTITY FULL;

-- Marks a move writes on the source after fencing a batch of shards: once the mark has
-- arrived on the target, every write committed on the source before it has too.
CREATE TABLE reshard_marks (
    source text   NOT NULL,
    batch  bigint NOT NULL,
    PRIMARY KEY (source, batch)
);
