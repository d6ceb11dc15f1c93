-- 0005: what moving logical shards between clusters with PostgreSQL's logical replication
-- (rung 10's `crescendo reshard`) needs.
--
-- A publication filtered by logical shard may filter UPDATEs and DELETEs only on columns of
-- the replica identity. Most tables carry their shard in their key (users.id, articles.id,
-- follows.follower_id, article_tags.article_id, favorites.article_id, uploads.id).
--
-- Comments get theirs: their key becomes (article_id, id). A comment is always reached
-- through its article, so the key costs nothing (it replaces the index on (article_id, id)),
-- and it also keeps comment IDs unique where they meet: a comment ID (milliseconds and a
-- sequence) is made by its cluster, and two clusters may make the same one; after a move
-- both live on one cluster, under different articles.
--
-- The directory tables (keyed by name and email, filtered by user_id) log their whole old
-- row instead (REPLICA IDENTITY FULL): their rows are small and change only with a name or
-- email, so this costs less than a second key.
ALTER TABLE comments DROP CONSTRAINT comments_pkey;
ALTER TABLE comments ADD PRIMARY KEY (article_id, id);
DROP INDEX comments_article_id;
ALTER TABLE usernames REPLICA IDENTITY FULL;
ALTER TABLE emails REPLICA IDENTITY FULL;

-- Marks a move writes on the source after fencing a batch of shards: once the mark has
-- arrived on the target, every write committed on the source before it has too.
CREATE TABLE reshard_marks (
    source text   NOT NULL,
    batch  bigint NOT NULL,
    PRIMARY KEY (source, batch)
);
