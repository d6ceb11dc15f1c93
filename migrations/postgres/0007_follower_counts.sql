-- 0007: each user's follower count, kept beside `followers` on the followee's logical shard
-- (rung 10's feed by fan-out on write).
--
-- The fan-out asks whether an author is a celebrity (more followers than
-- `store.celebrity_followers`) on every post and follow, and the feed needs the whole set of
-- celebrities: counting `followers` rows each time grew with the followers. The sync of a
-- follow (`followers` row added or removed) updates the count in the same transaction, so
-- the two agree on every cluster; the key carries the logical shard, so a publication
-- filtered by it moves the count with its user.
CREATE TABLE follower_counts (
    followee_id bigint PRIMARY KEY,
    followers   bigint NOT NULL CHECK (followers >= 0)
);
-- the celebrity set: `WHERE followers > threshold` reads only the few above it
CREATE INDEX follower_counts_followers ON follower_counts (followers);

INSERT INTO follower_counts (followee_id, followers)
SELECT followee_id, COUNT(*) FROM followers GROUP BY followee_id;
