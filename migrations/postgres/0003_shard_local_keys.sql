-- 0003: keys that would cross logical shards go, so every cluster of a sharded deployment
-- (rung 10) holds the same schema and rows can live apart from the users they name.
--
-- A follow lives with its follower and names a followee who may live elsewhere; a favourite
-- lives with its article (whose count it keeps in the same transaction) and names a user
-- who may live elsewhere; a comment lives with its article and names an author who may live
-- elsewhere. The application checks that the named user exists before each of these writes.
-- Keys within one logical shard stay: an article and its tags, favourites and comments; a
-- user and their follows, uploads and directory rows.

ALTER TABLE follows   DROP CONSTRAINT follows_followee_id_fkey;
ALTER TABLE favorites DROP CONSTRAINT favorites_user_id_fkey;
ALTER TABLE comments  DROP CONSTRAINT comments_author_id_fkey;
